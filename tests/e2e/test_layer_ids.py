"""Layer identities and child layers read alone.

`info --json` shows each layer's layer_id (how a child names it) and a
child's parent_id (how it names its parent) in one text per format
(src/image/image.h): a child's parent_id equals its parent's layer_id
while the parent is unchanged.  And a child opened without its parents
(imgcat --no-parents, as `sync --changes top-layer` opens it) maps what
it holds as data/zero and the rest as parent, and reads its own bytes.

qemu-img makes the qcow2 and VMDK chains; the VHD, VHDX and VDI
differencing images and the vmfsSparse/seSparse deltas, which it cannot
make, come from the builders of the format tests.
"""
import json
import struct
import uuid

import pytest

from conftest import df, imgcat, qemu_raw, sh, write_at
import vhdxgen
from test_format_vdi import O_UUID_MODIFY, make_diff
from test_format_vdi import pattern as vdi_pattern
from test_format_vhd import F_UID, build_vhd_diff, footer_of, sec
from test_format_vhdx import make_child as vhdx_make_child
from test_format_vhdx import make_parent as vhdx_make_parent
from test_format_vmdk import build_sesparse_child, build_vmfs_sparse_child

MiB = 1 << 20
KiB = 1024


def qemu_io(img, fmt, *cmds):
    argv = ["qemu-io", "-f", fmt]
    for c in cmds:
        argv += ["-c", c]
    sh(argv + [str(img)])


def info(path, *args):
    """info --json of path (a probed child opens alone)."""
    p = df("info", "--json", *args, path)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def ids(path, *args):
    j = info(path, *args)
    return j.get("layer_id"), j.get("parent_id")


def alone_map(img, fmt):
    p = imgcat("-f", fmt, "--no-parents", "--map", "--layer", img)
    assert p.returncode == 0, p.stderr
    return [(int(a), int(b), c) for a, b, c in
            (line.split() for line in p.stdout.decode().splitlines())]


def check_alone(img, fmt, want):
    """The child alone: its map covers the disk, and it reads `want`
    (the whole chain's content) where it holds data or zeros, and zeros
    where it defers to the parent.  Returns the map."""
    m = alone_map(img, fmt)
    p = imgcat("-f", fmt, "--no-parents", img)
    assert p.returncode == 0, p.stderr
    got = p.stdout
    assert len(got) == len(want)
    pos = 0
    for off, n, st in m:
        assert off == pos and st in ("data", "zero", "parent"), m
        pos += n
        if st == "parent":
            assert got[off:off + n] == bytes(n), (off, n)
        else:
            assert got[off:off + n] == want[off:off + n], (off, n, st)
        if st == "zero":
            assert want[off:off + n] == bytes(n), (off, n)
    assert pos == len(want)
    return m


def chain_ids(child, fmt):
    """(layer_id, parent_id) of each chain member, child first."""
    j = info(child, "-f", fmt)
    return [(m.get("layer_id"), m.get("parent_id")) for m in j["chain"]]


# ------------------------------------------------------------------ qcow2

@pytest.mark.parametrize("extl2", [False, True])
def test_qcow2_overlay(tmp_path, extl2):
    base = tmp_path / "base.qcow2"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "4M"])
    qemu_io(base, "qcow2", "write -P 0xaa 0 4M")
    child = tmp_path / "child.qcow2"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F",
        "qcow2"] + (["-o", "extended_l2=on"] if extl2 else []) + [str(child)])
    # A zero cluster over the parent's data must stay zero, not parent.
    qemu_io(child, "qcow2", "write -P 0x55 64k 64k", "write -z 1M 64k")
    if extl2:
        # One 2 KiB subcluster of a cluster: the rest is the parent's.
        qemu_io(child, "qcow2", "write -P 0x66 %d 2k" % (2 * MiB + 2048))

    assert ids(base) == (None, None)
    assert ids(child) == (None, "qcow2 backing base.qcow2")
    assert chain_ids(child, "qcow2") == [(None, "qcow2 backing base.qcow2"),
                                         (None, None)]
    want = qemu_raw(child, tmp_path / "want.raw", fmt="qcow2").read_bytes()
    m = check_alone(child, "qcow2", want)
    tail = [(MiB + 64 * KiB, 3 * MiB - 64 * KiB, "parent")]
    if extl2:
        tail = [(MiB + 64 * KiB, MiB - 62 * KiB, "parent"),
                (2 * MiB + 2048, 2048, "data"),
                (2 * MiB + 4096, 2 * MiB - 4096, "parent")]
    assert m == [(0, 64 * KiB, "parent"), (64 * KiB, 64 * KiB, "data"),
                 (128 * KiB, MiB - 128 * KiB, "parent"),
                 (MiB, 64 * KiB, "zero")] + tail

    # An absolute backing name is given as recorded.
    child2 = tmp_path / "child2.qcow2"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F",
        "qcow2", str(child2)])
    assert ids(child2)[1] == "qcow2 backing %s" % base


