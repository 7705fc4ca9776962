"""Command line: --help, usage errors, strict numbers, exit codes."""
import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import threading
import time

import pytest

from conftest import DISKFERRY, ROOT, df


@pytest.mark.parametrize("cmd", ["info", "create", "copy", "verify"])
def test_help(cmd):
    p = df(cmd, "--help")
    assert p.returncode == 0
    assert p.stdout.startswith(b"usage: diskferry " + cmd.encode())
    assert p.stderr == b""


def test_top_help_and_unknown_command():
    p = df("--help")
    assert p.returncode == 0 and b"commands:" in p.stdout
    p = df("frobnicate")
    assert p.returncode == 2
    assert p.stderr == (b"diskferry: unknown command 'frobnicate'\n"
                        b"diskferry: try 'diskferry --help'\n")
    p = df()
    assert p.returncode == 2


@pytest.mark.parametrize("args,line", [
    (["copy", "a"], "expected SRC and DST"),
    (["copy", "--threads", "0", "a", "b"],
     "--threads: expected a number from 1 to 64, got '0'"),
    (["copy", "--threads", "4x", "a", "b"],
     "--threads: expected a number from 1 to 64, got '4x'"),
    (["copy", "--digest", "md5", "a", "b"],
     "--digest: unknown algorithm 'md5' (xxh128, sha256)"),
    (["copy", "-O", "vmdk9", "a", "b"], "-O: unknown format 'vmdk9'"),
    (["copy", "-c", "a", "b"], "-c compresses qcow2 output: give -O qcow2"),
    (["copy", "--parent", "noequals", "a", "b"],
     "--parent: expected CHILD=PARENT, got 'noequals'"),
    (["create", "--size", "4GB2", "x"],
     "--size: invalid size '4GB2' (examples: 4096, 64K, 20M, 1.5G)"),
    (["create", "--size", "-1", "x"],
     "--size: invalid size '-1' (examples: 4096, 64K, 20M, 1.5G)"),
    (["create", "--size", "", "x"],
     "--size: invalid size '' (examples: 4096, 64K, 20M, 1.5G)"),
    (["create", "--size", "0x10", "x"],
     "--size: invalid size '0x10' (examples: 4096, 64K, 20M, 1.5G)"),
    (["create", "x"], "--size is required"),
    (["create", "--size", "0", "x"], "--size: must be more than 0"),
    (["create", "--size", "1000", "x"],
     "--size 1000: not a multiple of 512 bytes"),
    (["create", "--size", "4097", "x"],
     "--size 4097: not a multiple of 512 bytes"),
    (["verify", "a"], "expected two disks A and B"),
    (["info"], "expected one IMAGE"),
    # the options of remote endpoints, parsed in one place for every
    # command that takes them
    (["copy", "--compress", "gzip", "a", "b"],
     "--compress: expected auto, zstd, zstd:1..19, lz4 or none, got 'gzip'"),
    (["copy", "--bwlimit", "100", "a", "b"],
     "--bwlimit: at least 1K per second"),
    (["copy", "--bwlimit", "1Q", "a", "b"],
     "--bwlimit: invalid size '1Q' (examples: 4096, 64K, 20M, 1.5G)"),
    (["copy", "--transport", "udp", "a", "b"],
     "--transport: expected ssh or tcp, got 'udp'"),
    (["copy", "--streams", "65", "a", "b"],
     "--streams: expected a number from 1 to 64, got '65'"),
    (["copy", "--timeout", "0", "a", "b"],
     "--timeout: expected a number from 1 to 86400, got '0'"),
    (["copy", "--resume", "a", "b"],
     "--resume, --transport and --bwlimit apply to a remote SRC or DST"),
    (["undo", "--timeout", "0", "j"],
     "--timeout: expected a number from 1 to 86400, got '0'"),
    (["undo", "--compress", "lz4", "j"],
     "unknown option or missing argument: --compress"),
    (["undo", "--dry-run", "host:j"],
     "--dry-run: not for a journal on another host"),
])
def test_usage_errors(args, line):
    p = df(*args)
    assert p.returncode == 2, p.stderr
    assert p.stderr.decode() == "diskferry: %s: %s\ndiskferry: try " \
        "'diskferry %s --help'\n" % (args[0], line, args[0])


@pytest.mark.parametrize("args,line", [
    (["info", "--bogus", "x"], "unknown option or missing argument: --bogus"),
    (["copy", "-Z", "a", "b"], "unknown option or missing argument: -Z"),
    (["create", "x", "--size"],
     "unknown option or missing argument: --size"),
])
def test_unknown_options_one_line(args, line):
    p = df(*args)
    assert p.returncode == 2
    assert p.stderr.decode() == "diskferry: %s: %s\ndiskferry: try " \
        "'diskferry %s --help'\n" % (args[0], line, args[0])


def progress_on_pty(argv, cols, feed=None, env=None):
    """Run argv with stderr on a terminal `cols` columns wide (stdin a
    pipe fed by feed(pipe)); returns what the terminal showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols,
                                                       0, 0))
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=slave, env=env)
    os.close(slave)
    out = []

    def reader():
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            out.append(chunk)
    t = threading.Thread(target=reader)
    t.start()
    if feed:
        feed(p.stdin)
    p.stdin.close()
    p.stdout.read()
    assert p.wait(timeout=120) == 0
    t.join(timeout=10)
    os.close(master)
    return b"".join(out).decode(errors="replace")


def visible_lines(shown):
    """Each redraw of the progress line, escape codes removed."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", shown)
    return [x for x in re.split(r"[\r\n]+", text) if x]


def test_progress_fits_a_narrow_terminal(tmp_path):
    """Issue 14 item 15: the progress line is built to the terminal's
    width (40 columns here) and never wraps."""
    dst = tmp_path / "out.img"

    def slowly(pipe):
        for _ in range(30):
            pipe.write(os.urandom(64 << 10))
            pipe.flush()
            time.sleep(0.1)
    shown = progress_on_pty([DISKFERRY, "copy", "--progress", "-", str(dst)],
                            40, slowly)
    lines = visible_lines(shown)
    assert any("copy:" in x and "/s" in x for x in lines), shown
    for x in lines:
        assert len(x) <= 40, (len(x), x)


def test_cli_reaches_the_core_only_through_the_job_api():
    """src/cli/ turns options into a job spec and prints the report: it
    includes no destination, safety check or wire protocol, but for
    serve, which is the far side of the protocol itself."""
    cli = os.path.join(ROOT, "src", "cli")
    found = []
    for name in sorted(os.listdir(cli)):
        with open(os.path.join(cli, name)) as f:
            for line in f:
                m = re.match(r'#include "((proto|safety|transport)/[^"]+)"',
                             line)
                if m:
                    found.append((name, m.group(1)))
    assert found == [("cmd_serve.c", "proto/serve.h")]
