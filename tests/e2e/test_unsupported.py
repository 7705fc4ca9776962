"""Containers diskferry recognises but does not read are refused (exit 5,
naming the format), never copied as if they were raw disks; -f raw copies
their bytes on purpose; content inside a raw disk (LUKS) is not a
container."""
import os
import struct
import subprocess

import pytest

from conftest import df, sh, files_equal


def qemu_made(tmp_path, fmt, name):
    p = tmp_path / name
    sh(["qemu-img", "create", "-f", fmt, str(p), "64M"])
    return p


def bochs(tmp_path):
    p = tmp_path / "disk.bochs"
    hdr = bytearray(512)
    hdr[0:22] = b"Bochs Virtual HD Image"
    hdr[32:45] = b"Redolog\0"[:8] + b"\0" * 5
    hdr[48:56] = b"Growing\0"
    struct.pack_into("<I", hdr, 64, 0x00020000)   # version 2
    struct.pack_into("<I", hdr, 68, 512)          # header size
    p.write_bytes(bytes(hdr) + b"\xff" * 512)
    return p


def cloop(tmp_path):
    p = tmp_path / "disk.cloop"
    head = b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r " \
           b"-t iso9660 /dev/cloop $1\nexit $?\n"
    head = head.ljust(128, b"\0")
    p.write_bytes(head + struct.pack(">II", 65536, 1) + b"\0" * 16)
    return p


def dmg(tmp_path):
    p = tmp_path / "disk.dmg"
    koly = bytearray(512)
    koly[0:4] = b"koly"
    struct.pack_into(">III", koly, 4, 4, 512, 1)  # version, size, flags
    p.write_bytes(os.urandom(8192) + bytes(koly))
    return p


CASES = [
    ("qed", lambda t: qemu_made(t, "qed", "disk.qed")),
    ("parallels", lambda t: qemu_made(t, "parallels", "disk.hdd")),
    ("bochs", bochs),
    ("cloop", cloop),
    ("dmg", dmg),
]


@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_refused_with_format_named(tmp_path, name, make):
    src = make(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "copy.img"
    p = df("copy", src, dst)
    assert p.returncode == 5, p.stderr
    assert p.stderr.decode() == (
        "diskferry: copy: %s: %s image: format not supported (convert it "
        "with qemu-img, or copy its bytes with -f raw)\n" % (src, name))
    assert os.listdir(out_dir) == []              # nothing written
    p = df("info", src)
    assert p.returncode == 5
    assert ("%s image" % name).encode() in p.stderr
    # -f raw copies the bytes on purpose.
    p = df("copy", "-f", "raw", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)


def test_parallels_old_magic(tmp_path):
    src = tmp_path / "old.hdd"
    src.write_bytes(b"WithoutFreeSpace" + b"\0" * 496)
    p = df("copy", src, tmp_path / "x")
    assert p.returncode == 5
    assert b"parallels image: format not supported" in p.stderr


def test_luks_inside_raw_disk_copies_as_raw(tmp_path):
    src = tmp_path / "luks.img"
    sh(["truncate", "-s", "20M", str(src)])
    key = tmp_path / "key"
    key.write_bytes(b"correct horse battery staple")
    sh(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2",
        "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
        "--key-file", str(key), str(src)])
    dst = tmp_path / "copy.img"
    p = df("copy", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    p = df("info", "--json", src)
    assert b'"format":"raw"' in p.stdout


def test_partition_table_inside_raw_disk_copies_as_raw(tmp_path):
    src = tmp_path / "gpt.img"
    sh(["truncate", "-s", "20M", str(src)])
    sh(["sgdisk", "-n", "1:2048:0", "-t", "1:8300", str(src)])
    dst = tmp_path / "copy.img"
    p = df("copy", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
