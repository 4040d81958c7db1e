#!/usr/bin/env bash
# Benchmarks of aapi-host (not run by `cargo test`): backup and restore throughput of a generated
# 1 GiB tree of mixed sizes at 1 and 2 streams against tar, and the time to restore one small
# object from an image of 10,000 objects against a full restore of that image.
#
# Usage: host/benches/bench-host.sh [WORKDIR]      (default WORKDIR: ${TMPDIR:-/tmp}/aapi-bench)
# Environment: PLUGIN=<plugin .so> (default: the Rust sample plugin, release build).
# Figures are printed as a Markdown table; docs/performance.md records them with the machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-${TMPDIR:-/tmp}/aapi-bench}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release -q -p aapi-host
if [ -z "${PLUGIN:-}" ]; then
    cargo build --release -q -p aapi-sample-plugin
    PLUGIN=$TARGET/release/libaapi_sample_plugin.so
fi
PLUGIN=$(realpath "$PLUGIN")
HOST=$(realpath "$TARGET/release/aapi-host")

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
fmt() { printf '%.2f' "$1"; }

mkdir -p "$WORK"
TREE=$WORK/tree
if [ ! -f "$WORK/tree.done" ]; then
    rm -rf "$TREE"
    mkdir -p "$TREE/large" "$TREE/medium" "$TREE/small" "$TREE/tiny"
    # 1 GiB in four size classes: 4 x 128 MiB, 64 x 4 MiB, 2048 x 64 KiB, 32768 x 4 KiB.
    for i in 1 2 3 4; do head -c 128M /dev/urandom >"$TREE/large/l$i"; done
    head -c 256M /dev/urandom | split -b 4M - "$TREE/medium/m"
    head -c 128M /dev/urandom | split -a 4 -b 64K - "$TREE/small/s"
    head -c 128M /dev/urandom | split -a 5 -b 4K - "$TREE/tiny/t"
    touch "$WORK/tree.done"
fi
SIZE=$(du -sb "$TREE" | cut -f1)
MIB=$(echo "$SIZE / 1048576" | bc -l)
# Warm the page cache, so every run reads the same way.
tar -cf - -C "$TREE" . | cat >/dev/null

# Prints "wall-seconds cpu-seconds" of a backup; CPU is user + system of every process of the job
# (bash's `time` counts the workers, which the supervisor waits for).
run_backup() { # streams [store [stream-io [cpu-list]]]
    local store=${2:-$WORK/store} pin=()
    [ -n "${4:-}" ] && pin=(taskset -c "$4")
    rm -rf "$store"; sync
    local TIMEFORMAT='%R %U %S' out
    out=$( { time AAPI_STREAM_IO=${3:-buffered} "${pin[@]}" "$HOST" --store "$store" -q backup \
        --plugin "$PLUGIN" --policy bench --select "$TREE" --streams "$1" >/dev/null; } 2>&1 )
    echo "$out" | awk '{ printf "%s %.2f\n", $1, $2 + $3 }'
}
wall() { echo "${1% *}"; }
cpu() { echo "${1#* }"; }

t0=$(now); tar -cf - -C "$TREE" . | cat >/dev/null; t1=$(now); TAR_C=$(secs "$t0" "$t1")
# The framework's own cost without the store's disk writes: the store in memory (tmpfs).
SHM=${SHM:-/dev/shm}
if [ -d "$SHM" ]; then
    M1=$(run_backup 1 "$SHM/aapi-bench-store")
    M2=$(run_backup 2 "$SHM/aapi-bench-store")
    rm -rf "$SHM/aapi-bench-store"
fi
B1=$(run_backup 1)
B2=$(run_backup 2)
D1=$(run_backup 1 "$WORK/store" direct)
D2=$(run_backup 2 "$WORK/store" direct)
# How throughput grows with CPUs: one stream held to one CPU.
P1=$(run_backup 1 "$WORK/store" buffered 0)
# What the disk takes: two writers of 512 MiB each with O_DIRECT, as two streams would write.
rm -f "$WORK"/dd.*; sync
t0=$(now)
for i in 1 2; do dd if=/dev/zero of="$WORK/dd.$i" bs=1M count=512 oflag=direct status=none & done
wait
t1=$(now); DD=$(secs "$t0" "$t1"); rm -f "$WORK"/dd.*
IMAGE=$("$HOST" --store "$WORK/store" list --json | sed -n 's/.*"image": "\([^"]*\)".*/\1/p' | head -1)

# Like for like with a backup: tar writing its archive to the same disk, made durable.
rm -f "$WORK/tree.tar"; sync
t0=$(now); tar -cf "$WORK/tree.tar" -C "$TREE" .; sync; t1=$(now); TAR_F=$(secs "$t0" "$t1")
# Both restores go into fresh directories and nothing is deleted between them: ext4 skips inodes
# freed in the last seconds when it allocates new ones, which would slow whichever ran second.
rm -rf "$WORK/x" "$WORK/alt"; mkdir -p "$WORK/x" "$WORK/alt"; sync; sleep 35
t0=$(now); tar -xf "$WORK/tree.tar" -C "$WORK/x"; sync; t1=$(now); TAR_X=$(secs "$t0" "$t1")
t0=$(now); "$HOST" --store "$WORK/store" -q restore "$IMAGE" --alt-root "$WORK/alt"; t1=$(now)
R=$(secs "$t0" "$t1")
cmp "$TREE/large/l1" "$WORK/alt$TREE/large/l1"
rm -rf "$WORK/x" "$WORK/alt" "$WORK/tree.tar"

