"""A full disk: every step that fails for lack of space says so, names the file, and leaves the
dataset exactly as it was (no half-written data file, no temporary file, no empty directory that
makes the retry fail); once there is room again, the same step succeeds.

Runs on a small tmpfs mounted by the test (needs root, as CI and `make test` have).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import wkfs_helpers as h

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB tmpfs, unmounted after the test even when it fails."""
    root = tmp_path / "disk"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,nr_inodes=4000", "tmpfs", str(root)], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fills the disk up to `leave` bytes of free space."""
    filler = disk / "filler"
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(filler, "ab", buffering=0) as f:
        f.write(b"\1" * max(0, free - leave))
    return filler


def _data_state(ds: Path) -> dict:
    """The snapshot, without the filler."""
    return {k: v for k, v in h.snapshot(ds).items()}


def _fails_for_space(*args, input: bytes | None = None) -> str:
    proc = h.run_wkfs(*args, input=input)
    h.assert_no_crash(proc)
    assert proc.returncode != 0, h.describe(proc)
    err = proc.stderr.decode(errors="replace")
    assert "No space left on device" in err or "no space" in err.lower(), err
    return err


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "lz4hc"])
def test_write_on_a_full_disk_changes_nothing(small_disk, compress):
    ds = small_disk / "ds"
    h.wkfs_ok("create", ds, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8")
    h.wkfs_ok("add-mag", ds, "color", "1", "--block-len", "16", "--file-len", "4",
              "--compress" if compress else "--no-compress")
    rng = np.random.default_rng(5)
    old = rng.integers(0, 255, size=(64, 128, 128), dtype=np.uint8)  # 2 files of 64³, 512 KiB
    h.wkfs_ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", "128,128,64", input=old.tobytes())
    # A partial patch of both existing files and two new ones: 4 MiB of random voxels.
    new = rng.integers(0, 255, size=(64, 128, 256), dtype=np.uint8)
    before = _data_state(ds)
    filler = _fill(small_disk, 256 << 10)
    err = _fails_for_space("write", ds, "color", "1", "--offset", "3,0,0", "--size", "256,128,64", input=new.tobytes())
    assert str(ds) in err, err
    h.assert_unchanged(ds, before)
    # With room again, the same write succeeds and reads back.
    filler.unlink()
    h.wkfs_ok("write", ds, "color", "1", "--offset", "3,0,0", "--size", "256,128,64", input=new.tobytes())
    got = h.wkw_read(ds / "color" / "1", (3, 0, 0), (256, 128, 64))[0].transpose(2, 1, 0)
    assert np.array_equal(got, new)
    h.wkfs_ok("check", ds)


def test_add_layer_and_add_mag_on_a_full_disk_leave_nothing(small_disk):
    ds = small_disk / "ds"
    h.wkfs_ok("create", ds, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8")
    before = _data_state(ds)
    filler = _fill(small_disk, 0)
    # Fill the last blocks too, so even a small properties file cannot be written.
    with open(filler, "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\1" * 4096)
        except OSError:
            pass
    _fails_for_space("add-mag", ds, "color", "1")
    h.assert_unchanged(ds, before)
    _fails_for_space("add-layer", ds, "segmentation", "--category", "segmentation", "--dtype", "uint32")
    h.assert_unchanged(ds, before)
    filler.unlink()
    h.wkfs_ok("add-mag", ds, "color", "1")
    h.wkfs_ok("add-layer", ds, "segmentation", "--category", "segmentation", "--dtype", "uint32")
    h.wkfs_ok("check", ds)


@pytest.mark.parametrize("grow", [False, True], ids=["overwrite", "growing"])
def test_zarr3_write_on_a_nearly_full_disk_changes_nothing(small_disk, grow):
    """A write of several shards with room for the first ones only: no shard is replaced, and
    zarr.json and the properties keep their shape and box (each shard used to be put in place
    as soon as it was ready, so the first ones held the new voxels and the rest the old)."""
    import zarr

    ds = small_disk / "ds"
    h.wkfs_ok("create", ds, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8", "--data-format", "zarr3")
    h.wkfs_ok("add-mag", ds, "color", "1", "--chunk-shape", "16", "--shard-shape", "64", "--compress")
    old = np.full((64, 128, 256), 7, np.uint8)  # 8 shards of a few KiB each
    h.wkfs_ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", "256,128,64", input=old.tobytes())
    new = np.random.default_rng(5).integers(0, 255, size=(64, 128, 320 if grow else 256), dtype=np.uint8)
    size = f"{new.shape[2]},128,64"
    before = _data_state(ds)
    filler = _fill(small_disk, 600 << 10)  # room for two shards of random voxels, not eight
    err = _fails_for_space("write", ds, "color", "1", "--offset", "0,0,0", "--size", size, input=new.tobytes())
    assert str(ds) in err, err
    h.assert_unchanged(ds, before)
    got = zarr.open_array(str(ds / "color" / "1"), mode="r")[0, :, :, :].transpose(2, 1, 0)
    assert got.shape == old.shape and np.array_equal(got, old)
    filler.unlink()
    h.wkfs_ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", size, input=new.tobytes())
    got = zarr.open_array(str(ds / "color" / "1"), mode="r")[0, :, :, :].transpose(2, 1, 0)
    assert np.array_equal(got, new)
    h.wkfs_ok("check", ds)
