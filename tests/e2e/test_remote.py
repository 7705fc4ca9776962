"""Remote endpoints: copy to and from [user@]host:PATH through an rsh
shim (runs the remote command here), a real sshd on 127.0.0.1, the TCP
transport, compression, confinement, resume after kill -9 of either
side, and hostile peers."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import DISKFERRY, SANITIZED, df, sh, sha256_file, \
    files_equal, write_at, loop_device, qemu_raw, signal_and_wait, \
    sshd_setup

HERE = os.path.dirname(os.path.abspath(__file__))
RSH = os.path.join(HERE, "rsh_local.sh")
FAKE = os.path.join(HERE, "fake_peer.py")
TAMPER = os.path.join(HERE, "rsh_tamper.py")
PY = "/usr/bin/python3"


def rdf(*args, **kw):
    """diskferry with the local rsh shim and this build on the far end."""
    return df(args[0], "--rsh", kw.pop("rsh", RSH), "--remote-path",
              kw.pop("remote_path", DISKFERRY), *args[1:], **kw)


def make_disk(path, size=24 << 20):
    """Random, text-like, zeros and holes."""
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(os.urandom(3 << 20))
        f.seek(5 << 20)
        f.write(b"the quick brown fox jumps over the lazy dog %d\n" * 60000)
        f.seek(12 << 20)
        f.write(b"\0" * (2 << 20))
        f.seek(size - 4096 - 13)
        f.write(os.urandom(4096 + 13))
    return path


def report(p):
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


@pytest.fixture
def disk(tmp_path):
    return make_disk(tmp_path / "src.img")


def test_copy_to_remote_file_and_back(tmp_path, disk):
    dst = tmp_path / "remote.img"
    r = report(rdf("copy", "--json", disk, "localhost:%s" % dst))
    assert files_equal(disk, dst)
    assert r["verified"]
    assert r["remote"]["transport"] == "ssh"
    assert r["remote"]["bytes_wire"] < os.path.getsize(disk)
    assert r["remote"]["compression_ratio"] > 1.0
    back = tmp_path / "back.img"
    r = report(rdf("copy", "--json", "localhost:%s" % dst, back))
    assert files_equal(disk, back)
    assert r["verified"]
    assert not os.path.exists(str(dst) + ".diskferry-resume")
    assert sorted(os.listdir(tmp_path)) == ["back.img", "remote.img",
                                            "src.img"]


def test_qcow2_source_to_remote(tmp_path, disk):
    q = tmp_path / "src.qcow2"
    sh(["qemu-img", "convert", "-O", "qcow2", str(disk), str(q)])
    if b"format: qcow2" not in df("info", q).stdout:
        pytest.skip("no qcow2 driver in this build yet")
    dst = tmp_path / "remote.img"
    p = rdf("copy", q, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(qemu_raw(q, tmp_path / "ref.raw"), dst)


@pytest.mark.parametrize("mode", ["none", "lz4", "zstd", "zstd:9", "auto"])
def test_compress_modes(tmp_path, disk, mode):
    dst = tmp_path / "remote.img"
    r = report(rdf("copy", "--json", "--compress", mode, disk,
                   "localhost:%s" % dst))
    assert files_equal(disk, dst)
    ratio = r["remote"]["compression_ratio"]
    assert ratio == 1.0 if mode == "none" else ratio > 1.5


@pytest.mark.parametrize("direction", ["to", "from"])
def test_tcp_transport(tmp_path, disk, direction):
    remote = tmp_path / "remote.img"
    if direction == "to":
        r = report(rdf("copy", "--json", "--transport", "tcp", "--streams",
                       "3", disk, "localhost:%s" % remote))
        assert files_equal(disk, remote)
    else:
        shutil.copy(disk, remote)
        local = tmp_path / "local.img"
        r = report(rdf("copy", "--json", "--transport", "tcp",
                       "localhost:%s" % remote, local))
        assert files_equal(disk, local)
    assert r["remote"]["transport"] == "tcp"


def test_shell_metacharacters_in_paths(tmp_path, disk):
    d = tmp_path / "a b'c$d;e"
    d.mkdir()
    log = tmp_path / "rsh.log"
    env = dict(os.environ, DF_RSH_LOG=str(log))
    for name in ["-leading-dash.img", "x $(touch PWNED) `touch PWNED2`.img",
                 "semi;colon&amp|pipe\"q.img"]:
        dst = d / name
        p = rdf("copy", disk, "localhost:%s" % dst, env=env)
        assert p.returncode == 0, p.stderr
        assert files_equal(disk, dst)
        back = tmp_path / "back.img"
        p = rdf("copy", "localhost:%s" % dst, back, env=env)
        assert p.returncode == 0, p.stderr
        assert files_equal(disk, back)
        os.unlink(back)
    assert not list(tmp_path.rglob("PWNED*"))
    assert not os.path.exists("PWNED")
    # a --remote-path with spaces and quotes is one quoted word
    odd = tmp_path / "bin dir's"
    odd.mkdir()
    os.symlink(DISKFERRY, odd / "disk ferry")
    p = rdf("copy", disk, "localhost:%s" % (tmp_path / "o.img"),
            remote_path=str(odd / "disk ferry"), env=env)
    assert p.returncode == 0, p.stderr
    assert "'%s/bin dir'\\''s/disk ferry' serve" % tmp_path in \
        log.read_text()


def test_local_path_with_colon_is_local(tmp_path, disk):
    os.chdir(tmp_path)
    p = df("copy", disk, "./a:b.img")
    assert p.returncode == 0, p.stderr
    assert files_equal(disk, tmp_path / "a:b.img")


@pytest.mark.parametrize("form,host", [
    ("localhost:%s", "localhost"),
    ("root@localhost:%s", "root@localhost"),
    ("[::1]:%s", "::1"),
    ("admin@[fe80::1%%eth0]:%s", "admin@fe80::1%eth0"),
])
def test_endpoint_forms(tmp_path, disk, form, host):
    log = tmp_path / "rsh.log"
    env = dict(os.environ, DF_RSH_LOG=str(log))
    dst = tmp_path / "d.img"
    p = rdf("copy", disk, form % dst, env=env)
    assert p.returncode == 0, p.stderr
    assert files_equal(disk, dst)
    assert log.read_text().splitlines()[0] == "host=" + host


@pytest.mark.parametrize("arg,msg", [
    ("-oProxyCommand=x:/a.img", b"cannot start with '-'"),
    ("[::1/a.img", b"expected [IPv6-address]:PATH"),
    ("host:", b"no path after the host name"),
    ("@host:/a", b"bad user name"),
])
def test_endpoint_errors(tmp_path, disk, arg, msg):
    p = rdf("copy", "--", disk, arg)
    assert p.returncode == 2, p.stderr
    assert msg in p.stderr


def test_plain_ssh_prefers_aes_gcm(tmp_path, disk):
    """A plain `ssh` with no cipher chosen gets AES-GCM first (when the
    CPU has AES instructions); a user's own choice is left alone."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(RSH, bindir / "ssh")
    has_aes = " aes " in open("/proc/cpuinfo").read().replace("\n", " ")
    for rsh, expect in [(str(bindir / "ssh"), has_aes),
                        ("%s -p 22 -c aes256-ctr" % (bindir / "ssh"), False),
                        ("%s -o Ciphers=aes256-ctr" % (bindir / "ssh"),
                         False),
                        (RSH, False)]:
        log = tmp_path / "rsh.log"
        if log.exists():
            log.unlink()
        dst = tmp_path / "d.img"
        if dst.exists():
            dst.unlink()
        p = rdf("copy", disk, "localhost:%s" % dst, rsh=rsh,
                env=dict(os.environ, DF_RSH_LOG=str(log)))
        assert p.returncode == 0, p.stderr
        opts = log.read_text().splitlines()[1]
        assert ("Ciphers=^aes128-gcm@openssh.com" in opts) == expect, \
            (rsh, opts)


