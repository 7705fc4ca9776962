"""What `make install` and the package ship beside the binary: the manual
page (renders without warnings, names every subcommand and every option
the binary's --help prints), the bash completion (loads, completes
subcommands and options), the LICENSE."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD, DISKFERRY, ROOT, df

MAN = os.path.join(ROOT, "docs", "diskferry.1")
COMPLETION = os.path.join(ROOT, "completion", "diskferry")
COMMANDS = ["info", "create", "copy", "sync", "verify", "plan", "serve",
            "undo"]
# Options a command takes that its --help names only in its text (or not
# at all), not on an option line; with a value the binary accepts.
UNLISTED = {
    "copy": {"--write-manifest": "m.dfm"},
    "sync": {"--rsh": "ssh", "--remote-path": "diskferry",
             "--compress": "none", "--bwlimit": "1M", "--timeout": "5",
             "--quiet": None, "--verbose": None, "--help": None},
    "undo": {"--rsh": "ssh", "--remote-path": "diskferry", "--timeout": "5"},
}


def man_text():
    """The page as a reader sees it (roff escapes resolved)."""
    p = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", MAN],
                       capture_output=True, env=dict(os.environ,
                                                     LC_ALL="C.UTF-8"))
    assert p.returncode == 0, p.stderr
    return p.stdout.decode().replace("\u2010", "-").replace("\u2212", "-")


def help_options(cmd):
    """Every option of the option lines of `diskferry CMD --help`: the
    field before the description ("  -f, --format FMT   text", or
    "      --a X, --b, -q   as for copy")."""
    text = df(cmd, "--help").stdout.decode()
    opts = set()
    for line in text.splitlines():
        if not re.match(r"^ +-", line):
            continue
        field = re.split(r" {2,}", line.strip())[0]
        opts.update(w for w in re.split(r"[ ,]+", field)
                    if re.match(r"^(-[A-Za-z]|--[a-z][a-z-]*)$", w))
    return opts


def all_options(cmd):
    return help_options(cmd) | set(UNLISTED.get(cmd, {}))


@pytest.mark.skipif(not shutil.which("groff"), reason="groff not installed")
def test_man_page_renders_without_warnings():
    p = subprocess.run(["groff", "-man", "-ww", "-z", MAN],
                       capture_output=True)
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    if shutil.which("man"):
        p = subprocess.run(["man", "--warnings", "-l", MAN],
                           capture_output=True,
                           env=dict(os.environ, MANWIDTH="80",
                                    MANPAGER="cat", PAGER="cat"))
        assert p.returncode == 0 and p.stderr == b"", p.stderr


@pytest.mark.skipif(not shutil.which("groff"), reason="groff not installed")
@pytest.mark.parametrize("cmd", COMMANDS)
def test_man_page_names_every_option_of_help(cmd):
    text = man_text()
    assert re.search(r"^ +diskferry %s\b" % cmd, text, re.M), cmd
    opts = all_options(cmd)
    assert "--help" in opts and len(opts) > 2
    section = text.split("diskferry %s [" % cmd)[-1] if cmd != "create" \
        else text.split("diskferry create --size")[-1]
    missing = [o for o in sorted(opts)
               if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o),
                                section)]
    assert missing == []


def test_man_page_names_every_command_of_top_help():
    top = df("--help").stdout.decode()
    cmds = re.findall(r"^  ([a-z]+)  ", top.split("commands:")[1], re.M)
    assert sorted(cmds) == sorted(COMMANDS)
    with open(MAN) as f:
        roff = f.read()
    for c in cmds:
        assert '.SS "diskferry %s' % c in roff


def complete(words, cword, home=None):
    """Run the completion function on COMP_WORDS/COMP_CWORD."""
    script = ("source %s; COMP_WORDS=(%s); COMP_CWORD=%d; "
              "COMP_LINE=\"${COMP_WORDS[*]}\"; COMP_POINT=${#COMP_LINE}; "
              "_diskferry; printf '%%s\\n' \"${COMPREPLY[@]}\""
              % (COMPLETION, " ".join("'%s'" % w for w in words), cword))
    env = dict(os.environ,
               PATH=os.path.dirname(DISKFERRY) + ":" + os.environ["PATH"])
    if home:
        env["HOME"] = str(home)
    p = subprocess.run(["bash", "-c", script], capture_output=True, env=env,
                       cwd=str(home) if home else None)
    assert p.returncode == 0, p.stderr
    return [w for w in p.stdout.decode().splitlines() if w]


def test_completion_loads():
    p = subprocess.run(["bash", "-c", "source %s; complete -p diskferry"
                        % COMPLETION], capture_output=True)
    assert p.returncode == 0, p.stderr
    assert b"-F _diskferry diskferry" in p.stdout


def test_completion_subcommands_and_options():
    assert complete(["diskferry", "co"], 1) == ["copy"]
    assert complete(["diskferry", "copy", "--ov"], 2) == ["--overwrite"]
    assert complete(["diskferry", "copy", "-O", ""], 3) == ["raw", "qcow2"]
    assert "vhdx" in complete(["diskferry", "copy", "-f", ""], 3)
    assert complete(["diskferry", "serve", "--no-t"], 2) == ["--no-tcp"]
    assert complete(["diskferry", "undo", "--rs"], 2) == ["--rsh"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_completion_offers_every_option_of_help(cmd):
    offered = set(complete(["diskferry", cmd, "--"], 2))
    longs = {o for o in all_options(cmd) if o.startswith("--")}
    assert longs <= offered, longs - offered


@pytest.mark.parametrize("cmd", sorted(UNLISTED))
def test_unlisted_options_are_options(cmd):
    """What UNLISTED adds to the page and the completion is taken by the
    binary (then --help answers)."""
    for opt, val in UNLISTED[cmd].items():
        p = df(cmd, *([opt, val] if val else [opt]), "--help")
        assert p.returncode == 0 and p.stdout.startswith(b"usage:"), \
            (opt, p.stderr)


def test_completion_of_sync_and_manifests(tmp_path):
    assert complete(["diskferry", "sy"], 1) == ["sync"]
    assert complete(["diskferry", "sync", "--changes", ""], 3) == \
        ["compare", "manifest:", "lvm-cow:", "lvm-thin:", "bitmap:",
         "top-layer"]
    (tmp_path / "snap-cow").write_bytes(b"")
    assert complete(["diskferry", "sync", "--changes",
                     "lvm-cow:%s" % (tmp_path / "snap")], 3) == \
        ["lvm-cow:%s" % (tmp_path / "snap-cow")]
    (tmp_path / "vm.dfm").write_bytes(b"")
    assert complete(["diskferry", "sync", "--changes",
                     "manifest:%s" % (tmp_path / "v")], 3) == \
        ["manifest:%s" % (tmp_path / "vm.dfm")]
    assert complete(["diskferry", "verify", "--manifest",
                     str(tmp_path / "v")], 3) == [str(tmp_path / "vm.dfm")]
    assert complete(["diskferry", "sync", "--block-size", "64"], 3) == \
        ["64K", "64M"]


def test_completion_paths_and_hosts(tmp_path):
    (tmp_path / "vm.qcow2").write_bytes(b"")
    got = complete(["diskferry", "copy", str(tmp_path / "vm")], 2)
    assert got == [str(tmp_path / "vm.qcow2")]
    # a host:PATH word is left alone, not broken up
    assert complete(["diskferry", "copy", "x.img", "host2:/dev/vg0/"],
                    3) == []
    # hosts from ~/.ssh/config and ~/.ssh/known_hosts, as host:
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "config").write_text("Host web1 *.lan\n  User root\n")
    (ssh / "known_hosts").write_text(
        "host2.example.org,10.0.0.2 ssh-ed25519 AAAA\n"
        "[bk.example]:2222 ssh-rsa AAAA\n|1|hashed= ssh-rsa AAAA\n")
    assert complete(["diskferry", "copy", "x.img", "we"], 3,
                    home=tmp_path) == ["web1:"]
    assert complete(["diskferry", "copy", "ho"], 2,
                    home=tmp_path) == ["host2.example.org:"]
    assert complete(["diskferry", "copy", "x.img", "bk"], 3,
                    home=tmp_path) == ["bk.example:"]


def test_license_is_the_gpl2_text():
    with open(os.path.join(ROOT, "LICENSE")) as f:
        text = f.read()
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 2, June 1991" \
        in text
    with open(os.path.join(ROOT, "meson.build")) as f:
        assert "GPL-2.0-or-later" in f.read()


def test_meson_installs_man_page_and_completion(tmp_path):
    """`make install` is `meson install` of a release build: it ships the
    binary, the page and the completion."""
    p = subprocess.run(["meson", "introspect", "--installed", BUILD],
                       capture_output=True)
    if p.returncode != 0:
        pytest.skip("meson introspect unavailable: %s" % p.stderr[:200])
    installed = p.stdout.decode()
    assert "/share/man/man1/diskferry.1" in installed
    assert "/share/bash-completion/completions/diskferry" in installed
    assert "/bin/diskferry" in installed
