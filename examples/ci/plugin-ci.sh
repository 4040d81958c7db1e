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
# Tools: aapi-conformance and aapi-validator on PATH (cargo install --path conformance, --path
# validator), or their paths in AAPI_CONFORMANCE and AAPI_VALIDATOR. With AAPI_SIGNING_KEY set to
# a secret key file BASE.key made by `aapi-validator keygen -o BASE`, the package is signed and
# verified against BASE.pub.
#
# Exit status: 0 when the plugin is conformant and the package verifies; otherwise the status of
# the step that failed (aapi-conformance: 1 a MUST check failed, 2 could not run; aapi-validator:
# 1 invalid package, 2 could not run).
set -euo pipefail

if [ $# -ne 4 ]; then
    echo "usage: $0 PLUGIN.so PROFILE.toml SHIP_DIR OUT_DIR" >&2
    exit 2
fi
plugin=$1 profile=$2 ship=$3 out=$4
conformance=${AAPI_CONFORMANCE:-aapi-conformance}
validator=${AAPI_VALIDATOR:-aapi-validator}
mkdir -p "$out"

echo "==> conformance: $plugin"
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
    "$validator" verify "$out/plugin.aapkg" "${verify_key[@]}" >&2 || true
    exit "$code"
fi
echo "==> ok: conformant, packaged and verified"
