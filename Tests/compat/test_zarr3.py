"""Zarr3 layers: written by wkfs and read by webknossos 4.3.3 and tensorstore, written by
webknossos and extended by wkfs, and bad Zarr3 input refused with a clear error naming the file,
data unchanged, no crash. (Reading the reference-written Zarr3 fixtures voxel for voxel is in
test_fixtures.py: their manifests are checked like the WKW ones.)"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import wkfs_helpers as h

#: (dtype, channels, compress, chunk, shard): what a user adds with `add-mag`.
CASES = [
    pytest.param("uint8", 1, True, 32, 64, id="uint8-zstd"),
    pytest.param("uint8", 3, False, 8, 32, id="uint8x3-raw"),
    pytest.param("uint16", 1, True, 16, 16, id="uint16-zstd-unsharded"),
    pytest.param("float32", 1, True, 8, 32, id="float32-zstd"),
    pytest.param("int64", 1, False, 16, 64, id="int64-raw"),
]


def _tensorstore(mag_dir: Path):
    import tensorstore as ts

    return ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(mag_dir)}}).result()


def _new_zarr_dataset(root: Path, dtype: str, channels: int, compress: bool, chunk: int, shard: int) -> Path:
    ds = root / "ds"
    h.wkfs_ok("create", ds, "--voxel-size", "11.24,11.24,25")
    category = "segmentation" if dtype == "int64" else "color"
    extra = ["--largest-segment-id", "0"] if category == "segmentation" else []
    h.wkfs_ok("add-layer", ds, "data", "--category", category, "--dtype", dtype, "--channels", str(channels),
              "--data-format", "zarr3", *extra)
    h.wkfs_ok("add-mag", ds, "data", "1", "--chunk-shape", str(chunk), "--shard-shape", str(shard),
              "--compress" if compress else "--no-compress")
    return ds


@pytest.mark.parametrize("dtype,channels,compress,chunk,shard", CASES)
def test_wkfs_writes_webknossos_and_tensorstore_read(tmp_path, dtype, channels, compress, chunk, shard):
    """Unaligned writes (one over another) into a new Zarr3 mag: webknossos and tensorstore read
    exactly the model; the box covers every write; `wkfs check` is happy."""
    import webknossos as wk

    ds = _new_zarr_dataset(tmp_path, dtype, channels, compress, chunk, shard)
    rng = np.random.default_rng(7)
    canvas = np.zeros((channels, 120, 100, 70), dtype=dtype)
    for offset, size in [((5, 7, 9), (70, 50, 30)), ((60, 40, 3), (45, 55, 60))]:
        part = h.random_array(rng, dtype, channels, size)
        h.wkfs_write(ds, "data", "1", offset, size, h.to_bytes(part))
        canvas[:, offset[0]:offset[0] + size[0], offset[1]:offset[1] + size[1], offset[2]:offset[2] + size[2]] = part
    h.wkfs_ok("check", ds)

    layer = wk.Dataset.open(ds).get_layer("data")
    box = layer.bounding_box
    assert tuple(box.topleft) == (5, 7, 3) and tuple(box.bottomright) == (105, 95, 63)
    got = layer.get_mag("1").read(absolute_offset=(0, 0, 0), size=(105, 95, 63))
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, canvas[:, :105, :95, :63])

    array = _tensorstore(ds / "data" / "1")
    assert array.shape[0] == channels and all(s % shard == 0 and s >= e for s, e in zip(array.shape[1:], (105, 95, 63)))
    assert np.array_equal(array[:, :105, :95, :63].read().result(), canvas[:, :105, :95, :63])
    assert h.wkfs_read(ds, "data", "1", (0, 0, 0), (105, 95, 63)) == h.to_bytes(canvas[:, :105, :95, :63])


def test_files_look_like_what_webknossos_writes(tmp_path):
    """The same steps through webknossos and through wkfs give the same zarr.json (compact,
    sorted, same codecs) and the same group files; shard files decode to the same chunks."""
    import webknossos as wk

    data = np.random.default_rng(1).integers(0, 255, size=(1, 40, 30, 20), dtype=np.uint8)
    ref = tmp_path / "ref"
    dataset = wk.Dataset(ref, voxel_size=(11.24, 11.24, 25))
    layer = dataset.add_layer("color", "color", dtype="uint8", data_format="zarr3")
    mag = layer.add_mag("1", chunk_shape=16, shard_shape=64, compress=True)
    mag.write(data, absolute_offset=(3, 4, 5), allow_unaligned=True, allow_resize=True)

    ours = _new_zarr_dataset(tmp_path, "uint8", 1, True, 16, 64)
    h.wkfs_write(ours, "data", "1", (3, 4, 5), (40, 30, 20), h.to_bytes(data))
    assert (ours / "data" / "1" / "zarr.json").read_text() == (ref / "color" / "1" / "zarr.json").read_text()
    assert json.loads((ours / "zarr.json").read_text()) == json.loads((ref / "zarr.json").read_text())
    ref_group = json.loads((ref / "color" / "zarr.json").read_text())
    our_group = json.loads((ours / "data" / "zarr.json").read_text())
    assert our_group == ref_group
    ref_entry = h.properties_layer(ref, "color")
    our_entry = h.properties_layer(ours, "data")
    assert our_entry["dataFormat"] == ref_entry["dataFormat"] == "zarr3"
    assert our_entry["mags"][0]["axisOrder"] == ref_entry["mags"][0]["axisOrder"]
    assert "cubeLength" not in our_entry["mags"][0]
    ref_shards = sorted(p.relative_to(ref / "color" / "1") for p in (ref / "color" / "1").rglob("*") if p.is_file() and p.name != "zarr.json")
    our_shards = sorted(p.relative_to(ours / "data" / "1") for p in (ours / "data" / "1").rglob("*") if p.is_file() and p.name not in ("zarr.json", ".wkfs-lock"))
    assert our_shards == ref_shards


def test_webknossos_writes_wkfs_writes_more_webknossos_reads(tmp_path):
    """A webknossos Zarr3 dataset, extended by wkfs past its box and over its chunks, reads back
    in webknossos as the model says; the array's shape grew to whole shards."""
    import webknossos as wk

    rng = np.random.default_rng(2)
    ref = tmp_path / "ref"
    dataset = wk.Dataset(ref, voxel_size=(1, 1, 1))
    layer = dataset.add_layer("color", "color", dtype="uint16", data_format="zarr3")
    mag = layer.add_mag("1", chunk_shape=8, shard_shape=32, compress=True)
    first = rng.integers(0, 65535, size=(1, 40, 40, 20), dtype=np.uint16)
    mag.write(first, absolute_offset=(0, 0, 0), allow_unaligned=True, allow_resize=True)
    canvas = np.zeros((1, 100, 80, 60), dtype=np.uint16)
    canvas[:, :40, :40, :20] = first

    more = rng.integers(0, 65535, size=(1, 50, 30, 45), dtype=np.uint16)
    h.wkfs_write(ref, "color", "1", (30, 35, 10), (50, 30, 45), h.to_bytes(more))
    canvas[:, 30:80, 35:65, 10:55] = more

    reopened = wk.Dataset.open(ref).get_layer("color")
    assert tuple(reopened.bounding_box.bottomright) == (80, 65, 55)
    got = reopened.get_mag("1").read(absolute_offset=(0, 0, 0), size=(80, 65, 55))
    assert np.array_equal(got, canvas[:, :80, :65, :55])
    assert _tensorstore(ref / "color" / "1").shape == (1, 96, 96, 64)


