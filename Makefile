# wkfs: build, test and demo on a Debian machine.
#
#   make demo    install what is missing, build, show a small dataset
#   make test    install what is missing, build, run every test
#
# `deps` only installs what is missing, so running it again is quick.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

DEB_PACKAGES := fuse3 libfuse3-dev liblz4-dev libzstd-dev libisal-dev libblosc-dev zlib1g-dev pkg-config rsync vim slurm-wlm munge
PY_PACKAGES := wkw==1.1.24 webknossos==4.3.3 zarr==3.1.6 ome-zarr==0.18.0 tifffile==2026.3.3 pillow==13.0.0 pynrrd==1.1.3 SimpleITK==2.5.7 numpy pytest

PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.wkfs-deps
WKFS := .build/release/wkfs

# Safety nets against hangs (seconds); the whole `make test` normally takes a few minutes.
SWIFT_TEST_TIMEOUT ?= 2700
COMPAT_TEST_TIMEOUT ?= 1200
MOUNT_TEST_TIMEOUT ?= 900

export DEBIAN_FRONTEND := noninteractive
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps deb-deps build test test-swift test-compat test-mount stress fuzz demo clean distclean

deps: deb-deps $(VENV_STAMP)

deb-deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg -s "$$p" >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if ! $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1; then \
	  missing="$$missing python3 python3-venv"; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  $(SUDO) apt-get update; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# The stamp holds the requirement list: changing PY_PACKAGES reinstalls, otherwise nothing runs.
$(VENV_STAMP): FORCE
	@if [ -x $(VENV)/bin/python ] && [ -f $@ ] && [ "$$(cat $@)" = "$(PY_PACKAGES)" ]; then \
	  exit 0; \
	fi; \
	echo "deps: setting up $(VENV) with $(PY_PACKAGES)"; \
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV); \
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(PY_PACKAGES); \
	echo "$(PY_PACKAGES)" > $@

FORCE:

# SwiftPM leaves empty TemporaryDirectory.* directories in $TMPDIR at every run: they go under
# .build, not into /tmp.
SWIFT_TMP := $(CURDIR)/.build/tmp
SWIFT := env TMPDIR=$(SWIFT_TMP) swift

build:
	@mkdir -p $(SWIFT_TMP)
	$(SWIFT) build -c release
	@test -x $(WKFS)

# Swift unit tests (debug build in the default .build), then the compat suite against the
# release binary. Both always run; the target fails if either failed.
test: deps build
	@status=0; \
	echo "== benchmark smoke run (tiny data, no timing assertions)"; \
	WKFS_BIN="$(CURDIR)/$(WKFS)" timeout 600 bash bench/run.sh --smoke || status=1; \
	echo "== swift test"; \
	timeout $(SWIFT_TEST_TIMEOUT) $(SWIFT) test || status=1; \
	echo "== compat tests (Tests/compat, reference: wkw 1.1.24, webknossos 4.3.3)"; \
	WKFS_BIN="$(CURDIR)/$(WKFS)" timeout $(COMPAT_TEST_TIMEOUT) $(VENV)/bin/pytest -q Tests/compat || status=1; \
	echo "== mount tests (Tests/mount, real FUSE mounts)"; \
	WKFS_BIN="$(CURDIR)/$(WKFS)" timeout $(MOUNT_TEST_TIMEOUT) $(VENV)/bin/pytest -q Tests/mount || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED"; fi; \
	exit $$status

test-swift: build
	$(SWIFT) test

test-compat: deps build
	WKFS_BIN="$(CURDIR)/$(WKFS)" $(VENV)/bin/pytest -q Tests/compat

test-mount: deps build
	WKFS_BIN="$(CURDIR)/$(WKFS)" $(VENV)/bin/pytest -q Tests/mount

# Longer runs of the durability tests (kills, concurrent writers, full disk) and of the parsers'
# fuzz tests than `make test` has time for. STRESS_KILLS / STRESS_TRIALS / FUZZ_ITERATIONS scale them.
STRESS_KILLS ?= 100
STRESS_TRIALS ?= 50
FUZZ_ITERATIONS ?= 30000

stress: deps build
	WKFS_KILLS=$(STRESS_KILLS) WKFS_TRIALS=$(STRESS_TRIALS) WKFS_BIN="$(CURDIR)/$(WKFS)" \
	  $(VENV)/bin/pytest -q -s Tests/compat/test_durability.py Tests/compat/test_full_disk.py
	WKFS_SED_KILLS=200 WKFS_DAEMON_KILLS=50 WKFS_BIN="$(CURDIR)/$(WKFS)" \
	  $(VENV)/bin/pytest -q -s Tests/mount/test_concurrent_writers.py

fuzz: build
	WKFS_FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) $(SWIFT) test --filter Fuzz

demo: deps build
	WKFS_BIN="$(CURDIR)/$(WKFS)" bash mount-scripts/demo.sh

clean:
	rm -rf .build .build-compat
	find Tests/compat -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# ---- benchmark (bench/) -------------------------------------------------------------------
#   make bench            wkfs vs wkw / webknossos / squashfuse / passthrough_ll / page cache:
#                         generates ~7 GiB of data in bench/.data (reused by later runs),
#                         3 repetitions, about 30 minutes on 2 cores; table on stdout,
#                         JSON in bench/results.json
#   make bench SMOKE=1    tiny data, one repetition, under a minute (no timing assertions)
#   make bench-clean      delete the generated data
# BENCH_ARGS passes options to bench/bench.py, e.g. BENCH_ARGS="--only 1,4 --reps 5".
BENCH_TIMEOUT ?= 10800
BENCH_ARGS ?=

.PHONY: bench bench-smoke bench-clean

bench: deps build
	WKFS_BIN="$(CURDIR)/$(WKFS)" timeout $(BENCH_TIMEOUT) bash bench/run.sh $(if $(filter 1,$(SMOKE)),--smoke) $(BENCH_ARGS)

bench-smoke: deps build
	WKFS_BIN="$(CURDIR)/$(WKFS)" timeout 600 bash bench/run.sh --smoke

# --one-file-system: never delete through a mount that is still up under bench/.data.
bench-clean:
	rm -rf --one-file-system bench/.data
