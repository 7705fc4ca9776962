#!/usr/bin/env bash
# bench/copy_remote.sh [BUILD]: diskferry copy to a remote host vs the
# pipelines administrators type today.
#
# Part 1, loopback: a real sshd on 127.0.0.1 (own host and user keys in
# a temporary directory, a free port: bench/loopback_sshd.sh), the 2 GiB corpus (bench/corpus.sh:
# 30% random, 20% text-like, 50% zeros written as bytes), warm cache,
# destination a new file on the same file system (removed before each
# run; nobody fsyncs).  Best of RUNS (default 3) after one warm-up, except
# bzip2 (one run: it is minutes):
#   diskferry copy SRC 127.0.0.1:DST              (ssh transport)
#   diskferry copy --transport tcp SRC 127.0.0.1:DST
#   dd bs=4M | ssh 'dd bs=4M of=DST'
#   dd | zstd -1 | ssh 'zstd -d | dd of=DST'
#   dd | bzip2 | ssh 'bunzip2 | dd of=DST'
# Part 2, a shaped link (bench/shaped_link.sh): two network namespaces
# joined by a veth pair with link-local addresses (169.254.77.1 / .2),
# 20 Mbit/s on the sender's egress (tc tbf), sshd inside the receiving
# namespace; a 256 MiB slice
# of the corpus; one run each.
# Goals: loopback diskferry >= 2x faster than dd|ssh, tcp >= 1.5x
# diskferry over ssh; on the 20 Mbit link within 1.05x of the best
# compressor's pipeline and >= 2.5x faster than dd|ssh.
# diskferry, given a plain `ssh` without a cipher choice, puts AES-GCM
# first when the CPU has AES instructions (transport/ssh.c); dd | ssh
# keeps OpenSSH's default (chacha20-poly1305), so the table also shows
# dd | ssh -c aes128-gcm for the same cipher.
# SKIP_LOOPBACK=1 / SKIP_SHAPED=1 skip a part, SKIP_BZIP2=1 the bzip2 run.
set -euo pipefail
BUILD=${1:-build}
DF=$(realpath "$BUILD/diskferry")
DATA=${BENCH_DATA:-/var/tmp/diskferry-bench}
RUNS=${RUNS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -f "$HERE/corpus.sh" ]; then
    bash "$HERE/corpus.sh" "$DATA" 2048
else
    echo "bench/corpus.sh missing" >&2
    exit 1
fi
SRC=$DATA/corpus.img
OUT=$DATA/remote-out.img
TMP=$(mktemp -d)
# shellcheck source=bench/loopback_sshd.sh
. "$HERE/loopback_sshd.sh"
# shellcheck source=bench/shaped_link.sh
. "$HERE/shaped_link.sh"
cleanup() {
    bench_sshd_stop
    shaped_link_down
    rm -rf "$TMP" "$OUT" "$DATA/slice.img" "$OUT".diskferry-resume
}
trap cleanup EXIT

bench_sshd_start "$TMP"
SSH=$BENCH_SSH

cat "$SRC" > /dev/null
now() { date +%s.%N; }
best() {   # best RUNS CMD: best wall time of RUNS runs (after a warm-up
           # when RUNS > 1)
    local n=$1 b= t0 t1 t
    shift
    if [ "$n" -gt 1 ]; then rm -f "$OUT"; sh -c "$*" > /dev/null; fi
    for _ in $(seq "$n"); do
        rm -f "$OUT" "$OUT".diskferry-resume
        t0=$(now); sh -c "$*" > /dev/null; t1=$(now)
        t=$(echo "$t1 - $t0" | bc -l)
        if [ -z "$b" ] || [ "$(echo "$t < $b" | bc -l)" = 1 ]; then b=$t; fi
    done
    cmp -s "$SRC" "$OUT" || cmp -s "$CUR_SRC" "$OUT" || { echo "MISMATCH: $*" >&2; exit 1; }
    printf '%.2f' "$b"
}
once() { best 1 "$@"; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }

if [ "${SKIP_LOOPBACK:-0}" != 1 ]; then
echo "== loopback ssh, 2 GiB corpus, warm cache, best of $RUNS"
CUR_SRC=$SRC
T_DF=$(best "$RUNS" "$DF copy --no-progress --rsh '$SSH' --remote-path $DF $SRC 127.0.0.1:$OUT")
T_TCP=$(best "$RUNS" "$DF copy --no-progress --transport tcp --rsh '$SSH' --remote-path $DF $SRC 127.0.0.1:$OUT")
T_DD=$(best "$RUNS" "dd if=$SRC bs=4M status=none | $SSH 127.0.0.1 'dd of=$OUT bs=4M status=none'")
T_ZSTD=$(best "$RUNS" "dd if=$SRC bs=4M status=none | zstd -1 -q -c | $SSH 127.0.0.1 'zstd -d -q -c | dd of=$OUT bs=4M status=none'")
T_DDAES=$(best "$RUNS" "dd if=$SRC bs=4M status=none | $SSH -c aes128-gcm@openssh.com 127.0.0.1 'dd of=$OUT bs=4M status=none'")
echo "  diskferry (ssh)        $T_DF s"
echo "  diskferry (tcp)        $T_TCP s"
echo "  dd | ssh dd            $T_DD s"
echo "  dd | ssh -c aes128-gcm $T_DDAES s"
echo "  dd | zstd -1 | ssh     $T_ZSTD s"
if [ "${SKIP_BZIP2:-0}" != 1 ]; then
    T_BZ=$(once "dd if=$SRC bs=4M status=none | bzip2 -c | $SSH 127.0.0.1 'bunzip2 -c | dd of=$OUT bs=4M status=none'")
    echo "  dd | bzip2 | ssh       $T_BZ s (one run)"
    echo "  dd|bzip2|ssh / diskferry       = $(ratio "$T_BZ" "$T_DF")x"
fi
echo "  dd|ssh / diskferry             = $(ratio "$T_DD" "$T_DF")x   (goal >= 2)"
echo "  dd|ssh-aes / diskferry         = $(ratio "$T_DDAES" "$T_DF")x   (same cipher as diskferry picks)"
echo "  dd|zstd|ssh / diskferry        = $(ratio "$T_ZSTD" "$T_DF")x"
echo "  diskferry ssh / diskferry tcp  = $(ratio "$T_DF" "$T_TCP")x   (goal >= 1.5)"
fi
bench_sshd_stop

[ "${SKIP_SHAPED:-0}" = 1 ] && exit 0
echo "== 20 Mbit/s link (veth between two namespaces, tbf), 256 MiB slice, one run"
head -c 256M "$SRC" > "$DATA/slice.img"
CUR_SRC=$DATA/slice.img
shaped_link_up "$TMP" 20mbit
NSSH=$SHAPED_SSH
A=$SHAPED_A
S=$DATA/slice.img
rm -f "$OUT"
t0=$(now); $A $DF copy --no-progress --json --rsh "$NSSH" --remote-path "$DF" "$S" "$SHAPED_HOST:$OUT" > "$TMP/shaped.json"; t1=$(now)
L_DF=$(printf '%.2f' "$(echo "$t1 - $t0" | bc -l)")
cmp "$S" "$OUT"
L_DD=$(once "$A sh -c \"dd if=$S bs=4M status=none | $NSSH $SHAPED_HOST 'dd of=$OUT bs=4M status=none'\"")
L_ZSTD=$(once "$A sh -c \"dd if=$S bs=4M status=none | zstd -1 -q -c | $NSSH $SHAPED_HOST 'zstd -d -q -c | dd of=$OUT bs=4M status=none'\"")
L_ZSTD19=$(once "$A sh -c \"dd if=$S bs=4M status=none | zstd -6 -T0 -q -c | $NSSH $SHAPED_HOST 'zstd -d -q -c | dd of=$OUT bs=4M status=none'\"")
L_BZ=$(once "$A sh -c \"dd if=$S bs=4M status=none | bzip2 -c | $NSSH $SHAPED_HOST 'bunzip2 -c | dd of=$OUT bs=4M status=none'\"")
echo "  diskferry (ssh, auto)  $L_DF s   $(/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["remote"]; print("wire %d MiB, ratio %.2f, zstd level up to %s" % (r["bytes_wire"]>>20, r["compression_ratio"], r.get("zstd_level_max")))' "$TMP/shaped.json")"
echo "  dd | ssh dd            $L_DD s"
echo "  dd | zstd -1 | ssh     $L_ZSTD s"
echo "  dd | zstd -6 -T0 | ssh $L_ZSTD19 s"
echo "  dd | bzip2 | ssh       $L_BZ s"
BEST=$(printf '%s\n' "$L_ZSTD" "$L_ZSTD19" "$L_BZ" | sort -g | head -1)
echo "  diskferry / best compressor    = $(ratio "$L_DF" "$BEST")x   (goal <= 1.05)"
echo "  dd|ssh / diskferry             = $(ratio "$L_DD" "$L_DF")x   (goal >= 2.5)"