def test_both_remote_refused(tmp_path):
    p = rdf("copy", "h1:/a.img", "h2:/b.img")
    assert p.returncode == 2
    assert b"both SRC and DST are remote" in p.stderr


def test_remote_refusal_printed_with_host(tmp_path, disk):
    dst = tmp_path / "exists.img"
    dst.write_bytes(b"precious" * 1000)
    os.truncate(dst, os.path.getsize(disk))
    before = sha256_file(dst)
    p = rdf("copy", disk, "localhost:%s" % dst)
    assert p.returncode == 3
    # the remote host runs the same safety check: the same line, with
    # the host in front of the path
    local = df("copy", disk, dst)
    assert local.returncode == 3
    assert p.stderr.decode() == local.stderr.decode().replace(
        "copy: %s:" % dst, "copy: localhost:%s:" % dst)
    assert "refusing to write" in p.stderr.decode()
    assert sha256_file(dst) == before
    p = rdf("copy", "--overwrite", disk, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(disk, dst)


def test_missing_remote_source(tmp_path):
    p = rdf("copy", "localhost:%s" % (tmp_path / "nope.img"),
            tmp_path / "out.img")
    assert p.returncode == 4
    assert b"localhost:" in p.stderr
    assert not os.path.exists(tmp_path / "out.img")


def serve_wrapper(tmp_path, *serve_args):
    w = tmp_path / "serve-confined"
    w.write_text("#!/bin/sh\nshift\nexec %s serve %s \"$@\"\n" % (
        DISKFERRY, " ".join("'%s'" % a for a in serve_args)))
    w.chmod(0o755)
    return str(w)


def test_confinement_root_and_allow(tmp_path, disk):
    root = tmp_path / "root"
    (root / "vms").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "vms" / "escape")
    w = serve_wrapper(tmp_path, "--root", str(root), "--allow",
                      str(root / "vms"))
    ok = rdf("copy", disk, "localhost:vms/ok.img", remote_path=w)
    assert ok.returncode == 0, ok.stderr
    assert files_equal(disk, root / "vms" / "ok.img")
    for target, why in [("../outside/x.img", b"outside the served root"),
                        ("vms/../../outside/x.img",
                         b"outside the served root"),
                        ("vms/escape/x.img", b"outside the served root"),
                        (str(outside / "x.img"), b"outside the served root"),
                        ("other.img", b"not under any --allow")]:
        p = rdf("copy", disk, "localhost:%s" % target, remote_path=w)
        assert p.returncode == 3, (target, p.stderr)
        assert why in p.stderr, p.stderr
    assert os.listdir(outside) == []
    assert not os.path.exists(root / "other.img")
    # reading is confined to the root too
    p = rdf("copy", "localhost:../outside/../src.img", tmp_path / "r.img",
            remote_path=w)
    assert p.returncode == 3, p.stderr


