"""The Debian package: installed with dpkg on this machine, the installed
/usr/bin/diskferry answers --version and makes one real sparse copy, and
the package is removed again.  `make e2e` hands over the .deb that `make
deb` built (DF_DEB); without it the package is built here."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, files_equal, run

INSTALLED = "/usr/bin/diskferry"


def installed_version():
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "diskferry"],
                       capture_output=True)
    return p.returncode == 0 and b"install ok installed" in p.stdout


@pytest.fixture
def deb(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("installing a package needs root")
    if os.environ.get("DF_SANITIZED"):
        pytest.skip("the package is tested in the run without sanitizers")
    path = os.environ.get("DF_DEB")
    if path:
        assert os.path.isfile(path), "DF_DEB=%s: no such file" % path
        return path
    for tool in ("dpkg-buildpackage", "dh", "fakeroot", "lintian"):
        if not shutil.which(tool):
            pytest.skip("%s not installed (make deb installs it)" % tool)
    dist = tmp_path / "dist"
    p = run(["make", "-s", "-C", ROOT, "deb", "DIST=%s" % dist],
            timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    debs = [d for d in os.listdir(dist) if d.endswith(".deb")]
    assert len(debs) == 1, debs
    return str(dist / debs[0])


def test_installed_package_copies(deb, tmp_path):
    if installed_version() or os.path.exists(INSTALLED):
        pytest.skip("diskferry is already installed on this machine: "
                    "leaving it alone")
    try:
        p = run(["dpkg", "-i", deb])
        assert p.returncode == 0, p.stderr
        assert installed_version()
        p = run([INSTALLED, "--version"])
        assert p.returncode == 0
        assert p.stdout.startswith(b"diskferry ")
        for f in ("/usr/share/man/man1/diskferry.1.gz",
                  "/usr/share/bash-completion/completions/diskferry",
                  "/usr/share/doc/diskferry/copyright"):
            assert os.path.isfile(f), f
        # a sparse raw file: 64 MiB with data at both ends
        src = tmp_path / "src.img"
        with open(src, "wb") as f:
            f.truncate(64 << 20)
            f.write(os.urandom(1 << 20))
            f.seek((64 << 20) - 4096)
            f.write(os.urandom(4096))
        dst = tmp_path / "dst.img"
        p = run([INSTALLED, "copy", "--no-progress", str(src), str(dst)])
        assert p.returncode == 0, p.stderr
        assert files_equal(src, dst)
        assert os.stat(dst).st_blocks * 512 < 8 << 20   # holes kept
        # the shipped binary has no test hooks
        p = run(["grep", "-c", "DF_TEST_", INSTALLED])
        assert p.stdout.strip() == b"0"
    finally:
        run(["dpkg", "-r", "diskferry"])
    assert not installed_version()
    assert not os.path.exists(INSTALLED)
