"""URI-like endpoints: `word://...`, the reserved `word:` prefixes (nbd,
file) and any `word:` with a '+' are usage errors naming the argument,
never an ssh attempt; host:PATH forms still reach the host.  tar: names
a member of an archive (a source only: test_stream_in.py)."""
import os

import pytest

from conftest import df


def marker_rsh(tmp_path):
    marker = tmp_path / "rsh-ran"
    rsh = tmp_path / "rsh.sh"
    rsh.write_text("#!/bin/sh\ntouch '%s'\nexit 1\n" % marker)
    rsh.chmod(0o755)
    return str(rsh), marker


# NBD URIs are endpoints now (test_nbd.py): never a host either.
NBD_URIS = [
    "nbd+unix:///?socket=%s/no.sock", "nbd://127.0.0.1:1/export",
    "NBD+UNIX:///e?socket=%s/no.sock",
]

SCHEMES = [
    ("file:///var/tmp/x.img", "file: URIs are not supported: give the "
     "path itself"),
    ("https://example.org/x.img", "unknown scheme 'https' (a path on "
     "another host is host:PATH)"),
    ("vsock://3/x", "unknown scheme 'vsock' (a path on another host is "
     "host:PATH)"),
    ("ssh+x:vm.img", "unknown scheme 'ssh+x' (a path on another host is "
     "host:PATH)"),
]


def copy_one_side(tmp_path, arg, side, rsh):
    """copy with arg as SRC or DST, a local file as the other."""
    local = tmp_path / "local.img"
    local.write_bytes(b"\0" * 4096)
    if side == "src":
        args = [arg, str(tmp_path / "out.img")]
    else:
        args = [str(local), arg]
    return df("copy", "--rsh", rsh, *args, cwd=str(tmp_path))


@pytest.mark.parametrize("arg,reason", SCHEMES)
@pytest.mark.parametrize("side", ["src", "dst"])
def test_scheme_is_a_usage_error_never_a_host(tmp_path, arg, reason, side):
    rsh, marker = marker_rsh(tmp_path)
    p = copy_one_side(tmp_path, arg, side, rsh)
    assert p.returncode == 2, p.stderr
    assert p.stderr.decode().splitlines()[0] == \
        "diskferry: copy: %s: %s" % (arg, reason)
    assert not marker.exists()
    assert not (tmp_path / "out.img").exists()


@pytest.mark.parametrize("uri", NBD_URIS)
@pytest.mark.parametrize("side", ["src", "dst"])
def test_nbd_uri_is_an_export_never_a_host(tmp_path, uri, side):
    """No server there: a network error (exit 6) naming the URI."""
    rsh, marker = marker_rsh(tmp_path)
    arg = uri.replace("%s", str(tmp_path))
    p = copy_one_side(tmp_path, arg, side, rsh)
    assert p.returncode == 6, p.stderr
    assert p.stderr.decode().startswith(
        "diskferry: copy: %s: cannot connect: " % arg)
    assert not marker.exists()
    assert not (tmp_path / "out.img").exists()


def test_undo_journal_nbd_is_a_usage_error(tmp_path):
    rsh, marker = marker_rsh(tmp_path)
    arg = "nbd://localhost/export"
    p = df("undo", "--rsh", rsh, arg, cwd=str(tmp_path))
    assert p.returncode == 2, p.stderr
    assert p.stderr.decode().splitlines()[0] == \
        "diskferry: undo: %s: an undo journal is a file" % arg
    assert not marker.exists()


@pytest.mark.parametrize("arg,reason", SCHEMES[:1] + SCHEMES[2:3])
def test_undo_journal_scheme_is_a_usage_error(tmp_path, arg, reason):
    rsh, marker = marker_rsh(tmp_path)
    p = df("undo", "--rsh", rsh, arg, cwd=str(tmp_path))
    assert p.returncode == 2, p.stderr
    assert p.stderr.decode().splitlines()[0] == \
        "diskferry: undo: %s: %s" % (arg, reason)
    assert not marker.exists()


@pytest.mark.parametrize("arg", ["localhost:/tmp/x", "user@host:x",
                                 "[::1]:x", "root@[fe80::1]:/dev/vg0/vm",
                                 "nbd.example.org:/x", "tarhost:x",
                                 "files:/x"])
def test_host_forms_still_reach_the_host(tmp_path, arg):
    rsh, marker = marker_rsh(tmp_path)
    local = tmp_path / "local.img"
    local.write_bytes(b"\0" * 4096)
    p = df("copy", "--rsh", rsh, "--timeout", "5", str(local), arg,
           cwd=str(tmp_path))
    assert p.returncode != 2, p.stderr
    assert marker.exists()


def test_local_names_with_a_colon_stay_local(tmp_path):
    rsh, marker = marker_rsh(tmp_path)
    src = tmp_path / "nbd:x"
    src.write_bytes(b"\1" * 4096)
    for name in ("./nbd:x", str(src)):
        out = tmp_path / ("out%d" % len(name))
        p = df("copy", "--rsh", rsh, name, str(out), cwd=str(tmp_path))
        assert p.returncode == 0, p.stderr
        assert out.read_bytes() == b"\1" * 4096
    assert not marker.exists()


@pytest.mark.parametrize("arg,reason", [
    ("tar:vm.tar//disk.img", "a tar member is a source only"),
    ("tar:-//disk.img", "a tar member is a source only"),
    ("tar:vm.tar", "expected tar:ARCHIVE//MEMBER (ARCHIVE a path or -)"),
])
def test_tar_forms_never_a_host(tmp_path, arg, reason):
    rsh, marker = marker_rsh(tmp_path)
    local = tmp_path / "local.img"
    local.write_bytes(b"\0" * 4096)
    p = df("copy", "--rsh", rsh, str(local), arg, cwd=str(tmp_path))
    assert p.returncode == 2, p.stderr
    assert p.stderr.decode().splitlines()[0] == \
        "diskferry: copy: %s: %s" % (arg, reason)
    assert not marker.exists()