# Single-object restore from an image of 10,000 objects (10,000 files of 16 KiB).
T10=$WORK/tree10k
if [ ! -f "$WORK/tree10k.done" ]; then
    rm -rf "$T10"; mkdir -p "$T10/d"
    head -c $((10000 * 16384)) /dev/urandom | split -a 5 -b 16K - "$T10/d/o"
    touch "$WORK/tree10k.done"
fi
rm -rf "$WORK/store10k"
"$HOST" --store "$WORK/store10k" -q backup --plugin "$PLUGIN" --policy tenk --select "$T10" --streams 2
IMG10=$("$HOST" --store "$WORK/store10k" list --json | sed -n 's/.*"image": "\([^"]*\)".*/\1/p' | head -1)
ONE=$(ls "$T10/d" | sed -n 5000p)
rm -rf "$WORK/alt1"; mkdir -p "$WORK/alt1"
t0=$(now); "$HOST" --store "$WORK/store10k" -q restore "$IMG10" --path "$T10/d/$ONE" --alt-root "$WORK/alt1"; t1=$(now)
R1=$(secs "$t0" "$t1")
READ1=$("$HOST" --store "$WORK/store10k" --json restore "$IMG10" --path "$T10/d/$ONE" --alt-root "$WORK/alt1" --overwrite | sed -n 's/.*"store_bytes_read": \([0-9]*\).*/\1/p')
cmp "$T10/d/$ONE" "$WORK/alt1$T10/d/$ONE"
rm -rf "$WORK/altall"; mkdir -p "$WORK/altall"
t0=$(now); "$HOST" --store "$WORK/store10k" -q restore "$IMG10" --alt-root "$WORK/altall"; t1=$(now)
RALL=$(secs "$t0" "$t1")
rm -rf "$WORK/alt1" "$WORK/altall"

ratio() { fmt "$(echo "$1 / $2" | bc -l)"; }
# A backup row: label, "wall cpu", ratio text.
brow() {
    local w c
    w=$(wall "$2"); c=$(cpu "$2")
    echo "| $1 | $(fmt "$w") | $(fmt "$(echo "$MIB / $w" | bc -l)") | $c ($(ratio "$c" "$w") CPUs) | $3 |"
}
b1=$(wall "$B1")
echo "| measurement | seconds | MiB/s | CPU s | ratio |"
echo "|---|---|---|---|---|"
echo "| \`tar -cf - | cat >/dev/null\` ($(fmt "$MIB") MiB) | $(fmt "$TAR_C") | $(fmt "$(echo "$MIB / $TAR_C" | bc -l)") | | 1.00 |"
echo "| \`tar -cf archive\` + \`sync\` (same disk as the store) | $(fmt "$TAR_F") | $(fmt "$(echo "$MIB / $TAR_F" | bc -l)") | | $(ratio "$TAR_C" "$TAR_F") x tar |"
brow "backup, 1 stream" "$B1" "$(ratio "$TAR_C" "$b1") x tar"
brow "backup, 2 streams" "$B2" "$(ratio "$b1" "$(wall "$B2")") x 1 stream"
brow "backup, 1 stream held to 1 CPU" "$P1" "2 streams: $(ratio "$(wall "$P1")" "$(wall "$B2")") x this"
brow "backup, 1 stream, AAPI_STREAM_IO=direct" "$D1" "$(ratio "$TAR_C" "$(wall "$D1")") x tar"
brow "backup, 2 streams, AAPI_STREAM_IO=direct" "$D2" "$(ratio "$(wall "$D1")" "$(wall "$D2")") x 1 stream"
echo "| disk alone: 2 x \`dd oflag=direct\` of 512 MiB at once | $(fmt "$DD") | $(fmt "$(echo "1024 / $DD" | bc -l)") | | |"
if [ -n "${M1:-}" ]; then
    brow "backup, 1 stream, store in tmpfs" "$M1" "$(ratio "$TAR_C" "$(wall "$M1")") x tar"
    brow "backup, 2 streams, store in tmpfs" "$M2" "$(ratio "$(wall "$M1")" "$(wall "$M2")") x 1 stream"
fi
echo "| \`tar -xf\` + \`sync\` | $(fmt "$TAR_X") | $(fmt "$(echo "$MIB / $TAR_X" | bc -l)") | | 1.00 |"
echo "| restore (whole image) | $(fmt "$R") | $(fmt "$(echo "$MIB / $R" | bc -l)") | | $(ratio "$TAR_X" "$R") x tar |"
echo "| restore 1 object of 10,000 ($READ1 bytes read from the store) | $(fmt "$R1") | | | 1/$(printf '%.0f' "$(echo "$RALL / $R1" | bc -l)") of full |"
echo "| restore all 10,000 objects | $(fmt "$RALL") | | | 1.00 |"