def test_loop_devices_both_ways(tmp_path, disk):
    backing = tmp_path / "loop.img"
    with open(backing, "wb") as f:
        f.truncate(os.path.getsize(disk))
    with loop_device(backing) as dev:
        p = rdf("copy", "--overwrite", disk, "localhost:%s" % dev)
        assert p.returncode == 0, p.stderr
        assert sha256_file(dev) == sha256_file(disk)
        out = tmp_path / "from-loop.img"
        p = rdf("copy", "localhost:%s" % dev, out)
        assert p.returncode == 0, p.stderr
        assert files_equal(disk, out)


def children(pid):
    """All descendants of pid (from /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    for c in f.read().split():
                        out.append(int(c))
                        todo.append(int(c))
        except OSError:
            pass
    return out


def serve_pid(client_pid):
    for c in children(client_pid):
        try:
            with open("/proc/%d/cmdline" % c, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[0].endswith(b"diskferry") and \
                argv[1] == b"serve":
            return c
    return None


def running(pid):
    """pid exists and is no zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_gone(pids, timeout=10):
    """Wait until the processes pids (orphans of a killed client: the
    shim and serve, which commit and exit) have exited."""
    t0 = time.time()
    while any(running(p) for p in pids) and time.time() - t0 < timeout:
        time.sleep(0.02)


