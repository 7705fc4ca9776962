"""Files diskferry creates (resume journals, partial and temporary files,
the state directory) are never reached through a symlink someone planted
at their name, never under a guessable name, and never in a directory
others can write to."""
import os
import re
import stat
import subprocess
import time

from conftest import DISKFERRY, sha256_file, files_equal, loop_device
from test_remote import rdf, serve_wrapper


def confined(tmp_path):
    root = tmp_path / "root"
    (root / "vms").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious, outside the root\n" * 1000)
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(3 << 20))
    return root, victim, src, serve_wrapper(tmp_path, "--root", str(root))


def test_planted_journal_symlink_of_a_new_file(tmp_path):
    """The reproducer: a symlink at .NAME.diskferry-partial.diskferry-resume
    inside --root pointing outside; the copy neither truncates nor writes
    its target."""
    root, victim, src, w = confined(tmp_path)
    before = sha256_file(victim)
    j = root / "vms" / ".new.img.diskferry-partial.diskferry-resume"
    os.symlink(victim, j)
    for extra in ([], ["--resume"]):
        p = rdf("copy", *extra, src, "localhost:vms/new.img", remote_path=w)
        assert p.returncode == 0, p.stderr
        assert sha256_file(victim) == before
        assert files_equal(src, root / "vms" / "new.img")
        os.unlink(root / "vms" / "new.img")
        if not os.path.lexists(j):
            os.symlink(victim, j)
    # a partial file left beside a planted journal: --resume starts over
    (root / "vms" / ".new.img.diskferry-partial").write_bytes(
        b"\0" * (3 << 20))
    p = rdf("copy", "--resume", src, "localhost:vms/new.img", remote_path=w)
    assert p.returncode == 0, p.stderr
    assert sha256_file(victim) == before
    assert files_equal(src, root / "vms" / "new.img")


def test_planted_journal_symlink_of_an_existing_file(tmp_path):
    root, victim, src, w = confined(tmp_path)
    before = sha256_file(victim)
    dst = root / "vms" / "dst.img"
    dst.write_bytes(b"\0" * (3 << 20))
    os.symlink(victim, str(dst) + ".diskferry-resume")
    p = rdf("copy", src, "localhost:vms/dst.img", remote_path=w)
    assert p.returncode == 0, p.stderr
    assert sha256_file(victim) == before
    assert files_equal(src, dst)


def test_local_temporary_name_is_random(tmp_path):
    """A new local file is written under .NAME.diskferry- and 12 random hex
    digits (no pid- or clock-derived name to plant a link at)."""
    dst = tmp_path / "dst.img"
    proc = subprocess.Popen([DISKFERRY, "copy", "-", str(dst)],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(os.urandom(1 << 20))
        proc.stdin.flush()
        names = []
        for _ in range(100):
            names = [n for n in os.listdir(tmp_path)
                     if n.startswith(".dst.img.diskferry-")]
            if names:
                break
            time.sleep(0.05)
        assert len(names) == 1
        assert re.fullmatch(r"\.dst\.img\.diskferry-[0-9a-f]{12}", names[0])
        assert stat.S_ISREG(os.lstat(tmp_path / names[0]).st_mode)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    assert os.listdir(tmp_path) == ["dst.img"]


def device_copy(tmp_path, state, *extra):
    """Copy to a loop device through serve with DISKFERRY_STATE_DIR=state
    (a device's journal lives in the state directory)."""
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(1 << 20))
    backing = tmp_path / "loop.img"
    with open(backing, "wb") as f:
        f.truncate(1 << 20)
    env = dict(os.environ, DISKFERRY_STATE_DIR=str(state))
    with loop_device(backing) as dev:
        p = rdf("copy", *extra, src, "localhost:%s" % dev, env=env)
    return p, src, backing


def test_state_dir_created_private(tmp_path):
    state = tmp_path / "state"
    p, src, backing = device_copy(tmp_path, state)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, backing)
    st = os.lstat(state)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    # The journal goes at DONE, as serve finishes (on a loaded machine
    # that may trail the client's exit by a moment); the device's state
    # record stays (what it holds, for the next sync).
    def left():
        return [n for n in os.listdir(state) if not n.startswith("record-")]
    deadline = time.monotonic() + 10
    while left() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left() == []
    assert len(os.listdir(state)) == 1


def test_dry_run_creates_no_state_dir(tmp_path):
    state = tmp_path / "state"
    p, src, backing = device_copy(tmp_path, state, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert not os.path.exists(state)


def test_state_dir_refusals(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    os.symlink(real, link)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    for state, why in [(link, b"it is a symlink"),
                       (shared, b"writable by group or others")]:
        p, src, backing = device_copy(tmp_path, state)
        assert p.returncode == 3, p.stderr
        assert b"refusing to use the state directory" in p.stderr
        assert why in p.stderr, p.stderr
        with open(backing, "rb") as f:
            assert f.read() == b"\0" * (1 << 20)
    assert os.listdir(real) == [] and os.listdir(shared) == []
