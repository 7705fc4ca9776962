"""Progress for programs: --progress=json (JSON lines on stderr),
--progress-fd N (JSON lines on a file descriptor), a progress line on
SIGUSR1; a reader that leaves never fails the copy."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import DISKFERRY, VG, df

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1 << 20


def json_lines(text):
    """The JSON progress lines of text (other lines are messages)."""
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def check_lines(lines, size):
    """One a second at most, bytes_done never going back, the last one
    done at the disk's size."""
    assert lines, "no progress lines"
    keys = {"time", "bytes_done", "bytes_total", "bytes_sent",
            "bytes_skipped", "rate", "eta", "percent", "done"}
    for l in lines:
        assert set(l) == keys, l
        assert l["bytes_total"] == size
    # times are printed to the millisecond: two lines a second apart may
    # differ by 0.999 once rounded
    for a, b in zip(lines, lines[1:-1]):
        assert b["time"] - a["time"] >= 0.999, (a, b)
    assert lines[0]["time"] >= 0.999 or len(lines) == 1
    done = [l["bytes_done"] for l in lines]
    assert done == sorted(done)
    assert [l["done"] for l in lines] == [False] * (len(lines) - 1) + [True]
    last = lines[-1]
    assert last["bytes_done"] == size and last["percent"] == 100.0
    assert last["eta"] == 0.0


@pytest.mark.slow_once
def test_json_lines_on_stderr_and_fd(tmp_path):
    """A remote copy held to 4 MiB/s (~5 s): the same JSON lines on
    stderr (--progress=json) and on --progress-fd; no bar drawn."""
    src = tmp_path / "src.img"
    size = 20 * MIB
    src.write_bytes(os.urandom(size))
    dst = tmp_path / "dst.img"
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            VG + [DISKFERRY, "copy", "--progress=json", "--progress-fd",
                  str(w), "--compress", "none", "--bwlimit", "4M",
                  "--rsh", os.path.join(HERE, "rsh_local.sh"),
                  "--remote-path", DISKFERRY, str(src),
                  "localhost:%s" % dst],
            pass_fds=(w,), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(w)
        w = -1
        with os.fdopen(r, "rb") as f:
            r = -1
            fd_text = f.read().decode()
        out, err = proc.communicate(timeout=120)
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    err = err.decode()
    assert proc.returncode == 0, err
    assert src.read_bytes() == dst.read_bytes()
    assert "\r" not in err and "\033" not in err      # no bar
    lines = json_lines(err)
    check_lines(lines, size)
    assert len(lines) >= 3, lines       # two a second apart, and the last
    assert json_lines(fd_text) == lines
    assert fd_text.endswith("\n") and all(
        l.startswith("{") for l in fd_text.splitlines())
    # the wire was used, nothing skipped (random data)
    assert lines[-1]["bytes_sent"] > 0 and lines[-1]["bytes_skipped"] == 0


def feed(proc, chunks, pause, after=None):
    """Write chunks (bytes) to proc's stdin, pause seconds apart; call
    after(i) after chunk i; close stdin at the end."""
    try:
        for i, c in enumerate(chunks):
            proc.stdin.write(c)
            proc.stdin.flush()
            if after:
                after(i)
            time.sleep(pause)
    except BrokenPipeError:
        pass
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass


def finish(proc):
    """Wait for proc, whose stdin feed() closed; its stderr (bytes)."""
    proc.stdout.read()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode >= 0, err
    return err


