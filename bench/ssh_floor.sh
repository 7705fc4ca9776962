#!/usr/bin/env bash
# bench/ssh_floor.sh [BUILD]: the floor of the ssh row of
# bench/perf_table.sh.  diskferry's own wire bytes for the real corpus
# (bench/corpus_real.sh), pushed through the same ssh (aes128-gcm, a
# real sshd on 127.0.0.1) and written once by dd: no read of the
# source, no zero scan, no hash, no read-back.  Timed interleaved with
# diskferry and with dd | ssh dd of the whole disk, medians of RUNS
# (default 5) after a dropped warm-up.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build-release}
DF=$(realpath "$BUILD/diskferry")
DATA=${BENCH_DATA:-/var/tmp/diskferry-bench}
RUNS=${RUNS:-5}
bash "$HERE/corpus_real.sh" "$DATA" 2048
SRC=$DATA/real.img
OUT=$DATA/floor-out.img
TMP=$(mktemp -d)
export DISKFERRY_STATE_DIR=$TMP/state
mkdir -p -m 700 "$DISKFERRY_STATE_DIR"
# shellcheck source=bench/loopback_sshd.sh
. "$HERE/loopback_sshd.sh"
cleanup() { bench_sshd_stop; rm -rf "$TMP" "$OUT"; }
trap cleanup EXIT
bench_sshd_start "$TMP"
cat "$SRC" > /dev/null
rm -f "$OUT"
DFSSH="$DF copy --no-progress --rsh '$BENCH_SSH' --remote-path $DF"
WIRE=$(eval "$DFSSH --json $SRC 127.0.0.1:$OUT" |
       /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["remote"]["bytes_wire"])')
MIB=$(( (WIRE + (1 << 20) - 1) >> 20 ))
echo "diskferry's wire bytes: $WIRE ($MIB MiB)"
SSHC="$BENCH_SSH -c aes128-gcm@openssh.com 127.0.0.1"
"$HERE/interleave.py" --runs "$RUNS" --prepare "rm -f $OUT" \
    --title "ssh loopback, real corpus" \
    "diskferry=$DFSSH $SRC 127.0.0.1:$OUT" \
    "floor=dd if=$SRC bs=1M count=$MIB status=none | $SSHC 'dd of=$OUT bs=4M status=none'" \
    "dd|ssh=dd if=$SRC bs=4M status=none | $SSHC 'dd of=$OUT bs=4M status=none'"
