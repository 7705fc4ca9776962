"""Probing is never guest-controlled (docs/design.md, "Images and
chains"): a block device is raw unless -f names a format, and one
carrying an image signature is refused (exit 5); a probed image never
opens a file the command line did not name: not its recorded backing
file, not a VMDK extent outside its directory.  The same rule holds on
serve's side."""
import os

import pytest

from conftest import DISKFERRY, df, sh, qemu_raw, files_equal, loop_device

HERE = os.path.dirname(os.path.abspath(__file__))
RSH = os.path.join(HERE, "rsh_local.sh")
SECRET = b"SECRET-host-file-0123456789"
MiB = 1 << 20


def rdf(*args):
    """diskferry through the local rsh shim, this build on the far end."""
    return df(args[0], "--rsh", RSH, "--remote-path", DISKFERRY, *args[1:])


def no_secret(*procs):
    for p in procs:
        assert SECRET not in p.stdout and SECRET not in p.stderr


@pytest.fixture
def guest_disk(tmp_path):
    """The issue's reproducer: a host file holding SECRET, and a 64 MiB
    raw disk whose guest wrote a qcow2 header naming that file as its
    backing file (absolute path, format raw)."""
    secret = tmp_path / "s.raw"
    with open(secret, "wb") as f:
        f.write(SECRET)
        f.truncate(MiB)
    hdr = tmp_path / "e.qcow2"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(secret),
        "-F", "raw", str(hdr), "1M"])
    disk = tmp_path / "g.img"
    with open(disk, "wb") as f:
        f.write(hdr.read_bytes())
        f.truncate(64 * MiB)
    return disk


def test_block_device_with_qcow2_header_refused(tmp_path, guest_disk):
    out = tmp_path / "out.img"
    with loop_device(guest_disk, readonly=True) as dev:
        p = df("copy", dev, out)
        assert p.returncode == 5, p.stderr
        assert p.stderr.decode() == (
            "diskferry: copy: %s: holds a qcow2 image header: give -f qcow2 "
            "to read it as qcow2, or -f raw to copy its bytes as they are\n"
            % dev)
        assert not out.exists()
        other = tmp_path / "other.img"
        other.write_bytes(guest_disk.read_bytes()[:64 * MiB])
        v = df("verify", dev, other)
        assert v.returncode == 5 and b"holds a qcow2 image header" in v.stderr
        v2 = df("verify", other, dev, "-f", "raw")
        assert v2.returncode == 5 and b"holds a qcow2" in v2.stderr
        # info shows what it is without reading it as qcow2
        i = df("info", dev)
        assert i.returncode == 0, i.stderr
        assert (b"format: raw (carries a qcow2 signature; -f qcow2 to read "
                b"it)\nvirtual size: 64.0 MiB") in i.stdout
        no_secret(p, v, v2, i)


def test_block_device_raw_copies_bytes(tmp_path, guest_disk):
    out = tmp_path / "out.img"
    with loop_device(guest_disk, readonly=True) as dev:
        p = df("copy", "-f", "raw", dev, out)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes()[:4] == b"QFI\xfb"
    assert files_equal(out, guest_disk)
    assert SECRET not in out.read_bytes()


def test_probed_file_backing_not_followed(tmp_path, guest_disk):
    out = tmp_path / "out.img"
    p = df("copy", guest_disk, out)
    assert p.returncode == 5, p.stderr
    assert p.stderr.decode() == (
        "diskferry: copy: %s: a qcow2 with a backing file (%s): give -f "
        "qcow2 to follow its chain, or -f raw to copy its bytes\n"
        % (guest_disk, tmp_path / "s.raw"))
    assert not out.exists()
    v = df("verify", guest_disk, guest_disk)
    assert v.returncode == 5 and b"give -f qcow2" in v.stderr
    i = df("info", guest_disk)
    assert i.returncode == 0, i.stderr
    assert ("recorded parent: %s\n" % (tmp_path / "s.raw")).encode() \
        in i.stdout
    assert b"-f qcow2 shows the chain" in i.stdout
    assert b"backing chain" not in i.stdout
    # --parent-dir names where parents may be: the recorded path is not
    # looked at, and nothing else matches there
    empty = tmp_path / "empty"
    empty.mkdir()
    d = df("copy", "--parent-dir", empty, guest_disk, out)
    assert d.returncode == 4, d.stderr
    assert b"followed only when -f names the format" in d.stderr
    assert not out.exists()
    no_secret(p, v, i, d)
    # Named: the user says it is a qcow2 with a chain to follow.
    r = df("copy", "-f", "qcow2", guest_disk, out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:len(SECRET)] == SECRET


