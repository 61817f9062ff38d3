"""(d) Every voxel type x block type {raw, lz4, lz4hc} x channels {1, 3}, both directions.

Small files (block 4, file 2: 8^3 voxels per file) so that small unaligned regions cross many
file and block borders.
- wkfs -> wkw: wkfs writes two overlapping unaligned regions; libwkw reads the same bytes.
  raw and lz4hc mags are made by `wkfs add-mag` (--no-compress / --compress); an lz4 mag (which
  add-mag cannot make) is made by wkw.Dataset.create and described by a properties file.
- wkw -> wkfs: libwkw makes the mag and writes (compressed files: whole files only, as libwkw
  requires); wkfs reads an unaligned region reaching into never-written files.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import wkw

import wkfs_helpers as h

BLOCK_LEN, FILE_LEN = 4, 2
FILE = BLOCK_LEN * FILE_LEN

W1_OFF, W1_SIZE = (3, 5, 6), (11, 7, 13)  # crosses x=8, y=8, z=8 and z=16
W2_OFF, W2_SIZE = (9, 10, 2), (9, 4, 6)  # overlaps W1, crosses x=16, y=8
READ_OFF, READ_SIZE = (1, 2, 0), (20, 16, 21)  # everything written plus zero margins
CANVAS = (32, 32, 32)

CASES = [
    pytest.param(dtype, bt, channels, id=f"{dtype}-{bt}-c{channels}")
    for dtype in h.DTYPES
    for bt in ("raw", "lz4", "lz4hc")
    for channels in (1, 3)
]


def _wkw_header(dtype: str, channels: int, block_type: int) -> wkw.Header:
    return wkw.Header(
        voxel_type=np.dtype(dtype).type,
        num_channels=channels,
        block_len=BLOCK_LEN,
        file_len=FILE_LEN,
        block_type=block_type,
    )


@pytest.mark.parametrize("dtype,bt,channels", CASES)
def test_wkfs_writes_wkw_reads(dtype, bt, channels, tmp_path):
    ds = tmp_path / "ds"
    mag_dir = ds / "layer" / "1"
    if bt == "lz4":
        mag_dir.mkdir(parents=True)
        wkw.Dataset.create(str(mag_dir), _wkw_header(dtype, channels, h.BLOCK_TYPE_LZ4)).close()
        h.write_properties(ds, [h.layer_entry("layer", dtype, channels, ((0, 0, 0), (0, 0, 0)), [((1, 1, 1), FILE)])])
    else:
        h.wkfs_ok("create", ds, "--voxel-size", "1,1,1")
        h.wkfs_ok("add-layer", ds, "layer", "--category", "color", "--dtype", dtype, "--channels", channels)
        h.wkfs_ok(
            "add-mag", ds, "layer", "1", "--block-len", BLOCK_LEN, "--file-len", FILE_LEN,
            "--compress" if bt == "lz4hc" else "--no-compress",
        )

    rng = np.random.default_rng(zlib.crc32(f"{dtype}-{bt}-{channels}".encode()))
    canvas = h.Canvas(dtype, channels, CANVAS)
    for off, size in ((W1_OFF, W1_SIZE), (W2_OFF, W2_SIZE)):
        data = h.random_array(rng, dtype, channels, size)
        h.wkfs_write(ds, "layer", "1", off, size, h.to_bytes(data))
        canvas.put(off, data)

    expected = canvas.get(READ_OFF, READ_SIZE)
    got = h.wkw_read(mag_dir, READ_OFF, READ_SIZE)
    assert got.dtype == np.dtype(dtype)
    if h.to_bytes(got) != h.to_bytes(expected):
        pytest.fail("libwkw reads other bytes: " + h.first_difference(h.to_bytes(got), h.to_bytes(expected)))

    hdr = h.wkw_header(mag_dir)
    assert hdr.block_type == h.BLOCK_TYPES[bt]
    assert (hdr.block_len, hdr.file_len, hdr.num_channels) == (BLOCK_LEN, FILE_LEN, channels)
    assert h.validate_mag_dir(mag_dir) == []
    bbox = h.box_union((W1_OFF, W1_SIZE), (W2_OFF, W2_SIZE))
    assert h.properties_bbox(h.properties_layer(ds, "layer")) == bbox
    assert h.wkfs_read(ds, "layer", "1", READ_OFF, READ_SIZE) == h.to_bytes(expected)


@pytest.mark.parametrize("dtype,bt,channels", CASES)
def test_wkw_writes_wkfs_reads(dtype, bt, channels, tmp_path):
    ds = tmp_path / "ds"
    mag_dir = ds / "layer" / "1"
    mag_dir.mkdir(parents=True)
    rng = np.random.default_rng(zlib.crc32(f"r-{dtype}-{bt}-{channels}".encode()))
    canvas = h.Canvas(dtype, channels, CANVAS)
    if bt == "raw":
        writes = [(W1_OFF, W1_SIZE), (W2_OFF, W2_SIZE)]
    else:  # libwkw writes compressed files only whole
        writes = [((8, 0, 8), (16, 8, 8)), ((0, 8, 0), (8, 8, 8))]
    with wkw.Dataset.create(str(mag_dir), _wkw_header(dtype, channels, h.BLOCK_TYPES[bt])) as w:
        for off, size in writes:
            data = h.random_array(rng, dtype, channels, size)
            w.write(list(off), np.asfortranarray(data))
            canvas.put(off, data)
    bbox = None
    for off, size in writes:
        bbox = h.box_union(bbox, (off, size))
    h.write_properties(ds, [h.layer_entry("layer", dtype, channels, bbox, [((1, 1, 1), FILE)])])
    before = h.snapshot(ds)

    expected = canvas.get(READ_OFF, READ_SIZE)
    assert h.to_bytes(h.wkw_read(mag_dir, READ_OFF, READ_SIZE)) == h.to_bytes(expected)
    got = h.wkfs_read(ds, "layer", "1", READ_OFF, READ_SIZE)
    if got != h.to_bytes(expected):
        pytest.fail("wkfs reads other bytes than libwkw wrote: " + h.first_difference(got, h.to_bytes(expected)))
    # the default read is the bbox
    assert h.wkfs_read(ds, "layer", "1") == h.to_bytes(canvas.get(*bbox))
    h.assert_unchanged(ds, before)  # reading never changes anything