def wait_for_journal(jpath, timeout=20):
    t0 = time.time()
    while time.time() - t0 < timeout:
        # a range committed (a line of two numbers), not just a mark
        if os.path.exists(jpath) and any(
                l[:1].isdigit() for l in open(jpath).read().splitlines()[1:]):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("victim,direction", [
    ("client", "to"),
    pytest.param("client", "from", marks=pytest.mark.slow_once),
    pytest.param("server", "to", marks=pytest.mark.slow_once),
    ("server", "from"),
])
def test_kill_and_resume(tmp_path, victim, direction):
    """kill -9 of either side mid-transfer (slowed by --bwlimit), then
    --resume: identical, verified, fewer bytes on the wire.  The
    receiving side (serve for "to", the client for "from") keeps the
    partial file and its journal."""
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(24 << 20))
    dst = tmp_path / "dst.img"
    partial = tmp_path / ".dst.img.diskferry-partial"
    jpath = str(partial) + ".diskferry-resume"
    a, b = (str(src), "localhost:%s" % dst) if direction == "to" else \
        ("localhost:%s" % src, str(dst))
    proc = subprocess.Popen(
        [DISKFERRY, "copy", "--rsh", RSH, "--remote-path", DISKFERRY,
         "--bwlimit", "6M", "--compress", "none", a, b],
        stderr=subprocess.PIPE)
    try:
        assert wait_for_journal(jpath), "no journal entry appeared"
        kids = children(proc.pid)
        if victim == "client":
            os.kill(proc.pid, signal.SIGKILL)
        else:
            pid = serve_pid(proc.pid)
            assert pid
            os.kill(pid, signal.SIGKILL)
        rc = proc.wait(timeout=30)
        assert rc == (-9 if victim == "client" else 6)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_gone(kids)     # the orphaned server commits and exits
    # nothing half-written under the name given; the partial file stays
    assert not os.path.exists(dst)
    assert os.path.exists(partial)
    r = report(rdf("copy", "--json", "--resume", "--compress", "none", a,
                   b))
    assert files_equal(src, dst)
    assert r["verified"]
    assert r["skipped"]["resumed"] > 0
    assert r["remote"]["bytes_wire"] < os.path.getsize(src)
    assert not os.path.exists(jpath)
    assert not os.path.exists(partial)


def test_resume_without_journal_needs_overwrite(tmp_path, disk):
    dst = tmp_path / "dst.img"
    dst.write_bytes(b"x" * 4096)
    p = rdf("copy", "--resume", disk, "localhost:%s" % dst)
    assert p.returncode == 3
    assert b"refusing to write" in p.stderr
    assert dst.read_bytes() == b"x" * 4096


def slow_copy(a, b, jpath, sig, *extra):
    """copy A B at 6 MB/s; once the journal at jpath has a range, send
    sig to the client; returns (exit status, stderr)."""
    proc = subprocess.Popen(
        [DISKFERRY, "copy", "--rsh", RSH, "--remote-path", DISKFERRY,
         "--bwlimit", "6M", "--compress", "none", *extra, a, b],
        stderr=subprocess.PIPE)
    if not wait_for_journal(jpath):
        signal_and_wait(proc, signal.SIGKILL)
        assert False, "no journal entry appeared"
    kids = children(proc.pid)
    err = signal_and_wait(proc, sig)
    wait_gone(kids)     # the orphaned server commits and exits
    return proc.returncode, err


def interrupt_push(src, dst, *extra):
    """kill -9 a copy SRC localhost:DST midway; returns the journal."""
    jpath = str(dst) + ".diskferry-resume" if os.path.exists(dst) else \
        str(dst.parent / (".%s.diskferry-partial.diskferry-resume" %
                          dst.name))
    slow_copy(str(src), "localhost:%s" % dst, jpath, signal.SIGKILL, *extra)
    return jpath


def test_resume_refuses_a_reused_destination(tmp_path):
    """The reproducer: an interrupted --overwrite, the destination then
    reused for new data: --resume (with or without --overwrite) refuses
    and leaves the new data alone."""
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(24 << 20))
    dst = tmp_path / "dst.img"
    dst.write_bytes(os.urandom(24 << 20))
    interrupt_push(src, dst, "--overwrite")
    with open(dst, "r+b") as f:         # same inode, new contents
        f.write(os.urandom(24 << 20))
    before = sha256_file(dst)
    p = rdf("copy", "--resume", src, "localhost:%s" % dst)
    assert p.returncode == 3, p.stderr
    assert b"refusing" in p.stderr, p.stderr
    p = rdf("copy", "--resume", "--overwrite", src, "localhost:%s" % dst)
    assert p.returncode == 3, p.stderr
    assert b"refusing to resume: DST changed since the interrupted copy" \
        in p.stderr, p.stderr
    assert sha256_file(dst) == before


def test_resume_of_an_overwrite(tmp_path):
    """Resuming an interrupted overwrite: what the journal lists is ours,
    the old data beyond it still needs --overwrite, as the first run."""
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(24 << 20))
    dst = tmp_path / "dst.img"
    dst.write_bytes(os.urandom(24 << 20))
    jpath = interrupt_push(src, dst, "--overwrite")
    p = rdf("copy", "--resume", src, "localhost:%s" % dst)
    assert p.returncode == 3, p.stderr
    assert b"give --overwrite" in p.stderr
    r = report(rdf("copy", "--json", "--resume", "--overwrite", src,
                   "localhost:%s" % dst))
    assert r["verified"] and r["skipped"]["resumed"] > 0
    assert files_equal(src, dst)
    assert not os.path.exists(jpath)


