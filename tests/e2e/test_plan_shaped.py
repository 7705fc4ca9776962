"""diskferry plan over a link held to 20 Mbit/s (two namespaces, veth,
tbf, sshd in one of them): finishes in its budget, predicts the copy
within 30%, names the link as the bottleneck and says the link is far
below its interface's speed; with free blocks it predicts the saving."""
import json
import os
import shutil

import pytest

from conftest import DISKFERRY
from shaped_link import shaped_link
from test_fs_ext import make_fs
from test_plan import mixed_image

pytestmark = pytest.mark.slow_once


@pytest.fixture(scope="module")
def link(tmp_path_factory):
    with shaped_link(tmp_path_factory.mktemp("link")) as l:
        yield l


def plan(link, *args):
    p = link.run_a([DISKFERRY, "plan", "--json", "--rsh", link.rsh,
                    "--remote-path", DISKFERRY] + [str(a) for a in args])
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def copy(link, *args):
    p = link.run_a([DISKFERRY, "copy", "--json", "--rsh", link.rsh,
                    "--remote-path", DISKFERRY] + [str(a) for a in args])
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def test_shaped_link_prediction(link, tmp_path):
    src = tmp_path / "src.img"
    mixed_image(src, mib=64)
    dst = tmp_path / "dst.img"
    r = plan(link, src, "%s:%s" % (link.addr, dst))
    assert not dst.exists()
    assert r["seconds"] <= 10 + 2, r["seconds"]
    m = r["measured"]
    assert 1.5e6 < m["link_up"] < 3.5e6, m      # 20 Mbit/s = 2.5 MB/s
    by = {s["name"]: s for s in r["strategies"]}
    default = by["plain, zstd"]                 # what copy does unasked
    assert default["bottleneck"] == "link"
    assert [s for s in r["strategies"] if s["recommended"]][0][
        "bottleneck"] == "link"
    if m["interface_speed"] > 0:
        assert any("a shaper or a slow route is in the way" in n
                   for n in r["notes"]), r["notes"]
    rep = copy(link, src, "%s:%s" % (link.addr, dst))
    ratio = default["predicted_seconds"] / rep["seconds"]
    assert 0.7 <= ratio <= 1.3, (default, rep["seconds"])
    # the copy after a plan starts from a prediction of its own
    assert rep["predicted_seconds"] is not None
    assert 0.5 <= rep["predicted_seconds"] / rep["seconds"] <= 1.5


def test_shaped_link_fs_aware_saving(link, tmp_path):
    made, _ = make_fs(tmp_path, "ext4", [])
    img = str(tmp_path / "fs.img.sparse")
    shutil.copyfile(made, img)
    os.sync()
    dst = tmp_path / "dst.img"
    r = plan(link, "--budget", "6", img, "%s:%s" % (link.addr, dst))
    by = {s["name"]: s for s in r["strategies"]}
    fa, plain = by["fs-aware, zstd"], by["plain, zstd"]
    assert r["free_bytes"] > 0
    assert fa["bytes_sent"] < plain["bytes_sent"]
    assert fa["predicted_seconds"] < plain["predicted_seconds"]
    assert fa["recommended"] or by["fs-aware, uncompressed"]["recommended"]
    rep = copy(link, "--fs-aware", img, "%s:%s" % (link.addr, dst))
    assert 0.6 <= fa["predicted_seconds"] / rep["seconds"] <= 1.4, \
        (fa, rep["seconds"])
