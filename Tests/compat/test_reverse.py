"""(c) The reverse direction: webknossos 4.3.3 writes a dataset, wkfs reads it and writes more
(unaligned, across files), then webknossos and wkw read both writes and the grown bounding box,
and webknossos can write again afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest
import webknossos as wk

import wkfs_helpers as h

CASES = [
    pytest.param(dict(dtype="uint8", channels=1, compress=True, chunk=8, shard=16, mag=(2, 2, 2)), id="uint8-lz4hc-b8f2"),
    pytest.param(dict(dtype="uint16", channels=1, compress=False, chunk=8, shard=32, mag=(2, 2, 1)), id="uint16-raw-b8f4-aniso"),
    pytest.param(dict(dtype="uint8", channels=3, compress=True, chunk=16, shard=32, mag=(2, 2, 2)), id="uint8x3-lz4hc-b16f2"),
    pytest.param(dict(dtype="float32", channels=1, compress=False, chunk=8, shard=16, mag=(2, 2, 1)), id="float32-raw-b8f2-aniso"),
]

CANVAS = (96, 96, 96)

# mag 1 (mag-1 voxels == mag voxels)
A_OFF, A_SIZE = (3, 5, 7), (20, 13, 9)  # webknossos, unaligned
B_OFF, B_SIZE = (14, 9, 12), (19, 21, 11)  # wkfs: crosses the 16- and 32-voxel file borders
C_OFF, C_SIZE = (30, 25, 14), (10, 10, 10)  # webknossos again, overlapping B
# the coarser mag: offsets in mag-1 voxels (aligned to the mag), data sizes in the mag's voxels
AM_OFF1, AM_SIZE = (4, 6, 8), (10, 7, 4)
BM_OFF1, BM_SIZE1 = (52, 56, 28), (24, 12, 8)  # wkfs with --mag1: crosses x=32, y=32 in the mag


def _div(v, m):
    return tuple(a // b for a, b in zip(v, m))


def _mul(v, m):
    return tuple(a * b for a, b in zip(v, m))


@pytest.mark.parametrize("case", CASES)
def test_webknossos_then_wkfs_then_webknossos(case, tmp_path):
    dtype, channels, mag = case["dtype"], case["channels"], case["mag"]
    mag_name = h.mag_dir_name(mag)
    rng = np.random.default_rng(99)
    path = tmp_path / "ds"

    # 1. webknossos creates and writes
    ds = wk.Dataset(path, voxel_size=(11.24, 11.24, 25.0))
    layer = ds.add_layer("color", "color", dtype=dtype, num_channels=channels, data_format="wkw")
    for m in ("1", mag_name):
        layer.add_mag(m, chunk_shape=case["chunk"], shard_shape=case["shard"], compress=case["compress"])
    c1 = h.Canvas(dtype, channels, CANVAS)
    cm = h.Canvas(dtype, channels, CANVAS)
    bbox = None

    a = h.random_array(rng, dtype, channels, A_SIZE)
    layer.get_mag("1").write(a, absolute_offset=A_OFF, allow_unaligned=True, allow_resize=True)
    c1.put(A_OFF, a)
    bbox = h.box_union(bbox, (A_OFF, A_SIZE))
    am = h.random_array(rng, dtype, channels, AM_SIZE)
    layer.get_mag(mag_name).write(am, absolute_offset=AM_OFF1, allow_unaligned=True, allow_resize=True)
    cm.put(_div(AM_OFF1, mag), am)
    bbox = h.box_union(bbox, (AM_OFF1, _mul(AM_SIZE, mag)))
    assert h.properties_bbox(h.properties_layer(path, "color")) == bbox

    # 2. wkfs reads the same bytes
    assert h.wkfs_read(path, "color", "1", A_OFF, A_SIZE) == h.to_bytes(a)
    assert h.wkfs_read(path, "color", mag_name, _div(AM_OFF1, mag), AM_SIZE) == h.to_bytes(am)
    for m, canvas in (((1, 1, 1), c1), (mag, cm)):
        off, size = h.box_in_mag(bbox, m)
        assert h.wkfs_read(path, "color", h.mag_dir_name(m)) == h.to_bytes(canvas.get(off, size))

    # 3. wkfs writes more: unaligned, across files, growing the bbox
    b = h.random_array(rng, dtype, channels, B_SIZE)
    h.wkfs_write(path, "color", "1", B_OFF, B_SIZE, h.to_bytes(b))
    c1.put(B_OFF, b)
    bbox = h.box_union(bbox, (B_OFF, B_SIZE))
    bm_size = _div(BM_SIZE1, mag)
    bm = h.random_array(rng, dtype, channels, bm_size)
    h.wkfs_write(path, "color", mag_name, BM_OFF1, BM_SIZE1, h.to_bytes(bm), mag1=True)
    cm.put(_div(BM_OFF1, mag), bm)
    bbox = h.box_union(bbox, (BM_OFF1, BM_SIZE1))

    # 4. the reference sees both writes and the grown bbox
    def check_with_reference():
        ds = wk.Dataset.open(path)
        layer = ds.get_layer("color")
        assert layer.bounding_box == wk.BoundingBox(*bbox)
        assert layer.num_channels == channels and np.dtype(layer.dtype) == np.dtype(dtype)
        for m, canvas in (((1, 1, 1), c1), (mag, cm)):
            name = h.mag_dir_name(m)
            off, size = h.box_in_mag(bbox, m)
            expected = canvas.get(off, size)
            np.testing.assert_array_equal(layer.get_mag(name).read(), expected)
            np.testing.assert_array_equal(h.wkw_read(path / "color" / name, off, size), expected)
            assert h.wkfs_read(path, "color", name) == h.to_bytes(expected)
            assert h.validate_mag_dir(path / "color" / name) == []
            hdr = h.wkw_header(path / "color" / name)
            assert hdr.block_type == (3 if case["compress"] else 1)

    check_with_reference()

    # 5. webknossos writes again, over what wkfs wrote
    c = h.random_array(rng, dtype, channels, C_SIZE)
    mag1 = wk.Dataset.open(path).get_layer("color").get_mag("1")
    mag1.write(c, absolute_offset=C_OFF, allow_unaligned=True, allow_resize=True)
    c1.put(C_OFF, c)
    bbox = h.box_union(bbox, (C_OFF, C_SIZE))
    check_with_reference()
    assert h.wkfs_read(path, "color", "1", B_OFF, B_SIZE) == h.to_bytes(c1.get(B_OFF, B_SIZE))

    proc = h.run_wkfs("check", path)
    h.assert_no_crash(proc)
    assert proc.returncode == 0, h.describe(proc)


@pytest.mark.parametrize("compress", ["--compress", "--no-compress"])
def test_copy_to_smaller_files_skips_files_of_zeros(compress, tmp_path):
    """wkfs copy into smaller files reads and writes neighbouring files together: every file
    with data is written with the right voxels (checked with wkw), files of zeros are not."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    h.wkfs_ok("create", src, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", src, "color", "--category", "color", "--dtype", "uint16")
    h.wkfs_ok("add-mag", src, "color", "1", "--block-len", "8", "--file-len", "4", "--compress")
    size = (96, 64, 48)  # x, y, z: 6 x 4 x 3 destination files of 16³
    data = np.random.default_rng(3).integers(1, 65536, size[::-1], dtype=np.uint16)
    empty = [(1, 0, 0), (4, 2, 1), (5, 3, 2), (0, 1, 2)]  # destination files (x, y, z) left zero
    for x, y, z in empty:
        data[z * 16:(z + 1) * 16, y * 16:(y + 1) * 16, x * 16:(x + 1) * 16] = 0
    h.wkfs_ok("write", src, "color", "1", "--offset", "0,0,0", "--size", h.csv(size), input=data.tobytes())
    h.wkfs_ok("copy", src, dst, "--block-len", "8", "--file-len", "2", compress)
    mag = dst / "color" / "1"
    present = {(int(p.stem[1:]), int(p.parent.name[1:]), int(p.parent.parent.name[1:])) for p in h.data_files(mag)}
    expected = {(x, y, z) for x in range(6) for y in range(4) for z in range(3)} - set(empty)
    assert present == expected
    got = h.wkw_read(mag, (0, 0, 0), size)  # (c, x, y, z)
    np.testing.assert_array_equal(got[0].transpose(2, 1, 0), data)
    assert h.validate_mag_dir(mag) == []