def test_resume_of_a_zeroed_destination_needs_no_overwrite(tmp_path):
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(24 << 20))
    dst = tmp_path / "dst.img"
    with open(dst, "wb") as f:
        f.truncate(24 << 20)
    interrupt_push(src, dst)
    r = report(rdf("copy", "--json", "--resume", src, "localhost:%s" % dst))
    assert r["verified"] and r["skipped"]["resumed"] > 0
    assert files_equal(src, dst)


def assert_zeros_but(path, start, but):
    """From start to the end path holds zeros but for the bytes of but
    ({offset: bytes}); read a chunk at a time (500 MiB in one bytes
    object takes seconds)."""
    size = os.path.getsize(path)
    want = {o: b for o, b in but.items() if start <= o and o + len(b) <= size}
    assert len(want) == len(but), (but, start, size)
    chunk = 4 << 20
    zeros = bytes(chunk)
    with open(path, "rb") as f:
        f.seek(start)
        off = start
        while off < size:
            got = f.read(min(chunk, size - off))
            exp = bytearray(zeros[:len(got)])
            for o, b in want.items():
                if o < off + len(got) and off < o + len(b):
                    lo, hi = max(o, off), min(o + len(b), off + len(got))
                    exp[lo - off:hi - off] = b[lo - o:hi - o]
            assert got == exp, "unexpected bytes in [%d, %d)" % (
                off, off + len(got))
            off += len(got)


def test_resume_guards_past_the_journal_mark(tmp_path):
    """A resumed copy without --overwrite is guarded again past the
    journal's high-water mark (journal.h invariant 8): data that
    appeared there since the interruption is refused, not zeroed (was:
    a resume got only the sampled check, and the zero runs of the
    source wiped the byte, exit 0)."""
    src = tmp_path / "src.img"
    with open(src, "wb") as f:
        f.write(os.urandom(24 << 20))
        f.truncate(512 << 20)
    dst = tmp_path / "dst.img"
    with open(dst, "wb") as f:      # written zeros: no hole tells it apart
        for _ in range(512):
            f.write(bytes(1 << 20))
    jpath = interrupt_push(src, dst)
    marks = [int(l.split()[1]) for l in open(jpath).read().splitlines()
             if l.startswith("w ")]
    assert marks and max(marks) < 500 << 20, marks
    at = (500 << 20) + 12345
    write_at(dst, at, b"x")
    p = rdf("copy", "--resume", src, "localhost:%s" % dst)
    assert p.returncode == 3, p.stderr
    assert ("refusing to write: holds data at offset %d (found while "
            "copying" % at).encode() in p.stderr, p.stderr
    # below the mark the resumed copy went on (its own ranges); past it
    # nothing was written: zeros and the byte that was found
    hw = max(marks)
    assert_zeros_but(dst, hw, {at: b"x"})
    r = report(rdf("copy", "--json", "--resume", "--overwrite", src,
                   "localhost:%s" % dst))
    assert r["verified"]
    assert files_equal(src, dst)


def test_resume_after_the_source_changed(tmp_path):
    """A source changed since the interrupted copy: --resume says so
    (exit 3) instead of failing verification (exit 7) forever; without
    --resume the copy starts over and succeeds."""
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(24 << 20))
    dst = tmp_path / "dst.img"
    interrupt_push(src, dst)
    with open(src, "r+b") as f:
        f.seek(20 << 20)
        f.write(os.urandom(4096))
    p = rdf("copy", "--resume", src, "localhost:%s" % dst)
    assert p.returncode == 3, p.stderr
    assert b"the source changed since the interrupted copy; run without " \
        b"--resume" in p.stderr, p.stderr
    assert not os.path.exists(dst)
    p = rdf("copy", src, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)


