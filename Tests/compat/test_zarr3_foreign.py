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


def _declare_layer(ds: Path, dtype: str, channels: int, size, axis_order: dict | None = None) -> None:
    """The properties of a dataset whose one layer 'color' (mag 1, box `size` from the origin)
    is the Zarr3 array at ds/color/1."""
    entry = h.layer_entry("color", dtype, channels, ((0, 0, 0), size), [((1, 1, 1), 0)])
    entry["dataFormat"] = "zarr3"
    del entry["mags"][0]["cubeLength"]
    if axis_order is not None:
        entry["mags"][0]["axisOrder"] = axis_order
    h.write_properties(ds, [entry])


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
    _declare_layer(ds, "uint8", 1, SIZE)
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
    _declare_layer(ds, "uint8", 1, (24, 24, 24))
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
    _declare_layer(ds, "float32", 1, (16, 16, 16))
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
    _declare_layer(ds, "uint8", 1, (24, 24, 24), axis_order={"x": 0, "y": 1, "z": 2})
    h.wkfs_ok("compress", ds)
    copy = tmp_path / "copy"
    h.wkfs_ok("copy", ds, copy)
    import webknossos as wk

    for dataset in (ds, copy):
        view = wk.Dataset.open(dataset).get_layer("color").get_mag("1")
        assert np.array_equal(view.read(absolute_offset=(0, 0, 0), size=(24, 24, 24))[0], data), dataset


def _zarr_python_layer(ds: Path, dtype: str, channels: int, size, **create) -> "zarr.Array":
    """A dataset at `ds` whose layer 'color' mag 1 is a new zarr-python array of `size` (x, y, z)."""
    import zarr

    (ds / "color").mkdir(parents=True)
    array = zarr.create_array(ds / "color" / "1", shape=(channels, *size), dtype=dtype,
                              dimension_names=["c", "x", "y", "z"], **create)
    _declare_layer(ds, dtype, channels, size)
    return array


def _codec(name: str):
    from zarr.codecs import BloscCodec, GzipCodec

    return {
        "gzip": lambda: GzipCodec(level=6),
        "blosc-lz4-shuffle": lambda: BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
        "blosc-zstd-bitshuffle": lambda: BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
        "blosc-zlib-noshuffle": lambda: BloscCodec(cname="zlib", clevel=1, shuffle="noshuffle"),
        "blosc-blosclz": lambda: BloscCodec(cname="blosclz", clevel=9, shuffle="shuffle", blocksize=256),
    }[name]()


CODECS = ["gzip", "blosc-lz4-shuffle", "blosc-zstd-bitshuffle", "blosc-zlib-noshuffle", "blosc-blosclz"]


@pytest.mark.parametrize("sharded", [False, True], ids=["unsharded", "sharded"])
@pytest.mark.parametrize("codec", CODECS)
def test_gzip_and_blosc_chunks_read_and_write(tmp_path, codec, sharded):
    """zarr-python's other compressors (gzip, blosc with each shuffle): wkfs reads every voxel,
    writes with the array's own codecs, and zarr-python and tensorstore read what it wrote."""
    import tensorstore as ts
    import zarr

    dtype, channels = ("uint16", 2) if "shuffle" in codec else ("uint8", 1)
    size = (32, 32, 16)
    ds = tmp_path / "ds"
    layout = dict(chunks=(channels, 8, 8, 8), shards=(channels, 16, 16, 16)) if sharded else dict(chunks=(channels, 8, 8, 8))
    array = _zarr_python_layer(ds, dtype, channels, size, compressors=[_codec(codec)], fill_value=3, **layout)
    data = np.full((channels, *size), 3, dtype)
    data[:, :14, :, :10] = np.random.default_rng(5).integers(0, 60000 if dtype == "uint16" else 250,
                                                             (channels, 14, size[1], 10)).astype(dtype)
    array[...] = data
    before = (ds / "color" / "1" / "zarr.json").read_bytes()

    assert np.array_equal(h.from_bytes(h.wkfs_read(ds, "color", "1", (0, 0, 0), size), dtype, channels, size), data)
    h.wkfs_ok("check", ds)
    # A box across chunk (and shard) edges, partly into chunks zarr-python never stored; inside
    # the shape (whole shards), so zarr.json is not rewritten.
    box_offset, box_size = (12, 13, 5), (9, 9, 6)
    patch = np.random.default_rng(6).integers(0, 200, (channels, *box_size)).astype(dtype)
    h.wkfs_write(ds, "color", "1", box_offset, box_size, h.to_bytes(patch))
    (x, y, z), (w, hh, d) = box_offset, box_size
    data[:, x:x + w, y:y + hh, z:z + d] = patch

    assert (ds / "color" / "1" / "zarr.json").read_bytes() == before, "the codecs and fill value stay as they were"
    assert np.array_equal(zarr.open_array(ds / "color" / "1", mode="r")[...], data)
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(ds / "color" / "1")}}).result()
    assert np.array_equal(store.read().result(), data)
    assert np.array_equal(h.from_bytes(h.wkfs_read(ds, "color", "1", (0, 0, 0), size), dtype, channels, size), data)
    if not sharded:
        # The chunk wkfs rewrote is in the array's codec's format, not stored raw.
        stored = (ds / "color" / "1" / "c" / "0" / "0" / "0" / "0").read_bytes()
        assert stored[:2] == b"\x1f\x8b" if codec == "gzip" else stored[0] == 2, stored[:4]  # gzip magic / blosc format 2


