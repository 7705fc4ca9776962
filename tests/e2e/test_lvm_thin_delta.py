"""The lvm-thin change source (src/track/lvm_thin.c) against the real
thin_delta: pools built as XML, made into metadata by thin_restore, and
the ranges lvm_thin_open names (printed by the changes_dump test tool)
compared with the ones worked out from the mappings themselves."""
import os
import shutil

import pytest

import thingen as tg
from conftest import BUILD, VG, loop_device, run

CHANGES_DUMP = os.environ.get("DF_CHANGES_DUMP",
                              os.path.join(BUILD, "changes_dump"))
BLK = 64 << 10                  # data_block_size="128"

pytestmark = pytest.mark.skipif(
    not (tg.tool("thin_delta") and tg.tool("thin_restore")),
    reason="thin-provisioning-tools not installed")


def dump(meta, old, new, size, env=None, cwd=None):
    """changes_dump lvm-thin:META,OLD,NEW SIZE: (rc, [(off, len)], err).
    Without env, thin_delta is looked for in the sbin directories too."""
    if env is None:
        env = dict(os.environ)
        env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    vg = list(VG)
    if vg:
        vg[0] = shutil.which(vg[0]) or vg[0]
    p = run(vg + [CHANGES_DUMP, "lvm-thin:%s,%d,%d" % (meta, old, new),
                  str(size)], env=env, cwd=cwd)
    ranges = [tuple(int(x) for x in line.split())
              for line in p.stdout.decode().splitlines()]
    return p.returncode, ranges, p.stderr.decode()


# dev 1 the old device, dev 2 the new one: blocks 0-3 shared, 4-5
# remapped (different), 6-9 and 20 shared, 30 discarded in 2
# (left_only), 40-44 written in 2 only (right_only), 50-51 remapped
# next to a new 52 (one extent).
POOL = {
    1: {**{o: o for o in range(10)}, 20: 20, 30: 30, 50: 50, 51: 51},
    2: {**{o: o for o in range(4)}, 4: 100, 5: 101,
        **{o: o for o in range(6, 10)}, 20: 20,
        **{o: 200 + o for o in range(40, 45)}, 50: 300, 51: 301, 52: 302},
}


@pytest.fixture
def meta(tmp_path):
    path = tmp_path / "meta.bin"
    tg.restore(tg.pool_xml(POOL), path)
    return path


def test_kinds_against_thin_delta_output(meta):
    out = tg.delta(meta, 1, 2).decode()
    # the elements this source relies on, in thin_delta's own words
    for elem in ('<different begin="4" length="2"/>',
                 '<left_only begin="30" length="1"/>',
                 '<right_only begin="40" length="5"/>',
                 '<same begin="0" length="4"/>'):
        assert elem in out
    rc, ranges, err = dump(meta, 1, 2, 64 * BLK)
    assert (rc, err) == (0, "")
    assert ranges == [(4 * BLK, 2 * BLK), (30 * BLK, BLK),
                      (40 * BLK, 5 * BLK), (50 * BLK, 3 * BLK)]
    assert ranges == tg.changed(POOL, 1, 2, BLK, 64 * BLK)


def test_reversed_and_same(meta):
    rc, ranges, _ = dump(meta, 2, 1, 64 * BLK)
    assert rc == 0 and ranges == tg.changed(POOL, 2, 1, BLK, 64 * BLK)
    rc, ranges, err = dump(meta, 2, 2, 64 * BLK)
    assert (rc, ranges, err) == (0, [], "")


def test_last_block_clipped(meta):
    size = 52 * BLK + 4096      # block 52 is mostly past the end
    rc, ranges, _ = dump(meta, 1, 2, size)
    assert rc == 0
    assert ranges[-1] == (50 * BLK, 2 * BLK + 4096)
    assert ranges == tg.changed(POOL, 1, 2, BLK, size)


