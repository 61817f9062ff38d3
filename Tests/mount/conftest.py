"""Shared fixtures of the mount suite (real `wkfs mount`, real FUSE, reference `wkw`).

Run from the repository root: `.venv/bin/pytest -q Tests/mount` (WKFS_BIN and WKFS_FIXTURES
override the binary and the fixture folder).

Guards against hangs and leftovers:
- every test runs under a watchdog (default 90 s, `@pytest.mark.limit(seconds)` or
  WKFS_MOUNT_TEST_LIMIT to change): when it fires, a thread kills this test's wkfs children
  (so file operations blocked on the mount return), unmounts them and interrupts the test;
- every `Mount` unmounts on exit, also when the test fails;
- at the end of the session anything still mounted under the test's temporary folder is
  unmounted and any wkfs process mentioning it is ended; finding one is reported as an error.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from pathlib import Path

import pytest

import mounthelp as mh

warnings.filterwarnings("ignore", category=UserWarning)

DEFAULT_LIMIT = float(os.environ.get("WKFS_MOUNT_TEST_LIMIT", "90"))


def pytest_configure(config):
    config.addinivalue_line("markers", "limit(seconds): time limit of one test (watchdog)")


def pytest_report_header(config):
    return [f"wkfs binary: {mh.WKFS_BIN}", f"fixtures: {mh.FIXTURES}", f"fusermount: {mh.FUSERMOUNT}"]


class TestTimeout(BaseException):
    """Raised in the test when its watchdog fires (BaseException: `except Exception` won't eat it)."""


@pytest.fixture(scope="session", autouse=True)
def _session_guard(tmp_path_factory):
    """Checks the prerequisites, and after the session leaves no mount and no wkfs process."""
    if not mh.WKFS_BIN.exists():
        pytest.fail(f"wkfs binary not found at {mh.WKFS_BIN}: build it with `swift build -c release` "
                    "or point WKFS_BIN at it", pytrace=False)
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing: FUSE is not available on this machine")
    if not mh.FIXTURES.is_dir():
        pytest.fail(f"fixtures not found at {mh.FIXTURES} (set WKFS_FIXTURES)", pytrace=False)
    base = tmp_path_factory.getbasetemp()
    yield base
    leftovers = mh.mounts_under(base)
    strays = mh.wkfs_processes(base)
    cleaned = mh.emergency_cleanup(base)
    still = mh.mounts_under(base) + [str(p) for p in mh.wkfs_processes(base)]
    if leftovers or strays or still:
        raise AssertionError(
            "the mount suite left mounts or wkfs processes behind (now cleaned up):\n"
            f"mounts: {leftovers}\nprocesses: {strays}\ncleanup: {cleaned}\nstill there: {still}"
        )


@pytest.fixture(autouse=True)
def _watchdog(request, tmp_path):
    """Fails a test that runs longer than its limit without leaving it blocked on a dead mount."""
    marker = request.node.get_closest_marker("limit")
    limit = float(marker.args[0]) if marker else DEFAULT_LIMIT
    main_thread = threading.main_thread()
    fired = threading.Event()

    def on_alarm(signum, frame):
        raise TestTimeout(f"{request.node.nodeid}: took longer than {limit:.0f} s (watchdog)")

    def fire():
        fired.set()
        # Killing the daemons aborts the FUSE connections, so blocked syscalls return.
        mh.emergency_cleanup(tmp_path)
        signal.pthread_kill(main_thread.ident, signal.SIGALRM)

    old = signal.signal(signal.SIGALRM, on_alarm)
    timer = threading.Timer(limit, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGALRM, old)
        # Whatever the test did, nothing of it stays mounted.
        mh.emergency_cleanup(tmp_path)


@pytest.fixture(scope="session")
def fixture_copies(tmp_path_factory) -> Path:
    """A private copy of every fixture dataset, for tests that only read."""
    root = tmp_path_factory.mktemp("fixture-copies")
    for name in mh.fixture_names():
        mh.copy_fixture(name, root)
    return root


@pytest.fixture
def dataset_copy(tmp_path):
    """`dataset_copy(name)`: a fresh writable copy of one fixture dataset for this test."""

    def make(name: str) -> Path:
        return mh.copy_fixture(name, tmp_path / "data")

    return make


@pytest.fixture
def mountpoint(tmp_path) -> Path:
    mp = tmp_path / "mnt"
    mp.mkdir()
    return mp


@pytest.fixture
def mounted(mountpoint):
    """`with mounted(dataset, options=None) as m:` mounts at this test's empty mount point."""

    def make(dataset: Path, options: str | None = None, mp: Path | None = None) -> mh.Mount:
        return mh.Mount(dataset, mp or mountpoint, options=options)

    return make