@pytest.mark.parametrize("codec", ["gzip", "blosc-lz4-shuffle"])
@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_gzip_or_blosc_chunk_is_an_error_naming_it(tmp_path, codec, damage):
    ds = tmp_path / "ds"
    array = _zarr_python_layer(ds, "uint8", 1, (16, 16, 16), compressors=[_codec(codec)], chunks=(1, 8, 8, 8))
    array[...] = np.random.default_rng(2).integers(0, 4, (1, 16, 16, 16)).astype("uint8")
    chunk = ds / "color" / "1" / "c" / "0" / "1" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    if damage == "truncated":
        raw = raw[:len(raw) // 2]
    else:
        raw[len(raw) // 2:] = bytes(len(raw) - len(raw) // 2)
    chunk.write_bytes(bytes(raw))
    snapshot = h.snapshot(ds)
    proc = h.wkfs_fails("read", ds, "color", "1", "--offset", "0,0,0", "--size", "16,16,16")
    message = proc.stderr.decode()
    assert "c/0/1/0/0" in message and ("gzip" in message or "blosc" in message), message
    proc = h.wkfs_fails("write", ds, "color", "1", "--offset", "7,7,7", "--size", "2,2,2", input=bytes(8))
    assert "c/0/1/0/0" in proc.stderr.decode(), h.describe(proc)
    h.assert_unchanged(ds, snapshot)
    assert "c/0/1/0/0" in h.wkfs_fails("check", ds).stdout.decode() + h.wkfs_fails("check", ds).stderr.decode()


def test_blosc_and_gzip_configurations_outside_the_specification_are_refused(tmp_path):
    ds = tmp_path / "ds"
    _zarr_python_layer(ds, "uint8", 1, (16, 16, 16), compressors=[_codec("gzip")], chunks=(1, 8, 8, 8))
    meta = ds / "color" / "1" / "zarr.json"
    text = meta.read_text()
    for old, new, needle in [('"level": 6', '"level": 12', "'gzip' needs a 'level' from 0 to 9"),
                             ('"name": "gzip"', '"name": "blosc"', "blosc 'cname'")]:
        edited = json.loads(text.replace(old, new))
        if new == '"name": "blosc"':
            edited["codecs"][-1]["configuration"] = {"cname": "lzma", "clevel": 5, "shuffle": "shuffle", "blocksize": 0}
        meta.write_text(json.dumps(edited, indent=2))
        proc = h.wkfs_fails("read", ds, "color", "1", "--offset", "0,0,0", "--size", "8,8,8")
        assert needle in proc.stderr.decode() and "zarr.json" in proc.stderr.decode(), h.describe(proc)


@pytest.mark.parametrize("chain", ["zstd-zstd", "zstd-blosc", "gzip-zstd", "crc32c-crc32c-transposed"])
def test_stacked_compressors_and_checksums_read_and_write(tmp_path, chain):
    """Chains zarr-python writes as readily as one compressor: two compressors in a row (the
    inner one's size is what its data says), and two checksums under webknossos's transpose.
    They were reported as corrupt (every chunk, also by check)."""
    import tensorstore as ts
    import zarr
    from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, TransposeCodec, ZstdCodec

    compressors, filters = {
        "zstd-zstd": ([ZstdCodec(level=3), ZstdCodec(level=1)], None),
        "zstd-blosc": ([ZstdCodec(), BloscCodec(cname="lz4", shuffle="noshuffle")], None),
        "gzip-zstd": ([GzipCodec(level=1), ZstdCodec()], None),
        "crc32c-crc32c-transposed": ([Crc32cCodec(), Crc32cCodec()], [TransposeCodec(order=[3, 2, 1, 0])]),
    }[chain]
    size = (16, 16, 16)
    ds = tmp_path / "ds"
    array = _zarr_python_layer(ds, "uint16", 1, size, chunks=(1, 8, 8, 4), compressors=compressors, filters=filters)
    data = (np.arange(16 ** 3, dtype=np.uint16).reshape(1, *size) % 700).astype(np.uint16)
    array[...] = data
    assert np.array_equal(h.from_bytes(h.wkfs_read(ds, "color", "1", (0, 0, 0), size), "uint16", 1, size), data)
    h.wkfs_ok("check", ds)
    patch = np.full((1, 5, 6, 7), 4242, np.uint16)
    h.wkfs_write(ds, "color", "1", (3, 4, 5), (5, 6, 7), h.to_bytes(patch))
    data[:, 3:8, 4:10, 5:12] = patch
    assert np.array_equal(zarr.open_array(ds / "color" / "1", mode="r")[...], data)
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(ds / "color" / "1")}}).result()
    assert np.array_equal(store.read().result(), data)


