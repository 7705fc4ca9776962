#!/usr/bin/env bash
# bench/zero_detect.sh [BUILD]: zero-detection GB/s on one core (goal
# >= 20 GB/s on a block in cache, as the pipeline scans a leaf it has
# just read).
set -euo pipefail
BUILD=${1:-build}
taskset -c 0 "$BUILD/bench_zero" 256
