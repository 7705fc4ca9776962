#!/usr/bin/env bash
# bench/perf_table.sh [BUILD]: the performance table, every row with
# both corpora, in one run.
#
# Corpora (2 GiB each, zeros written as real bytes, warm page cache):
#   corpus  bench/corpus.sh: 30% random, 20% text-like, 50% zeros in
#           4 MiB segments (its text is eight blocks repeated)
#   real    bench/corpus_real.sh: 1 MiB regions, 25% random, 25% the
#           machine's binaries, 10% its text, 40% zeros
# Rows (diskferry's time / the peer's, medians of RUNS interleaved runs
# after a dropped warm-up, bench/interleave.py; a new destination file
# on the same file system each run; nobody fsyncs; diskferry verifies,
# as a user runs it, the peers do not):
#   local raw copy        diskferry copy        cp --sparse=always, qemu-img convert -O raw
#   qcow2 -> raw          diskferry copy        qemu-img convert -O raw
#   qcow2 zlib -> raw     (qemu-img convert -c)
#   qcow2 zstd -> raw     (-c -o compression_type=zstd)
#   VMDK stream -> raw    (subformat=streamOptimized)
#   VHD dynamic -> raw    (vpc)
#   VHDX -> raw
#   ssh, loopback         diskferry copy SRC 127.0.0.1:OUT
#                         dd bs=4M | ssh -c aes128-gcm@openssh.com dd
#   tcp, loopback         diskferry --transport tcp vs diskferry over ssh
# (a real sshd on 127.0.0.1 with its own keys: bench/loopback_sshd.sh).
# Each local and format row also times diskferry --no-verify: how far
# the goal is from the floor the read-back sets (qemu-img and cp read
# and write once; a verified copy reads the destination back too).
# ROWS="local qcow2 ..." picks rows; CORPORA="corpus real" the corpora;
# RUNS (default 5).
#
# This machine's noise (a VM): page cache freed and left a few seconds
# is handed back to the hypervisor, and the next writer to take it
# faults it in again at up to 3x the system time.  Every command runs
# right after the last one's output is removed, interleaved, so the
# spell falls on each alike; the medians are what to read.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build-release}
DF=$(realpath "$BUILD/diskferry")
DATA=${BENCH_DATA:-/var/tmp/diskferry-bench}
RUNS=${RUNS:-5}
CORPORA=${CORPORA:-corpus real}
ROWS=${ROWS:-local qcow2 qcow2-zlib qcow2-zstd vmdk-stream vhd vhdx ssh tcp}
bash "$HERE/corpus.sh" "$DATA" 2048
bash "$HERE/corpus_real.sh" "$DATA" 2048
OUT=$DATA/table-out.img
TMP=$(mktemp -d)
export DISKFERRY_STATE_DIR=$TMP/state
mkdir -p -m 700 "$DISKFERRY_STATE_DIR"
# shellcheck source=bench/loopback_sshd.sh
. "$HERE/loopback_sshd.sh"
cleanup() {
    bench_sshd_stop
    rm -rf "$TMP" "$OUT"
}
trap cleanup EXIT
case " $ROWS " in *" ssh "*|*" tcp "*) bench_sshd_start "$TMP" ;; esac

mk() {  # mk CORPUS SUFFIX qemu-img-convert-args...: the converted image
    local src=$DATA/$1.img f=$DATA/$1.$2
    shift 2
    [ -f "$f" ] || qemu-img convert "$@" "$src" "$f"
    echo "$f"
}

row() {  # row CORPUS NAME CMD...: one interleaved measurement
    local c=$1 name=$2
    shift 2
    "$HERE/interleave.py" --runs "$RUNS" --prepare "rm -f $OUT" \
        --title "$c: $name" --json "$TMP/$c.$name.json" "$@"
}

