"""mount-scripts/mount.wkfs: the helper mount(8) runs for `-t fuse.wkfs` and /etc/fstab lines.

mount(8) runs /sbin/mount.fuse.wkfs SOURCE MOUNTPOINT -o OPTIONS (checked with LIBMOUNT_DEBUG on
Debian 12); these tests call the helper the same way, without installing anything.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

import mounthelp as mh

HELPER = mh.REPO / "mount-scripts" / "mount.wkfs"


@pytest.fixture
def fake_wkfs(tmp_path) -> Path:
    """A stand-in binary that prints its arguments, one per line."""
    p = tmp_path / "fake-bin" / "wkfs"
    p.parent.mkdir()
    p.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    p.chmod(0o755)
    return p


def helper(*args, wkfs: Path, extra_env=None):
    env = dict(os.environ, WKFS=str(wkfs), **(extra_env or {}))
    return mh.run(["sh", HELPER, *args], env=env, timeout=20)


def test_options_are_filtered(fake_wkfs, tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    # What mount(8) passes for `defaults,allow_other,cache_size=512M,_netdev,nofail,user` in fstab.
    r = helper(str(ds), "/mnt/ds", "-o",
               "rw,noexec,nosuid,nodev,allow_other,cache_size=512M,_netdev,nofail,user,"
               "x-systemd.automount,x-systemd.requires=network.target,defaults,dev,suid,exec,auto,noauto",
               "-t", "fuse.wkfs", wkfs=fake_wkfs)
    assert r.returncode == 0, mh.describe(r)
    assert r.stdout.decode().splitlines() == ["mount", str(ds), "/mnt/ds", "-o", "allow_other,cache_size=512M"]


def test_ro_debug_flags_and_relative_source(fake_wkfs, tmp_path):
    (tmp_path / "rel").mkdir()
    env_cwd = tmp_path
    r = mh.run(["sh", HELPER, "rel", "/mnt/x", "-n", "-s", "-o", "ro", "-o", "debug,noatime"],
               env=dict(os.environ, WKFS=str(fake_wkfs)), cwd=env_cwd, timeout=20)
    assert r.returncode == 0, mh.describe(r)
    assert r.stdout.decode().splitlines() == ["mount", str(tmp_path / "rel"), "/mnt/x", "-o", "ro,debug"]
    # Nothing left to pass: no -o at all.
    r = helper("/data/ds", "/mnt/ds", "-o", "rw,defaults", wkfs=fake_wkfs)
    assert r.stdout.decode().splitlines() == ["mount", "/data/ds", "/mnt/ds"], mh.describe(r)
    # -f (fake) prints and runs nothing.
    r = helper("/data/ds", "/mnt/ds", "-fv", "-o", "ro", wkfs=fake_wkfs)
    assert r.returncode == 0 and r.stdout == b"" and b"mount /data/ds /mnt/ds -o ro" in r.stderr, mh.describe(r)


def test_usage_errors(fake_wkfs):
    for args in ([], ["/data/ds"], ["/a", "/b", "/c"], ["/a", "/b", "-x"]):
        r = helper(*args, wkfs=fake_wkfs)
        assert r.returncode != 0 and b"mount.wkfs" in r.stderr, mh.describe(r)
    r = helper("/a", "/b", wkfs=Path("/nonexistent/wkfs"))
    assert r.returncode != 0 and b"wkfs binary not found" in r.stderr, mh.describe(r)


def test_helper_mounts_for_real(dataset_copy, mountpoint, tmp_path):
    """The helper with the real binary: daemonizes, mounts with the options, umount ends it."""
    ds = dataset_copy("wkw_raw_uint8_b8_f2")
    if not mh.allow_other_ok():
        pytest.skip("allow_other needs root or user_allow_other in /etc/fuse.conf")
    try:
        r = helper(str(ds), str(mountpoint), "-o",
                   "rw,nosuid,nodev,allow_other,cache_size=32M,_netdev,nofail,x-systemd.automount",
                   wkfs=mh.WKFS_BIN)
        assert r.returncode == 0, mh.describe(r)
        assert mh.wait_until(lambda: mh.is_mounted(mountpoint), 5)
        assert "allow_other" in mh.mount_entry(mountpoint)["options"]
        mag = ds / "color" / "1"
        xyz = mh.cube_files(mag)[0]
        assert (mountpoint / "color" / "1" / mh.cube_rel(*xyz)).read_bytes() == \
            mh.wkw_read_cube(mag, xyz).tobytes()
        r = mh.run(["umount", mountpoint], timeout=20) if os.geteuid() == 0 else \
            mh.run([mh.FUSERMOUNT, "-u", mountpoint], timeout=20)
        assert r.returncode == 0, mh.describe(r)
        assert mh.wait_until(lambda: mh.wkfs_processes(mountpoint) == [], 10), "daemon still running"
    finally:
        mh.emergency_cleanup(tmp_path)


@pytest.mark.skipif(not os.path.exists("/sbin/mount.fuse.wkfs") or os.geteuid() != 0,
                    reason="mount.fuse.wkfs is not installed (mount-scripts/install.sh) or not root")
def test_mount_t_fuse_wkfs(dataset_copy, mountpoint, tmp_path):
    """`mount -t fuse.wkfs` through the installed helper (only where install.sh was run)."""
    ds = dataset_copy("wkw_raw_uint8_b8_f2")
    try:
        r = mh.run(["mount", "-t", "fuse.wkfs", ds, mountpoint, "-o", "ro,allow_other"], timeout=30,
                   env=dict(os.environ, WKFS=str(mh.WKFS_BIN)))
        assert r.returncode == 0, mh.describe(r)
        entry = mh.mount_entry(mountpoint)
        assert entry and "ro" in entry["options"] and "allow_other" in entry["options"], entry
        assert (mountpoint / "color" / "1").is_dir()
        r = mh.run(["umount", mountpoint], timeout=20)
        assert r.returncode == 0, mh.describe(r)
    finally:
        mh.emergency_cleanup(tmp_path)


def test_scripts_are_executable(tmp_path):
    for name in ("mount.wkfs", "install.sh", "demo.sh"):
        p = mh.REPO / "mount-scripts" / name
        assert p.is_file() and p.stat().st_mode & stat.S_IXUSR, p
    unit = (mh.REPO / "mount-scripts" / "wkfs@.service").read_text()
    assert "ExecStart=/usr/local/bin/wkfs mount ${DATASET} %f -f" in unit
    assert "ExecStop=/usr/local/bin/wkfs unmount %f" in unit
    if shutil.which("systemd-analyze"):
        shutil.copy(mh.REPO / "mount-scripts" / "wkfs@.service", tmp_path / "wkfs@.service")
        (tmp_path / "wkfs@mnt-ds.service").symlink_to("wkfs@.service")
        r = mh.run(["systemd-analyze", "verify", "--man=no", tmp_path / "wkfs@mnt-ds.service"], timeout=30)
        # Only complaints about the binary not being installed are acceptable here.
        bad = [l for l in (r.stdout + r.stderr).decode().splitlines()
               if l.strip() and "/usr/local/bin/wkfs" not in l and "not executable" not in l]
        assert not bad, "\n".join(bad)
