# bench/corpus_data.sh: sourced by the benchmarks that use bench/corpus.sh.
# Sets CORPUS_MB (default 2048) and DATA, where the corpus lives:
# BENCH_DATA, else /var/tmp/diskferry-bench, or for a smaller corpus (to
# try a script out) /var/tmp/diskferry-bench-<CORPUS_MB>m, so that the
# 2 GiB one is left alone.
CORPUS_MB=${CORPUS_MB:-2048}
if [ "$CORPUS_MB" = 2048 ]; then
    DATA=${BENCH_DATA:-/var/tmp/diskferry-bench}
else
    DATA=${BENCH_DATA:-/var/tmp/diskferry-bench-${CORPUS_MB}m}
fi