def test_resume_from_a_changed_remote_source(tmp_path):
    """A remote source is known by path and size only: when it changed
    where the interrupted copy had already been, the resumed copy fails
    verification once, says why, and drops its journal, so the next run
    copies afresh instead of failing the same way forever."""
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(24 << 20))
    dst = tmp_path / "dst.img"
    jpath = str(tmp_path / ".dst.img.diskferry-partial.diskferry-resume")
    slow_copy("localhost:%s" % src, str(dst), jpath, signal.SIGKILL)
    with open(src, "r+b") as f:         # inside what was already copied
        f.write(os.urandom(4096))
    a, b = "localhost:%s" % src, str(dst)
    p = rdf("copy", "--resume", a, b)
    assert p.returncode == 7, p.stderr
    assert b"the source, or what the interrupted copy wrote, changed " \
        b"since: run without --resume" in p.stderr, p.stderr
    p = rdf("copy", "--resume", a, b)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)


def journal_done(jpath):
    """Bytes a resume journal lists as written (its ranges, merged)."""
    try:
        lines = open(jpath).read().splitlines()[1:]
    except OSError:
        return 0
    rs = []
    for ln in lines:
        f = ln.split()
        if len(f) == 2 and f[0].isdigit() and f[1].isdigit():
            rs.append((int(f[0]), int(f[0]) + int(f[1])))
    total, end = 0, 0
    for a, b in sorted(rs):
        a = max(a, end)
        if b > a:
            total += b - a
            end = b
    return total


@pytest.mark.slow_once
@pytest.mark.parametrize("direction", ["to", "from"])
def test_resume_reads_only_what_is_missing(tmp_path, direction):
    """A copy of 64 MiB of random data killed about half way: --resume
    reads only the missing bytes (the journal is the plan's change
    source), not the whole source.  A push of a regular file takes the
    kept leaves' hashes from the journal (nothing read for the digest);
    a pull reads them on serve only to hash them, and serve reports its
    reads through DF_TEST_SERVE_STATS."""
    size = 64 << 20
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(size))
    dst = tmp_path / "dst.img"
    a, b = (str(src), "localhost:%s" % dst) if direction == "to" else \
        ("localhost:%s" % src, str(dst))
    stats = tmp_path / "serve-stats"
    env = dict(os.environ, DF_TEST_SERVE_STATS=str(stats))
    jpath, done = interrupt_half(a, b, tmp_path, size, env)
    missing = size - done
    r = report(rdf("copy", "--json", "--resume", "--compress", "none", a,
                   b, env=env))
    assert r["verified"]
    assert files_equal(src, dst)
    assert r["skipped"]["resumed"] == done
    if direction == "to":
        read, for_digest = r["bytes_read"], r["bytes_read_for_digest"]
    else:
        last = stats.read_text().splitlines()[-1].split()
        read, for_digest = (int(x.split("=")[1]) for x in last)
    print("size %d missing %d bytes_read %d bytes_read_for_digest %d" %
          (size, missing, read, for_digest))
    assert read <= missing + (2 << 20), (read, missing)
    assert read < size * 9 // 10
    assert for_digest == (0 if direction == "to" else size - read)
    assert r["remote"]["payload_bytes"] <= missing + (2 << 20)


def interrupt_half(a, b, tmp_path, size, env=None):
    """copy A B at 8 MB/s, kill -9 the client once the receiver's
    journal lists 40% of size; returns (journal path, bytes it lists)."""
    jpath = str(tmp_path / ".dst.img.diskferry-partial.diskferry-resume")
    proc = subprocess.Popen(
        [DISKFERRY, "copy", "--rsh", RSH, "--remote-path", DISKFERRY,
         "--bwlimit", "8M", "--compress", "none", a, b],
        stderr=subprocess.PIPE, env=env)
    t0 = time.time()
    while journal_done(jpath) < size * 2 // 5 and time.time() - t0 < 60 \
            and proc.poll() is None:
        time.sleep(0.05)
    kids = children(proc.pid)
    signal_and_wait(proc, signal.SIGKILL)
    wait_gone(kids)     # the orphaned server commits and exits
    done = journal_done(jpath)
    assert size // 5 <= done < size, done
    return jpath, done


def test_resume_push_of_a_device_reads_kept_leaves_to_hash_them(tmp_path):
    """A block device keeps its identity while written (an LV under a
    VM): the journal's leaf hashes are not trusted for it; the kept
    part is read to hash it, and the copy verifies."""
    size = 32 << 20
    img = tmp_path / "src.img"
    img.write_bytes(os.urandom(size))
    dst = tmp_path / "dst.img"
    with loop_device(img) as dev:
        a, b = dev, "localhost:%s" % dst
        _, done = interrupt_half(a, b, tmp_path, size)
        r = report(rdf("copy", "--json", "--resume", a, b))
    assert r["verified"] and files_equal(img, dst)
    assert r["bytes_read_for_digest"] >= done - (2 << 20)
    assert r["bytes_read"] + r["bytes_read_for_digest"] == size