def test_reader_that_leaves_does_not_fail_the_copy(tmp_path):
    """A stream fed slowly (~3 s); the program reading --progress-fd
    takes one line and closes the pipe: the copy goes on and succeeds
    (no SIGPIPE death, no error)."""
    data = os.urandom(12 * MIB)
    dst = tmp_path / "dst.img"
    r, w = os.pipe()
    proc = subprocess.Popen(
        VG + [DISKFERRY, "copy", "--progress-fd", str(w), "-", str(dst)],
        pass_fds=(w,), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    os.close(w)
    chunks = [data[i:i + MIB] for i in range(0, len(data), MIB)]
    t = threading.Thread(target=feed, args=(proc, chunks, 0.25))
    t.start()
    with os.fdopen(r, "rb") as f:
        first = f.readline()
    # the pipe is closed now; more lines would meet EPIPE
    t.join(60)
    err = finish(proc)
    assert proc.returncode == 0, err.decode()
    assert err == b""
    assert dst.read_bytes() == data
    l = json.loads(first)
    assert l["done"] is False and l["time"] >= 0.999
    # a stream: no total, so no percentage or ETA
    assert l["bytes_total"] is None and l["eta"] is None
    assert l["percent"] is None


def test_sigusr1_prints_a_line(tmp_path):
    """SIGUSR1 (as qemu-img): one progress line on stderr, with no
    progress asked for; the copy goes on."""
    data = os.urandom(6 * MIB)
    dst = tmp_path / "dst.img"
    proc = subprocess.Popen(
        VG + [DISKFERRY, "copy", "--no-progress", "-", str(dst)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    chunks = [data[i:i + MIB] for i in range(0, len(data), MIB)]

    def after(i):
        # a 1 MiB write into a pipe returns only once diskferry reads
        # it: by then it is in the job, the handler installed
        if i == 1:
            os.kill(proc.pid, signal.SIGUSR1)

    t = threading.Thread(target=feed, args=(proc, chunks, 0.1, after))
    t.start()
    t.join(60)
    err = finish(proc)
    err = err.decode()
    assert proc.returncode == 0, err
    assert dst.read_bytes() == data
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("copy: ") and "MiB" in lines[0], err
    assert "/s" in lines[0]


def test_sync_and_verify_write_json_lines(tmp_path):
    """sync and verify take the same options; a short job still ends
    with its done line."""
    src = tmp_path / "src.img"
    size = 3 * MIB
    src.write_bytes(os.urandom(size))
    dst = tmp_path / "dst.img"
    p = df("sync", "--progress=json", src, dst)
    assert p.returncode == 0, p.stderr
    check_lines(json_lines(p.stderr.decode()), size)
    p = df("verify", "--progress=json", src, dst)
    assert p.returncode == 0, p.stderr
    check_lines(json_lines(p.stderr.decode()), size)


@pytest.mark.parametrize("args,msg", [
    (["--progress-fd", "9"], "--progress-fd 9: not an open file "
     "descriptor"),
    (["--progress-fd", "x"], "--progress-fd: expected a number from 0 to "
     "2147483647, got 'x'"),
    (["--progress=yes"], "--progress: expected bar or json, got 'yes'"),
    (["--json", "--progress-fd", "1"], "--progress-fd 1: stdout carries "
     "the JSON report"),
])
def test_usage_errors(tmp_path, args, msg):
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(MIB))
    dst = tmp_path / "dst.img"
    p = df("copy", *args, src, dst)         # fd 9 is closed in the child
    assert p.returncode == 2, p.stderr
    assert p.stderr.decode().splitlines() == [
        "diskferry: copy: " + msg,
        "diskferry: try 'diskferry copy --help'"]
    assert not dst.exists()


def test_progress_fd_read_only_and_stdout_data(tmp_path):
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(MIB))
    r, w = os.pipe()
    try:
        p = subprocess.run([DISKFERRY, "copy", "--progress-fd", str(r),
                            str(src), str(tmp_path / "d")],
                           pass_fds=(r,), capture_output=True, timeout=60)
    finally:
        os.close(r)
        os.close(w)
    assert p.returncode == 2
    assert b"--progress-fd %d: not open for writing" % r in p.stderr
    # DST - : stdout holds the data
    p = df("copy", "--progress-fd", "1", src, "-")
    assert p.returncode == 2
    assert b"--progress-fd 1: stdout carries the data" in p.stderr
    # fd 2 is fine: JSON lines among the messages
    p = df("copy", "--progress-fd", "2", src, tmp_path / "d2")
    assert p.returncode == 0, p.stderr
    check_lines(json_lines(p.stderr.decode()), MIB)
