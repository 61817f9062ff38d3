"""`wkfs mount` / `wkfs unmount` as commands: daemonizing, refusing bad arguments before mounting.

A mount point that is missing, not a directory, not empty or already mounted, a dataset that does
not open and a bad option are clear errors: non-zero exit, a message naming the culprit, and no
mount and no process left behind.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import mounthelp as mh


def assert_refused(r, *names: object) -> str:
    text = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert r.returncode not in (0, None), f"expected a refusal\n{mh.describe(r)}"
    assert r.returncode < 128 and r.returncode > 0, f"crashed\n{mh.describe(r)}"
    assert not any(m in text for m in mh.CRASH_MARKERS), mh.describe(r)
    for n in names:
        assert str(n) in text, f"the message does not name {n}\n{mh.describe(r)}"
    return text


def no_mount_and_no_process(root: Path) -> None:
    assert mh.mounts_under(root) == [], f"mounted: {mh.mounts_under(root)}"
    assert mh.wait_until(lambda: mh.wkfs_processes(root) == [], 3), (
        f"wkfs processes left: {mh.wkfs_processes(root)}")


@pytest.fixture
def ds(dataset_copy) -> Path:
    return dataset_copy("wkw_raw_uint8_b8_f2")


@pytest.mark.parametrize("foreground", [False, True], ids=["daemon", "foreground"])
def test_missing_mountpoint(foreground, ds, tmp_path):
    mp = tmp_path / "does" / "not" / "exist"
    r = mh.wkfs("mount", ds, mp, *(["-f"] if foreground else []), timeout=20)
    assert_refused(r, mp)
    assert not mp.exists()
    no_mount_and_no_process(tmp_path)


@pytest.mark.parametrize("foreground", [False, True], ids=["daemon", "foreground"])
def test_mountpoint_not_empty(foreground, ds, tmp_path):
    mp = tmp_path / "full"
    mp.mkdir()
    (mp / "somebody's file").write_text("keep me")
    r = mh.wkfs("mount", ds, mp, *(["-f"] if foreground else []), timeout=20)
    assert_refused(r, mp)
    assert (mp / "somebody's file").read_text() == "keep me"
    no_mount_and_no_process(tmp_path)


def test_mountpoint_is_a_file(ds, tmp_path):
    mp = tmp_path / "file"
    mp.write_text("x")
    r = mh.wkfs("mount", ds, mp, timeout=20)
    assert_refused(r, mp)
    no_mount_and_no_process(tmp_path)


def test_mountpoint_busy(ds, dataset_copy, mounted, mountpoint, tmp_path):
    other = dataset_copy("wk433_color_uint8_raw")
    with mounted(ds):
        r = mh.wkfs("mount", other, mountpoint, timeout=20)
        assert_refused(r, mountpoint)
        # The first mount is untouched.
        entries = [e for e in mh.proc_mounts() if e["target"] == str(mountpoint)]
        assert len(entries) == 1, entries
        assert (mountpoint / "color" / "1").is_dir()
    no_mount_and_no_process(tmp_path)


@pytest.mark.parametrize("foreground", [False, True], ids=["daemon", "foreground"])
def test_dataset_missing(foreground, mountpoint, tmp_path):
    ds = tmp_path / "no_such_dataset"
    r = mh.wkfs("mount", ds, mountpoint, *(["-f"] if foreground else []), timeout=20)
    assert_refused(r, ds)
    assert os.listdir(mountpoint) == []
    no_mount_and_no_process(tmp_path)


def test_dataset_does_not_open(ds, mountpoint, tmp_path):
    props = ds / "datasource-properties.json"
    props.write_text('{"id": {"name": "x"}, "dataLayers": [ {')
    r = mh.wkfs("mount", ds, mountpoint, timeout=20)
    assert_refused(r, "datasource-properties.json")
    no_mount_and_no_process(tmp_path)
    # A directory that is no dataset at all.
    empty = tmp_path / "empty"
    empty.mkdir()
    r = mh.wkfs("mount", empty, mountpoint, timeout=20)
    assert_refused(r, empty)
    no_mount_and_no_process(tmp_path)


@pytest.mark.parametrize("options", ["cache_size=lots", "cache_size=-5M"])
def test_bad_option(options, ds, mountpoint, tmp_path):
    r = mh.wkfs("mount", ds, mountpoint, "-o", options, timeout=20)
    assert_refused(r, "cache_size")
    no_mount_and_no_process(tmp_path)


def test_daemon_cleans_up_after_it_forked_and_serves(ds, mountpoint, tmp_path):
    """A writable mount removes what killed writers left, on a thread: it once started that
    thread before the daemon forked, and a lock the thread held at the fork stayed held in the
    daemon (its first reads hung, seen once in a full run). Mounting now refuses to fork while
    another thread runs, so this fails every time instead of once in a while."""
    mag = ds / "color" / "1"
    xyz = mh.cube_files(mag)[0]
    data_file = mag / f"z{xyz[2]}" / f"y{xyz[1]}" / f"x{xyz[0]}.wkw"
    dead = 2**22 + 12345  # above the kernel's default pid_max: no such process runs
    stale = data_file.parent / f"{data_file.name}.{dead}-1.tmp"
    stale.write_bytes(b"partial")
    try:
        r = mh.wkfs("mount", ds, mountpoint, timeout=20)
        assert r.returncode == 0, mh.describe(r)
        assert mh.wait_until(lambda: mh.is_mounted(mountpoint), 5), "no mount after `wkfs mount` returned"
        cubes = [mountpoint / "color" / "1" / mh.cube_rel(*c) for c in mh.cube_files(mag)]
        assert cubes[0].read_bytes() == mh.wkw_read_cube(mag, xyz).tobytes()
        for cube in cubes:
            assert len(cube.read_bytes()) == os.path.getsize(cube)
        assert mh.wait_until(lambda: not stale.exists(), 10), f"{stale} was not removed"
        r = mh.wkfs("unmount", mountpoint, timeout=20)
        assert r.returncode == 0, mh.describe(r)
    finally:
        mh.emergency_cleanup(tmp_path)


def test_daemon_mount_and_wkfs_unmount(ds, mountpoint, tmp_path):
    """Without -f the command returns once mounted; `wkfs unmount` ends the daemon."""
    try:
        start = time.monotonic()
        r = mh.wkfs("mount", ds, mountpoint, "-o", "cache_size=64M", timeout=20)
        assert r.returncode == 0, mh.describe(r)
        assert mh.wait_until(lambda: mh.is_mounted(mountpoint), 5), "no mount after `wkfs mount` returned"
        assert time.monotonic() - start < 15
        daemons = mh.wkfs_processes(mountpoint)
        assert len(daemons) == 1, f"expected one daemon, found {daemons}"
        mag = ds / "color" / "1"
        xyz = mh.cube_files(mag)[0]
        assert (mountpoint / "color" / "1" / mh.cube_rel(*xyz)).read_bytes() == mh.wkw_read_cube(mag, xyz).tobytes()
        r = mh.wkfs("unmount", mountpoint, timeout=20)
        assert r.returncode == 0, mh.describe(r)
        assert not mh.is_mounted(mountpoint)
        assert mh.wait_until(lambda: mh.wkfs_processes(mountpoint) == [], 10), "the daemon did not exit"
        assert os.listdir(mountpoint) == []
    finally:
        mh.emergency_cleanup(tmp_path)


def test_unmount_errors(mountpoint, tmp_path):
    r = mh.wkfs("unmount", mountpoint, timeout=20)
    assert_refused(r, mountpoint)
    r = mh.wkfs("unmount", tmp_path / "missing", timeout=20)
    assert_refused(r, tmp_path / "missing")


def test_fusermount_ends_foreground_process(ds, mounted, mountpoint):
    """`fusermount3 -u` (what Mount does) ends `wkfs mount -f` with exit 0 and no crash."""
    m = mounted(ds)
    with m:
        assert m.proc.poll() is None
    assert m.returncode == 0 and m.unmounted_cleanly
    assert os.listdir(mountpoint) == []


def test_sigterm_unmounts(ds, mounted, mountpoint):
    """A foreground mount ended with SIGTERM (what systemd does) unmounts itself."""
    m = mounted(ds)
    with m:
        m.proc.terminate()
        assert mh.wait_until(lambda: not mh.is_mounted(mountpoint), 10), "SIGTERM left the mount"
        m.returncode = m.proc.wait(timeout=10)
        assert m.returncode in (0, 143, -15), m.returncode
