"""diskferry sync: only what changed, from a compare of hash trees, the
state record a copy left, or a manifest; the base proved before any
write; files and loop devices; sizes that change; dry run, undo, a
killed sync, pre-copy passes; verify --manifest."""
import json
import os
import random
import subprocess

import pytest

from conftest import DISKFERRY, df, files_equal, loop_device, sha256_file, \
    write_at

LEAF = 64 << 10
SIZE = 64 << 20


def report(p):
    return json.loads(p.stdout)


def make_image(path, size=SIZE, seed=1):
    """Random data in two of every three 64 KiB blocks, zeros (a hole) in
    the rest."""
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for i in range(size // LEAF):
            if i % 3:
                f.seek(i * LEAF)
                f.write(rnd.randbytes(LEAF))
    return path


def change(path, fraction, seed=2, size=SIZE):
    """Rewrite a fraction of the 64 KiB blocks (scattered) with new random
    data; returns the sorted block indexes."""
    rnd = random.Random(seed)
    n = max(1, int(size // LEAF * fraction))
    blocks = sorted(rnd.sample(range(size // LEAF), n))
    for b in blocks:
        write_at(path, b * LEAF, rnd.randbytes(LEAF))
    return blocks


def random_device(tmp_path, size, name="backing.img"):
    """A loop device over a file of random bytes (detached after)."""
    backing = tmp_path / name
    with open(backing, "wb") as f:
        f.write(os.urandom(size))
    return loop_device(backing)


def copied(tmp_path, src, name="dst.img"):
    dst = tmp_path / name
    p = df("copy", src, dst)
    assert p.returncode == 0, p.stderr
    return dst


@pytest.mark.parametrize("fraction", [0.001, 0.01, 0.1])
def test_sync_compare_sends_only_changed_blocks(tmp_path, fraction):
    src = make_image(tmp_path / "src.img")
    dst = copied(tmp_path, src)
    blocks = change(src, fraction)
    p = df("sync", "--changes", "compare", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    assert r["verified"]
    s = r["sync"]
    assert s["changes"] == "compare"
    assert s["changed_bytes"] == len(blocks) * LEAF
    assert r["bytes_written"] == len(blocks) * LEAF
    # each side hashed once where it lives; SRC read again only where it
    # changed
    assert s["src_bytes_hashed"] <= SIZE
    assert s["dst_bytes_read"] <= SIZE
    assert r["bytes_read"] <= s["src_bytes_hashed"] + len(blocks) * LEAF


@pytest.mark.parametrize("fraction", [0.001, 0.01, 0.1])
def test_sync_after_copy_uses_the_state_record(tmp_path, fraction):
    """sync after a copy needs no flag: the record the copy left says
    what DST holds; DST is read only for the proof."""
    src = make_image(tmp_path / "src.img")
    dst = copied(tmp_path, src)
    blocks = change(src, fraction, seed=7)
    p = df("sync", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    s = r["sync"]
    assert s["changes"] == "record"
    assert r["bytes_written"] == len(blocks) * LEAF
    assert s["proof_leaves"] <= 64 + len(blocks)
    assert s["dst_bytes_read"] <= (64 + len(blocks)) * LEAF
    # and again, from the record the sync left
    more = change(src, fraction, seed=8)
    p = df("sync", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    assert report(p)["bytes_written"] == len(more) * LEAF


def test_sync_manifest_and_a_dst_changed_behind_its_back(tmp_path):
    src = make_image(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    man = tmp_path / "dst.dfm"
    p = df("copy", "--write-manifest", man, src, dst)
    assert p.returncode == 0, p.stderr
    blocks = change(src, 0.01, seed=3)
    p = df("sync", "--changes", "manifest:%s" % man, "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    assert r["sync"]["changes"] == "manifest"
    assert r["bytes_written"] == len(blocks) * LEAF
    assert r["sync"]["dst_bytes_read"] <= (64 + len(blocks)) * LEAF
    # The manifest is of the old DST: sync rewrote it?  No: --changes
    # manifest: reads it; --write-manifest rewrites it.
    p = df("sync", "--changes", "manifest:%s" % man, "--write-manifest",
           man, src, dst)
    assert p.returncode == 3, p.stderr      # DST is no longer that copy
    assert b"--changes compare" in p.stderr
    p = df("sync", "--changes", "compare", "--write-manifest", man, src,
           dst)
    assert p.returncode == 0, p.stderr
    # DST written behind the manifest's back where the sync would write
    more = change(src, 0.01, seed=4)
    write_at(dst, more[0] * LEAF + 100, b"tampered")
    before = sha256_file(dst)
    p = df("sync", "--changes", "manifest:%s" % man, src, dst)
    assert p.returncode == 3, p.stderr
    assert b"refusing to sync" in p.stderr
    assert b"--changes compare" in p.stderr
    assert sha256_file(dst) == before       # nothing written
    # ... and at one of the sampled leaves (the middle of the first
    # 1/64th), where the sync would not write
    p = df("sync", "--changes", "compare", "--write-manifest", man, src,
           dst)
    assert p.returncode == 0, p.stderr
    change(src, 0.001, seed=5)
    step = SIZE // LEAF // 64
    write_at(dst, (step // 2) * LEAF, b"x")
    before = sha256_file(dst)
    p = df("sync", "--changes", "manifest:%s" % man, src, dst)
    assert p.returncode == 3, p.stderr
    assert sha256_file(dst) == before


def test_sync_manifest_of_another_disk_refused(tmp_path):
    src = make_image(tmp_path / "src.img")
    man = tmp_path / "a.dfm"
    p = df("copy", "--write-manifest", man, src, tmp_path / "a.img")
    assert p.returncode == 0, p.stderr
    other = copied(tmp_path, src, "b.img")
    before = sha256_file(other)
    change(src, 0.01)
    p = df("sync", "--changes", "manifest:%s" % man, src, other)
    assert p.returncode == 3, p.stderr
    assert b"describes" in p.stderr and b"--changes compare" in p.stderr
    assert sha256_file(other) == before


def test_sync_corrupt_manifest_refused(tmp_path):
    src = make_image(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    man = tmp_path / "m.dfm"
    assert df("copy", "--write-manifest", man, src, dst).returncode == 0
    data = bytearray(man.read_bytes())
    for cut in (10, 80, len(data) // 2, len(data) - 1):
        bad = tmp_path / ("cut%d.dfm" % cut)
        bad.write_bytes(bytes(data[:cut]))
        p = df("sync", "--changes", "manifest:%s" % bad, src, dst)
        assert p.returncode == 5, (cut, p.stderr)
    data[120] ^= 0xff
    bad = tmp_path / "flip.dfm"
    bad.write_bytes(bytes(data))
    p = df("sync", "--changes", "manifest:%s" % bad, src, dst)
    assert p.returncode == 5, p.stderr
    assert b"checksum" in p.stderr


def test_sync_loop_device(tmp_path):
    src = make_image(tmp_path / "src.img", 32 << 20)
    with random_device(tmp_path, 32 << 20) as dev:
        p = df("copy", "--overwrite", "--yes", src, dev)
        assert p.returncode == 0, p.stderr
        blocks = change(src, 0.01, size=32 << 20)
        p = df("sync", "--json", "--fsync", src, dev)
        assert p.returncode == 0, p.stderr
        r = report(p)
        assert r["sync"]["changes"] == "record"
        assert r["bytes_written"] == len(blocks) * LEAF
        assert sha256_file(dev) == sha256_file(src)
        change(src, 0.01, seed=9, size=32 << 20)
        p = df("sync", "--changes", "compare", "--json", src, dev)
        assert p.returncode == 0, p.stderr
        assert sha256_file(dev) == sha256_file(src)


def test_a_record_does_not_outlive_its_file(tmp_path):
    """A file removed and another made in its place (often at the same
    inode number): the old file's record says nothing of the new one,
    which is no recorded copy (--overwrite) and is compared."""
    src = make_image(tmp_path / "src.img")
    dst = copied(tmp_path, src)
    ino = os.stat(dst).st_ino
    os.unlink(dst)
    with open(dst, "wb") as f:
        f.write(open(src, "rb").read())
    reused = os.stat(dst).st_ino == ino
    write_at(dst, 5 * LEAF, b"x" * LEAF)    # behind any record's back
    blocks = change(src, 0.01)
    p = df("sync", src, dst)
    assert p.returncode == 3, p.stderr
    assert b"--overwrite" in p.stderr
    p = df("sync", "--overwrite", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    assert r["sync"]["changes"] == "compare"
    assert r["bytes_written"] == (len(set(blocks) | {5})) * LEAF
    if not reused:
        pytest.skip("the filesystem gave the new file another inode")


def test_a_loop_device_record_does_not_outlive_its_backing_file(tmp_path):
    """/dev/loopN attached to another file is another disk: the record
    of the first says nothing of it."""
    src = make_image(tmp_path / "src.img", 8 << 20)
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    for f in (a, b):
        f.write_bytes(open(src, "rb").read())
    with loop_device(a) as dev:
        p = df("copy", "--overwrite", "--yes", src, dev)
        assert p.returncode == 0, p.stderr
    subprocess.run(["losetup", dev, str(b)], check=True)
    try:
        write_at(dev, 4 * LEAF, b"y" * LEAF)
        p = df("sync", src, dev)
        assert p.returncode == 3, p.stderr
        p = df("sync", "--overwrite", "--yes", "--json", src, dev)
        assert p.returncode == 0, p.stderr
        assert report(p)["sync"]["changes"] == "compare"
        assert report(p)["bytes_written"] == LEAF
        assert sha256_file(dev) == sha256_file(src)
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def test_sync_not_a_recorded_copy_needs_overwrite(tmp_path):
    src = make_image(tmp_path / "src.img")
    dst = tmp_path / "other.img"
    dst.write_bytes(os.urandom(SIZE))
    before = sha256_file(dst)
    p = df("sync", src, dst)
    assert p.returncode == 3, p.stderr
    assert b"--overwrite" in p.stderr
    assert sha256_file(dst) == before
    p = df("sync", "--overwrite", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    assert report(p)["sync"]["changes"] == "compare"


def test_sync_sizes_that_change(tmp_path):
    src = make_image(tmp_path / "src.img", 8 << 20)
    dst = copied(tmp_path, src)
    # SRC grew: DST grows
    with open(src, "r+b") as f:
        f.seek(0, 2)
        f.write(os.urandom((1 << 20) + 4097))
    p = df("sync", src, dst)
    assert p.returncode == 0, p.stderr
    assert os.path.getsize(dst) == os.path.getsize(src)
    assert files_equal(src, dst)
    # SRC shrank: DST is cut to its size
    with open(src, "r+b") as f:
        f.truncate((4 << 20) + 100)
    p = df("sync", src, dst)
    assert p.returncode == 0, p.stderr
    assert os.path.getsize(dst) == os.path.getsize(src)
    assert files_equal(src, dst)
    # A device smaller than SRC: refused, nothing written
    with random_device(tmp_path, 2 << 20, "small.img") as dev:
        before = sha256_file(dev)
        p = df("sync", "--overwrite", src, dev)
        assert p.returncode == 3, p.stderr
        assert b"smaller than the source" in p.stderr
        assert sha256_file(dev) == before


def test_sync_dry_run_lists_and_writes_nothing(tmp_path):
    src = make_image(tmp_path / "src.img")
    dst = copied(tmp_path, src)
    blocks = change(src, 0.001)
    before = sha256_file(dst)
    p = df("sync", "--dry-run", src, dst)
    assert p.returncode == 0, p.stderr
    assert sha256_file(dst) == before
    out = p.stdout.decode()
    assert "would write %d bytes" % (len(blocks) * LEAF) in out
    for b in blocks:
        assert str(b * LEAF) in out


def test_sync_undo_puts_back_what_it_overwrote(tmp_path):
    src = make_image(tmp_path / "src.img")
    dst = copied(tmp_path, src)
    before = sha256_file(dst)
    change(src, 0.01)
    journal = tmp_path / "undo.j"
    p = df("sync", "--undo", journal, src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    p = df("undo", "--yes", journal)
    assert p.returncode == 0, p.stderr
    assert sha256_file(dst) == before


def test_killed_sync_is_finished_by_the_next_one(tmp_path):
    """kill -9 in the middle of a sync (after two of its writes): the
    record is marked busy, so the next sync compares and sends only what
    still differs."""
    src = make_image(tmp_path / "src.img")
    dst = copied(tmp_path, src)
    blocks = change(src, 0.01)
    env = dict(os.environ, DF_TEST_UNDO_KILL_AFTER="2")
    p = subprocess.run([DISKFERRY, "sync", "--undo", str(tmp_path / "j"),
                        str(src), str(dst)], env=env, capture_output=True,
                       timeout=120)
    assert p.returncode == -9, p.stderr
    assert not files_equal(src, dst)
    p = df("sync", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert b"did not finish: comparing" in p.stderr
    assert files_equal(src, dst)
    r = report(p)
    assert r["sync"]["changes"] == "compare"
    assert 0 < r["bytes_written"] <= len(blocks) * LEAF
    # and the record is trusted again afterwards
    p = df("sync", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert report(p)["sync"]["changes"] == "record"
    assert report(p)["bytes_written"] == 0


def test_sync_passes(tmp_path):
    src = make_image(tmp_path / "src.img")
    dst = copied(tmp_path, src)
    change(src, 0.01)
    p = df("sync", "--passes", "3", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    err = p.stderr.decode()
    assert "pass 1:" in err and "pass 3:" in err
    assert "last pass:" in err and "stop the VM and run: diskferry sync" \
        in err
    r = report(p)
    assert r["sync"]["passes"] == 3
    assert r["sync"]["changed_bytes"] == 0      # nothing changed since
    assert files_equal(src, dst)
    change(src, 0.01, seed=11)
    p = df("sync", "--until", "64K", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert report(p)["sync"]["passes"] == 2
    assert files_equal(src, dst)


def test_sync_new_dst_is_a_copy(tmp_path):
    src = make_image(tmp_path / "src.img")
    dst = tmp_path / "new.img"
    p = df("sync", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    assert report(p)["sync"]["changes"] == "copy"
    change(src, 0.001)
    p = df("sync", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert report(p)["sync"]["changes"] == "record"


def test_sync_usage_errors(tmp_path):
    src = make_image(tmp_path / "src.img", 1 << 20)
    dst = copied(tmp_path, src)
    qcow = tmp_path / "d.qcow2"
    assert df("copy", "-O", "qcow2", src, qcow).returncode == 0
    p = df("sync", src, qcow)
    assert p.returncode == 2 and b"raw files and devices" in p.stderr
    for args in (["--changes", "bogus"], ["--block-size", "4K"],
                 ["--passes", "2", "--until", "1M"], ["-O", "qcow2"],
                 ["--salvage"]):
        p = df("sync", *args, src, dst)
        assert p.returncode == 2, (args, p.stderr)
    p = df("copy", "--passes", "2", src, tmp_path / "x.img")
    assert p.returncode == 2 and b"not an option of copy" in p.stderr
    p = df("sync", "--changes", "manifest:%s" % (tmp_path / "none"), src,
           dst)
    assert p.returncode == 2, p.stderr


def test_sync_block_size(tmp_path):
    src = make_image(tmp_path / "src.img")
    dst = copied(tmp_path, src)
    blocks = change(src, 0.001)
    p = df("sync", "--changes", "compare", "--block-size", "1M", "--json",
           src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    whole = {b // 16 for b in blocks}
    assert r["sync"]["changed_bytes"] == len(whole) << 20


def test_verify_manifest_catches_a_truncated_backup(tmp_path):
    src = make_image(tmp_path / "src.img")
    backup = tmp_path / "backup.img"
    man = tmp_path / "backup.dfm"
    assert df("copy", "--write-manifest", man, src, backup).returncode == 0
    p = df("verify", "--manifest", man, backup)
    assert p.returncode == 0, p.stdout
    assert p.stdout.startswith(b"identical")
    # a few kilobytes of it left (seed 001's backups)
    with open(backup, "r+b") as f:
        f.truncate(5000)
    p = df("verify", "--manifest", man, backup)
    assert p.returncode == 1, p.stderr
    out = p.stdout.decode()
    assert "sizes differ" in out and "5000 bytes" in out
    p = df("verify", "--manifest", man, "--json", backup)
    r = json.loads(p.stdout)
    assert r["identical"] is False
    # one changed block is named
    assert df("copy", "--write-manifest", man, src,
              tmp_path / "b2.img").returncode == 0
    write_at(tmp_path / "b2.img", 5 * LEAF + 3, b"!")
    p = df("verify", "--manifest", man, tmp_path / "b2.img")
    assert p.returncode == 1
    assert b"offset %d, %d bytes" % (5 * LEAF, LEAF) in p.stdout


# ---- a DST on another host ----

from test_remote import rdf, sshd  # noqa: E402,F401 (fixture)


@pytest.mark.parametrize("fraction", [0.001, 0.01, 0.1])
def test_sync_to_a_remote_host_sends_only_changed_blocks(tmp_path, fraction):
    """Over the rsh shim: serve hashes DST there, this side SRC; hashes of
    what differs and the changed blocks are all that cross."""
    src = make_image(tmp_path / "src.img")
    dst = copied(tmp_path, src)
    blocks = change(src, fraction)
    before = sha256_file(dst)
    p = rdf("sync", "--json", src, "localhost:%s" % dst)
    assert p.returncode == 3, p.stderr          # not a recorded copy there
    assert b"--overwrite" in p.stderr
    assert sha256_file(dst) == before
    p = rdf("sync", "--overwrite", "--changes", "compare", "--compress",
            "none", "--json", src, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    assert r["verified"] and r["sync"]["changes"] == "compare"
    changed = len(blocks) * LEAF
    assert r["sync"]["changed_bytes"] == changed
    assert r["bytes_written"] == changed
    # wire: the changed data, the hashes of what differs, the protocol
    assert r["bytes_sent"] <= changed * 1.2 + SIZE // 1000, r["bytes_sent"]
    assert r["sync"]["hash_bytes_sent"] <= SIZE // 1000 + 64 * len(blocks)


def test_sync_to_a_remote_host_over_sshd(tmp_path, sshd):
    src = make_image(tmp_path / "src.img")
    dst = copied(tmp_path, src)
    blocks = change(src, 0.01)
    p = rdf("sync", "--overwrite", "--json", src,
            "root@127.0.0.1:%s" % dst, rsh=sshd)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    assert report(p)["bytes_written"] == len(blocks) * LEAF


def test_sync_to_a_remote_host_new_dst_is_a_copy(tmp_path):
    src = make_image(tmp_path / "src.img", 4 << 20)
    dst = tmp_path / "new.img"
    p = rdf("sync", "--json", src, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    assert report(p)["sync"]["changes"] == "copy"
    # a dry run: the blocks that differ there, nothing written
    blocks = change(src, 0.01, size=4 << 20)
    before = sha256_file(dst)
    p = rdf("sync", "--dry-run", src, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "would write %d bytes" % (len(blocks) * LEAF) in out
    assert sha256_file(dst) == before
    # ... and of a DST that is not there yet: a copy, nothing created
    p = rdf("sync", "--dry-run", src, "localhost:%s" % (tmp_path / "z"))
    assert p.returncode == 0, p.stderr
    assert b"would write" in p.stdout
    assert not (tmp_path / "z").exists()


def test_sync_to_a_remote_host_after_a_remote_copy_uses_its_record(tmp_path):
    """A copy to a host leaves DST's state record there: the next sync
    needs no flag, takes the record for DST's tree (serve proves DST
    against it) and reads DST only for that proof; a DST written behind
    the record's back is refused before any write."""
    src = make_image(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    p = rdf("copy", src, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    blocks = change(src, 0.01)
    p = rdf("sync", "--json", src, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    assert r["sync"]["changes"] == "record"
    assert r["sync"]["dst_bytes_read"] == 0     # no tree read there
    assert r["bytes_written"] == len(blocks) * LEAF
    assert r["bytes_sent"] <= len(blocks) * LEAF * 1.2 + SIZE // 1000
    # the record the sync left stands for the next one
    more = change(src, 0.01, seed=5)
    p = rdf("sync", "--json", src, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert report(p)["sync"]["changes"] == "record"
    assert report(p)["bytes_written"] == len(more) * LEAF
    assert files_equal(src, dst)
    # DST written behind the record's back where the sync would write
    more = change(src, 0.01, seed=6)
    write_at(dst, more[0] * LEAF + 9, b"behind its back")
    before = sha256_file(dst)
    p = rdf("sync", src, "localhost:%s" % dst)
    assert p.returncode == 3, p.stderr
    assert b"not the copy the state record describes" in p.stderr
    assert b"--changes compare" in p.stderr
    assert sha256_file(dst) == before
    # compare puts it right, still without --overwrite (a recorded copy)
    p = rdf("sync", "--changes", "compare", "--json", src,
            "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)


def test_sync_from_a_remote_host(tmp_path):
    """sync host:SRC DST: serve hashes SRC there; DST's tree is its
    record here (proved on DST) or DST read here; only changed blocks
    come."""
    src = make_image(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    rsrc = "localhost:%s" % src
    p = rdf("sync", "--json", rsrc, dst)       # not there yet: a copy
    assert p.returncode == 0, p.stderr
    assert report(p)["sync"]["changes"] == "copy"
    assert files_equal(src, dst)
    blocks = change(src, 0.01)
    p = rdf("sync", "--json", rsrc, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    assert r["sync"]["changes"] == "record"
    assert r["bytes_written"] == len(blocks) * LEAF
    assert r["sync"]["dst_bytes_read"] <= (64 + len(blocks)) * LEAF
    assert r["bytes_sent"] <= len(blocks) * LEAF * 1.2 + SIZE // 1000
    # DST changed behind its record's back where the sync would write
    more = change(src, 0.01, seed=13)
    write_at(dst, more[-1] * LEAF + 1, b"!")
    before = sha256_file(dst)
    p = rdf("sync", rsrc, dst)
    assert p.returncode == 3, p.stderr
    assert sha256_file(dst) == before
    # a dry run lists what would come, writes nothing
    p = rdf("sync", "--changes", "compare", "--dry-run", rsrc, dst)
    assert p.returncode == 0, p.stderr
    assert b"would write" in p.stdout
    assert sha256_file(dst) == before
    # compare puts it right (sha256: serve hashes with what is asked)
    more = change(src, 0.001, seed=12)
    p = rdf("sync", "--changes", "compare", "--digest", "sha256", "--json",
            rsrc, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    assert r["bytes_written"] >= len(more) * LEAF
    assert r["verified"] and r["digest"]["algorithm"] == "sha256"
    # (serve took the digest asked for: a pull with sha256 was refused)
    p = rdf("copy", "--digest", "sha256", rsrc, tmp_path / "again.img")
    assert p.returncode == 0, p.stderr


def test_sync_to_a_remote_host_in_passes(tmp_path):
    src = make_image(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    change(src, 0.01)
    p = rdf("sync", "--passes", "3", "--json", src, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    err = p.stderr.decode()
    assert "pass 1:" in err and "pass 3:" in err and "last pass:" in err
    r = report(p)
    assert r["sync"]["passes"] == 3
    assert r["sync"]["changes"] == "record"     # passes 2, 3: its record
    assert r["sync"]["changed_bytes"] == 0
    assert files_equal(src, dst)


def test_killed_remote_sync_is_finished_by_the_next_one(tmp_path):
    """serve killed (-9) in the middle of writing DST: its record there is
    busy, so the next sync compares (no --overwrite: the busy record
    still names this source) and sends only what still differs."""
    src = make_image(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    assert rdf("copy", src, "localhost:%s" % dst).returncode == 0
    blocks = change(src, 0.01)
    env = dict(os.environ, DF_TEST_UNDO_KILL_AFTER="2")
    p = rdf("sync", "--undo", tmp_path / "j", src, "localhost:%s" % dst,
            env=env)
    assert p.returncode == 6, p.stderr
    assert not files_equal(src, dst)
    p = rdf("sync", "--resume", "--json", src, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    r = report(p)
    assert r["sync"]["changes"] == "compare"
    assert 0 < r["bytes_written"] <= len(blocks) * LEAF
    assert files_equal(src, dst)


def test_sync_to_a_remote_loop_device(tmp_path):
    src = make_image(tmp_path / "src.img", 32 << 20)
    with random_device(tmp_path, 32 << 20) as dev:
        p = rdf("copy", "--overwrite", "--yes", src, "localhost:%s" % dev)
        assert p.returncode == 0, p.stderr
        blocks = change(src, 0.01, size=32 << 20)
        p = rdf("sync", "--json", src, "localhost:%s" % dev)
        assert p.returncode == 0, p.stderr
        r = report(p)
        assert r["sync"]["changes"] == "record"
        assert r["bytes_written"] == len(blocks) * LEAF
        assert sha256_file(dev) == sha256_file(src)