# ------------------------------------------------------------------- VMDK

def test_vmdk_hosted_sparse_child(tmp_path):
    base = tmp_path / "base.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", str(base), "16M"])
    qemu_io(base, "vmdk", "write -P 0xaa 0 16M")
    child = tmp_path / "child.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", "-o", "zeroed_grain=on",
        "-b", "base.vmdk", "-F", "vmdk", str(child)])
    qemu_io(child, "vmdk", "write -P 0x5c 1M 64k", "write -z 2M 128k")

    base_id, base_parent = ids(base)
    child_id, child_parent = ids(child)
    assert base_id.startswith("vmdk CID ") and len(base_id) == 17
    assert base_parent is None
    assert child_parent == base_id and child_id != base_id
    cid = info(base)["properties"]["cid"]
    assert base_id == "vmdk CID " + cid
    assert chain_ids(child, "vmdk") == [(child_id, base_id), (base_id, None)]

    want = qemu_raw(child, tmp_path / "want.raw", fmt="vmdk").read_bytes()
    m = check_alone(child, "vmdk", want)
    assert m == [(0, MiB, "parent"), (MiB, 64 * KiB, "data"),
                 (MiB + 64 * KiB, MiB - 64 * KiB, "parent"),
                 (2 * MiB, 128 * KiB, "zero"),
                 (2 * MiB + 128 * KiB, 14 * MiB - 128 * KiB, "parent")]

    # A write to the base changes its CID: the child no longer names it.
    qemu_io(base, "vmdk", "write -P 0xab 0 4k")
    assert ids(base)[0] != base_id
    assert ids(child)[1] == base_id


def test_vmdk_vmfs_sparse_delta(tmp_path):
    base, child, sectors, grains = build_vmfs_sparse_child(tmp_path)
    assert ids(base) == ("vmdk CID b0b0b0b0", None)
    assert ids(child) == ("vmdk CID c1c1c1c1", "vmdk CID b0b0b0b0")
    want = bytearray(b"\xa5" * (sectors * 512))
    for g, b in grains.items():
        want[g * 512:(g + 1) * 512] = b
    m = check_alone(child, "vmdk", bytes(want))
    assert [(o, n) for o, n, s in m if s == "data"] == \
        [(g * 512, 512) for g in sorted(grains)]


def test_vmdk_sesparse_delta(tmp_path):
    child, sectors, gtes = build_sesparse_child(tmp_path)
    assert ids(tmp_path / "base.vmdk")[0] == "vmdk CID b0b0b0b0"
    assert ids(child) == ("vmdk CID c2c2c2c2", "vmdk CID b0b0b0b0")
    want = bytearray(b"\x5a" * (sectors * 512))
    for g, (e, data) in gtes.items():
        want[g * 4096:(g + 1) * 4096] = data or bytes(4096)
    m = check_alone(child, "vmdk", bytes(want))
    assert m[:3] == [(0, 8192, "data"), (8192, 8192, "zero"),
                     (16384, 9000 * 4096 - 16384, "parent")]
    assert (9000 * 4096, 4096, "data") in m


# -------------------------------------------------------------------- VHD

