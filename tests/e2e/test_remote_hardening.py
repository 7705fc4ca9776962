"""Remote endpoints, hardened: the overwrite question and --undo on the
destination's host, timeouts on every network wait, TCP connections that
never authenticate, and errors that say what happened on the far side."""
import os
import signal
import subprocess
import time

import pytest

from conftest import DISKFERRY, df, sh, sha256_file, files_equal
from test_remote import RSH, PY, TAMPER, rdf, make_disk, serve_pid, \
    sshd  # noqa: F401
from test_safety import run_on_tty

MIB = 1 << 20


def ext4_disk(path, size=16 * MIB):
    with open(path, "wb") as f:
        f.truncate(size)
    sh(["mkfs.ext4", "-q", "-F", str(path)])
    return path


# ---- item 6: the question, and --undo, on the remote host ----

def test_remote_overwrite_asks_on_terminal(tmp_path):
    src = make_disk(tmp_path / "src.img", 16 * MIB)
    disk = ext4_disk(tmp_path / "vmdisk.img")
    before = sha256_file(disk)
    base = [DISKFERRY, "copy", "--rsh", RSH, "--remote-path", DISKFERRY,
            "--overwrite", str(src), "localhost:%s" % disk]
    rc, out = run_on_tty(base, "y")
    assert rc == 3, out
    assert "localhost:%s holds an ext4 filesystem" % disk in out
    assert "refusing to write: not confirmed" in out
    assert sha256_file(disk) == before
    rc, out = run_on_tty(base, "vmdisk.img")
    assert rc == 0, out
    assert files_equal(src, disk)
    # without a terminal the flag is the consent (scripts pass it)
    ext4_disk(disk)
    p = rdf("copy", "--overwrite", src, "localhost:%s" % disk)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, disk)


def test_remote_undo_restores(tmp_path):
    src = make_disk(tmp_path / "src.img", 16 * MIB)
    disk = ext4_disk(tmp_path / "vmdisk.img")
    before = sha256_file(disk)
    journal = tmp_path / "vm.undo"
    p = rdf("copy", "--overwrite", "--undo", journal, src,
            "localhost:%s" % disk)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, disk)
    assert journal.exists()
    p = rdf("undo", "localhost:%s" % journal)
    assert p.returncode == 0, p.stderr
    assert sha256_file(disk) == before


# ---- item 12: timeouts ----

def test_silent_and_garbage_tcp_connections_do_not_hold_the_job(tmp_path):
    """Connections made to serve's TCP port before the real streams (one
    silent, one sending garbage, both left open) are dropped; the copy
    goes on at once."""
    src = make_disk(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    t0 = time.time()
    p = rdf("copy", "--transport", "tcp", "--streams", "2", src,
            "localhost:%s" % dst, rsh="%s %s squat" % (PY, TAMPER))
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    assert time.time() - t0 < 20


@pytest.mark.parametrize("transport", [
    pytest.param("ssh", marks=pytest.mark.slow_once), "tcp"])
def test_stopped_peer_times_out(tmp_path, transport):
    src = make_disk(tmp_path / "src.img", 64 * MIB)
    dst = tmp_path / "dst.img"
    proc = subprocess.Popen(
        [DISKFERRY, "copy", "--rsh", RSH, "--remote-path", DISKFERRY,
         "--transport", transport, "--timeout", "3", "--bwlimit", "4M",
         str(src), "localhost:%s" % dst], stderr=subprocess.PIPE)
    spid = None
    try:
        for _ in range(200):
            spid = serve_pid(proc.pid)
            if spid and os.path.exists(tmp_path / ".dst.img.diskferry-partial"):
                break
            time.sleep(0.05)
        assert spid, "no serve process"
        time.sleep(0.5)
        os.kill(spid, signal.SIGSTOP)
        t0 = time.time()
        _, err = proc.communicate(timeout=60)
        took = time.time() - t0
    finally:
        if spid:
            try:
                os.kill(spid, signal.SIGKILL)
                os.kill(spid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 6, err
    assert b"localhost: no answer for 3 s" in err, err
    assert took < 15, took


# ---- item 14: errors from the far side, image options, tcp address ----

def test_missing_remote_binary(tmp_path):
    src = make_disk(tmp_path / "src.img", 4 * MIB)
    p = rdf("copy", src, "localhost:%s" % (tmp_path / "d.img"),
            remote_path="/nonexistent/diskferry")
    assert p.returncode == 6, p.stderr
    assert p.stderr.decode() == (
        "diskferry: copy: localhost: /nonexistent/diskferry not found on "
        "the remote host (give --remote-path)\n")


def test_unknown_host(tmp_path):
    if not os.path.exists("/usr/bin/ssh"):
        pytest.skip("no ssh")
    src = make_disk(tmp_path / "src.img", 4 * MIB)
    p = rdf("copy", src, "nonexistent.invalid:/tmp/x.img",
            rsh="ssh -o BatchMode=yes")
    assert p.returncode == 6, p.stderr
    assert p.stderr.decode() == \
        "diskferry: copy: nonexistent.invalid: unknown host\n"


def test_refused_login(tmp_path, sshd):  # noqa: F811
    src = make_disk(tmp_path / "src.img", 4 * MIB)
    wrong = tmp_path / "wrong_key"
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)])
    words = sshd.split()
    words[words.index("-i") + 1] = str(wrong)
    rsh = " ".join(words + ["-o", "IdentitiesOnly=yes"])
    p = rdf("copy", src, "root@127.0.0.1:%s" % (tmp_path / "d.img"),
            rsh=rsh)
    assert p.returncode == 6, p.stderr
    assert b"127.0.0.1: login refused (" in p.stderr, p.stderr
    assert b"Permission denied" in p.stderr


def test_image_options_apply_on_the_remote_host(tmp_path):
    raw = make_disk(tmp_path / "base.raw", 8 * MIB)
    base = tmp_path / "store" / "base.qcow2"
    base.parent.mkdir()
    sh(["qemu-img", "convert", "-O", "qcow2", str(raw), str(base)])
    child = tmp_path / "vm" / "child.qcow2"
    child.parent.mkdir()
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
        str(base), str(child)])
    moved = tmp_path / "moved"
    moved.mkdir()
    os.rename(base, moved / "base.qcow2")
    out = tmp_path / "out.img"
    p = rdf("copy", "localhost:%s" % child, out)
    assert p.returncode != 0
    p = rdf("copy", "--parent-dir", moved, "localhost:%s" % child, out)
    assert p.returncode == 0, p.stderr
    assert files_equal(raw, out)
    # -f raw: the qcow2 file's own bytes
    out2 = tmp_path / "out2.img"
    p = rdf("copy", "-f", "raw", "localhost:%s" % child, out2)
    assert p.returncode == 0, p.stderr
    assert files_equal(child, out2)


def test_tcp_to_an_ssh_config_alias(tmp_path, sshd):  # noqa: F811
    words = sshd.split()
    port = words[words.index("-p") + 1]
    key = words[words.index("-i") + 1]
    cfg = tmp_path / "ssh_config"
    cfg.write_text("""Host vmhost-alias
    HostName 127.0.0.1
    Port %s
    User root
    IdentityFile %s
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
""" % (port, key))
    src = make_disk(tmp_path / "src.img", 8 * MIB)
    dst = tmp_path / "dst.img"
    p = rdf("copy", "--transport", "tcp", src, "vmhost-alias:%s" % dst,
            rsh="ssh -F %s" % cfg)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
