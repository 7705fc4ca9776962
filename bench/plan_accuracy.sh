#!/usr/bin/env bash
# bench/plan_accuracy.sh [BUILD_DIR]: how close `diskferry plan` comes to
# the copy it predicts (issue 19), in five scenarios; goal: every ratio
# predicted / actual within 0.7..1.3.  Run as root (sshd, namespaces).
#
#   local warm        plan SRC DST, then copy SRC DST (a new file on the
#                     corpus's file system, SRC in the page cache)
#   loopback ssh      the same to 127.0.0.1:DST through a real sshd of
#                     this machine's OpenSSH on loopback (default
#                     cipher), the strategy "plain, zstd" (what copy
#                     does unasked)
#   loopback tcp      with --transport tcp: "plain, zstd, tcp"
#   shaped plain      over a 20 Mbit/s link (two namespaces, veth, tbf,
#                     sshd in one; bench/shaped_link.sh), a 256 MiB
#                     slice of the corpus: "plain, zstd"
#   shaped fs-aware   the 256 MiB used ext4 of bench/fs_corpus.sh with
#                     --fs-aware: "fs-aware, zstd"
#
# Each row: RUNS (default 5; 3 on the shaped link, which is slow) pairs
# of plan then copy, interleaved; the ratio of the medians.  The plan's
# own time is not in the copy's; the copy's is its --json "seconds"
# (verification on, as a user runs it: the read-back is in it).
# SRC: the first 1 GiB of bench/corpus.sh's 2 GiB corpus (4 MiB
# segments: 30% random, 20% text-like, 50% zeros written).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${1:-build-release}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
DF=$BUILD/diskferry
RUNS=${RUNS:-5}
# shellcheck source=bench/corpus_data.sh
. "$HERE/corpus_data.sh"
# shellcheck source=bench/loopback_sshd.sh
. "$HERE/loopback_sshd.sh"
# shellcheck source=bench/shaped_link.sh
. "$HERE/shaped_link.sh"

[ -x "$DF" ] || { echo "no $DF: build it first" >&2; exit 2; }
bash "$HERE/corpus.sh" "$DATA" "$CORPUS_MB" >/dev/null
TMP=$(mktemp -d /var/tmp/df-planacc.XXXXXX)
export DISKFERRY_STATE_DIR=$TMP/state
cleanup() {
    bench_sshd_stop || true
    shaped_link_down || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

SRC=$TMP/src.img
head -c 1G "$DATA/corpus.img" > "$SRC"
SLICE=$TMP/slice.img
head -c 256M "$DATA/corpus.img" > "$SLICE"
FS=$DATA/fsaware-256m.img
bash "$HERE/fs_corpus.sh" "$FS" 256 >/dev/null
sync

# row NAME STRATEGY RUNS PREFIX ARGS...: ARGS (SRC DST last) for both
# plan and copy, COPY_EXTRA for the copy alone
row() {
    local name=$1 strat=$2 n=$3 prefix=$4
    shift 4
    local preds=() acts=()
    local dst=${*: -1}
    for _ in $(seq "$n"); do
        $prefix "$DF" plan --json "$@" > "$TMP/plan.json"
        preds+=("$(/usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print([s for s in r["strategies"] if s["name"] == sys.argv[2]][0]
      ["predicted_seconds"])' "$TMP/plan.json" "$strat")")
        # shellcheck disable=SC2086
        $prefix "$DF" copy --json --no-progress ${COPY_EXTRA:-} "$@" \
            > "$TMP/copy.json"
        acts+=("$(/usr/bin/python3 -c '
import json, sys; print(json.load(open(sys.argv[1]))["seconds"])' \
            "$TMP/copy.json")")
        rm -f "${dst#*:}"       # every host is this machine
        sync
    done
    /usr/bin/python3 - "$name" "${preds[*]}" "${acts[*]}" <<'PY'
import statistics, sys
name, p, a = sys.argv[1], list(map(float, sys.argv[2].split())), \
    list(map(float, sys.argv[3].split()))
r = statistics.median(p) / statistics.median(a)
print("  %-16s predicted %7.2f s  actual %7.2f s  ratio %.2f  %s" % (
    name, statistics.median(p), statistics.median(a), r,
    "ok" if 0.7 <= r <= 1.3 else "MISSED (goal 0.7..1.3)"))
PY
}

echo "== plan: predicted / actual (medians), goal 0.7..1.3 each"
row "local warm" "plain" "$RUNS" "" "$SRC" "$TMP/out.img"

bench_sshd_start "$TMP"
RSH="ssh -p $BENCH_SSH_PORT $BENCH_SSHOPT"
row "loopback ssh" "plain, zstd" "$RUNS" "" --rsh "$RSH" \
    --remote-path "$DF" "$SRC" "127.0.0.1:$TMP/rout.img"
row "loopback tcp" "plain, zstd, tcp" "$RUNS" "" --transport tcp \
    --rsh "$RSH" --remote-path "$DF" "$SRC" "127.0.0.1:$TMP/rout.img"
bench_sshd_stop

shaped_link_up "$TMP" 20mbit
A=$SHAPED_A
row "shaped plain" "plain, zstd" "${SHAPED_RUNS:-3}" "$A" --rsh "$SHAPED_SSH" \
    --remote-path "$DF" "$SLICE" "$SHAPED_HOST:$TMP/rout.img"
COPY_EXTRA=--fs-aware row "shaped fs-aware" "fs-aware, zstd" \
    "${SHAPED_RUNS:-3}" "$A" --rsh "$SHAPED_SSH" --remote-path "$DF" "$FS" \
    "$SHAPED_HOST:$TMP/rout.img"
echo "reproduce: RUNS=$RUNS bash bench/plan_accuracy.sh ${1:-build-release}"
