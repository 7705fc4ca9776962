"""Shared fixtures for the end-to-end tests of the real binary.

DISKFERRY and DF_IMGCAT name the binaries under test (the Makefile and
meson set them; by default build/diskferry and build/imgcat).  DF_VG can
prefix a command such as "valgrind -q --error-exitcode=99".

`make check` runs the suite twice: plain, then against the ASan+UBSan
build with DF_SANITIZED=1.  A test marked @pytest.mark.slow_once runs in
the plain pass only: it spends its time waiting (sshd, timeouts,
kill-and-resume at a bandwidth limit, NBD servers) or on large data,
while the C paths it takes are also taken under the sanitizers by faster
tests of its family (each test file and each of remote ssh, tcp,
resume, nbd and stream keeps tests in the sanitized pass).
"""
import contextlib
import hashlib
import os
import shlex
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("DF_BUILD", os.path.join(ROOT, "build"))
DISKFERRY = os.environ.get("DISKFERRY", os.path.join(BUILD, "diskferry"))
IMGCAT = os.environ.get("DF_IMGCAT", os.path.join(BUILD, "imgcat"))
VG = shlex.split(os.environ.get("DF_VG", ""))

# diskferry's state directory (resume journals of devices): one of the
# tests' own, never the machine's /var/lib/diskferry.  Children (serve
# through the rsh shim) inherit it.
if not os.environ.get("DISKFERRY_STATE_DIR"):
    import atexit
    import tempfile
    os.environ["DISKFERRY_STATE_DIR"] = tempfile.mkdtemp(
        prefix="diskferry-state-")
    atexit.register(shutil.rmtree, os.environ["DISKFERRY_STATE_DIR"], True)


SANITIZED = bool(os.environ.get("DF_SANITIZED"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow_once: slow for waiting, not for C work: runs in "
        "the plain pass only, skipped when DF_SANITIZED is set")


def pytest_collection_modifyitems(config, items):
    if not SANITIZED:
        return
    skip = pytest.mark.skip(
        reason="slow_once: ran in the plain pass; its C paths run under "
        "the sanitizers in faster tests")
    for item in items:
        if item.get_closest_marker("slow_once"):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if outcome.get_result().failed:
        item.df_failed = True


def _mounted_under(path):
    prefix = os.path.realpath(path) + "/"
    with open("/proc/self/mounts") as f:
        for line in f:
            where = line.split()[1].encode().decode("unicode_escape")
            if where.startswith(prefix):
                return True
    return False


@pytest.fixture(autouse=True)
def _drop_tmp_path_when_passed(request):
    """The suite writes about 20 GB of images over a pass; pytest keeps
    the last three passes' directories, which filled a CI machine's disk.
    A passed test's tmp_path goes as soon as the test ends (set up first,
    this is torn down after the test's other fixtures: loops, servers);
    a failed test's stays for whoever debugs it.  Nothing is removed
    while something is still mounted beneath it."""
    yield
    tmp = request.node.funcargs.get("tmp_path")
    if tmp is None or getattr(request.node, "df_failed", False):
        return
    if not _mounted_under(tmp):
        shutil.rmtree(tmp, ignore_errors=True)


def run(argv, input=None, env=None, timeout=600, cwd=None):
    """Run a command; a negative return code (a signal) always fails."""
    p = subprocess.run(argv, input=input, capture_output=True, env=env,
                       timeout=timeout, cwd=cwd)
    assert p.returncode >= 0, "%s killed by signal %d: %s" % (
        argv, -p.returncode, p.stderr.decode(errors="replace"))
    return p


def df(*args, **kw):
    """Run diskferry with args; returns CompletedProcess (stdout bytes)."""
    return run(VG + [DISKFERRY] + [str(a) for a in args], **kw)


def signal_and_wait(proc, sig, timeout=30):
    """Send sig to a Popen'ed process and reap it (killed if it lingers);
    returns its stderr."""
    try:
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err


def imgcat(*args, **kw):
    return run(VG + [IMGCAT] + [str(a) for a in args], **kw)


def sh(cmd, **kw):
    """Run a helper command (qemu-img, mkfs...) that must succeed."""
    p = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True,
                       timeout=kw.pop("timeout", 600), **kw)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (
            cmd, p.returncode, p.stderr.decode(errors="replace")))
    return p.stdout


def sha256_file(path, length=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = length
        while True:
            n = 1 << 20 if left is None else min(1 << 20, left)
            if n == 0:
                break
            b = f.read(n)
            if not b:
                break
            h.update(b)
            if left is not None:
                left -= len(b)
    return h.hexdigest()


def qemu_raw(img, out, fmt=None):
    """Reference conversion of img to raw with qemu-img."""
    cmd = ["qemu-img", "convert", "-O", "raw"]
    if fmt:
        cmd += ["-f", fmt]
    sh(cmd + [str(img), str(out)])
    return out


def files_equal(a, b):
    return sha256_file(a) == sha256_file(b)


@contextlib.contextmanager
def loop_device(path, readonly=False):
    """Attach a loop device over a file we created; always detached."""
    args = ["losetup", "--find", "--show"]
    if readonly:
        args.append("--read-only")
    dev = sh(args + [str(path)]).decode().strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def have(tool):
    return shutil.which(tool) is not None


@pytest.fixture
def loop():
    """A factory: loop(path) -> context manager yielding /dev/loopN."""
    return loop_device


def write_at(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def sshd_setup(d, addr, port, state_dir):
    """Host and user keys in d, and d/sshd_config for an sshd on
    addr:port that logs in with the user key only; serve keeps its state
    records in state_dir, not in this machine's /var/lib/diskferry.
    Returns the ssh options (no port, no host) that log in."""
    for k in ("host_key", "user_key"):
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
            str(d / k)])
    shutil.copy(d / "user_key.pub", d / "authorized_keys")
    (d / "sshd_config").write_text("""Port %d
ListenAddress %s
HostKey %s/host_key
AuthorizedKeysFile %s/authorized_keys
PidFile %s/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
SetEnv DISKFERRY_STATE_DIR=%s
""" % (port, addr, d, d, d, state_dir))
    os.makedirs("/run/sshd", exist_ok=True)
    return ("-i %s -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
            "-o BatchMode=yes" % (d / "user_key"))
