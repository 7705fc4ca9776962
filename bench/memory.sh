#!/usr/bin/env bash
# bench/memory.sh [BUILD]: peak resident memory (VmHWM, by GNU time's %M)
# of diskferry and of the serve it starts on the other end, for each
# transport at the default settings and at --streams 64, on the 2 GiB
# corpus (bench/corpus.sh) and its qcow2.  Goal: <= 128 MiB each.
# The far end runs through a --remote-path wrapper that records its own
# peak; ssh is a real sshd on 127.0.0.1 (bench/loopback_sshd.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build-release}
DF=$(realpath "$BUILD/diskferry")
DATA=${BENCH_DATA:-/var/tmp/diskferry-bench}
bash "$HERE/corpus.sh" "$DATA" 2048
SRC=$DATA/corpus.img
Q=$DATA/corpus.qcow2
[ -f "$Q" ] || qemu-img convert -O qcow2 "$SRC" "$Q"
OUT=$DATA/mem-out.img
TMP=$(mktemp -d)
export DISKFERRY_STATE_DIR=$TMP/state
mkdir -p -m 700 "$DISKFERRY_STATE_DIR"
# shellcheck source=bench/loopback_sshd.sh
. "$HERE/loopback_sshd.sh"
cleanup() { bench_sshd_stop; rm -rf "$TMP" "$OUT"; }
trap cleanup EXIT
bench_sshd_start "$TMP"
FAR=$TMP/far.sh
cat > "$FAR" <<SH
#!/bin/sh
exec /usr/bin/time -a -o $TMP/far.rss -f %M $DF "\$@"
SH
chmod +x "$FAR"

measure() {  # measure TITLE ARGS...: the client's peak and the far end's
    local title=$1
    shift
    [ "${KEEP:-0}" = 1 ] || rm -f "$OUT"
    rm -f "$TMP/far.rss"
    /usr/bin/time -o "$TMP/near.rss" -f %M "$DF" "$@" > /dev/null
    local near far=-
    near=$(tail -1 "$TMP/near.rss")
    [ -f "$TMP/far.rss" ] && far=$(sort -n "$TMP/far.rss" | tail -1)
    printf '  %-44s diskferry %6d KiB   serve %6s KiB\n' "$title" "$near" "$far"
}

R=(--no-progress --rsh "$BENCH_SSH" --remote-path "$FAR")
echo "== peak RSS (KiB), 2 GiB corpus"
measure "local raw -> raw" copy "$SRC" "$OUT"
measure "local qcow2 -> raw" copy "$Q" "$OUT"
measure "local raw -> qcow2 (-O qcow2)" copy -O qcow2 "$SRC" "$OUT"
measure "ssh push" copy "${R[@]}" "$SRC" "127.0.0.1:$OUT"
cp --sparse=always "$SRC" "$TMP/pull-src.img"
measure "ssh pull" copy "${R[@]}" "127.0.0.1:$TMP/pull-src.img" "$OUT"
measure "tcp push, 4 streams (default)" copy "${R[@]}" --transport tcp "$SRC" "127.0.0.1:$OUT"
measure "tcp push, 64 streams" copy "${R[@]}" --transport tcp --streams 64 "$SRC" "127.0.0.1:$OUT"
measure "tcp pull, 64 streams" copy "${R[@]}" --transport tcp --streams 64 "127.0.0.1:$TMP/pull-src.img" "$OUT"
rm -f "$OUT"
"$DF" copy "${R[@]}" "$SRC" "127.0.0.1:$OUT" > /dev/null
KEEP=1 measure "sync (compare, DST a copy already), ssh" sync "${R[@]}" "$SRC" "127.0.0.1:$OUT"
