"""info's partitions and filesystems, and `info --map` / `--map=svg FILE`
(src/cli/info_fs.c), on a GPT disk built with sgdisk holding an ext4
made by mke2fs -d (some files then deleted with debugfs) and a swap
area: the listing against sgdisk and dumpe2fs, the map's classes
against where the files are, totals against the disk size, the SVG
against an XML parser."""
import json
import os
import random
import shutil
import subprocess
import xml.dom.minidom

import pytest

from conftest import DISKFERRY, df

PATH = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
MiB = 1 << 20
SIZE = 48 * MiB
P1_OFF, P1_LEN = 1 * MiB, 32 * MiB
P2_OFF, P2_LEN = 33 * MiB, 8 * MiB
LINUX = "0fc63daf-8483-4772-8e79-3d69d8477de4"
SWAP = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"


def tool(name):
    return shutil.which(name, path=PATH)


for _t in ("sgdisk", "mke2fs", "debugfs", "dumpe2fs", "mkswap"):
    if not tool(_t):
        pytestmark = pytest.mark.skip(reason="%s not installed" % _t)


def sh(*argv):
    p = subprocess.run([tool(argv[0])] + [str(a) for a in argv[1:]],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, (argv, p.stderr.decode())
    return p.stdout.decode()


def put(disk, off, src):
    with open(src, "rb") as f, open(disk, "r+b") as d:
        d.seek(off)
        d.write(f.read())


def ext4(tmp, recovery=False):
    """The ext4 of partition 1: six random files, two deleted."""
    rnd = random.Random(18)
    src = tmp / "src"
    src.mkdir(exist_ok=True)
    for i in range(1, 7):
        (src / ("f%d" % i)).write_bytes(rnd.randbytes(i * 900 << 10))
    fs = tmp / "p1.img"
    with open(fs, "wb") as f:
        f.truncate(P1_LEN)
    sh("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", src, fs)
    for name in ("f2", "f5"):
        sh("debugfs", "-w", "-R", "rm /%s" % name, fs)
    if recovery:
        sh("debugfs", "-w", "-R", "feature needs_recovery", fs)
    return fs


def dumpe2fs_used(fs):
    h = {}
    for ln in sh("dumpe2fs", "-h", fs).splitlines():
        k, _, v = ln.partition(":")
        h[k.strip()] = v.strip()
    bs = int(h["Block size"])
    return (int(h["Block count"]) - int(h["Free blocks"])) * bs


def make_disk(tmp, recovery=False):
    disk = tmp / ("disk%s.img" % ("-rec" if recovery else ""))
    with open(disk, "wb") as f:
        f.truncate(SIZE)
    sh("sgdisk", "-n1:2048:+32M", "-t1:8300", "-n2:0:+8M", "-t2:8200", disk)
    fs = ext4(tmp, recovery)
    put(disk, P1_OFF, fs)
    sw = tmp / "sw.img"
    with open(sw, "wb") as f:
        f.truncate(P2_LEN)
    sh("mkswap", sw)
    put(disk, P2_OFF, sw)
    return disk, fs


@pytest.fixture
def disk(tmp_path):
    return make_disk(tmp_path)


def info_json(path):
    p = df("info", "--json", path)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def check_listing(parts, used):
    assert [(p["number"], p["type"], p["offset"], p["size"],
             p["filesystem"], p["trusted"]) for p in parts] == [
        (1, "gpt " + LINUX, P1_OFF, P1_LEN, "ext4", True),
        (2, "gpt " + SWAP, P2_OFF, P2_LEN, "swap", True)]
    assert parts[0]["used_bytes"] == used
    assert 0 < parts[1]["used_bytes"] <= 64 << 10


def test_info_lists_partitions(disk):
    path, fs = disk
    j = info_json(path)
    check_listing(j["partitions"], dumpe2fs_used(fs))
    assert "copied_whole" not in j["partitions"][0]
    assert j["fs_free_bytes"] > 0
    p = df("info", path)
    assert p.returncode == 0
    out = p.stdout.decode()
    assert ("partition 1: offset %d, size 32.0 MiB, gpt %s, ext4, used "
            % (P1_OFF, LINUX)) in out
    assert ("partition 2: offset %d, size 8.0 MiB, gpt %s, swap, used "
            % (P2_OFF, SWAP)) in out


def test_qcow2_lists_the_same(disk, tmp_path):
    path, _ = disk
    q = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(path), str(q)],
                   check=True)
    assert info_json(q)["partitions"] == info_json(path)["partitions"]


