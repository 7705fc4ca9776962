"""A shaped link for tests: two network namespaces this test creates,
joined by a veth pair, the sender's side held to RATE by tc tbf, and an
sshd in the receiving namespace.  Commands run on the sending side
through `ip netns exec`.  Everything is removed at the end; where
namespaces cannot be made the test is skipped, saying so."""
import contextlib
import os
import shutil
import subprocess
import time

import pytest

from conftest import sshd_setup


def _sh(*argv, check=True):
    p = subprocess.run(argv, capture_output=True)
    if check and p.returncode:
        raise RuntimeError("%s: %s" % (" ".join(argv), p.stderr.decode()))
    return p


class Link:
    def __init__(self, a, b, addr, rsh):
        self.a, self.b, self.addr, self.rsh = a, b, addr, rsh

    def run_a(self, argv, **kw):
        """Run argv in the sending namespace."""
        return subprocess.run(["ip", "netns", "exec", self.a] + argv,
                              capture_output=True, **kw)


@contextlib.contextmanager
def shaped_link(tmp, rate="20mbit"):
    if os.geteuid() != 0 or not shutil.which("ip") or \
            not shutil.which("tc") or not os.path.exists("/usr/sbin/sshd"):
        pytest.skip("a shaped link needs root, iproute2 and sshd")
    tag = "df%d" % os.getpid()
    a, b = tag + "a", tag + "b"
    va, vb = tag + "A", tag + "B"
    proc = None
    try:
        try:
            _sh("ip", "netns", "add", a)
            _sh("ip", "netns", "add", b)
            _sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        except RuntimeError as e:
            pytest.skip("network namespaces cannot be made here: %s" % e)
        _sh("ip", "link", "set", va, "netns", a)
        _sh("ip", "link", "set", vb, "netns", b)
        _sh("ip", "-n", a, "addr", "add", "169.254.78.1/24", "dev", va)
        _sh("ip", "-n", b, "addr", "add", "169.254.78.2/24", "dev", vb)
        for ns, dev in ((a, va), (b, vb)):
            _sh("ip", "-n", ns, "link", "set", dev, "up")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "netns", "exec", a, "tc", "qdisc", "add", "dev", va,
            "root", "tbf", "rate", rate, "burst", "32kb", "latency",
            "400ms")
        d = tmp / "sshd"
        d.mkdir()
        opts = sshd_setup(d, "169.254.78.2", 22,
                          os.environ.get("DISKFERRY_STATE_DIR", str(d)))
        proc = subprocess.Popen(["ip", "netns", "exec", b, "/usr/sbin/sshd",
                                 "-D", "-e", "-f", str(d / "sshd_config")],
                                stderr=subprocess.PIPE)
        rsh = "ssh " + opts
        link = Link(a, b, "169.254.78.2", rsh)
        for _ in range(50):
            if link.run_a(rsh.split() + [link.addr, "true"]).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.skip("sshd in the namespace did not start")
        yield link
    finally:
        if proc:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        _sh("ip", "netns", "del", a, check=False)
        _sh("ip", "netns", "del", b, check=False)
