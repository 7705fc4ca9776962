"""A push's destination is read back as it is written: serve hashes what
it applied behind the applier (engine/readback.h), so that the copy's
verification waits only for the last stretch.  What is verified stays
what the destination holds: a byte that differs from what arrived fails
the copy whichever way it is read back, and the state record the copy
leaves carries the leaves read back."""
import json
import os

import pytest

from conftest import DISKFERRY, df, files_equal, have, sha256_file, \
    write_at

HERE = os.path.dirname(os.path.abspath(__file__))
RSH = os.path.join(HERE, "rsh_local.sh")
FEAT_READBACK = 1 << 19
SIZE = 40 << 20


def make_disk(path):
    """Random, text, written zeros, a hole, and a tail off the leaves."""
    with open(path, "wb") as f:
        f.truncate(SIZE)
        f.write(os.urandom(6 << 20))
        f.seek(9 << 20)
        f.write(b"a line of text that repeats, %d\n" * 150000)
        f.seek(20 << 20)
        f.write(b"\0" * (3 << 20))
        f.seek(SIZE - (2 << 20) - 4097)
        f.write(os.urandom((2 << 20) + 4097))
    return path


def push(tmp_path, src, dst, *args, env=None, cmd="copy"):
    """diskferry CMD --json SRC localhost:DST through the rsh shim; the
    process and how serve answered each DIGEST_REQ."""
    return remote(tmp_path, src, "localhost:%s" % dst, *args, env=env,
                  cmd=cmd)


def remote(tmp_path, a, b, *args, env=None, cmd="copy", far=DISKFERRY):
    """diskferry CMD --json A B through the rsh shim; the process and how
    each verification read its destination back."""
    stats = tmp_path / "readback.log"
    if stats.exists():
        stats.unlink()
    e = dict(os.environ)
    e["DF_TEST_READBACK_LOG"] = str(stats)
    e.update(env or {})
    p = df(cmd, "--json", "--rsh", RSH, "--remote-path", far, *args,
           a, b, env=e)
    how = stats.read_text().split() if stats.exists() else []
    return p, [h for h in how if h.startswith("digest=")]


@pytest.mark.parametrize("transport", [["--transport", "ssh"],
                                       ["--transport", "tcp",
                                        "--streams", "4"]],
                         ids=["ssh", "tcp"])
