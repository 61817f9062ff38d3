# wkfs: build, test and demo on a Debian machine.
#
#   make demo    install what is missing, build, show a small dataset
#   make test    install what is missing, build, run every test
#
# `deps` only installs what is missing, so running it again is quick.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

DEB_PACKAGES := fuse3 libfuse3-dev liblz4-dev pkg-config
PY_PACKAGES := wkw==1.1.24 webknossos==4.3.3 numpy pytest

PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.wkfs-deps
WKFS := .build/release/wkfs

# Safety nets against hangs (seconds); the whole `make test` normally takes a few minutes.
SWIFT_TEST_TIMEOUT ?= 2700
COMPAT_TEST_TIMEOUT ?= 1200

export DEBIAN_FRONTEND := noninteractive
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps deb-deps build test test-swift test-compat demo clean distclean

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

build:
	swift build -c release
	@test -x $(WKFS)

# Swift unit tests (debug build in the default .build), then the compat suite against the
# release binary. Both always run; the target fails if either failed.
test: deps build
	@status=0; \
	echo "== swift test"; \
	timeout $(SWIFT_TEST_TIMEOUT) swift test || status=1; \
	echo "== compat tests (Tests/compat, reference: wkw 1.1.24, webknossos 4.3.3)"; \
	WKFS_BIN="$(CURDIR)/$(WKFS)" timeout $(COMPAT_TEST_TIMEOUT) $(VENV)/bin/pytest -q Tests/compat || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED"; fi; \
	exit $$status

test-swift: build
	swift test

test-compat: deps build
	WKFS_BIN="$(CURDIR)/$(WKFS)" $(VENV)/bin/pytest -q Tests/compat

DEMO_DIR := demo-data

demo: deps build
	@if [ -x mount-scripts/demo.sh ] || [ -f mount-scripts/demo.sh ]; then \
	  WKFS_BIN="$(CURDIR)/$(WKFS)" exec bash mount-scripts/demo.sh; \
	fi; \
	echo "mount-scripts/demo.sh is not there yet; a CLI-only demo in $(DEMO_DIR)/:"; \
	set -x; \
	rm -rf $(DEMO_DIR); \
	mkdir -p $(DEMO_DIR); \
	$(WKFS) create $(DEMO_DIR)/my_new_dataset --voxel-size 11.24,11.24,25; \
	$(WKFS) add-layer $(DEMO_DIR)/my_new_dataset color --category color --dtype uint8 --channels 3; \
	$(WKFS) add-mag $(DEMO_DIR)/my_new_dataset color 1 --block-len 32 --file-len 4 --compress; \
	head -c $$((3 * 64 * 64 * 16)) /dev/urandom > $(DEMO_DIR)/random.raw; \
	$(WKFS) write $(DEMO_DIR)/my_new_dataset color 1 --offset 10,20,30 --size 64,64,16 --input $(DEMO_DIR)/random.raw; \
	$(WKFS) info $(DEMO_DIR)/my_new_dataset; \
	$(WKFS) read $(DEMO_DIR)/my_new_dataset color 1 --offset 10,20,30 --size 4,2,1 | od -A d -t u1; \
	$(WKFS) check $(DEMO_DIR)/my_new_dataset

clean:
	rm -rf .build .build-compat $(DEMO_DIR)
	find Tests/compat -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