def test_vhd_differencing(tmp_path):
    parent = tmp_path / "parent.vhd"
    sh(["qemu-img", "create", "-q", "-f", "vpc", str(parent), "8M"])
    qemu_io(parent, "vpc", "write -P 0x61 0 3M")
    want = bytearray(qemu_raw(parent, tmp_path / "p.raw",
                              fmt="vpc").read_bytes())
    sectors = {}
    for s in [0, 1, 7, 8, 9, 4095, 4096, 10240]:
        sectors[s] = sec(s)
        want[s * 512:(s + 1) * 512] = sec(s)
    child = tmp_path / "child.vhd"
    uid = build_vhd_diff(child, parent, sectors)

    puid = bytes(footer_of(parent)[F_UID:F_UID + 16])
    pid = "vhd uuid %s" % uuid.UUID(bytes=puid)
    assert ids(parent) == (pid, None)
    assert ids(child) == ("vhd uuid %s" % uuid.UUID(bytes=uid), pid)
    m = check_alone(child, "vhd", bytes(want))
    assert m[:3] == [(0, 1024, "data"), (1024, 5 * 512, "parent"),
                     (7 * 512, 3 * 512, "data")]
    assert sum(n for o, n, s in m if s == "data") == len(sectors) * 512

    other = tmp_path / "other.vhd"
    sh(["qemu-img", "create", "-q", "-f", "vpc", str(other), "8M"])
    assert ids(other)[0] != pid


# ------------------------------------------------------------------- VHDX

def test_vhdx_differencing(tmp_path):
    parent, want = vhdx_make_parent(tmp_path)
    dwg = vhdxgen.data_write_guid(parent)
    child = vhdx_make_child(tmp_path, dwg, want)
    pid = "vhdx %s" % vhdxgen.guid_str(dwg)
    assert ids(parent) == (pid, None)
    child_id, child_parent = ids(child)
    assert child_parent == pid
    assert child_id == "vhdx %s" % vhdxgen.guid_str(
        vhdxgen.data_write_guid(child))
    assert chain_ids(child, "vhdx") == [(child_id, pid), (pid, None)]

    m = check_alone(child, "vhdx", bytes(want))
    assert m[:4] == [(0, MiB, "data"), (MiB, MiB, "parent"),
                     (2 * MiB, 3 * 512, "data"),
                     (2 * MiB + 3 * 512, 6 * 512, "parent")]
    assert (5 * MiB, MiB, "zero") in m
    assert (12 * MiB + 64 * 512, MiB - 64 * 512, "data") in m

    # qemu gives the parent a new DataWriteGuid on its first write.
    qemu_io(parent, "vhdx", "write -P 0x11 0 4k")
    assert ids(parent)[0] != pid


# -------------------------------------------------------------------- VDI

def test_vdi_differencing(tmp_path):
    parent = tmp_path / "parent.vdi"
    sh(["qemu-img", "create", "-q", "-f", "vdi", str(parent), "8M"])
    qemu_io(parent, "vdi", "write -P 0x61 0 1M", "write -P 0x65 5M 1M")
    child = tmp_path / "child.vdi"
    blocks = {6: vdi_pattern(6, MiB), 2: vdi_pattern(2, MiB), 5: "zero"}
    cu = make_diff(tmp_path, parent, child, blocks)
    want = bytearray(qemu_raw(parent, tmp_path / "p.raw").read_bytes())
    want[2 * MiB:3 * MiB] = blocks[2]
    want[5 * MiB:6 * MiB] = bytes(MiB)
    want[6 * MiB:7 * MiB] = blocks[6]

    def text(b):
        return str(uuid.UUID(bytes_le=bytes(b)))

    with open(parent, "rb") as f:
        h = f.read(512)
    pid = "vdi %s %s" % (text(h[392:408]), text(h[408:424]))
    assert ids(parent) == (pid, None)
    assert ids(child) == ("vdi %s %s" % (text(cu[0]), text(cu[1])), pid)
    assert chain_ids(child, "vdi")[1] == (pid, None)

    m = check_alone(child, "vdi", bytes(want))
    assert m == [(0, 2 * MiB, "parent"), (2 * MiB, MiB, "data"),
                 (3 * MiB, 2 * MiB, "parent"), (5 * MiB, MiB, "zero"),
                 (6 * MiB, MiB, "data"), (7 * MiB, MiB, "parent")]

    # A parent written since (VirtualBox gives it a new uuidModify; qemu
    # does not) is no longer the one the child names.
    write_at(parent, O_UUID_MODIFY, uuid.uuid4().bytes_le)
    assert ids(parent)[0] != pid
    assert ids(parent)[0].split()[1] == pid.split()[1]
