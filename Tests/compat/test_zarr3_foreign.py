"""Zarr3 arrays as zarr-python writes them beyond webknossos's defaults.

Fill values other than 0: chunks and shards never written read as the fill value in every
operation, as zarr-python reads them, not as zeros.

The data is a 40³ uint8 array of fill 9 with values only in its [0:10]³ corner, so zarr-python
stores no file for most of it; sharded (16³ shards of 8³ chunks) and unsharded (8³ chunks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import wkfs_helpers as h

SIZE = (40, 40, 40)
FILL = 9


def _expected() -> np.ndarray:
    data = np.full((1, *SIZE), FILL, np.uint8)
    data[0, :10, :10, :10] = np.arange(1000, dtype=np.uint16).reshape(10, 10, 10) % 50 + 100
    return data


def _foreign_dataset(root: Path, sharded: bool, compressed: bool = True) -> Path:
    """A dataset whose layer 'color' mag 1 is a zarr-python array with fill value 9 (zstd, or
    no compressor)."""
    import zarr

    ds = root / "foreign"
    (ds / "color").mkdir(parents=True)
    layout = dict(chunks=(1, 8, 8, 8), shards=(1, 16, 16, 16)) if sharded else dict(chunks=(1, 8, 8, 8))
    if not compressed:
        layout["compressors"] = None
    array = zarr.create_array(ds / "color" / "1", shape=(1, *SIZE), dtype="uint8", fill_value=FILL,
                              attributes={"mine": 1}, dimension_names=["c", "x", "y", "z"], **layout)
    array[...] = _expected()
    entry = h.layer_entry("color", "uint8", 1, ((0, 0, 0), SIZE), [((1, 1, 1), 0)])
    entry["dataFormat"] = "zarr3"
    del entry["mags"][0]["cubeLength"]
    h.write_properties(ds, [entry])
    files = [p for p in (ds / "color" / "1" / "c").rglob("*") if p.is_file()]
    assert 0 < len(files) < (8 if sharded else 125), "zarr-python should have left chunks out"
    return ds


def _read(ds: Path, mag: str = "1", size=SIZE) -> np.ndarray:
    return h.from_bytes(h.wkfs_read(ds, "color", mag, (0, 0, 0), size), "uint8", 1, size)


@pytest.fixture(params=[False, True], ids=["unsharded", "sharded"])
def foreign(request, tmp_path) -> Path:
    return _foreign_dataset(tmp_path, request.param)


def test_read_gives_the_fill_value(foreign):
    assert np.array_equal(_read(foreign), _expected())


@pytest.mark.parametrize("data_format", [None, "wkw", "zarr3"])
def test_copy_keeps_the_fill_value_or_writes_it(foreign, tmp_path, data_format):
    """A Zarr3 copy keeps fill_value 9 (missing stays missing); WKW has no fill value, so the
    copy writes the 9s into its files."""
    target = tmp_path / "copy"
    h.wkfs_ok("copy", foreign, target, *(["--data-format", data_format] if data_format else []))
    assert np.array_equal(_read(target), _expected())
    if data_format != "wkw":
        assert json.loads((target / "color" / "1" / "zarr.json").read_text())["fill_value"] == FILL


def test_downsample_of_missing_chunks_is_the_fill_value(foreign):
    h.wkfs_ok("downsample", foreign, "color")
    mag2 = _read(foreign, "2", (20, 20, 20))
    assert np.all(mag2[0, 5:, 5:, 5:] == FILL), np.unique(mag2[0, 5:, 5:, 5:])
    assert np.all(mag2[0, 10:, 10:, 10:] == FILL)


def test_add_mag_takes_the_fill_value_of_the_layer(foreign):
    """A mag added by hand reads missing data as the layer's other mags do (it made a fill-0 mag
    beside the fill-9 one: a region read 0 in one mag and 9 in the other)."""
    import zarr

    h.wkfs_ok("add-mag", foreign, "color", "2", "--chunk-shape", "8", "--shard-shape", "16")
    assert zarr.open_array(foreign / "color" / "2", mode="r").fill_value == FILL
    assert np.all(_read(foreign, "2", (20, 20, 20)) == FILL)


def test_add_mag_next_to_an_unreadable_mag(foreign):
    """The fill value comes from the first mag that opens (a corrupt mag 1 beside a fill-9 mag 4
    gave a fill-0 mag 2); when no mag opens, add-mag refuses, naming the mag, and adds nothing."""
    import zarr

    h.wkfs_ok("add-mag", foreign, "color", "4", "--chunk-shape", "8", "--shard-shape", "16")
    (foreign / "color" / "1" / "zarr.json").write_text("{ not json")
    h.wkfs_ok("add-mag", foreign, "color", "2", "--chunk-shape", "8", "--shard-shape", "16")
    assert zarr.open_array(foreign / "color" / "2", mode="r").fill_value == FILL
    (foreign / "color" / "4" / "zarr.json").write_text("{ not json")
    (foreign / "color" / "2" / "zarr.json").write_text("{ not json")
    before = (foreign / "datasource-properties.json").read_bytes()
    proc = h.wkfs_fails("add-mag", foreign, "color", "8", "--chunk-shape", "8", "--shard-shape", "16")
    message = proc.stderr.decode()
    assert str(foreign / "color" / "1") in message and "fill value" in message, message
    assert (foreign / "datasource-properties.json").read_bytes() == before
    assert not (foreign / "color" / "8").exists()


def test_compress_keeps_voxels_fill_value_and_attributes(tmp_path):
    import zarr

    ds = _foreign_dataset(tmp_path, sharded=True)
    # An uncompressed array, with one chunk of real zeros (not the fill value) among the data.
    array = zarr.open_array(ds / "color" / "1", mode="r+")
    raw = ds / "raw"
    h.wkfs_ok("copy", ds, raw, "--no-compress")
    zarr.open_array(raw / "color" / "1", mode="r+")[0, 16:24, 16:24, 16:24] = 0
    expected = zarr.open_array(raw / "color" / "1", mode="r")[...]
    assert array.fill_value == FILL
    h.wkfs_ok("compress", raw)
    after = zarr.open_array(raw / "color" / "1", mode="r")
    assert np.array_equal(after[...], expected)
    meta = json.loads((raw / "color" / "1" / "zarr.json").read_text())
    assert meta["fill_value"] == FILL
    assert any(c["name"] == "sharding_indexed" and any(i["name"] == "zstd" for i in c["configuration"]["codecs"])
               for c in meta["codecs"])


def test_compress_keeps_the_attributes_of_the_array(tmp_path):
    import zarr

    ds = _foreign_dataset(tmp_path, sharded=False, compressed=False)
    h.wkfs_ok("compress", ds)
    after = zarr.open_array(ds / "color" / "1", mode="r")
    assert after.attrs.asdict() == {"mine": 1}
    assert any(c["name"] == "zstd" for c in json.loads((ds / "color" / "1" / "zarr.json").read_text())["codecs"])
    assert after.fill_value == FILL
    assert np.array_equal(after[...], _expected())


@pytest.mark.parametrize("sharded", [False, True], ids=["unsharded", "sharded"])
def test_crc32c_before_zstd_reads_and_writes(tmp_path, sharded):
    """zarr-python writes `bytes`, `crc32c`, `zstd` (the checksum inside the compressed data) as
    readily as the usual order; wkfs reads it, checks it, and writes it back readable."""
    import zarr
    from zarr.codecs import Crc32cCodec, ZstdCodec

    ds = tmp_path / "crc"
    (ds / "color").mkdir(parents=True)
    layout = dict(chunks=(1, 8, 8, 8), shards=(1, 16, 16, 16)) if sharded else dict(chunks=(1, 8, 8, 8))
    data = np.random.default_rng(1).integers(0, 255, (1, 24, 24, 24), dtype=np.uint8)
    array = zarr.create_array(ds / "color" / "1", shape=data.shape, dtype="uint8", compressors=[Crc32cCodec(), ZstdCodec()],
                              dimension_names=["c", "x", "y", "z"], **layout)
    array[...] = data
    entry = h.layer_entry("color", "uint8", 1, ((0, 0, 0), (24, 24, 24)), [((1, 1, 1), 0)])
    entry["dataFormat"] = "zarr3"
    del entry["mags"][0]["cubeLength"]
    h.write_properties(ds, [entry])
    assert np.array_equal(h.from_bytes(h.wkfs_read(ds, "color", "1", (0, 0, 0), (24, 24, 24)), "uint8", 1, (24, 24, 24)), data)
    h.wkfs_ok("check", ds)
    h.wkfs_write(ds, "color", "1", (3, 4, 5), (2, 2, 2), bytes(range(8)))
    data[0, 3:5, 4:6, 5:7] = np.arange(8, dtype=np.uint8).reshape(2, 2, 2).transpose(2, 1, 0)
    assert np.array_equal(zarr.open_array(ds / "color" / "1", mode="r")[...], data)


def test_negative_zero_fill_value_keeps_its_sign(tmp_path):
    import zarr

    ds = tmp_path / "negzero"
    (ds / "color").mkdir(parents=True)
    array = zarr.create_array(ds / "color" / "1", shape=(1, 16, 16, 16), chunks=(1, 8, 8, 8), dtype="float32",
                              fill_value=-0.0, dimension_names=["c", "x", "y", "z"])
    array[0, :8, :8, :8] = 1.0
    entry = h.layer_entry("color", "float32", 1, ((0, 0, 0), (16, 16, 16)), [((1, 1, 1), 0)])
    entry["dataFormat"] = "zarr3"
    del entry["mags"][0]["cubeLength"]
    h.write_properties(ds, [entry])
    assert h.wkfs_read(ds, "color", "1", (8, 8, 8), (1, 1, 1)) == b"\x00\x00\x00\x80"
    h.wkfs_ok("copy", ds, tmp_path / "copy")
    assert h.wkfs_read(tmp_path / "copy", "color", "1", (8, 8, 8), (1, 1, 1)) == b"\x00\x00\x00\x80"


def test_compress_of_a_3d_array_leaves_a_dataset_webknossos_reads(tmp_path):
    """wkfs rewrites a 3-D array (no channel axis) as (c, x, y, z); the properties entry says so."""
    import zarr

    ds = tmp_path / "flat"
    (ds / "color").mkdir(parents=True)
    data = np.random.default_rng(3).integers(0, 255, (24, 24, 24), dtype=np.uint8)
    zarr.create_array(ds / "color" / "1", shape=data.shape, chunks=(8, 8, 8), dtype="uint8", compressors=None,
                      fill_value=9, dimension_names=["x", "y", "z"])[...] = data
    entry = h.layer_entry("color", "uint8", 1, ((0, 0, 0), (24, 24, 24)), [((1, 1, 1), 0)])
    entry["dataFormat"] = "zarr3"
    del entry["mags"][0]["cubeLength"]
    entry["mags"][0]["axisOrder"] = {"x": 0, "y": 1, "z": 2}
    h.write_properties(ds, [entry])
    h.wkfs_ok("compress", ds)
    copy = tmp_path / "copy"
    h.wkfs_ok("copy", ds, copy)
    import webknossos as wk

    for dataset in (ds, copy):
        view = wk.Dataset.open(dataset).get_layer("color").get_mag("1")
        assert np.array_equal(view.read(absolute_offset=(0, 0, 0), size=(24, 24, 24))[0], data), dataset