@pytest.mark.slow_once
def test_resume_push_finds_a_corrupted_destination(tmp_path):
    """The journal's leaf hashes stand for the source, not for what the
    destination holds now: bytes flipped behind diskferry's back in the
    part already written (outside the sampled blocks) fail verification
    (exit 7)."""
    size = 64 << 20
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(size))
    dst = tmp_path / "dst.img"
    partial = tmp_path / ".dst.img.diskferry-partial"
    a, b = str(src), "localhost:%s" % dst
    jpath, done = interrupt_half(a, b, tmp_path, size)
    samples = []
    for ln in open(jpath).read().splitlines():
        f = ln.split()
        if f and f[0] == "s":
            samples.append((int(f[1]), int(f[1]) + int(f[2])))
    off = 1 << 20
    while any(s0 < off + 4096 and off < s1 for s0, s1 in samples):
        off += 1 << 20
    assert off + 4096 <= done
    with open(partial, "r+b") as f:
        f.seek(off)
        old = f.read(4096)
        f.seek(off)
        f.write(bytes(x ^ 0xff for x in old))
    p = rdf("copy", "--json", "--resume", a, b)
    assert p.returncode == 7, p.stderr
    assert b"verification failed" in p.stderr, p.stderr


@pytest.mark.parametrize("direction", [
    "to", pytest.param("from", marks=pytest.mark.slow_once)])
def test_ctrl_c_then_resume(tmp_path, direction):
    """Ctrl-C of a remote copy: exit 130, how far it got, --resume; the
    partial file and its journal stay, and --resume finishes the copy."""
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(24 << 20))
    dst = tmp_path / "dst.img"
    jpath = str(tmp_path / ".dst.img.diskferry-partial.diskferry-resume")
    a, b = (str(src), "localhost:%s" % dst) if direction == "to" else \
        ("localhost:%s" % src, str(dst))
    rc, err = slow_copy(a, b, jpath, signal.SIGINT)
    assert rc == 130, err
    assert b"diskferry: copy: interrupted: " in err, err
    assert b"written; run the same command with --resume to continue" \
        in err, err
    assert not os.path.exists(dst) and os.path.exists(jpath)
    r = report(rdf("copy", "--json", "--resume", a, b))
    assert r["verified"] and r["skipped"]["resumed"] > 0
    assert files_equal(src, dst)


def test_remote_dry_run_writes_nothing(tmp_path, disk):
    dst = tmp_path / "dst.img"
    p = rdf("copy", "--dry-run", disk, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr
    assert b"would write" in p.stdout
    assert os.listdir(tmp_path) == ["src.img"]
    busy = tmp_path / "busy.img"
    busy.write_bytes(b"data" * 1024)
    p = rdf("copy", "--dry-run", disk, "localhost:%s" % busy)
    assert p.returncode == 3


@pytest.mark.parametrize("mode,msg", [
    ("garbage", b"over the limit"),
    ("huge", b"over the limit"),
    ("truncated", b"connection closed by the remote side"),
    ("version", b"protocol version mismatch"),
    ("badwrite", b"does not decode"),
])
def test_hostile_peer(tmp_path, mode, msg):
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(1 << 20))
    rsh = "%s %s %s" % (PY, FAKE, mode)
    if mode == "badwrite":
        # the fake stays connected and silent after its bad block: the
        # client waits up to --timeout for the peer to explain (60 s by
        # default) before it reports the decode error
        out = tmp_path / "out.img"
        p = rdf("copy", "--timeout", "3", "localhost:/x", out, rsh=rsh)
        assert not os.path.exists(out)
    else:
        p = rdf("copy", src, "localhost:%s" % (tmp_path / "d.img"), rsh=rsh)
    assert p.returncode == 6, p.stderr
    assert msg in p.stderr, p.stderr
    assert len(p.stderr.splitlines()) == 1
    if mode == "version":
        assert b"1..1" in p.stderr and b"9..12" in p.stderr


@pytest.mark.parametrize("attack", [
    pytest.param("wrongkey", marks=pytest.mark.slow_once), "tamper"])
