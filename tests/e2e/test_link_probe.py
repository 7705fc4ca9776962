"""The link probe of `diskferry plan` (remote_probe, proto/probe.h),
through tests/tools/probe_dump over the rsh stand-ins: rsh_local.sh (the
pipe as fast as it goes) and rsh_slow.py (a relay that limits the rate
both ways, like a slow link)."""
import os
import time

import pytest

from conftest import BUILD, DISKFERRY, run

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE_DUMP = os.path.join(BUILD, "probe_dump")
RSH_LOCAL = os.path.join(HERE, "rsh_local.sh")
RSH_SLOW = os.path.join(HERE, "rsh_slow.py")
FEAT_PROBE = 1 << 18        # MSG_FEAT_PROBE (proto/msg.h)


def probe(budget, *opts, rsh=RSH_LOCAL, env=None):
    """Run probe_dump; returns (CompletedProcess, dict, wall seconds)."""
    e = dict(os.environ)
    e.update(env or {})
    t = time.monotonic()
    p = run([PROBE_DUMP, "--rsh", rsh, "--remote-path", DISKFERRY]
            + [str(o) for o in opts] + ["localhost", str(budget)],
            env=e, timeout=60)
    wall = time.monotonic() - t
    vals = {}
    for line in p.stdout.decode().splitlines():
        k, v = line.split(" ", 1)
        vals[k] = float(v)
    return p, vals, wall


def check_bounded(p, vals, wall, budget):
    assert p.returncode == 0, p.stderr.decode()
    assert 0 < vals["seconds"] <= budget * 1.1, vals
    assert wall <= budget + 1, (wall, vals)


def test_probe_over_the_pipe():
    p, v, wall = probe(2)
    check_bounded(p, v, wall, 2)
    assert v["streams"] == 1
    assert v["up"] > 0 and v["down"] > 0
    assert v["bytes_up"] > 0 and v["bytes_down"] > 0
    assert 0 < v["rtt"] < 0.05


@pytest.mark.parametrize("streams", [1, 3])
def test_probe_over_tcp_streams(streams):
    p, v, wall = probe(2, "--transport", "tcp", "--streams", streams)
    check_bounded(p, v, wall, 2)
    assert v["streams"] == streams
    assert v["up"] > 0 and v["down"] > 0
    assert 0 < v["rtt"] < 0.05


@pytest.mark.slow_once
@pytest.mark.parametrize("rate,budget,buffer", [
    (2000000, 1, 8192), (2000000, 4, 8192),
    (2500000, 4, 1000000),      # 20 Mbit/s, 0.4 s of buffers
])
def test_probe_on_a_slow_link(rate, budget, buffer):
    """A rate-limited link each way: both rates within 25%, and on
    time."""
    p, v, wall = probe(budget, rsh=RSH_SLOW,
                       env={"DF_SLOW_RATE": str(rate),
                            "DF_SLOW_BUFFER": str(buffer)})
    check_bounded(p, v, wall, budget)
    assert rate * 0.75 <= v["up"] <= rate * 1.25, v
    assert rate * 0.75 <= v["down"] <= rate * 1.25, v


@pytest.mark.slow_once
def test_probe_on_a_very_slow_link_stays_in_budget():
    """100 kB/s: the first step alone is most of a 1 s budget."""
    p, v, wall = probe(1, rsh=RSH_SLOW, env={"DF_SLOW_RATE": "100000"})
    check_bounded(p, v, wall, 1)
    assert 50000 <= v["up"] <= 150000, v


def test_old_serve_is_named():
    p, v, wall = probe(2, env={"DF_TEST_SERVE_MASK_FEATURES":
                               hex(FEAT_PROBE)})
    assert p.returncode == 6, p.stderr.decode()
    err = p.stderr.decode()
    assert "localhost" in err and "too old" in err
    assert "upgrade diskferry" in err
    assert not p.stdout


@pytest.mark.parametrize("transport", ["ssh", "tcp"])
def test_copy_after_probe(tmp_path, transport):
    """A job on the session after the probe (the TCP streams set up for
    the probe carry the copy)."""
    out = tmp_path / "out.img"
    p, v, wall = probe(0.5, "--transport", transport, "--then-write", out)
    assert p.returncode == 0, p.stderr.decode()
    assert v["written"] == 1 << 20
    assert out.read_bytes() == bytes(i * 7 % 251 for i in range(1 << 20))