def test_untrusted_ext4_shows_the_reason(tmp_path):
    path, _ = make_disk(tmp_path, recovery=True)
    j = info_json(path)
    p1 = j["partitions"][0]
    assert p1["trusted"] is False and "used_bytes" not in p1
    assert p1["copied_whole"] == "ext4 needs journal recovery"
    out = df("info", path).stdout.decode()
    assert "ext4, copied whole: ext4 needs journal recovery" in out


def test_raw_without_table_is_region_0(tmp_path):
    path = tmp_path / "plain.img"
    with open(path, "wb") as f:
        f.truncate(4 * MiB)
        f.write(os.urandom(100000))
    j = info_json(path)
    assert j["partitions"] == [{"number": 0, "type": "disk", "offset": 0,
                                "size": 4 * MiB, "filesystem": None,
                                "trusted": False}]
    assert "fs_free_bytes" not in j
    out = df("info", path).stdout.decode()
    assert "whole disk: offset 0, size 4.0 MiB, -\n" in out


def parse_map(out):
    """(cell size, the cell characters, {class: bytes})."""
    lines = out.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("map: "))
    cell = lines[i].split()[4:6]
    unit = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[cell[1].rstrip(",")]
    cell = int(float(cell[0]) * unit)
    cells = ""
    k = i + 1
    while "|" in lines[k] and not lines[k].startswith("legend"):
        row = lines[k]
        assert len(row) <= 80
        cells += row[row.index("|") + 1:row.rindex("|")]
        k += 1
    totals = {}
    for ln in lines[k + 1:]:
        w = ln.split()
        totals[w[0]] = int(ln[ln.index("(") + 1:].split()[0])
    return cell, cells, totals