def test_tcp_attacks_refused(tmp_path, attack):
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(8 << 20))
    dst = tmp_path / "dst.img"
    # a stream that fails the key check is dropped (anyone may connect
    # to the port); serve gives up after --timeout and says why
    p = rdf("copy", "--transport", "tcp", "--streams", "1", "--compress",
            "none", "--timeout", "4", src, "localhost:%s" % dst,
            rsh="%s %s %s" % (PY, TAMPER, attack))
    assert p.returncode == 6, p.stderr
    assert b"authentication failed" in p.stderr
    if attack == "tamper" and os.path.exists(dst):
        # the frame carrying the flipped bit (at wire byte 200000, in the
        # first 1 MiB frame) was not written: that range is still zero
        with open(dst, "rb") as f:
            assert f.read(1 << 20) == b"\0" * (1 << 20)


# ---- a real sshd on 127.0.0.1 ----

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not os.path.exists("/usr/sbin/sshd") or not shutil.which("ssh"):
        pytest.skip("no sshd")
    d = tmp_path_factory.mktemp("sshd")
    port = free_port()
    opts = sshd_setup(d, "127.0.0.1", port,
                      os.environ["DISKFERRY_STATE_DIR"])
    cfg = d / "sshd_config"
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)],
                            stderr=subprocess.PIPE)
    rsh = "ssh -p %d %s" % (port, opts)
    try:
        ok = False
        for _ in range(50):
            if proc.poll() is not None:
                break
            r = subprocess.run(rsh.split() + ["127.0.0.1", "true"],
                               capture_output=True)
            if r.returncode == 0:
                ok = True
                break
            time.sleep(0.1)
        if not ok:
            pytest.skip("sshd did not start: %s" %
                        (proc.stderr.read1(4096) if proc.poll() is not None
                         else b"no login"))
        yield rsh
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow_once
@pytest.mark.parametrize("transport", ["ssh", "tcp"])
def test_real_ssh_both_ways(tmp_path, disk, sshd, transport):
    remote = tmp_path / "remote dir $x" / "vm.img"
    remote.parent.mkdir()
    r = report(rdf("copy", "--json", "--transport", transport, disk,
                   "root@127.0.0.1:%s" % remote, rsh=sshd))
    assert files_equal(disk, remote)
    assert r["remote"]["transport"] == transport
    back = tmp_path / "back.img"
    r = report(rdf("copy", "--json", "--transport", transport,
                   "127.0.0.1:%s" % remote, back, rsh=sshd))
    assert files_equal(disk, back)
    assert r["verified"]


def peak_rss_kib(argv):
    """Run argv; its exit code, its peak RSS in KiB (the largest of the
    process and of every descendant it waited for: serve, through the
    rsh shim) and its stderr.  Through a small Python that forks it: a
    process forked from this pytest, hundreds of MB by the end of the
    suite, would carry pytest's peak past its exec."""
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "sys.exit(p.returncode)\n")
    p = subprocess.run([PY, "-c", code] + argv, capture_output=True)
    kib = int(p.stdout.split()[-1]) if p.stdout.split() else -1
    return p.returncode, kib, p.stderr


@pytest.mark.skipif(SANITIZED, reason="under ASan the shadow memory and "
                    "quarantine are not the program's")
@pytest.mark.parametrize("direction", ["push", "pull"])
def test_memory_bounded_with_64_streams(tmp_path, direction):
    """At --streams 64 neither end passes 128 MiB: over more than 8
    streams a frame carries at most 256 KiB, the sender's jobs stay
    within 48 MiB and the reorder queue within 48 MiB (it was 240 MB
    pushing and 350 MB pulling)."""
    src = tmp_path / "src.img"
    with open(src, "wb") as f:
        for _ in range(12):
            f.write(os.urandom(8 << 20))
            f.write(b"text that compresses %d\n" * 200000)
    a, b = str(src), "localhost:%s" % (tmp_path / "dst.img")
    if direction == "pull":
        a, b = "localhost:%s" % src, str(tmp_path / "dst.img")
    rc, kib, err = peak_rss_kib(
        [DISKFERRY, "copy", "--rsh", RSH, "--remote-path", DISKFERRY,
         "--transport", "tcp", "--streams", "64", a, b])
    assert rc == 0, err
    assert files_equal(src, tmp_path / "dst.img")
    assert kib < 128 * 1024, kib