def test_range_past_the_end(meta):
    rc, ranges, err = dump(meta, 1, 2, 52 * BLK)
    assert rc == 5 and ranges == []
    assert err.startswith("changes_dump: %s: thin_delta output line " % meta)
    assert "<right_only> range past the device's end" in err


@pytest.mark.parametrize("seed,sectors", [(1, 128), (2, 256), (3, 2048),
                                          (4, 128)])
def test_random_pools(tmp_path, seed, sectors):
    nblocks = 700
    pool = tg.random_pool(seed, nblocks)
    meta = tmp_path / "meta.bin"
    tg.restore(tg.pool_xml(pool, block_sectors=sectors), meta)
    bb = sectors * tg.SECTOR
    size = nblocks * bb - 512   # the last block partial
    for old, new in ((1, 2), (2, 1)):
        rc, ranges, err = dump(meta, old, new, size)
        assert (rc, err) == (0, "")
        assert ranges == tg.changed(pool, old, new, bb, size)


def test_unknown_thin_id(meta):
    rc, ranges, err = dump(meta, 1, 9, 64 * BLK)
    assert rc == 5 and ranges == []
    assert err == ("changes_dump: %s: thin_delta: Unable to find mapping "
                   "tree for snap2 (9)\n" % meta)


def test_not_thin_metadata(tmp_path):
    bad = tmp_path / "zeros.bin"
    with open(bad, "wb") as f:
        f.truncate(8 << 20)
    rc, _, err = dump(bad, 1, 2, 64 * BLK)
    assert rc == 5
    assert err.startswith("changes_dump: %s: thin_delta: bad checksum in "
                          "superblock" % bad)


def test_missing_metadata(tmp_path):
    rc, _, err = dump(tmp_path / "none", 1, 2, 64 * BLK)
    assert rc == 4
    assert err == ("changes_dump: %s: lvm-thin: cannot open the pool "
                   "metadata: No such file or directory\n"
                   % (tmp_path / "none"))
    rc, _, err = dump(tmp_path, 1, 2, 64 * BLK)
    assert rc == 2
    assert "is not a file or a block device" in err


def test_thin_delta_missing(meta, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty))
    rc, _, err = dump(meta, 1, 2, 64 * BLK, env=env)
    assert rc == 2
    assert err == ("changes_dump: lvm-thin: thin_delta not found (install "
                   "thin-provisioning-tools)\n")


def test_odd_path_is_one_argument(meta, tmp_path):
    """A META starting with '-' and holding a comma and a space reaches
    thin_delta as one path, not as options."""
    odd = tmp_path / "-m, x.bin"
    os.rename(meta, odd)
    rc, ranges, err = dump("-m, x.bin", 1, 2, 64 * BLK, cwd=tmp_path)
    assert (rc, err) == (0, "")
    assert ranges == tg.changed(POOL, 1, 2, BLK, 64 * BLK)


def _loop_or_skip(path):
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("loop devices need root and losetup")
    return loop_device(path, readonly=True)


def test_device_read_through_its_metadata_snapshot(meta):
    """A block device is read through its reserved metadata snapshot:
    the live superblock here points at no mapping tree, so reading it
    fails, as the file's read does."""
    tg.add_metadata_snap(meta)
    rc, _, err = dump(meta, 1, 2, 64 * BLK)
    assert rc == 5 and "thin_delta: bad checksum in btree node" in err
    with _loop_or_skip(meta) as dev:
        rc, ranges, err = dump(dev, 1, 2, 64 * BLK)
    assert (rc, err) == (0, "")
    assert ranges == tg.changed(POOL, 1, 2, BLK, 64 * BLK)


def test_device_without_metadata_snapshot(meta):
    with _loop_or_skip(meta) as dev:
        rc, _, err = dump(dev, 1, 2, 64 * BLK)
    assert rc == 5
    assert err == ("changes_dump: %s: thin_delta: no current metadata snap "
                   "(reserve one: dmsetup message VG-POOL-tpool 0 "
                   "reserve_metadata_snap)\n" % dev)