def test_push_is_read_back_as_written(tmp_path, transport):
    src = make_disk(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    p, how = push(tmp_path, src, dst, *transport)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["verified"] is True
    assert files_equal(src, dst)
    assert how == ["digest=readback"]


def test_old_serve_reads_back_at_the_end(tmp_path):
    """A serve without the feature is not sent OPT_VERIFY (it would refuse
    the option): the end reads everything back, as before."""
    src = make_disk(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    p, how = push(tmp_path, src, dst, env={
        "DF_TEST_SERVE_MASK_FEATURES": hex(FEAT_READBACK)})
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    assert how == ["digest=end"]


@pytest.mark.parametrize("readback", [True, False],
                         ids=["as-written", "at-the-end"])
@pytest.mark.parametrize("where", [1 << 20, (9 << 20) + 12345,
                                   SIZE - 1])
def test_a_byte_that_differs_fails_verification(tmp_path, readback, where):
    """The byte at `where` lands inverted right after its range was
    written (a test hook): the read-back hashes the destination, not what
    arrived, and the copy fails with exit 7 either way."""
    src = make_disk(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    env = {"DF_TEST_APPLY_FLIP_AT": str(where)}
    if not readback:
        env["DF_TEST_SERVE_MASK_FEATURES"] = hex(FEAT_READBACK)
    p, how = push(tmp_path, src, dst, env=env)
    assert p.returncode == 7, p.stderr
    assert b"verification failed" in p.stderr
    assert how == ["digest=readback" if readback else "digest=end"]
    assert not dst.exists()             # never took the name


def test_no_verify_reads_nothing_back(tmp_path):
    src = make_disk(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    p, how = push(tmp_path, src, dst, "--no-verify")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["verified"] is False
    assert how == []
    assert files_equal(src, dst)


def test_the_record_holds_what_was_read_back(tmp_path):
    """The copy's record comes from the read-back's leaves: a sync after
    it proves DST against them and sends only the changed leaf; a sync's
    own digest (after its walk) reads back only what it wrote."""
    src = make_disk(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    p, how = push(tmp_path, src, dst)
    assert p.returncode == 0, p.stderr
    assert how == ["digest=readback"]
    write_at(src, (9 << 20) + 100, b"changed after the copy")
    p, how = push(tmp_path, src, dst, cmd="sync")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["sync"]["changes"] == "record"
    assert r["bytes_written"] == 64 << 10
    assert r["verified"] is True
    assert how == ["digest=end"]
    assert sha256_file(src) == sha256_file(dst)



def test_pull_is_read_back_as_written(tmp_path):
    """The same here for a pull into a new local file."""
    src = make_disk(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    p, how = remote(tmp_path, "localhost:%s" % src, dst)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["verified"] is True
    assert files_equal(src, dst)
    assert how == ["digest=readback"]
    # a byte that differs from what arrived: exit 7
    dst2 = tmp_path / "dst2.img"
    p, how = remote(tmp_path, "localhost:%s" % src, dst2, env={
        "DF_TEST_APPLY_FLIP_AT": str((9 << 20) + 7)})
    assert p.returncode == 7, p.stderr
    assert b"verification failed" in p.stderr
    assert how == ["digest=readback"]



def test_undo_journal_reads_back_at_the_end(tmp_path):
    """Under --undo the writes land in batches after the journal's
    fdatasync, not when the applier hands them over: no read-back behind
    them; the end reads back, and undo restores the old contents."""
    src = make_disk(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    with open(dst, "wb") as f:
        f.write(os.urandom(SIZE))
    before = sha256_file(dst)
    journal = tmp_path / "dst.undo"
    p, how = push(tmp_path, src, dst, "--overwrite", "--undo", journal)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    assert how == ["digest=end"]
    p = df("undo", "--rsh", RSH, "--remote-path", DISKFERRY,
           "localhost:%s" % journal)
    assert p.returncode == 0, p.stderr
    assert sha256_file(dst) == before


def test_fsync_reaches_the_far_end(tmp_path):
    """--fsync to another host (OPEN_FSYNC): serve syncs the data file
    itself, not only its journal, and reads it back from the medium at
    the end rather than from the cache as it was written."""
    if not have("strace"):
        pytest.skip("needs strace")
    src = make_disk(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    log = tmp_path / "serve.strace"
    far = tmp_path / "far.sh"
    far.write_text("#!/bin/sh\nexec strace -f -qq -e trace=openat,fsync,"
                   "fdatasync -o %s %s \"$@\"\n" % (log, DISKFERRY))
    far.chmod(0o755)
    p, how = remote(tmp_path, src, "localhost:%s" % dst, "--fsync", far=far)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    assert how == ["digest=end"]
    fds, synced = set(), False
    for line in log.read_text().splitlines():
        if ".dst.img.diskferry-partial\"" in line and "= " in line:
            fds.add(line.rsplit("= ", 1)[1].split()[0])
        for call in ("fsync(", "fdatasync("):
            if call in line:
                fd = line.split(call, 1)[1].split(")", 1)[0]
                synced = synced or fd in fds
    assert fds and synced, log.read_text()[-2000:]


def test_fsync_refused_by_an_old_serve(tmp_path):
    """A serve without OPEN_FSYNC would not sync: refused before anything
    is written there (exit 6, naming the option)."""
    src = make_disk(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    p, how = push(tmp_path, src, dst, "--fsync", env={
        "DF_TEST_SERVE_MASK_FEATURES": hex(1 << 20)})
    assert p.returncode == 6, p.stderr
    assert b"too old for --fsync" in p.stderr
    assert not dst.exists()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".dst")] == []
