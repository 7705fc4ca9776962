"""Chains whose parents moved (oVirt/RHEV style): layers renamed by
UUID, moved into one directory or onto loop devices; --parent-dir and
--parent complete the chain, identities are checked, nothing is guessed."""
import json
import os
import shutil
import uuid

import pytest

from conftest import df, sh, qemu_raw, files_equal, loop_device

U_BASE, U_MID, U_TOP = (str(uuid.UUID(int=i)) for i in (0x1111, 0x2222, 0x3333))


def qemu_io(img, *cmds):
    args = ["qemu-io", "-f", "qcow2"]
    for c in cmds:
        args += ["-c", c]
    sh(args + [str(img)])


@pytest.fixture
def ovirt(tmp_path):
    """base <- mid <- top with absolute backing paths under a
    /rhev-like directory; the reference raw is made before it moves."""
    rhev = tmp_path / "rhev" / "data-center" / "sd" / "images"
    rhev.mkdir(parents=True)
    base, mid, top = rhev / U_BASE, rhev / U_MID, rhev / U_TOP
    sh(["qemu-img", "create", "-f", "qcow2", str(base), "64M"])
    qemu_io(base, "write -P 0x11 0 4M", "write -P 0x12 40M 1M")
    sh(["qemu-img", "create", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
        str(mid)])
    qemu_io(mid, "write -P 0x21 2M 1M", "write -z 41M 64k")
    sh(["qemu-img", "create", "-f", "qcow2", "-b", str(mid), "-F", "qcow2",
        str(top)])
    qemu_io(top, "write -P 0x31 3M 64k", "write -P 0x32 63M 1M")
    ref = qemu_raw(top, tmp_path / "ref.raw")
    # Move every layer into one directory; the recorded paths break.
    moved = tmp_path / "moved"
    moved.mkdir()
    for p in (base, mid, top):
        shutil.move(str(p), str(moved / p.name))
    shutil.rmtree(tmp_path / "rhev")
    return {"dir": moved, "ref": ref, "top": moved / U_TOP,
            "mid": moved / U_MID, "base": moved / U_BASE,
            "recorded_mid": str(rhev / U_MID), "tmp": tmp_path}


def test_broken_chain_is_a_clear_error(ovirt):
    out = ovirt["tmp"] / "out.raw"
    p = df("copy", "-f", "qcow2", ovirt["top"], out)
    assert p.returncode == 4, p.stderr
    err = p.stderr.decode()
    assert err.startswith("diskferry: copy: %s: parent image not found" %
                          ovirt["top"])
    assert ovirt["recorded_mid"] in err
    assert not out.exists()


def test_parent_dir_completes_chain(ovirt):
    out = ovirt["tmp"] / "out.raw"
    p = df("copy", "--parent-dir", ovirt["dir"], ovirt["top"], out)
    assert p.returncode == 0, p.stderr
    assert files_equal(out, ovirt["ref"])
    p = df("info", "--json", "--parent-dir", ovirt["dir"], ovirt["top"])
    assert p.returncode == 0, p.stderr
    chain = json.loads(p.stdout)["chain"]
    assert [c["depth"] for c in chain] == [0, 1, 2]
    assert chain[1]["recorded_as"] == ovirt["recorded_mid"]
    assert chain[1]["found_by"] == "--parent-dir"
    assert chain[1]["path"] == str(ovirt["mid"])
    assert all(c["format"] == "qcow2" for c in chain)
    p = df("info", "--parent-dir", ovirt["dir"], ovirt["top"])
    assert b"found by: --parent-dir" in p.stdout
    assert ("recorded as: %s" % ovirt["recorded_mid"]).encode() in p.stdout


