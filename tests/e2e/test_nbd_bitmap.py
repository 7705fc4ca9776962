"""sync --changes bitmap:NAME from an NBD export (track/nbd_bitmap.c):
qemu-nbd -B NAME exports the qcow2 persistent dirty bitmap NAME as the
meta context qemu:dirty-bitmap:NAME, and only the ranges it marks dirty
are read and sent.  A server that does not offer it (another name, no
-B) is refused with exit 3, DST untouched.  Servers listen on unix
sockets under tmp_path and are always killed (test_nbd.server)."""
import json

import pytest

import qcow2bm as q
from conftest import df, files_equal, have, qemu_raw, sha256_file
from test_nbd import qemu_nbd

pytestmark = pytest.mark.skipif(
    not (have("qemu-nbd") and have("qemu-img") and have("qemu-io")),
    reason="needs qemu-nbd, qemu-img and qemu-io")

K, M = 1 << 10, 1 << 20
# the writes after the bitmap b0 began, and what it names (64 KiB granules)
WRITES = ["write -P 0x61 1M 64k", "write -P 0x62 21M 4k",
          "write -P 0x63 40M 128k", "write -z 2M 64k"]
CHANGED = (64 + 64 + 128 + 64) * K


def based(tmp_path):
    """src.qcow2 with data, copied by diskferry from its NBD export to
    dst.raw (a state record for that URI), then the bitmap b0 added and
    writes made: (img, dst)."""
    img = tmp_path / "src.qcow2"
    q.create(str(img))
    q.write(str(img), "write -P 0x41 0 8M", "write -P 0x42 20M 4M")
    dst = tmp_path / "dst.raw"
    with qemu_nbd(tmp_path, img, "qcow2", "-r") as uri:
        p = df("copy", uri, dst)
    assert p.returncode == 0, p.stderr
    q.bitmap(str(img), "add", "b0", 65536)
    q.bitmap(str(img), "enable", "b0")
    q.write(str(img), *WRITES)
    return img, dst


def test_sync_reads_only_what_the_bitmap_names(tmp_path):
    img, dst = based(tmp_path)
    with qemu_nbd(tmp_path, img, "qcow2", "-r", "-B", "b0") as uri:
        p = df("sync", "--json", "--changes", "bitmap:b0", uri, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(qemu_raw(img, tmp_path / "want.raw"), dst)
    r = json.loads(p.stdout)
    assert r["sync"]["changes"] == "bitmap"
    assert r["sync"]["changed_bytes"] == CHANGED
    assert r["sync"]["changed_ranges"] == 4
    assert r["bytes_read"] <= CHANGED * 1.05
    assert r["verified"]


def test_sync_with_another_base_needs_overwrite(tmp_path):
    """A DST copied from the qcow2 file (another source name): its record
    is the base all the same, once --overwrite consents."""
    img = tmp_path / "src.qcow2"
    q.create(str(img))
    q.write(str(img), "write -P 0x41 0 8M")
    dst = tmp_path / "dst.raw"
    assert df("copy", img, dst).returncode == 0
    q.bitmap(str(img), "add", "b0", 65536)
    q.write(str(img), "write -P 0x55 1M 64k")
    with qemu_nbd(tmp_path, img, "qcow2", "-r", "-B", "b0", "-t") as uri:
        before = sha256_file(dst)
        p = df("sync", "--changes", "bitmap:b0", uri, dst)
        assert p.returncode == 3, p.stderr
        assert sha256_file(dst) == before
        p = df("sync", "--json", "--overwrite", "--changes", "bitmap:b0",
               uri, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(qemu_raw(img, tmp_path / "want.raw"), dst)
    assert json.loads(p.stdout)["sync"]["changed_bytes"] == 64 * K


@pytest.mark.parametrize("export", [["-B", "b0"], []],
                         ids=["other-name", "no-B"])
def test_bitmap_not_offered_refused(tmp_path, export):
    img, dst = based(tmp_path)
    name = "nope" if export else "b0"
    before = sha256_file(dst)
    with qemu_nbd(tmp_path, img, "qcow2", "-r", *export) as uri:
        p = df("sync", "--changes", "bitmap:" + name, uri, dst)
    assert p.returncode == 3, p.stderr
    err = p.stderr.decode()
    assert "does not export the dirty bitmap '%s'" % name in err
    assert "--changes compare" in err
    assert len(err.strip().split("\n")) == 1, err
    assert sha256_file(dst) == before


def test_bitmap_name_too_long_is_a_usage_error(tmp_path):
    img, dst = based(tmp_path)
    with qemu_nbd(tmp_path, img, "qcow2", "-r", "-t") as uri:
        p = df("sync", "--changes", "bitmap:" + "x" * 1024, uri, dst)
    assert p.returncode == 2, p.stderr
    assert b"bitmap name of 1024 bytes" in p.stderr
