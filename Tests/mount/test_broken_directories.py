"""A `zZ` or `yY` directory of a mag that is broken on disk (a file where the directory belongs,
a symbolic link loop, a link to nothing) holds cubes that are lost, not absent: the mount lists
it and fails with EIO when it is looked at, naming it in .wkfs/errors, while every other cube
still reads. Before, such cubes silently vanished from the listing, so `cp -r` of a mount
copied a dataset with holes and said nothing."""

from __future__ import annotations

import errno
import os
import shutil

import numpy as np
import pytest

import mounthelp as mh

WKW = "wk433_sparse"  # color_raw/1 has cubes in z0, z2 and z4
ZARR = "wk433z_color_uint8x3_zstd"


def _break(path, how):
    shutil.rmtree(path)
    if how == "file":
        path.write_bytes(b"not a directory")
    elif how == "loop":
        path.symlink_to(path.name)
    else:
        path.symlink_to("/nonexistent/elsewhere")


def _errno(call):
    with pytest.raises(OSError) as caught:
        call()
    return caught.value.errno


def _cubes(root):
    """The cubes (zZ/yY/xX.raw) under a mag of the mount."""
    return sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, fs in os.walk(root)
        for f in fs
        if f.startswith("x") and f.endswith(".raw")
    )


@pytest.mark.parametrize("how", ["file", "loop", "dangling"])
@pytest.mark.parametrize("level", ["z", "y"])
def test_a_broken_grid_directory_is_listed_and_fails_with_eio(dataset_copy, mounted, mountpoint, how, level):
    ds = dataset_copy(WKW)
    mag = ds / "color_raw" / "1"
    with mounted(ds):
        good = {c: (mountpoint / "color_raw" / "1" / c).read_bytes() for c in _cubes(mountpoint / "color_raw" / "1")}
    broken = mag / "z2" if level == "z" else mag / "z2" / "y1"
    assert any(c.startswith("z2/y1/") for c in good)
    _break(broken, how)
    name = "z2" if level == "z" else "y1"
    parent = mountpoint / "color_raw" / "1" / ("" if level == "z" else "z2")
    with mounted(ds):
        assert name in os.listdir(parent), f"{name} vanished from the listing of {parent}"
        view = parent / name
        assert _errno(lambda: os.stat(view)) == errno.EIO
        assert _errno(lambda: os.listdir(view)) == errno.EIO
        assert str(broken) in (mountpoint / ".wkfs" / "errors").read_text()
        # Every other cube reads as before.
        for cube, data in good.items():
            if not cube.startswith("z2/"):
                assert (mountpoint / "color_raw" / "1" / cube).read_bytes() == data, cube
        assert _errno(lambda: (mountpoint / "color_raw" / "1" / "volume.raw").read_bytes()) == errno.EIO
        # A copy of the mag says that it is incomplete.
        r = mh.run(["cp", "-r", mountpoint / "color_raw" / "1", mountpoint.parent / "copy"])
        assert r.returncode != 0, mh.describe(r)
        assert b"Input/output error" in r.stderr, mh.describe(r)


def test_a_mag_whose_chunk_keys_cannot_be_listed_fails_with_eio_not_empty(dataset_copy, mounted, mountpoint):
    """Zarr3 keys are c/X/Y/Z: a broken key directory cannot be placed in one zZ/yY directory,
    so listing the mag fails (before: the mag listed no cubes at all)."""
    ds = dataset_copy(ZARR)
    mag = ds / "color" / "1"
    key = next(p for p in sorted((mag / "c").rglob("*")) if p.is_dir() and p.parent != mag / "c")
    with mounted(ds):
        assert any(n.startswith("z") for n in os.listdir(mountpoint / "color" / "1"))
        before = np.fromfile(mountpoint / "color" / "2" / "z0" / "y0" / "x0.raw", dtype=np.uint8)
    _break(key, "file")
    with mounted(ds):
        assert _errno(lambda: os.listdir(mountpoint / "color" / "1")) == errno.EIO
        assert _errno(lambda: os.stat(mountpoint / "color" / "1" / "z0")) == errno.EIO
        assert str(key) in (mountpoint / ".wkfs" / "errors").read_text()
        # The other mag is untouched and reads as before.
        assert np.array_equal(np.fromfile(mountpoint / "color" / "2" / "z0" / "y0" / "x0.raw", dtype=np.uint8), before)


def test_a_cube_under_a_directory_replaced_after_it_was_looked_up_is_eio(dataset_copy, mounted, mountpoint):
    """The kernel keeps names it looked up: a z directory replaced by a file on disk afterwards
    made its cubes 'not there' (ENOENT, so rsync said "vanished" and went on); now EIO."""
    ds = dataset_copy(WKW)
    mag = ds / "color_raw" / "1"
    with mounted(ds):
        row = mountpoint / "color_raw" / "1" / "z2" / "y1"
        cube = next(n for n in os.listdir(row) if n.endswith(".raw"))
        os.stat(row)
        _break(mag / "z2", "file")
        assert _errno(lambda: os.stat(row / cube)) == errno.EIO
        assert str(mag / "z2") in (mountpoint / ".wkfs" / "errors").read_text()