# --------------------------------------------------------------------------------------------
# Bad input


def _zarr_copy(fixtures_dir: Path, tmp_path: Path, name: str = "wk433z_color_uint8_zstd") -> Path:
    dest = tmp_path / name
    shutil.copytree(fixtures_dir / name, dest, symlinks=True)
    return dest


def _shard(ds: Path) -> Path:
    return next(p for p in sorted((ds / "color" / "1" / "c").rglob("*")) if p.is_file())


def _bad_input_fails(ds: Path, needle: str, *names: str):
    """`read` and `check` fail cleanly, name the file and the reason, and change nothing."""
    before = h.snapshot(ds)
    for args in (("read", ds, "color", "1"), ("check", ds)):
        proc = h.wkfs_fails(*args)
        message = proc.stderr.decode() + proc.stdout.decode()
        assert needle in message and any(n in message for n in names), h.describe(proc)
    h.assert_unchanged(ds, before)


def test_invalid_zarr_json(fixtures_dir, tmp_path):
    ds = _zarr_copy(fixtures_dir, tmp_path)
    (ds / "color" / "1" / "zarr.json").write_text("{not json")
    _bad_input_fails(ds, "not valid JSON", "color/1/zarr.json")


def test_unknown_codec(fixtures_dir, tmp_path):
    ds = _zarr_copy(fixtures_dir, tmp_path)
    meta = ds / "color" / "1" / "zarr.json"
    meta.write_text(meta.read_text().replace('"name":"zstd"', '"name":"lzma"'))
    _bad_input_fails(ds, "codec 'lzma' is not supported", "color/1/zarr.json")


