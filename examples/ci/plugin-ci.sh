#!/usr/bin/env bash
# A plugin vendor's CI job, to copy: run the conformance kit on the built plugin, then package the
# plugin and verify the package, as a release pipeline does before anything ships.
#
# Usage: plugin-ci.sh PLUGIN.so PROFILE.toml SHIP_DIR OUT_DIR
#   PLUGIN.so     the plugin library just built
#   PROFILE.toml  its conformance profile (docs/conformance.md)
#   SHIP_DIR      the directory to ship: the library and any files it needs, with an
#                 aapi-plugin.json giving name, version, vendor and workload types (docs/validator.md)
#   OUT_DIR       where the reports and the package go:
#                   conformance.json, conformance.junit.xml  (publish the JUnit file as test results)
#                   plugin.aapkg, verify.json                (the package to release and its check)
# Tools: aapi-conformance and aapi-validator on PATH (from a checkout: cargo install --locked
# --path conformance, and --path validator), or their paths in AAPI_CONFORMANCE and AAPI_VALIDATOR. With AAPI_SIGNING_KEY set to
# a secret key file BASE.key made by `aapi-validator keygen -o BASE`, the package is signed and
# verified against BASE.pub.
#
# Exit status: 0 when the plugin is conformant, the package verifies and its entry library is the
# library that passed; otherwise the status of the step that failed (aapi-conformance: 1 a MUST
# check failed, 2 could not run, 130/143 stopped by SIGINT/SIGTERM (a cancelled CI job);
# aapi-validator: 1 invalid package, 2 could not run), or 3 when the
# package's entry library is not PLUGIN.so byte for byte (its SHA-256 differs): then the package and
# its verify.json are removed, since what was tested is not what would ship.
#
# OUT_DIR may hold an earlier run's outputs (a reused workspace): the package and verify result
# of that run are removed first (the conformance kit replaces its own reports). A run that does
# not pass every step, or is cancelled, leaves no plugin.aapkg, and a verify.json only when the
# verify step failed (its "valid" is false): what OUT_DIR holds is always this run's result.
set -euo pipefail

if [ $# -ne 4 ]; then
    echo "usage: $0 PLUGIN.so PROFILE.toml SHIP_DIR OUT_DIR" >&2
    exit 2
fi
plugin=$1 profile=$2 ship=$3 out=$4
conformance=${AAPI_CONFORMANCE:-aapi-conformance}
validator=${AAPI_VALIDATOR:-aapi-validator}
mkdir -p "$out"
if ! rm -f "$out/plugin.aapkg" "$out/verify.json"; then
    echo "plugin-ci: cannot remove the package or verify result of an earlier run in $out; remove them, or give another OUT_DIR" >&2
    exit 2
fi
# Until every step has passed, whatever ends the run (a failed step, a signal) removes the
# package, and the verify result unless it is the verify step's own failure.
passed=0 verify_failed=0
trap 'if [ "$passed" -ne 1 ]; then
    rm -f "$out/plugin.aapkg"
    [ "$verify_failed" -eq 1 ] || rm -f "$out/verify.json"
fi' EXIT

# Hash the library before testing it: this is the library the verdict is about.
tested=$(sha256sum <"$plugin" | cut -d' ' -f1)

echo "==> conformance: $plugin (sha256 $tested)"
"$conformance" run "$plugin" --profile "$profile" \
    --json "$out/conformance.json" --junit "$out/conformance.junit.xml"

echo "==> package: $ship"
sign=()
verify_key=()
if [ -n "${AAPI_SIGNING_KEY:-}" ]; then
    sign=(--key "$AAPI_SIGNING_KEY")
    verify_key=(--key "${AAPI_SIGNING_KEY%.key}.pub")
fi
"$validator" pack "$ship" -o "$out/plugin.aapkg" "${sign[@]}"

echo "==> verify: $out/plugin.aapkg"
code=0
"$validator" verify "$out/plugin.aapkg" "${verify_key[@]}" --json >"$out/verify.json" || code=$?
if [ "$code" -ne 0 ]; then
    verify_failed=1
    "$validator" verify "$out/plugin.aapkg" "${verify_key[@]}" >&2 || true
    exit "$code"
fi

# The package must ship the library that passed: the manifest's entry, in SHIP_DIR, has the tested
# library's SHA-256, and the verified manifest lists that digest.
entry=$(grep -o '"entry": *"[^"]*"' "$out/verify.json" | head -n 1 | sed 's/^"entry": *"//; s/"$//') ||
    entry=""
if [ -z "$entry" ] || [ ! -f "$ship/$entry" ]; then
    echo "plugin-ci: cannot find the package's entry library in $out/verify.json and $ship" >&2
    exit 3
fi
shipped=$(sha256sum <"$ship/$entry" | cut -d' ' -f1)
if [ "$shipped" != "$tested" ] || ! grep -q "\"$tested\"" "$out/verify.json"; then
    echo "plugin-ci: the package's entry library $entry is not the library that was tested:" >&2
    echo "  tested   $plugin  sha256 $tested" >&2
    echo "  packaged $ship/$entry  sha256 $shipped" >&2
    echo "  copy the tested library into $ship (or test the one in $ship); package and verify.json removed" >&2
    exit 3
fi
passed=1
echo "==> ok: conformant, packaged and verified; the package ships $entry, sha256 $tested"