for c in $CORPORA; do
    SRC=$DATA/$c.img
    cat "$SRC" > /dev/null
    for r in $ROWS; do
        case $r in
        local)
            row "$c" local "diskferry=$DF copy $SRC $OUT" \
                "cp=cp --sparse=always $SRC $OUT" \
                "qemu-img=qemu-img convert -O raw $SRC $OUT" \
                "diskferry-noverify=$DF copy --no-verify $SRC $OUT" ;;
        qcow2|qcow2-zlib|qcow2-zstd|vmdk-stream|vhd|vhdx)
            case $r in
            qcow2) f=$(mk "$c" qcow2 -O qcow2) ;;
            qcow2-zlib) f=$(mk "$c" zlib.qcow2 -O qcow2 -c) ;;
            qcow2-zstd) f=$(mk "$c" zstd.qcow2 -O qcow2 -c -o compression_type=zstd) ;;
            vmdk-stream) f=$(mk "$c" stream.vmdk -O vmdk -o subformat=streamOptimized) ;;
            vhd) f=$(mk "$c" vhd -O vpc) ;;
            vhdx) f=$(mk "$c" vhdx -O vhdx) ;;
            esac
            cat "$f" > /dev/null
            row "$c" "$r" "diskferry=$DF copy $f $OUT" \
                "qemu-img=qemu-img convert -O raw $f $OUT" \
                "diskferry-noverify=$DF copy --no-verify $f $OUT" ;;
        ssh)
            row "$c" ssh \
                "diskferry=$DF copy --no-progress --rsh '$BENCH_SSH' --remote-path $DF $SRC 127.0.0.1:$OUT" \
                "dd|ssh=dd if=$SRC bs=4M status=none | $BENCH_SSH -c aes128-gcm@openssh.com 127.0.0.1 'dd of=$OUT bs=4M status=none'" ;;
        tcp)
            row "$c" tcp \
                "diskferry-tcp=$DF copy --no-progress --transport tcp --rsh '$BENCH_SSH' --remote-path $DF $SRC 127.0.0.1:$OUT" \
                "diskferry-ssh=$DF copy --no-progress --rsh '$BENCH_SSH' --remote-path $DF $SRC 127.0.0.1:$OUT" ;;
        esac
    done
done

echo
echo "== diskferry's median time / the peer's (lower is better; goal in brackets)"
/usr/bin/python3 - "$TMP" "$ROWS" "$CORPORA" <<'PY'
import json, os, sys
tmp, rows, corpora = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
goal = {"local": 0.8, "qcow2": 0.8, "qcow2-zlib": 0.6, "qcow2-zstd": 0.6,
        "vmdk-stream": 0.6, "vhd": 0.8, "vhdx": 0.8, "ssh": 0.67,
        "tcp": 0.67}
print("%-30s" % "row" + "".join("%18s" % c for c in corpora) + "   goal")
for r in rows:
    peers = None
    cells = {}
    for c in corpora:
        p = os.path.join(tmp, "%s.%s.json" % (c, r))
        if not os.path.exists(p):
            continue
        med = json.load(open(p))["median"]
        names = list(med)
        peers = [n for n in names[1:] if n != "diskferry-noverify"]
        cells[c] = {n: med[names[0]] / med[n] for n in peers}
        cells[c]["_t"] = med[names[0]]
        nv = med.get("diskferry-noverify")
        for n in peers:
            cells[c]["nv:" + n] = nv / med[n] if nv else None
        cells[c]["_nv"] = nv
    for n in peers or []:
        for key, label in ((n, r), ("nv:" + n, "  no-verify")):
            line = "%-30s" % ("%s vs %s" % (label, n))
            shown = False
            for c in corpora:
                v = cells.get(c)
                if v and v.get(key) is not None:
                    t = v["_t"] if key == n else v["_nv"]
                    line += "%18s" % ("%.2fx (%.2f s)" % (v[key], t))
                    shown = True
                else:
                    line += "%18s" % "-"
            if shown:
                print(line + ("   <= %.2fx" % goal[r] if key == n else ""))
PY
