# diskferry: the top-level entry points.  Meson does the building; this
# file installs what a fresh Debian 12 machine lacks, then builds, tests
# and demonstrates.  Run as root (apt-get, loop devices, sshd in tests).
#
#   make demo      install deps, build, copy a sample VM disk for real
#   make check     install deps, build, run every test (also under ASan+UBSan)
#   make install   PREFIX=/usr/local DESTDIR=  (binary, man page, completion)
#   make deb       a Debian package in dist/ (dpkg-buildpackage, lintian)
#   make bench     the benchmarks in bench/ (minutes; not part of check)

PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= build
RELEASE_BUILD ?= build-release
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
PYTEST ?= pytest-3
PYTEST_ARGS ?= -q -ra

# Debian packages: build, libraries, and the real tools the tests use.
DEB_BUILD = meson ninja-build pkg-config gcc clang libclang-rt-14-dev \
	libzstd-dev liblz4-dev libxxhash-dev libssl-dev libblkid-dev \
	libnbd-dev zlib1g-dev libarchive-dev libext2fs-dev ntfs-3g-dev
DEB_TEST = python3-pytest qemu-utils nbdkit libnbd-bin e2fsprogs openssh-server \
	openssh-client gdisk parted cryptsetup-bin ntfs-3g iproute2 lvm2 \
	util-linux psmisc zstd lz4 bzip2 xz-utils procps kmod thin-provisioning-tools \
	xfsprogs strace
DEB_BENCH = hyperfine rsync partclone zerofree
# What `make deb` needs beyond DEB_BUILD (installed by that target only).
DEB_PKG = debhelper dpkg-dev fakeroot lintian
DIST ?= dist

.PHONY: all deps build asan check unit e2e check-asan check-tsan demo install deb bench clean

all: build

# $(call apt_install,PACKAGES): apt-get install those not installed yet.
apt_install = missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

deps:
	@$(call apt_install,$(DEB_BUILD) $(DEB_TEST))

# The test builds carry the test hooks (-Dtesting=true); what `make
# install` installs is built apart, without them.
$(BUILD)/build.ninja:
	meson setup $(BUILD) -Dtesting=true

$(RELEASE_BUILD)/build.ninja:
	meson setup $(RELEASE_BUILD) -Dtesting=false --prefix=$(PREFIX)

# -O1, as the sanitizers' own documentation advises: the checks are the
# same, and the e2e pass (thousands of short runs) takes less time.
$(ASAN_BUILD)/build.ninja:
	CC=clang meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined \
	  -Db_lundef=false -Dbuildtype=debug -Doptimization=1 -Dtesting=true

$(TSAN_BUILD)/build.ninja:
	CC=clang meson setup $(TSAN_BUILD) -Db_sanitize=thread -Db_lundef=false

build: deps $(BUILD)/build.ninja
	@meson configure $(BUILD) | grep -q '^ *testing  *true' \
	  || meson configure $(BUILD) -Dtesting=true
	ninja -C $(BUILD)

asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# Sanitizers: fail on any report, including UBSan's.
SAN_ENV = ASAN_OPTIONS=abort_on_error=0:detect_leaks=1:exitcode=86 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=87

unit: build
	meson test -C $(BUILD) --print-errorlogs

# The e2e run also installs the package built by `make deb` and runs it
# (tests/e2e/test_package.py).
e2e: build deb
	DF_BUILD=$(abspath $(BUILD)) DF_DEB=$(abspath $(DIST))/$(DEB_FILE) \
	  $(PYTEST) $(PYTEST_ARGS) tests/e2e

# Tests marked slow_once (tests/e2e/conftest.py) run in the plain pass
# only: they wait (sshd, timeouts, kill-and-resume) more than they run C.
check-asan: asan
	$(SAN_ENV) meson test -C $(ASAN_BUILD) --print-errorlogs
	$(SAN_ENV) DF_BUILD=$(abspath $(ASAN_BUILD)) DF_SANITIZED=1 \
	  $(PYTEST) $(PYTEST_ARGS) tests/e2e

# The threaded engine under ThreadSanitizer (unit tests only).
check-tsan: deps $(TSAN_BUILD)/build.ninja
	ninja -C $(TSAN_BUILD)
	TSAN_OPTIONS=halt_on_error=1:exitcode=88 \
	  meson test -C $(TSAN_BUILD) --suite unit --print-errorlogs

check: unit e2e check-asan check-tsan

demo: build
	bash tests/demo.sh $(BUILD)

install: deps $(RELEASE_BUILD)/build.ninja
	meson configure $(RELEASE_BUILD) --prefix=$(PREFIX) >/dev/null
	ninja -C $(RELEASE_BUILD)
	DESTDIR=$(DESTDIR) meson install -C $(RELEASE_BUILD)

# The package is built in a copy of the tree under $(DIST)/.pkg (the
# tree's build directories and files stay as they are); the .deb lands
# in $(DIST)/.
DEB_VERSION = $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)
DEB_FILE = diskferry_$(DEB_VERSION)_$(shell dpkg --print-architecture).deb

deb:
	@$(call apt_install,$(DEB_BUILD) $(DEB_PKG))
	rm -rf $(DIST)/.pkg
	mkdir -p $(DIST)/.pkg/diskferry
	tar -c --exclude-vcs --exclude='./build*' --exclude='./obj-*' \
	  --exclude='./$(DIST)' --exclude=./demo --exclude=./bench/out \
	  --exclude=__pycache__ --exclude=.pytest_cache . \
	  | tar -x -C $(DIST)/.pkg/diskferry
	cd $(DIST)/.pkg/diskferry && dpkg-buildpackage -us -uc -b >../build.log 2>&1 \
	  || { tail -40 ../build.log; exit 1; }
	cp $(DIST)/.pkg/$(DEB_FILE) $(DIST)/
	lintian --fail-on error $(DIST)/$(DEB_FILE)
	@echo "built $(DIST)/$(DEB_FILE)"

bench: build
	@$(call apt_install,$(DEB_BENCH))
	bash bench/zero_detect.sh $(BUILD)
	bash bench/copy_vs_peers.sh $(BUILD)
	bash bench/formats_vs_qemu_img.sh $(BUILD)
	bash bench/copy_remote.sh $(BUILD)
	bash bench/sync.sh $(BUILD)
	bash bench/fs_aware.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(RELEASE_BUILD) $(ASAN_BUILD) $(TSAN_BUILD) demo $(DIST)