def test_map_text(disk):
    path, fs = disk
    p = df("info", "--map", path)
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode()
    assert "\033" not in out            # not a terminal: no colour
    cell, cells, t = parse_map(out)
    assert cell >= 64 << 10 and len(cells) == -(-SIZE // cell)
    assert len(cells) <= 64 * 16
    assert t["data"] + t["zero"] + t["hole"] + t["free"] == SIZE
    assert t["total"] == SIZE
    assert t["free"] == info_json(path)["fs_free_bytes"]
    # partitions start where the table says
    assert cells[P1_OFF // cell] == "1" and cells[P2_OFF // cell] == "2"
    # free cells in the ext4 (the deleted files among them), data where
    # the files are, the swap area nearly all free
    p1 = cells[P1_OFF // cell + 1:(P1_OFF + P1_LEN) // cell]
    assert p1.count("-") >= 1 and p1.count("#") >= 1
    used = dumpe2fs_used(fs)
    assert abs(p1.count("#") * cell - used) <= 4 * cell + used // 10
    # every file left is in data cells
    for name in ("f1", "f3", "f4", "f6"):
        for ln in sh("debugfs", "-R", "stat /%s" % name, fs).splitlines():
            if "-" in ln and ln.strip().startswith("(") and ":" in ln:
                for part in ln.split(","):
                    rng = part.split(":")[-1].strip()
                    a, _, b = rng.partition("-")
                    if not a.isdigit():
                        continue
                    b = int(b or a)
                    mid = P1_OFF + (int(a) + b) // 2 * 4096
                    assert cells[mid // cell] in "#1", (name, rng)
    sw = cells[P2_OFF // cell + 1:(P2_OFF + P2_LEN) // cell]
    assert set(sw) == {"-"}
    assert "legend: # data  . zero or hole  - free in a filesystem" in out


def test_map_no_colour_with_no_color(disk):
    path, _ = disk
    if not shutil.which("script"):
        pytest.skip("script not installed")
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    cmd = "'%s' info --map '%s'" % (DISKFERRY, path)
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], env=env,
                       stdout=subprocess.PIPE)
    assert b"\033[33m#" in p.stdout
    env["NO_COLOR"] = "1"
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], env=env,
                       stdout=subprocess.PIPE)
    assert b"\033[" not in p.stdout


def test_map_svg(disk, tmp_path):
    path, _ = disk
    svg = tmp_path / "m.svg"
    p = df("info", "--map=svg", svg, path)
    assert p.returncode == 0, p.stderr.decode()
    subprocess.run(["/usr/bin/python3", "-c",
                    "import xml.dom.minidom,sys; "
                    "xml.dom.minidom.parse(sys.argv[1])", str(svg)],
                   check=True)
    doc = xml.dom.minidom.parse(str(svg))
    groups = [g for g in doc.getElementsByTagName("g")
              if g.getAttribute("class") == "legend"]
    assert len(groups) == 1
    legend = " ".join(t.firstChild.data for t in
                      groups[0].getElementsByTagName("text"))
    for word in ("data", "zero", "hole", "free in a filesystem", "total"):
        assert word in legend
    classes = {r.getAttribute("class")
               for r in doc.getElementsByTagName("rect")}
    assert {"data", "free"} <= classes
    marks = [t.firstChild.data for t in doc.getElementsByTagName("text")
             if t.getAttribute("class") == "partition"]
    assert "1" in marks and "2" in marks
    # the map's text totals are the SVG's
    _, _, t = parse_map(df("info", "--map", path).stdout.decode())
    assert "(%d bytes)" % t["free"] in legend


def test_map_svg_refuses_existing_file(disk, tmp_path):
    path, _ = disk
    svg = tmp_path / "m.svg"
    svg.write_text("mine")
    p = df("info", "--map=svg", svg, path)
    assert p.returncode == 3
    assert p.stderr.decode() == \
        "diskferry: info: %s: refusing to overwrite: it exists\n" % svg
    assert svg.read_text() == "mine"


def test_map_svg_not_left_on_error(tmp_path):
    svg = tmp_path / "m.svg"
    p = df("info", "--map=svg", svg, tmp_path / "missing.img")
    assert p.returncode == 4
    assert not svg.exists()


def test_map_usage_errors(disk):
    path, _ = disk
    for argv, msg in ((["--map=svg"], "--map=svg needs a FILE to write"),
                      (["--map=png", path], "--map=png: expected --map, "
                       "--map=text or --map=svg FILE"),
                      (["--json", "--map", path], "--map draws on the "
                       "terminal: with --json, use --map=svg FILE")):
        p = df("info", *argv)
        assert p.returncode == 2
        assert p.stderr.decode().splitlines()[0] == \
            "diskferry: info: " + msg


def test_map_without_filesystems(tmp_path):
    path = tmp_path / "plain.img"
    with open(path, "wb") as f:
        f.truncate(4 * MiB)
        f.seek(MiB)
        f.write(b"\1" * MiB)
    out = df("info", "--map", path).stdout.decode()
    cell, cells, t = parse_map(out)
    assert "free" not in t and "-" not in cells
    assert t["data"] == MiB and t["data"] + t["zero"] + t["hole"] == 4 * MiB
    assert cells == "." * 16 + "#" * 16 + "." * 32


def test_completion_of_map():
    from test_install import complete
    assert "--map" in complete(["diskferry", "info", "--m"], 2)
    assert complete(["diskferry", "info", "--map", "=", "s"], 4) == ["svg"]
    assert complete(["diskferry", "info", "--map", "=", ""], 4) == \
        ["text", "svg"]