def test_null_dimension_names_are_unnamed_dimensions(tmp_path):
    """zarr-python writes `"dimension_names": [null, null, null, null]` for an array created
    without names given: those are unnamed, not names that are wrong."""
    ds = tmp_path / "ds"
    array = _zarr_python_layer(ds, "uint8", 1, (8, 8, 8), chunks=(1, 8, 8, 8))
    array[...] = 5
    meta = ds / "color" / "1" / "zarr.json"
    edited = json.loads(meta.read_text())
    edited["dimension_names"] = [None, "x", None, None]
    meta.write_text(json.dumps(edited))
    assert h.wkfs_read(ds, "color", "1", (0, 0, 0), (8, 8, 8)) == bytes([5]) * 512
    edited["dimension_names"] = [None, "z", None, None]
    meta.write_text(json.dumps(edited))
    proc = h.wkfs_fails("read", ds, "color", "1", "--offset", "0,0,0", "--size", "8,8,8")
    assert "are not (c, x, y, z)" in proc.stderr.decode(), h.describe(proc)


def test_a_write_inside_a_shrunk_arrays_shape_does_not_grow_it(tmp_path):
    """zarr-python's resize keeps the old voxels past a smaller shape in its edge chunks. A
    write inside the shape grew it to whole chunks and showed them again (to zarr-python,
    tensorstore and wkfs); the shape now grows only where a write passes it."""
    import zarr

    ds = tmp_path / "ds"
    array = _zarr_python_layer(ds, "uint8", 1, (48, 32, 16), chunks=(1, 16, 16, 16))
    array[...] = 7
    array.resize((1, 37, 29, 11))
    h.wkfs_write(ds, "color", "1", (36, 28, 10), (1, 1, 1), b"\x01")
    after = zarr.open_array(ds / "color" / "1", mode="r")
    assert after.shape == (1, 37, 29, 11)
    assert after[0, 36, 28, 10] == 1 and np.count_nonzero(after[...] == 7) == 37 * 29 * 11 - 1
    # Past the shape along x only: x grows (to whole chunks), y and z stay.
    h.wkfs_write(ds, "color", "1", (40, 0, 0), (1, 1, 1), b"\x02")
    assert zarr.open_array(ds / "color" / "1", mode="r").shape == (1, 48, 29, 11)


def test_copy_without_options_keeps_a_foreign_layout_and_only_copies_the_box(tmp_path):
    """A zarr-python array with 8x8x4 blosc chunks and fill -7: `copy` without options makes an
    array exactly like it (it made 32^3 zstd chunks in 1024^3 shards and read and checked the
    whole shard: 40 s for 20x24x12 voxels); to WKW, the box holds the same voxels, the fill
    value written out."""
    import zarr

    size = (20, 24, 12)
    ds = tmp_path / "ds"
    array = _zarr_python_layer(ds, "int16", 1, size, chunks=(1, 8, 8, 4), fill_value=-7,
                               compressors=[_codec("blosc-lz4-shuffle")])
    data = np.full((1, *size), -7, np.int16)
    data[0, 2:15, 3:20, 1:9] = np.arange(13 * 17 * 8, dtype=np.int16).reshape(13, 17, 8)
    array[...] = data
    source_meta = json.loads((ds / "color" / "1" / "zarr.json").read_text())
    for target, args in ((tmp_path / "same", []), (tmp_path / "wkw", ["--data-format", "wkw"])):
        h.wkfs_ok("copy", ds, target, *args, timeout=60)
        got = h.from_bytes(h.wkfs_read(target, "color", "1", (0, 0, 0), size), "int16", 1, size)
        assert np.array_equal(got, data), target
        h.wkfs_ok("check", target)
    meta = json.loads((tmp_path / "same" / "color" / "1" / "zarr.json").read_text())
    for key in ("chunk_grid", "codecs", "fill_value", "data_type", "chunk_key_encoding"):
        assert meta[key] == source_meta[key], key
    assert np.array_equal(zarr.open_array(tmp_path / "same" / "color" / "1", mode="r")[:, :20, :24, :12], data)


def test_a_zarr3_copy_without_options_keeps_data_outside_the_box(tmp_path):
    """A copy that keeps the layout copies the data files as they are, as webknossos does: the
    voxels past the layer's box stay (the first version of the like-the-source copy converted
    only the box and lost 24,768 of 32,768 voxels here)."""
    import zarr

    ds = tmp_path / "ds"
    array = _zarr_python_layer(ds, "uint8", 1, (32, 32, 32), chunks=(1, 8, 8, 8), shards=(1, 16, 16, 16))
    array[...] = 200
    _declare_layer(ds, "uint8", 1, (20, 20, 20))  # the box covers part of the array
    h.wkfs_ok("copy", ds, tmp_path / "copy")
    assert np.all(zarr.open_array(tmp_path / "copy" / "color" / "1", mode="r")[...] == 200)
    h.wkfs_ok("check", tmp_path / "copy")
