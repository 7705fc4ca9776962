"""Issue 3, item 8: `copy --undo JOURNAL` and `diskferry undo JOURNAL`.

Known data is overwritten by a copy with --overwrite --undo J; undo J puts
it back byte for byte (files, loop devices, a file that grew), also after
the copy was killed with SIGKILL at several points, and again when undo
itself is rerun.  Undo refuses a destination that no longer matches the
journal, and runs the same safety checks as a copy.
"""
import os
import signal
import subprocess
import time

import pytest

from conftest import DISKFERRY, df, loop_device, sh, sha256_file

MIB = 1 << 20


def make_src(path, size=32 * MIB):
    """Data and holes: the copy both writes and zeroes."""
    with open(path, "wb") as f:
        f.truncate(size)
        for i in range(0, size, 4 * MIB):
            f.seek(i)
            f.write(os.urandom(MIB + 4096 * (i // MIB)))
    return path


def make_known(path, size=32 * MIB):
    """The destination's precious contents: data everywhere but one MiB
    of zeros (so the journal has both kinds of record)."""
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.seek(5 * MIB)
        f.write(bytes(MIB))
    return path


def copy_undo(src, dst, journal, env=None):
    return subprocess.run([DISKFERRY, "copy", "--overwrite", "--yes",
                           "--undo", str(journal), str(src), str(dst)],
                          capture_output=True, env=env, timeout=300)


def test_undo_restores_file(tmp_path):
    src, dst = make_src(tmp_path / "src.img"), make_known(tmp_path / "d.img")
    journal = tmp_path / "undo.journal"
    before = sha256_file(dst)
    p = copy_undo(src, dst, journal)
    assert p.returncode == 0, p.stderr
    assert sha256_file(dst) == sha256_file(src)

    p = df("undo", "--dry-run", journal)
    assert p.returncode == 0, p.stderr
    assert b"would restore " in p.stdout
    assert sha256_file(dst) == sha256_file(src)

    p = df("undo", "-v", journal)
    assert p.returncode == 0, p.stderr
    assert sha256_file(dst) == before
    # Rerun: the same result.
    p = df("undo", journal, dst)
    assert p.returncode == 0, p.stderr
    assert sha256_file(dst) == before


def test_undo_restores_loop_device(tmp_path):
    src = make_src(tmp_path / "src.img")
    disk = make_known(tmp_path / "disk.img")
    journal = tmp_path / "undo.journal"
    before = sha256_file(disk)
    with loop_device(disk) as dev:
        p = copy_undo(src, dev, journal)
        assert p.returncode == 0, p.stderr
        assert sha256_file(dev) == sha256_file(src)
        p = df("undo", journal)             # the device, from the journal
        assert p.returncode == 0, p.stderr
    assert sha256_file(disk) == before


def test_undo_cuts_back_a_grown_file(tmp_path):
    src = make_src(tmp_path / "src.img", 8 * MIB)
    dst = tmp_path / "empty.img"
    dst.write_bytes(b"")
    journal = tmp_path / "j"
    p = copy_undo(src, dst, journal)
    assert p.returncode == 0, p.stderr
    assert sha256_file(dst) == sha256_file(src)
    p = df("undo", journal)
    assert p.returncode == 0, p.stderr
    assert dst.read_bytes() == b""


@pytest.mark.parametrize("kill_after", [1, 3, 4, 7, 12])
def test_kill_during_copy_then_undo(tmp_path, kill_after):
    """SIGKILL after the Nth write reached the destination (the test hook
    raises it inside the copy, between batches or in the middle of one)."""
    src, dst = make_src(tmp_path / "src.img"), make_known(tmp_path / "d.img")
    journal = tmp_path / "undo.journal"
    before = sha256_file(dst)
    env = dict(os.environ, DF_TEST_UNDO_KILL_AFTER=str(kill_after))
    p = copy_undo(src, dst, journal, env=env)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert sha256_file(dst) != before        # the copy did touch it
    p = df("undo", "-v", journal)
    assert p.returncode == 0, p.stderr
    assert b"interrupted" in p.stderr
    assert sha256_file(dst) == before


def test_kill_from_outside_then_undo(tmp_path):
    """kill -9 from another process at whatever point the copy reached."""
    src = make_src(tmp_path / "src.img", 64 * MIB)
    dst = make_known(tmp_path / "d.img", 64 * MIB)
    journal = tmp_path / "undo.journal"
    before = sha256_file(dst)
    p = subprocess.Popen([DISKFERRY, "copy", "--overwrite", "--yes",
                          "--undo", str(journal), str(src), str(dst)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Wait until a record or two are in the journal (or the copy ended).
        while p.poll() is None:
            if journal.exists() and journal.stat().st_size > 2 * MIB:
                break
            time.sleep(0.001)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    p = df("undo", journal)
    assert p.returncode == 0, p.stderr
    assert sha256_file(dst) == before


def test_torn_journal_tail_is_ignored(tmp_path):
    src, dst = make_src(tmp_path / "src.img"), make_known(tmp_path / "d.img")
    journal = tmp_path / "undo.journal"
    before = sha256_file(dst)
    env = dict(os.environ, DF_TEST_UNDO_KILL_AFTER="2")
    assert copy_undo(src, dst, journal, env=env).returncode == -9
    # What a crash in the middle of appending the next record leaves: a
    # record header and part of its payload.
    with open(journal, "ab") as f:
        f.write(b"DFUR\x01\x00\x00\x00" + os.urandom(3000))
    p = df("undo", journal)
    assert p.returncode == 0, p.stderr
    assert b"ignoring the last 3008 bytes of the journal" in p.stderr
    assert sha256_file(dst) == before


def test_undo_refuses_changed_destination(tmp_path):
    src, dst = make_src(tmp_path / "src.img"), make_known(tmp_path / "d.img")
    journal = tmp_path / "undo.journal"
    assert copy_undo(src, dst, journal).returncode == 0
    # Someone made a filesystem on it since.
    sh(["mkfs.ext4", "-q", "-F", str(dst)])
    changed = sha256_file(dst)
    p = df("undo", journal)
    assert p.returncode == 3, p.stderr
    assert p.stderr.decode().endswith(
        "refusing to write: does not match the undo journal (its first "
        "MiB holds neither the old nor the copied data)\n")
    assert sha256_file(dst) == changed
    # Another disk of another size.
    other = make_known(tmp_path / "other.img", 16 * MIB)
    before = sha256_file(other)
    p = df("undo", journal, other)
    assert p.returncode == 3, p.stderr
    assert b"the journal is for a destination of 33554432 bytes" in p.stderr
    assert sha256_file(other) == before


def test_undo_runs_the_safety_checks(tmp_path):
    src, dst = make_src(tmp_path / "src.img"), make_known(tmp_path / "d.img")
    journal = tmp_path / "undo.journal"
    assert copy_undo(src, dst, journal).returncode == 0
    copied = sha256_file(dst)
    holder = subprocess.Popen(["/usr/bin/python3", "-c", "import sys; "
                               "f = open(sys.argv[1]); print(1, flush=True);"
                               " sys.stdin.read()", str(dst)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        holder.stdout.readline()
        p = df("undo", journal)
        assert p.returncode == 3, p.stderr
        assert b"refusing to write: open by python3 (pid %d)" % holder.pid \
            in p.stderr
        assert sha256_file(dst) == copied
    finally:
        holder.kill()
        holder.wait()
    # The journal itself is not a destination.
    p = df("undo", journal, journal)
    assert p.returncode == 3, p.stderr


def test_existing_journal_is_never_replaced(tmp_path):
    src, dst = make_src(tmp_path / "src.img"), make_known(tmp_path / "d.img")
    journal = tmp_path / "undo.journal"
    journal.write_bytes(b"an older journal")
    before = sha256_file(dst)
    p = copy_undo(src, dst, journal)
    assert p.returncode == 3, p.stderr
    assert b"refusing to write: undo journal exists" in p.stderr
    assert sha256_file(dst) == before
    assert journal.read_bytes() == b"an older journal"


def test_undo_bad_journal(tmp_path):
    dst = make_known(tmp_path / "d.img", MIB)
    before = sha256_file(dst)
    bad = tmp_path / "bad.journal"
    bad.write_bytes(b"DFUNDO\r\n" + bytes(600))
    p = df("undo", bad, dst)
    assert p.returncode == 5, p.stderr
    bad.write_bytes(b"short")
    p = df("undo", bad, dst)
    assert p.returncode == 5, p.stderr
    assert b"the job wrote nothing" in p.stderr
    assert sha256_file(dst) == before