def test_parent_dir_follows_a_probed_chain(tmp_path):
    """A parent found in a --parent-dir counts as named: no -f needed."""
    pdir = tmp_path / "bases"
    pdir.mkdir()
    base = pdir / "base.qcow2"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "4M"])
    sh(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", str(base)])
    top = tmp_path / "top.qcow2"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2",
        "-F", "qcow2", "-u", str(top), "4M"])
    out = tmp_path / "out.raw"
    p = df("copy", "--parent-dir", pdir, top, out)
    assert p.returncode == 0, p.stderr
    data = out.read_bytes()
    assert data[:MiB] == b"\x5a" * MiB and data[MiB:] == bytes(3 * MiB)
    i = df("info", "--parent-dir", pdir, top)
    assert i.returncode == 0, i.stderr
    assert b"found by: --parent-dir" in i.stdout


def vmdk_descriptor(extent):
    return ('# Disk DescriptorFile\nversion=1\nCID=12345678\n'
            'parentCID=ffffffff\ncreateType="monolithicFlat"\n\n'
            'RW 1 FLAT "%s" 0\n\nddb.virtualHWVersion = "4"\n'
            % extent).encode()


@pytest.mark.parametrize("how", ["absolute", "dotdot"])
def test_vmdk_descriptor_in_raw_file(tmp_path, how):
    """A guest wrote a VMDK text descriptor into a small raw disk, naming
    a host file as a FLAT extent: probed, it must not read that file."""
    host = tmp_path / "host"
    host.mkdir()
    secret = host / "shadow"
    secret.write_bytes(SECRET.ljust(512, b"\0"))
    vms = tmp_path / "vms"
    vms.mkdir()
    ext = str(secret) if how == "absolute" else "../host/shadow"
    disk = vms / "guest.img"
    disk.write_bytes(vmdk_descriptor(ext).ljust(64 * 1024, b"\0"))
    out = tmp_path / "out.img"
    p = df("copy", disk, out)
    assert p.returncode == 5, p.stderr
    assert ("extent \"%s\" is outside the descriptor's directory: give -f "
            "vmdk" % ext).encode() in p.stderr
    assert not out.exists()
    i = df("info", disk)
    assert i.returncode == 5
    no_secret(p, i)
    r = df("copy", "-f", "raw", disk, out)
    assert r.returncode == 0, r.stderr
    assert files_equal(out, disk)
    # Named with -f vmdk, the descriptor is the user's: extents anywhere.
    out2 = tmp_path / "out2.img"
    r = df("copy", "-f", "vmdk", disk, out2)
    assert r.returncode == 0, r.stderr
    assert out2.read_bytes()[:len(SECRET)] == SECRET


def test_vmdk_descriptor_on_block_device_refused(tmp_path):
    disk = tmp_path / "guest.img"
    disk.write_bytes(vmdk_descriptor("/etc/shadow").ljust(MiB, b"\0"))
    with loop_device(disk, readonly=True) as dev:
        p = df("copy", dev, tmp_path / "out.img")
    assert p.returncode == 5, p.stderr
    assert b"holds a vmdk image header" in p.stderr


def test_remote_block_device_with_signature_refused(tmp_path, guest_disk):
    out = tmp_path / "out.img"
    with loop_device(guest_disk, readonly=True) as dev:
        p = rdf("copy", "localhost:%s" % dev, out)
        assert p.returncode == 5, p.stderr
        assert ("localhost:%s: holds a qcow2 image header" % dev).encode() \
            in p.stderr
        assert not out.exists()
        no_secret(p)
        r = rdf("copy", "-f", "raw", "localhost:%s" % dev, out)
        assert r.returncode == 0, r.stderr
        assert files_equal(out, guest_disk)
    os.unlink(out)
    r = rdf("copy", "localhost:%s" % guest_disk, out)
    assert r.returncode == 5 and b"give -f qcow2" in r.stderr, r.stderr
    assert not out.exists()


def test_named_qcow2_chain_on_loop_device(tmp_path):
    """-f qcow2 reads a loop device holding a real qcow2 overlay and
    follows its recorded backing file."""
    base = tmp_path / "base.raw"
    with open(base, "wb") as f:
        f.truncate(8 * MiB)
        f.seek(3 * MiB)
        f.write(b"base data " * 1000)
    top = tmp_path / "top.qcow2"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base),
        "-F", "raw", str(top), "8M"])
    sh(["qemu-io", "-f", "qcow2", "-c", "write -P 0x61 1M 64k", str(top)])
    ref = qemu_raw(top, tmp_path / "ref.raw", fmt="qcow2")
    out = tmp_path / "out.raw"
    with loop_device(top, readonly=True) as dev:
        p = df("copy", "-f", "qcow2", dev, out)
        assert p.returncode == 0, p.stderr
        assert files_equal(out, ref)
        i = df("info", "-f", "qcow2", dev)
        assert i.returncode == 0, i.stderr
        assert b"backing chain:" in i.stdout
