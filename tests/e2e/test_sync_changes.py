"""sync --changes from metadata: an LVM snapshot's COW store, LVM thin
metadata, a qcow2 dirty bitmap.  SRC is read only where the metadata
says it changed; DST is proved to be the base before anything is
written."""
import os
import random
import subprocess
import sys

import pytest

from conftest import DISKFERRY, df, files_equal, sha256_file, write_at

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from cowstore import write_store  # noqa: E402

from test_sync import LEAF, copied, make_image, report  # noqa: E402

SIZE = 64 << 20


def snapshot_writes(src, store, chunk, fraction, seed=3, valid=True):
    """Write a fraction of SRC's chunks (scattered) as a VM would after an
    LVM snapshot: the old contents go into a COW store in the kernel's
    format.  Returns the changed chunk indexes."""
    rnd = random.Random(seed)
    n = max(1, int(SIZE // chunk * fraction))
    chunks = sorted(rnd.sample(range(SIZE // chunk), n))
    entries = []
    with open(src, "r+b") as f:
        for c in chunks:
            f.seek(c * chunk)
            old = f.read(chunk)
            entries.append((c, old))
            f.seek(c * chunk)
            f.write(rnd.randbytes(chunk))
    rnd.shuffle(entries)        # the table is in write order, not sorted
    write_store(store, chunk, entries, valid=valid)
    return chunks


@pytest.mark.parametrize("chunk", [4096, 64 << 10])
def test_lvm_cow_with_a_record(tmp_path, chunk):
    src = make_image(tmp_path / "src.img", SIZE)
    dst = copied(tmp_path, src)
    store = tmp_path / "snap-cow"
    chunks = snapshot_writes(src, store, chunk, 0.01)
    p = df("sync", "--json", "--changes", "lvm-cow:%s" % store, src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    assert r["sync"]["changes"] == "lvm-cow"
    assert r["verified"]
    changed = len(chunks) * chunk
    assert r["sync"]["changed_bytes"] == changed
    # SRC is read where it changed (whole 64 KiB leaves, for the digest)
    leaves = len({c * chunk // LEAF for c in chunks})
    assert r["bytes_read"] <= max(changed, leaves * LEAF) * 1.05
    # the record it leaves is a base for the next sync
    p = df("sync", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert report(p)["sync"]["changes"] == "record"
    assert report(p)["bytes_written"] == 0


def test_lvm_cow_without_a_record_is_proved_by_the_store(tmp_path):
    src = make_image(tmp_path / "src.img", SIZE)
    dst = tmp_path / "dst.img"
    dst.write_bytes(src.read_bytes())      # a copy diskferry did not make
    store = tmp_path / "snap-cow"
    chunks = snapshot_writes(src, store, 64 << 10, 0.05)
    p = df("sync", "--changes", "lvm-cow:%s" % store, src, dst)
    assert p.returncode == 3, p.stderr     # not a recorded copy
    assert b"--overwrite" in p.stderr
    p = df("sync", "--overwrite", "--json", "--changes",
           "lvm-cow:%s" % store, src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    assert r["bytes_read"] == len(chunks) * (64 << 10)
    assert r["sync"]["dst_bytes_read"] == len(chunks) * (64 << 10)


def test_lvm_cow_dst_that_is_not_the_base_is_refused(tmp_path):
    src = make_image(tmp_path / "src.img", SIZE)
    dst = tmp_path / "dst.img"
    dst.write_bytes(src.read_bytes())
    store = tmp_path / "snap-cow"
    chunks = snapshot_writes(src, store, 64 << 10, 0.01)
    write_at(dst, chunks[0] * (64 << 10) + 100, b"not the base")
    before = sha256_file(dst)
    p = df("sync", "--overwrite", "--changes", "lvm-cow:%s" % store, src,
           dst)
    assert p.returncode == 3, p.stderr
    assert b"--changes compare" in p.stderr
    assert sha256_file(dst) == before


@pytest.mark.parametrize("damage", ["invalid", "truncated", "past_end"])
def test_lvm_cow_bad_store_refused(tmp_path, damage):
    src = make_image(tmp_path / "src.img", SIZE)
    dst = copied(tmp_path, src)
    store = tmp_path / "snap-cow"
    snapshot_writes(src, store, 4096, 0.01, valid=damage != "invalid")
    if damage == "truncated":
        with open(store, "r+b") as f:
            f.truncate(4096 + 1000)
    elif damage == "past_end":
        # an entry whose origin chunk lies past the origin's end
        with open(store, "r+b") as f:
            f.seek(4096)
            f.write((SIZE // 4096 + 5).to_bytes(8, "little"))
    before = sha256_file(dst)
    p = df("sync", "--changes", "lvm-cow:%s" % store, src, dst)
    assert p.returncode == 5, p.stderr
    if damage == "invalid":
        assert b"compare" in p.stderr
    assert sha256_file(dst) == before


def test_lvm_cow_dry_run_lists_the_chunks(tmp_path):
    src = make_image(tmp_path / "src.img", SIZE)
    dst = copied(tmp_path, src)
    store = tmp_path / "snap-cow"
    chunks = snapshot_writes(src, store, 64 << 10, 0.01)
    before = sha256_file(dst)
    p = df("sync", "--dry-run", "--changes", "lvm-cow:%s" % store, src, dst)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "would write %d bytes" % (len(chunks) * (64 << 10)) in out
    for c in chunks:
        assert str(c * (64 << 10)) in out
    assert sha256_file(dst) == before


def test_lvm_cow_killed_then_resumed(tmp_path):
    """kill -9 after two writes: the store still proves DST (a chunk
    holds the old contents or SRC's new ones), so the next sync finishes
    it; with the record, --resume takes the record as the base."""
    src = make_image(tmp_path / "src.img", SIZE)
    dst = copied(tmp_path, src)
    store = tmp_path / "snap-cow"
    snapshot_writes(src, store, 64 << 10, 0.05)
    env = dict(os.environ, DF_TEST_UNDO_KILL_AFTER="2")
    p = subprocess.run([DISKFERRY, "sync", "--undo", str(tmp_path / "j"),
                        "--changes", "lvm-cow:%s" % store, str(src),
                        str(dst)], env=env, capture_output=True, timeout=120)
    assert p.returncode == -9, p.stderr
    assert not files_equal(src, dst)
    p = df("sync", "--resume", "--json", "--changes", "lvm-cow:%s" % store,
           src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    assert report(p)["sync"]["changes"] == "lvm-cow"


# ---- top-layer: a delta image applied to a copy of its parent ----

from conftest import qemu_raw, sh  # noqa: E402


def qemu_io(img, fmt, cmds):
    args = ["qemu-io", "-f", fmt]
    for c in cmds:
        args += ["-c", c]
    sh(args + [str(img)])


def base_image(tmp_path, fmt, name="base"):
    """A base image with data (and holes) in its first 16 MiB."""
    base = tmp_path / ("%s.%s" % (name, fmt))
    sh(["qemu-img", "create", "-f", fmt, str(base), "16M"])
    qemu_io(base, fmt, ["write -P 0x41 0 1M", "write -P 0x42 4M 2M",
                        "write -P 0x43 10M 64k"])
    return base


def overlay(tmp_path, base, fmt, bfmt):
    child = tmp_path / ("child.%s" % fmt)
    sh(["qemu-img", "create", "-f", fmt, "-b", str(base), "-F", bfmt,
        str(child)])
    cmds = ["write -P 0x61 64k 64k", "write -P 0x62 4M 4k",
            "write -P 0x63 12M 1M"]
    if fmt == "qcow2":
        cmds.append("write -z 10M 64k")      # a zero cluster masks 0x43
    qemu_io(child, fmt, cmds)
    return child


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk"])
def test_top_layer_applies_a_delta_to_a_copy_of_its_parent(tmp_path, fmt):
    base = base_image(tmp_path, fmt)
    dst = tmp_path / "dst.raw"
    p = df("copy", base, dst)
    assert p.returncode == 0, p.stderr
    child = overlay(tmp_path, base, fmt, fmt)
    want = qemu_raw(child, tmp_path / "want.raw")
    p = df("sync", "--json", "-f", fmt, "--changes", "top-layer", child, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(want, dst)
    r = report(p)
    assert r["sync"]["changes"] == "top-layer"
    assert r["verified"]
    # only the delta's clusters were read, not the parent's 3 MiB
    assert r["bytes_read"] < 3 << 20
    # the record now names the delta: the next sync of it is a no-op
    p = df("sync", "--json", "-f", fmt, "--changes", "top-layer", child, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(want, dst)


def test_top_layer_without_a_record_needs_trust_base(tmp_path):
    base = base_image(tmp_path, "vmdk")
    dst = qemu_raw(base, tmp_path / "dst.raw")    # a copy diskferry did not make
    child = overlay(tmp_path, base, "vmdk", "vmdk")
    before = sha256_file(dst)
    p = df("sync", "-f", "vmdk", "--changes", "top-layer", child, dst)
    assert p.returncode == 3, p.stderr
    assert b"--trust-base" in p.stderr
    assert sha256_file(dst) == before
    p = df("sync", "--trust-base", "--json", "-f", "vmdk", "--changes",
           "top-layer", child, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(qemu_raw(child, tmp_path / "want.raw"), dst)


def test_top_layer_of_another_parent_refused(tmp_path):
    """DST was copied from base; base then changed (its CID with it) and
    the delta was made on the changed base: not DST's delta."""
    base = base_image(tmp_path, "vmdk")
    dst = tmp_path / "dst.raw"
    assert df("copy", base, dst).returncode == 0
    qemu_io(base, "vmdk", ["write -P 0x44 8M 64k"])
    child = overlay(tmp_path, base, "vmdk", "vmdk")
    before = sha256_file(dst)
    p = df("sync", "-f", "vmdk", "--changes", "top-layer", child, dst)
    assert p.returncode == 3, p.stderr
    assert sha256_file(dst) == before


def test_top_layer_not_a_delta(tmp_path):
    base = base_image(tmp_path, "qcow2")
    dst = tmp_path / "dst.raw"
    assert df("copy", base, dst).returncode == 0
    p = df("sync", "--changes", "top-layer", base, dst)
    assert p.returncode == 2, p.stderr
    assert b"not a delta image" in p.stderr


def built_delta(tmp_path, kind):
    """(parent, child, format, the child's flattened content) for the
    deltas qemu-img cannot make, from the format tests' builders."""
    import test_layer_ids as L
    MiB = 1 << 20
    if kind == "vhd":
        parent = tmp_path / "parent.vhd"
        sh(["qemu-img", "create", "-q", "-f", "vpc", str(parent), "8M"])
        qemu_io(parent, "vpc", ["write -P 0x61 0 3M"])
        want = bytearray(qemu_raw(parent, tmp_path / "p.raw",
                                  fmt="vpc").read_bytes())
        sectors = {s: L.sec(s) for s in [0, 1, 7, 300, 4095, 4096, 10240]}
        for s, d in sectors.items():
            want[s * 512:(s + 1) * 512] = d
        child = tmp_path / "child.vhd"
        L.build_vhd_diff(child, parent, sectors)
        return parent, child, "vpc", bytes(want)
    if kind == "vhdx":
        parent, want = L.vhdx_make_parent(tmp_path)
        child = L.vhdx_make_child(tmp_path, L.vhdxgen.data_write_guid(parent),
                                  want)
        return parent, child, "vhdx", bytes(want)
    if kind == "vdi":
        parent = tmp_path / "parent.vdi"
        sh(["qemu-img", "create", "-q", "-f", "vdi", str(parent), "8M"])
        qemu_io(parent, "vdi", ["write -P 0x61 0 1M", "write -P 0x65 5M 1M"])
        child = tmp_path / "child.vdi"
        blocks = {6: L.vdi_pattern(6, MiB), 2: L.vdi_pattern(2, MiB),
                  5: "zero"}
        L.make_diff(tmp_path, parent, child, blocks)
        want = bytearray(qemu_raw(parent, tmp_path / "p.raw").read_bytes())
        want[2 * MiB:3 * MiB] = blocks[2]
        want[5 * MiB:6 * MiB] = bytes(MiB)
        want[6 * MiB:7 * MiB] = blocks[6]
        return parent, child, "vdi", bytes(want)
    if kind == "vmfsSparse":
        base, child, sectors, grains = L.build_vmfs_sparse_child(tmp_path)
        want = bytearray(b"\xa5" * (sectors * 512))
        for g, b in grains.items():
            want[g * 512:(g + 1) * 512] = b
        return base, child, "vmdk", bytes(want)
    child, sectors, gtes = L.build_sesparse_child(tmp_path)
    want = bytearray(b"\x5a" * (sectors * 512))
    for g, (e, data) in gtes.items():
        want[g * 4096:(g + 1) * 4096] = data or bytes(4096)
    return tmp_path / "base.vmdk", child, "vmdk", bytes(want)


@pytest.mark.parametrize("kind", ["vhd", "vhdx", "vdi", "vmfsSparse",
                                  "seSparse"])
def test_top_layer_of_each_delta_kind(tmp_path, kind):
    parent, child, fmt, want = built_delta(tmp_path, kind)
    dst = tmp_path / "dst.raw"
    p = df("copy", "-f", fmt, parent, dst)
    assert p.returncode == 0, p.stderr
    p = df("sync", "--json", "-f", fmt, "--changes", "top-layer", child, dst)
    assert p.returncode == 0, p.stderr
    assert dst.read_bytes() == want
    r = report(p)
    assert r["sync"]["changes"] == "top-layer"
    assert r["verified"]


# ---- bitmap:NAME: a qcow2 persistent dirty bitmap ----

import qcow2bm as q  # noqa: E402


def bitmapped(tmp_path):
    """src.qcow2 with data, copied to dst.raw by diskferry (its record),
    then a bitmap b0 added and writes made through qemu-io."""
    img = tmp_path / "src.qcow2"
    q.create(str(img))
    q.write(str(img), "write -P 0x41 0 8M", "write -P 0x42 20M 4M")
    dst = tmp_path / "dst.raw"
    p = df("copy", img, dst)
    assert p.returncode == 0, p.stderr
    q.bitmap(str(img), "add", "b0", 65536)
    q.bitmap(str(img), "enable", "b0")
    q.write(str(img), "write -P 0x61 1M 64k", "write -P 0x62 21M 4k",
            "write -P 0x63 40M 128k", "write -z 2M 64k")
    return img, dst


def test_bitmap_sends_what_the_bitmap_names(tmp_path):
    img, dst = bitmapped(tmp_path)
    p = df("sync", "--json", "--changes", "bitmap:b0", img, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(qemu_raw(img, tmp_path / "want.raw"), dst)
    r = report(p)
    assert r["sync"]["changes"] == "bitmap"
    changed = (64 + 64 + 128 + 64) << 10
    assert r["sync"]["changed_bytes"] == changed
    assert r["bytes_read"] <= changed * 1.05
    assert r["verified"]


@pytest.mark.parametrize("why", ["in_use", "disabled"])
def test_bitmap_that_cannot_be_trusted_falls_back_to_compare(tmp_path, why):
    img, dst = bitmapped(tmp_path)
    if why == "in_use":
        qi = q.QemuIo(str(img))
        qi.cmd("write -P 0x71 30M 64k")
        qi.kill()                   # leaves b0 in use
    else:
        q.bitmap(str(img), "disable", "b0")
        q.write(str(img), "write -P 0x72 30M 64k")
    p = df("sync", "--json", "--changes", "bitmap:b0", img, dst)
    assert p.returncode == 0, p.stderr
    assert b"comparing instead" in p.stderr
    assert report(p)["sync"]["changes"] == "compare"
    assert files_equal(qemu_raw(img, tmp_path / "want.raw"), dst)


def test_bitmap_without_a_record_refused(tmp_path):
    img, dst = bitmapped(tmp_path)
    plain = tmp_path / "plain.raw"
    plain.write_bytes(dst.read_bytes())     # not written by diskferry
    before = sha256_file(plain)
    p = df("sync", "--overwrite", "--changes", "bitmap:b0", img, plain)
    assert p.returncode == 3, p.stderr
    assert b"--changes compare" in p.stderr
    assert sha256_file(plain) == before


def test_bitmap_corrupt_refused(tmp_path):
    img, dst = bitmapped(tmp_path)
    buf = bytearray(img.read_bytes())
    e = q.entries(buf)[0]
    q.put(buf, e["at"] + 17, ">B", 0)       # granularity_bits 0
    img.write_bytes(buf)
    before = sha256_file(dst)
    p = df("sync", "--changes", "bitmap:b0", img, dst)
    assert p.returncode == 5, p.stderr
    assert sha256_file(dst) == before


def test_bitmap_of_a_raw_source_is_a_usage_error(tmp_path):
    src = make_image(tmp_path / "src.img", 4 << 20)
    dst = copied(tmp_path, src)
    p = df("sync", "--changes", "bitmap:b0", src, dst)
    assert p.returncode == 2, p.stderr


# ---- lvm-thin:META,OLD,NEW ----

import thingen  # noqa: E402


def thin_pool(tmp_path, seed=5, nblocks=512, block=64 << 10):
    """Pool metadata for an old and a new thin device (thin_restore), and
    the two devices' contents as sparse files over one data area."""
    devs = thingen.random_pool(seed, nblocks)
    meta = tmp_path / "pool.meta"
    thingen.restore(thingen.pool_xml(devs, block_sectors=block // 512),
                    meta)
    rnd = random.Random(seed)
    data = {}

    def materialize(dev, path):
        with open(path, "wb") as f:
            f.truncate(nblocks * block)
            for o, d in sorted(devs[dev].items()):
                if d not in data:
                    data[d] = rnd.randbytes(block)
                f.seek(o * block)
                f.write(data[d])
        return path
    old = materialize(1, tmp_path / "old.img")
    new = materialize(2, tmp_path / "new.img")
    want = thingen.changed(devs, 1, 2, block, nblocks * block)
    return meta, old, new, want


@pytest.mark.skipif(not thingen.tool("thin_delta"),
                    reason="needs thin-provisioning-tools")
def test_lvm_thin_sends_the_blocks_that_differ(tmp_path):
    meta, old, new, want = thin_pool(tmp_path)
    dst = copied(tmp_path, old)             # the record: DST holds old
    spec = "lvm-thin:%s,1,2" % meta
    p = df("sync", "--changes", spec, new, dst)
    assert p.returncode == 3, p.stderr      # written from old, not new
    p = df("sync", "--overwrite", "--json", "--changes", spec, new, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(new, dst)
    r = report(p)
    assert r["sync"]["changes"] == "lvm-thin"
    changed = sum(n for _, n in want)
    assert r["sync"]["changed_bytes"] == changed
    assert r["bytes_read"] <= changed * 1.05
    # and now DST's record names new: no --overwrite
    p = df("sync", "--json", new, dst)
    assert p.returncode == 0, p.stderr
    assert report(p)["bytes_written"] == 0


@pytest.mark.skipif(not thingen.tool("thin_delta"),
                    reason="needs thin-provisioning-tools")
def test_lvm_thin_without_a_record_or_bad_metadata(tmp_path):
    meta, old, new, want = thin_pool(tmp_path)
    dst = tmp_path / "dst.img"
    dst.write_bytes(old.read_bytes())
    before = sha256_file(dst)
    p = df("sync", "--overwrite", "--changes", "lvm-thin:%s,1,2" % meta,
           new, dst)
    assert p.returncode == 3, p.stderr
    assert sha256_file(dst) == before
    dst2 = copied(tmp_path, old, "dst2.img")
    junk = tmp_path / "junk.meta"
    junk.write_bytes(os.urandom(1 << 20))
    before = sha256_file(dst2)
    p = df("sync", "--overwrite", "--changes", "lvm-thin:%s,1,2" % junk,
           new, dst2)
    assert p.returncode == 5, p.stderr
    assert sha256_file(dst2) == before
    p = df("sync", "--overwrite", "--changes", "lvm-thin:%s,1" % meta,
           new, dst2)
    assert p.returncode == 2, p.stderr


# ---- with DST on another host: the record there is the proof ----

from test_remote import rdf  # noqa: E402


def test_bitmap_to_a_remote_host(tmp_path):
    img = tmp_path / "src.qcow2"
    q.create(str(img))
    q.write(str(img), "write -P 0x41 0 8M", "write -P 0x42 20M 4M")
    dst = tmp_path / "dst.raw"
    p = rdf("copy", img, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    q.bitmap(str(img), "add", "b0", 65536)
    q.bitmap(str(img), "enable", "b0")
    q.write(str(img), "write -P 0x61 1M 64k", "write -P 0x63 40M 128k")
    p = rdf("sync", "--json", "--compress", "none", "--changes",
            "bitmap:b0", img, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(qemu_raw(img, tmp_path / "want.raw"), dst)
    r = report(p)
    assert r["sync"]["changes"] == "bitmap"
    assert r["verified"]
    changed = 192 << 10
    assert r["bytes_read"] <= changed * 1.05
    assert r["bytes_sent"] <= changed * 1.2 + (64 << 20) // 1000
    # the record there was kept: a compare-free sync afterwards
    p = rdf("sync", "--json", img, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert report(p)["sync"]["changes"] == "record"
    assert report(p)["bytes_written"] == 0


def test_lvm_cow_to_a_remote_host_and_a_dst_changed_there(tmp_path):
    src = make_image(tmp_path / "src.img", SIZE)
    dst = tmp_path / "dst.img"
    p = rdf("copy", src, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    store = tmp_path / "snap-cow"
    chunks = snapshot_writes(src, store, 64 << 10, 0.02)
    # a DST written behind the record's back, at a changed chunk
    keep = dst.read_bytes()
    write_at(dst, chunks[0] * (64 << 10), b"z" * 512)
    before = sha256_file(dst)
    p = rdf("sync", "--changes", "lvm-cow:%s" % store, src,
            "localhost:%s" % dst)
    assert p.returncode == 3, p.stderr
    assert sha256_file(dst) == before
    dst.write_bytes(keep)                   # same inode: the record holds
    p = rdf("sync", "--json", "--changes", "lvm-cow:%s" % store, src,
            "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    assert r["sync"]["changes"] == "lvm-cow"
    assert r["bytes_read"] == len(chunks) * (64 << 10)


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk"])
def test_top_layer_to_a_remote_host(tmp_path, fmt):
    """The record there names the parent's identity (OPT_SYNC_PARENT):
    the delta's clusters travel, nothing of the parent."""
    base = base_image(tmp_path, fmt)
    dst = tmp_path / "dst.raw"
    assert rdf("copy", "-f", fmt, base, "localhost:%s" % dst).returncode == 0
    child = overlay(tmp_path, base, fmt, fmt)
    want = qemu_raw(child, tmp_path / "want.raw")
    p = rdf("sync", "--json", "--compress", "none", "-f", fmt, "--changes",
            "top-layer", child, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(want, dst)
    r = report(p)
    assert r["sync"]["changes"] == "top-layer"
    assert r["bytes_read"] < 3 << 20
    # the record there names the delta now: the same sync again is a
    # no-op there, and another parent's delta is refused
    p = rdf("sync", "--json", "-f", fmt, "--changes", "top-layer", child,
            "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(want, dst)


def test_top_layer_to_a_remote_host_refusals(tmp_path):
    src = make_image(tmp_path / "src.img", 4 << 20)
    p = rdf("sync", "--changes", "top-layer", src, "localhost:%s" %
            (tmp_path / "d.img"))
    assert p.returncode == 2, p.stderr          # not a delta
    # a VHD delta holds single sectors: their leaves are part parent's
    parent, child, fmt, want = built_delta(tmp_path, "vhd")
    dst = tmp_path / "dst.raw"
    assert rdf("copy", "-f", fmt, parent, "localhost:%s" % dst).returncode \
        == 0
    before = sha256_file(dst)
    p = rdf("sync", "-f", fmt, "--changes", "top-layer", child,
            "localhost:%s" % dst)
    assert p.returncode == 2, p.stderr
    assert b"holds part of the 64 KiB block" in p.stderr
    assert sha256_file(dst) == before
    # a delta of another parent: no record of it there
    other = base_image(tmp_path, "vmdk", "other")
    dst2 = tmp_path / "dst2.raw"
    assert rdf("copy", "-f", "vmdk", other, "localhost:%s" % dst2) \
        .returncode == 0
    base = base_image(tmp_path, "vmdk")
    child = overlay(tmp_path, base, "vmdk", "vmdk")
    before = sha256_file(dst2)
    p = rdf("sync", "-f", "vmdk", "--changes", "top-layer", child,
            "localhost:%s" % dst2)
    assert p.returncode == 3, p.stderr
    assert sha256_file(dst2) == before


def test_bitmap_to_a_remote_host_killed_then_resumed(tmp_path):
    """serve killed after two writes: its record there is busy; a plain
    re-run is refused, --resume takes the busy record as the base."""
    img = tmp_path / "src.qcow2"
    q.create(str(img))
    q.write(str(img), "write -P 0x41 0 8M")
    dst = tmp_path / "dst.raw"
    assert rdf("copy", img, "localhost:%s" % dst).returncode == 0
    q.bitmap(str(img), "add", "b0", 65536)
    q.bitmap(str(img), "enable", "b0")
    q.write(str(img), "write -P 0x61 1M 64k", "write -P 0x62 3M 64k",
            "write -P 0x63 9M 192k", "write -P 0x64 30M 64k")
    args = ["--changes", "bitmap:b0", img, "localhost:%s" % dst]
    env = dict(os.environ, DF_TEST_UNDO_KILL_AFTER="2")
    p = rdf("sync", "--undo", tmp_path / "j", *args, env=env)
    assert p.returncode == 6, p.stderr
    p = rdf("sync", *args)
    assert p.returncode == 3, p.stderr
    p = rdf("sync", "--resume", "--json", *args)
    assert p.returncode == 0, p.stderr
    assert report(p)["sync"]["changes"] == "bitmap"
    assert files_equal(qemu_raw(img, tmp_path / "want.raw"), dst)


@pytest.mark.skipif(not thingen.tool("thin_delta"),
                    reason="needs thin-provisioning-tools")
def test_lvm_thin_to_a_remote_host(tmp_path):
    """DST there was copied from the old thin device: its record is the
    base (OPEN_ANY_RECORD), --overwrite the consent."""
    meta, old, new, want = thin_pool(tmp_path)
    dst = tmp_path / "dst.img"
    assert rdf("copy", old, "localhost:%s" % dst).returncode == 0
    spec = "lvm-thin:%s,1,2" % meta
    p = rdf("sync", "--changes", spec, new, "localhost:%s" % dst)
    assert p.returncode == 3, p.stderr          # not a copy of new
    assert b"--overwrite" in p.stderr
    p = rdf("sync", "--overwrite", "--yes", "--json", "--changes", spec, new,
            "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(new, dst)
    r = report(p)
    assert r["sync"]["changes"] == "lvm-thin"
    assert r["bytes_read"] <= sum(n for _, n in want) * 1.05


@pytest.mark.parametrize("kind", ["bitmap", "top-layer"])
def test_killed_then_resumed_and_dry_run(tmp_path, kind):
    """--dry-run lists the changed ranges and writes nothing; kill -9
    after two writes leaves the record busy: a plain re-run is refused,
    --resume finishes it (the record's changed leaves written again)."""
    if kind == "bitmap":
        img, dst = bitmapped(tmp_path)
        args = ["--changes", "bitmap:b0", str(img), str(dst)]
    else:
        base = base_image(tmp_path, "qcow2")
        dst = tmp_path / "dst.raw"
        assert df("copy", base, dst).returncode == 0
        img = overlay(tmp_path, base, "qcow2", "qcow2")
        args = ["-f", "qcow2", "--changes", "top-layer", str(img), str(dst)]
    want = qemu_raw(img, tmp_path / "want.raw")
    before = sha256_file(dst)
    p = df("sync", "--dry-run", *args)
    assert p.returncode == 0, p.stderr
    assert b"would write" in p.stdout
    assert sha256_file(dst) == before
    env = dict(os.environ, DF_TEST_UNDO_KILL_AFTER="2")
    p = subprocess.run([DISKFERRY, "sync", "--undo", str(tmp_path / "j")] +
                       args, env=env, capture_output=True, timeout=120)
    assert p.returncode == -9, p.stderr
    p = df("sync", *args)
    assert p.returncode == 3, p.stderr
    assert b"--resume" in p.stderr
    p = df("sync", "--resume", "--json", *args)
    assert p.returncode == 0, p.stderr
    assert files_equal(want, dst)
    assert report(p)["sync"]["changes"] == kind


def test_metadata_changes_usage_errors(tmp_path):
    src = make_image(tmp_path / "src.img", 4 << 20)
    dst = copied(tmp_path, src)
    for d in (dst, "localhost:%s" % dst):
        p = rdf("sync", "--passes", "2", "--changes", "lvm-cow:x", src, d)
        assert p.returncode == 2, p.stderr
        assert b"read once from metadata" in p.stderr
    p = df("sync", "--changes", "lvm-thin:meta,1", src, dst)
    assert p.returncode == 2, p.stderr
    p = df("sync", "--changes", "bitmap:", src, dst)
    assert p.returncode == 2, p.stderr
    p = df("sync", "--trust-base", src, dst)
    assert p.returncode == 2, p.stderr
    assert b"only with --changes top-layer" in p.stderr
    p = df("sync", "--changes", "snapshot:x", src, dst)
    assert p.returncode == 2, p.stderr
    p = df("sync", "--changes", "lvm-cow:%s" % (tmp_path / "nothing"), src,
           dst)
    assert p.returncode in (2, 4), p.stderr
