"""Regressions found in review: each of these once lost data, served stale data or crashed."""

from __future__ import annotations

import errno
import os
import pytest

import mounthelp as mh

RAW = "wk433_color_uint8_raw"
LZ4HC = "wk433_color_uint8_lz4hc"


def first_cube(dataset, layer="color", mag="1"):
    x, y, z = mh.cube_files(dataset / layer / mag)[0]
    return (x, y, z), mh.cube_rel(x, y, z)


@pytest.mark.parametrize("name", [RAW, LZ4HC])
def test_two_descriptors_on_one_cube_both_land(name, dataset_copy, mounted, mountpoint):
    """Two handles writing the same block: both writes survive (a program's write() and its
    mmap writeback use different handles)."""
    ds = dataset_copy(name)
    xyz, rel = first_cube(ds)
    with mounted(ds):
        path = mountpoint / "color" / "1" / rel
        a = os.open(path, os.O_RDWR)
        b = os.open(path, os.O_RDWR)
        os.pwrite(a, b"\xaa", 0)
        os.pwrite(b, b"\xbb", 1)
        os.close(a)
        os.close(b)
        assert mh.read_file_through_mount(path)[:2] == b"\xaa\xbb"
    cube = mh.wkw_read_cube(ds / "color" / "1", xyz).reshape(-1)
    assert bytes(cube[:2]) == b"\xaa\xbb"


def test_changes_made_outside_the_mount_are_seen_and_kept(dataset_copy, mounted, mountpoint):
    """A file rewritten by another program while mounted: the mount reads the new data and a
    later write through the mount does not bring the old data back."""
    ds = dataset_copy(LZ4HC)
    (x, y, z), rel = first_cube(ds)
    header = mh.read_header(ds / "color" / "1" / "header.wkw")
    side = header["side"]
    with mounted(ds):
        path = mountpoint / "color" / "1" / rel
        before = mh.read_file_through_mount(path)  # fills the mount's block cache
        # Another program writes the last voxel of the cube.
        last = (x * side + side - 1, y * side + side - 1, z * side + side - 1)
        src = mountpoint.parent / "one.raw"
        src.write_bytes(bytes([(before[-1] + 1) % 256]))
        proc = mh.wkfs("write", ds, "color", "1", "--offset", ",".join(map(str, last)), "--size", "1,1,1",
                       "--input", src)
        assert proc.returncode == 0, mh.describe(proc)
        # Then a write through the mount rebuilds the file from what is on disk now.
        with open(path, "r+b", buffering=0) as f:
            f.write(b"\x07")
    out = mh.wkw_read_cube(ds / "color" / "1", (x, y, z)).reshape(-1)
    assert out[0] == 7
    assert out[-1] == (before[-1] + 1) % 256, "the write made outside the mount was undone"


def test_mags_of_a_linked_layer_cannot_be_made_or_removed(dataset_copy, mounted, mountpoint):
    ds = dataset_copy("wk433_with_symlink_layer")
    target = (ds / "segmentation").resolve()
    before = mh.snapshot(target)
    with mounted(ds):
        linked = mountpoint / ".wkfs" / "links" / "segmentation"
        assert mh.oserror_errno(os.rmdir, linked / "2") == errno.EPERM
        assert mh.oserror_errno(os.mkdir, linked / "8") == errno.EPERM
    assert mh.snapshot(target) == before


def test_rmdir_of_a_mag_with_a_broken_header_keeps_its_data(dataset_copy, mounted, mountpoint):
    ds = dataset_copy(RAW)
    mag_dir = ds / "color" / "4"
    (mag_dir / "header.wkw").write_bytes(b"garbage")
    before = mh.snapshot(ds)
    with mounted(ds):
        code = mh.oserror_errno(os.rmdir, mountpoint / "color" / "4")
        assert code is not None and code != 0
    assert mh.snapshot(ds) == before


def test_huge_offsets_and_sizes_do_not_crash_the_mount(dataset_copy, mounted, mountpoint):
    ds = dataset_copy(RAW)
    before = mh.sha256_file(ds / "datasource-properties.json")
    with mounted(ds):
        fd = os.open(mountpoint / "datasource-properties.json", os.O_WRONLY)
        try:
            with pytest.raises(OSError) as info:
                os.pwrite(fd, b"x", 1 << 44)
            assert info.value.errno == errno.EFBIG
        finally:
            os.close(fd)
        assert mh.oserror_errno(os.mkdir, mountpoint / "color" / "2097152") == errno.EINVAL
        assert mh.is_mounted(mountpoint)
        assert (mountpoint / "color").is_dir()
    assert mh.sha256_file(ds / "datasource-properties.json") == before
    assert not (ds / "color" / "2097152").exists()


def test_raw_cube_with_holes(tmp_path, mounted, mountpoint):
    """Raw data files are sparse: blocks in a hole are served as zeros without being read, and
    data written into a hole later (by another program) is seen at once."""
    ds = tmp_path / "holes"
    mh.new_dataset(ds, "uint16", 8, 4)
    side, item = 32, 2

    def write_voxel(xyz, value):
        src = tmp_path / "voxel.raw"
        src.write_bytes(value.to_bytes(item, "little"))
        proc = mh.wkfs("write", ds, "color", "1", "--offset", ",".join(map(str, xyz)), "--size", "1,1,1",
                       "--input", src)
        assert proc.returncode == 0, mh.describe(proc)

    def voxel(data, xyz):
        x, y, z = xyz
        at = ((z * side + y) * side + x) * item
        return int.from_bytes(data[at:at + item], "little")

    first, second = (3, 5, 7), (30, 29, 28)  # different blocks, far apart in the file
    write_voxel(first, 0x1234)
    data_file = ds / "color" / "1" / "z0" / "y0" / "x0.wkw"
    assert os.stat(data_file).st_blocks * 512 < os.stat(data_file).st_size // 2, "the raw file is not sparse"
    with mounted(ds):
        path = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        data = mh.read_file_through_mount(path)
        assert len(data) == side ** 3 * item
        assert voxel(data, first) == 0x1234
        assert sum(1 for b in data if b) == 2  # nothing but the one voxel
        write_voxel(second, 0xBEEF)
        data = mh.read_file_through_mount(path)
        assert voxel(data, first) == 0x1234 and voxel(data, second) == 0xBEEF
        assert sum(1 for b in data if b) == 4