def test_parent_overrides_complete_chain(ovirt):
    out = ovirt["tmp"] / "out.raw"
    p = df("copy", "--parent", "%s=%s" % (ovirt["top"], ovirt["mid"]),
           "--parent", "%s=%s" % (ovirt["mid"], ovirt["base"]),
           ovirt["top"], out)
    assert p.returncode == 0, p.stderr
    assert files_equal(out, ovirt["ref"])
    p = df("info", "--json", "--parent", "%s=%s" % (ovirt["top"], ovirt["mid"]),
           "--parent-dir", ovirt["dir"], ovirt["top"])
    chain = json.loads(p.stdout)["chain"]
    assert chain[1]["found_by"] == "--parent"
    assert chain[2]["found_by"] == "--parent-dir"


def test_layers_on_loop_devices(ovirt):
    """oVirt block storage: layers on LVs (here loop devices), named by
    UUID through symlinks the administrator made.  A block device is
    raw unless -f names a format: -f qcow2 on the top reads its chain's
    layers as the images they are."""
    links = ovirt["tmp"] / "vg"
    links.mkdir()
    out = ovirt["tmp"] / "out.raw"
    with loop_device(ovirt["base"], readonly=True) as dbase, \
            loop_device(ovirt["mid"], readonly=True) as dmid:
        os.symlink(dbase, links / U_BASE)
        os.symlink(dmid, links / U_MID)
        p = df("copy", "--parent-dir", links, ovirt["top"], out)
        assert p.returncode == 5, p.stderr
        assert b"holds a qcow2 image header" in p.stderr
        assert not out.exists()
        p = df("copy", "-f", "qcow2", "--parent-dir", links, ovirt["top"],
               out)
        assert p.returncode == 0, p.stderr
        assert files_equal(out, ovirt["ref"])
        out2 = ovirt["tmp"] / "out2.raw"
        p = df("copy", "-f", "qcow2",
               "--parent", "%s=%s" % (ovirt["top"], dmid),
               "--parent", "%s=%s" % (dmid, dbase), ovirt["top"], out2)
        assert p.returncode == 0, p.stderr
        assert files_equal(out2, ovirt["ref"])


def test_ambiguous_parent_dir_lists_both(ovirt):
    other = ovirt["tmp"] / "other"
    other.mkdir()
    shutil.copy(ovirt["mid"], other / U_MID)
    out = ovirt["tmp"] / "out.raw"
    p = df("copy", "--parent-dir", ovirt["dir"], "--parent-dir", other,
           ovirt["top"], out)
    assert p.returncode == 5, p.stderr
    err = p.stderr.decode()
    assert "ambiguous" in err
    assert str(ovirt["mid"]) in err and str(other / U_MID) in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_same_file_twice_is_not_ambiguous(ovirt):
    link = ovirt["tmp"] / "link"
    os.symlink(ovirt["dir"], link)
    out = ovirt["tmp"] / "out.raw"
    p = df("copy", "--parent-dir", ovirt["dir"], "--parent-dir", link,
           ovirt["top"], out)
    assert p.returncode == 0, p.stderr


def test_wrong_parent_format_refused(ovirt):
    """The child records its parent's format (qcow2): a raw file of the
    same size given as the parent is refused before anything is read."""
    raw = ovirt["tmp"] / "impostor.raw"
    with open(raw, "wb") as f:
        f.truncate(64 << 20)
    out = ovirt["tmp"] / "out.raw"
    p = df("copy", "--parent", "%s=%s" % (ovirt["top"], raw),
           ovirt["top"], out)
    assert p.returncode == 5, p.stderr
    assert str(raw).encode() in p.stderr
    assert not out.exists()


def test_chain_loop_refused(tmp_path):
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    sh(["qemu-img", "create", "-f", "qcow2", str(a), "1M"])
    sh(["qemu-img", "create", "-f", "qcow2", "-b", str(a), "-F", "qcow2",
        str(b)])
    sh(["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", str(b), "-F",
        "qcow2", str(a)])
    p = df("info", "-f", "qcow2", b)
    assert p.returncode == 5
    assert b"backing chain loop" in p.stderr