def test_wrong_dimensions(fixtures_dir, tmp_path):
    ds = _zarr_copy(fixtures_dir, tmp_path)
    meta = ds / "color" / "1" / "zarr.json"
    meta.write_text(meta.read_text().replace('["c","x","y","z"]', '["c","z","y","x"]'))
    _bad_input_fails(ds, "are not (c, x, y, z)", "color/1/zarr.json")


def test_corrupt_shard_index(fixtures_dir, tmp_path):
    ds = _zarr_copy(fixtures_dir, tmp_path)
    shard = _shard(ds)
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF  # inside the index: its crc32c no longer matches
    shard.write_bytes(bytes(raw))
    _bad_input_fails(ds, "crc32c", str(shard.relative_to(ds)))


def test_chunk_checksum_mismatch(fixtures_dir, tmp_path):
    ds = _zarr_copy(fixtures_dir, tmp_path)
    shard = _shard(ds)
    raw = bytearray(shard.read_bytes())
    count = struct.unpack_from("<Q", raw, len(raw) - 4 - 64 * 16 + 8)[0]  # nbytes of a chunk
    first = next(i for i in range(64) if struct.unpack_from("<Q", raw, len(raw) - 4 - 64 * 16 + 16 * i)[0] != 2**64 - 1)
    offset, count = struct.unpack_from("<QQ", raw, len(raw) - 4 - 64 * 16 + 16 * first)
    raw[offset + count - 6] ^= 0xFF  # inside the zstd frame: its content checksum fails
    shard.write_bytes(bytes(raw))
    _bad_input_fails(ds, "does not decode", str(shard.relative_to(ds)))


def test_truncated_shard(fixtures_dir, tmp_path):
    ds = _zarr_copy(fixtures_dir, tmp_path)
    shard = _shard(ds)
    shard.write_bytes(shard.read_bytes()[:100])
    _bad_input_fails(ds, "truncated", str(shard.relative_to(ds)))


def test_writes_refused_on_bad_input_change_nothing(fixtures_dir, tmp_path):
    """A write over a corrupt shard is refused and leaves every file as it was."""
    ds = _zarr_copy(fixtures_dir, tmp_path)
    shard = _shard(ds)
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF
    shard.write_bytes(bytes(raw))
    before = h.snapshot(ds)
    proc = h.wkfs_fails("write", ds, "color", "1", "--offset", "13,7,5", "--size", "2,2,2", input=b"\x01" * 8)
    assert "crc32c" in proc.stderr.decode(), h.describe(proc)
    after = h.snapshot(ds)
    after.pop("color/1/.wkfs-lock", None)  # the lock file, created empty on first write
    assert after == before, h.snapshot_diff(before, after)
