#!/usr/bin/env bash
# make demo: the main job for real.  Builds a sample VM disk (an ext4
# filesystem image with files, holes and regions of written zeros),
# copies it with diskferry to a new file, verifies the copy, and prints
# diskferry's report.  Everything lives under ./demo.
set -euo pipefail
BUILD=${1:-build}
DF=$(realpath "$BUILD/diskferry")
cd "$(dirname "$0")/.."
rm -rf demo
mkdir -p demo/content/etc demo/content/var/lib
cd demo

echo "== making a sample VM disk: demo/vm.img (ext4, 256 MiB)"
head -c 24M /dev/urandom > content/var/lib/database.bin
for i in $(seq 1 2000); do echo "line $i: the quick brown fox jumps over the lazy dog"; done \
    > content/etc/services.txt
head -c 8M /dev/zero > content/var/lib/zeros.bin          # zeros written as data
truncate -s 64M content/var/lib/sparse.bin                 # a sparse file
printf 'hello from the middle\n' | dd of=content/var/lib/sparse.bin bs=1 \
    seek=$((32 << 20)) conv=notrunc status=none
truncate -s 256M vm.img
mkfs.ext4 -q -F -L demo-root -d content vm.img
# A region of real zero bytes in free space (as dd-made images have).
dd if=/dev/zero of=vm.img bs=1M seek=200 count=32 conv=notrunc status=none

echo "== diskferry info vm.img"
"$DF" info vm.img

echo
echo "== diskferry copy vm.img vm-copy.img --json"
"$DF" copy -v --json vm.img vm-copy.img | tee report.json

echo
echo "== diskferry verify vm.img vm-copy.img"
"$DF" verify vm.img vm-copy.img

echo
echo "== cross-check with cmp and e2fsck"
cmp vm.img vm-copy.img && echo "cmp: identical"
e2fsck -fn vm-copy.img >/dev/null && echo "e2fsck: vm-copy.img is a clean ext4 filesystem"
echo "allocated on disk: source $(du -k vm.img | cut -f1) KiB, copy $(du -k vm-copy.img | cut -f1) KiB"

echo
echo "== diskferry refuses to overwrite it by accident"
set +e
"$DF" copy vm.img vm-copy.img
echo "exit code $? (3 = refused for safety)"
