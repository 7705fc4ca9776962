"""The documentation a user's clone has: README.md and the comments of
src/ and tests/ point at docs/design.md and docs/formats.md, and every
section they cite exists there; README names every command and only
`make` targets the Makefile has (the man page and the completion are
test_install.py's)."""
import os
import re

from conftest import ROOT, df

# Spelled in two pieces so that this file does not match itself.
OUTSIDE = re.compile(r"shared" + "/" + r"|DESIGN" + r"\.md")


def tree_files():
    yield os.path.join(ROOT, "README.md")
    for top in ("src", "tests"):
        for d, _, names in os.walk(os.path.join(ROOT, top)):
            if "corpus" in d.split(os.sep):
                continue
            for n in names:
                if n.endswith((".c", ".h", ".py", ".sh", ".md", ".build")):
                    yield os.path.join(d, n)


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def headings(doc):
    return [line.lstrip("#").strip()
            for line in read(os.path.join(ROOT, "docs", doc)).splitlines()
            if line.startswith("#")]


def test_no_pointer_outside_the_repository():
    found = []
    for path in tree_files():
        for i, line in enumerate(read(path).splitlines(), 1):
            if OUTSIDE.search(line):
                found.append("%s:%d: %s" % (os.path.relpath(path, ROOT), i,
                                            line.strip()))
    assert found == []


def test_cited_sections_exist():
    numbered = {h.split()[0].rstrip(".") for h in headings("formats.md")
                if h[:1].isdigit()}
    design = set(headings("design.md"))
    cite_fmt = re.compile(r"docs/formats\.md\s+(?:sections?\s+)?"
                          r"(\d+(?:\.\d+)?)(?:\s*(?:-|to)\s*(\d+(?:\.\d+)?))?")
    cite_design = re.compile(r'docs/design\.md,\s+"([^"]+)"')
    missing = []
    for path in tree_files():
        # comments wrap: join the lines of a comment into one
        text = re.sub(r"\s*\n\s*(?:\*|#|//)?\s*", " ", read(path))
        for m in cite_fmt.finditer(text):
            for sec in m.groups():
                if sec and sec not in numbered:
                    missing.append((path, "formats.md " + sec))
        for m in cite_design.finditer(text):
            if m.group(1) not in design:
                missing.append((path, "design.md " + m.group(1)))
    assert missing == []


def test_readme_names_every_command():
    """Every command of `diskferry --help` has its line in README's Use."""
    top = df("--help").stdout.decode()
    cmds = re.findall(r"^  ([a-z]+)  ", top.split("commands:")[1], re.M)
    assert "sync" in cmds
    use = read(os.path.join(ROOT, "README.md")).split("## Use")[1]
    missing = [c for c in cmds
               if not re.search(r"^ +diskferry %s +" % c, use, re.M)]
    assert missing == []


def test_readme_make_targets_are_the_makefiles():
    """The `make` targets README names exist, and its Tests section names
    every target `make check` runs."""
    readme = read(os.path.join(ROOT, "README.md"))
    makefile = read(os.path.join(ROOT, "Makefile"))
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.M))
    named = set(re.findall(r"\bmake ([a-z][a-z0-9-]*)", readme))
    assert named and named <= targets, named - targets
    check = re.search(r"^check: *(.*)$", makefile, re.M).group(1).split()
    tests = readme.split("## Tests")[1]
    assert [t for t in check if "make %s" % t not in tests] == []
