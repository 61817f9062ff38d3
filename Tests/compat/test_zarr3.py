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


@pytest.mark.parametrize("damage", ["index", "chunk"])
def test_a_write_over_two_shards_refused_for_the_second_changes_neither(fixtures_dir, tmp_path, damage):
    """The region spans shards x0 and x1 and shard x1 is corrupt: the refused write leaves x0
    as it was too (every shard it merges into is checked before any is replaced)."""
    ds = _zarr_copy(fixtures_dir, tmp_path)
    second = ds / "color" / "1" / "c" / "0" / "1" / "0" / "0"
    raw = bytearray(second.read_bytes())
    if damage == "index":
        raw[-10] ^= 0xFF
    else:
        n = len(raw) - 4 - 64 * 16
        entries = [struct.unpack_from("<QQ", raw, n + 16 * i) for i in range(64)]
        offset, count = entries[(0 * 4 + 1) * 4 + 1]  # chunk (0,1,1) of the shard: the write covers part of it
        assert offset != 2**64 - 1
        raw[offset + count - 6] ^= 0xFF
    second.write_bytes(bytes(raw))
    before = h.snapshot(ds)
    h.wkfs_fails("write", ds, "color", "1", "--offset", "24,10,10", "--size", "16,8,8", input=b"\xff" * (16 * 8 * 8))
    after = h.snapshot(ds)
    after.pop("color/1/.wkfs-lock", None)
    assert after == before, h.snapshot_diff(before, after)


# --------------------------------------------------------------------------------------------
# The seed's steps in Zarr3, and conversions


def test_seed_steps_in_zarr3_read_by_webknossos_and_zarr_python(tmp_path):
    """The seed document's steps with `--data-format zarr3` (3-channel color layer, mags 1 and 2,
    a copy with new chunks and compression, a segmentation layer, a linked layer): webknossos and
    zarr-python read every voxel back."""
    import webknossos as wk
    import zarr

    rng = np.random.default_rng(1234)
    d1 = h.random_array(rng, "uint8", 3, (64, 64, 16))
    d2 = h.random_array(rng, "uint8", 3, (32, 32, 8))
    src, dst = tmp_path / "my_new_dataset", tmp_path / "copy_of_dataset"
    h.wkfs_ok("create", src, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", src, "color", "--category", "color", "--dtype", "uint8", "--channels", "3", "--data-format", "zarr3")
    for mag in ("1", "2"):
        h.wkfs_ok("add-mag", src, "color", mag, "--chunk-shape", "16", "--shard-shape", "32", "--no-compress")
    h.wkfs_write(src, "color", "1", (10, 20, 30), (64, 64, 16), h.to_bytes(d1))
    h.wkfs_write(src, "color", "2", (5, 10, 15), (32, 32, 8), h.to_bytes(d2))
    h.wkfs_ok("copy", src, dst, "--block-len", "8", "--file-len", "8", "--compress")
    h.wkfs_ok("add-layer", src, "segmentation", "--category", "segmentation", "--dtype", "uint8", "--largest-segment-id", "0",
              "--data-format", "zarr3")
    h.wkfs_ok("add-mag", src, "segmentation", "1", "--chunk-shape", "8", "--shard-shape", "32", "--compress")
    seg = h.random_array(np.random.default_rng(7), "uint8", 1, (40, 30, 20))
    h.wkfs_write(src, "segmentation", "1", (12, 22, 32), (40, 30, 20), h.to_bytes(seg))
    h.wkfs_ok("add-symlink-layer", dst, src / "segmentation")
    h.wkfs_ok("check", src)
    h.wkfs_ok("check", dst)

    for ds in (src, dst):
        dataset = wk.Dataset.open(ds)
        color = dataset.get_layer("color")
        assert color.data_format == wk.DataFormat.Zarr3
        assert np.array_equal(color.get_mag("1").read(absolute_offset=(10, 20, 30), size=(64, 64, 16)), d1)
        assert np.array_equal(color.get_mag("2").read(absolute_offset=(10, 20, 30), size=(64, 64, 16)), d2)
        assert np.array_equal(dataset.get_layer("segmentation").get_mag("1").read(absolute_offset=(12, 22, 32), size=(40, 30, 20)), seg)
        array = zarr.open_array(str(ds / "color" / "1"), mode="r")
        assert np.array_equal(array[:, 10:74, 20:84, 30:46], d1)
    copied = json.loads((dst / "color" / "1" / "zarr.json").read_text())
    inner = copied["codecs"][0]["configuration"]
    assert inner["chunk_shape"] == [3, 8, 8, 8] and copied["chunk_grid"]["configuration"]["chunk_shape"] == [3, 64, 64, 64]
    assert [c["name"] for c in inner["codecs"]] == ["transpose", "bytes", "zstd"]


@pytest.mark.parametrize("name", ["wk433_color_uint8_raw", "wk433_color_uint8x3", "wk433_color_uint16", "wk433_color_float32"])
def test_copy_wkw_to_zarr3_to_wkw_keeps_every_voxel(fixtures_dir, tmp_path, name):
    """WKW -> Zarr3 (webknossos reads it) -> WKW (the reference wkw reads it): the same voxels
    in every mag, read over the layer's box."""
    import webknossos as wk

    src = fixtures_dir / name
    as_zarr, back = tmp_path / "as_zarr", tmp_path / "back"
    h.wkfs_ok("copy", src, as_zarr, "--data-format", "zarr3", "--chunk-shape", "16", "--shard-shape", "64", "--compress")
    h.wkfs_ok("copy", as_zarr, back, "--data-format", "wkw", "--block-len", "8", "--file-len", "4")
    h.wkfs_ok("check", as_zarr)
    h.wkfs_ok("check", back)
    for layer in h.read_properties(src)["dataLayers"]:
        for mag in layer["mags"]:
            mag_name = h.mag_dir_name(mag["mag"])
            original = h.wkfs_read(src, layer["name"], mag_name)
            assert h.wkfs_read(as_zarr, layer["name"], mag_name) == original
            assert h.wkfs_read(back, layer["name"], mag_name) == original
            zarr_layer = wk.Dataset.open(as_zarr).get_layer(layer["name"])
            assert zarr_layer.data_format == wk.DataFormat.Zarr3
            got = zarr_layer.get_mag(mag_name).read()
            want = wk.Dataset.open(src).get_layer(layer["name"]).get_mag(mag_name).read()
            assert np.array_equal(got, want)
            assert h.properties_layer(back, layer["name"])["dataFormat"] == "wkw"


# --------------------------------------------------------------------------------------------
# Regressions from a hostile review (each failed before its fix)


def test_check_reports_and_repair_removes_zarr3_temporaries(fixtures_dir, tmp_path):
    """Temporary files that killed writers leave in a Zarr3 array and beside a layer's
    zarr.json are reported by `check` and removed by `check --repair` (a dead process's only)."""
    ds = _zarr_copy(fixtures_dir, tmp_path)
    shard = _shard(ds)
    dead = 2**22 + 12345  # above the kernel's default pid_max: no such process runs
    stale = [shard.parent / f"{shard.name}.{dead}-1.tmp", ds / "color" / "1" / f"zarr.json.{dead}-2.tmp",
             ds / "color" / f"zarr.json.{dead}-3.tmp"]
    for path in stale:
        path.write_bytes(b"partial")
    proc = h.wkfs_fails("check", ds)
    report = proc.stdout.decode() + proc.stderr.decode()
    for path in stale:
        assert str(path) in report, report
    h.wkfs_ok("check", ds, "--repair")
    assert not any(p.exists() for p in stale)
    h.wkfs_ok("check", ds)


@pytest.mark.parametrize("edit,needle", [
    (('"fill_value":0', '"fill_value":-1e19'), "'fill_value'"),
    (('"fill_value":0', '"fill_value":256'), "'fill_value' 256 is not a uint8"),
    (('"fill_value":0', '"fill_value":1.5'), "'fill_value'"),
    (('"chunk_shape":[1,32,32,32]', '"chunk_shape":[1,4611686018427387904,4611686018427387904,4611686018427387904]'), "extent above 2^31"),
    (('"chunk_shape":[1,8,8,8]', '"chunk_shape":[1,1,1,1]', '"chunk_shape":[1,32,32,32]', '"chunk_shape":[1,256,256,256]'), "chunks per shard"),
    (('{"configuration":{"endian":"little"},"name":"bytes"},{"name":"crc32c"}', '{"configuration":{"endian":5},"name":"bytes"},{"name":"crc32c"}'), "endian is not a string"),
    (('"chunk_key_encoding":{"name":"default"}', '"chunk_key_encoding":"default"'), "'chunk_key_encoding' is not an object"),
    ((',"fill_value":0', ''), "'fill_value' is missing"),
    ((',"fill_value":0', ',"fill_value":0,"storage_transformers":[{"name":"foo"}]'), "storage transformers are not supported"),
    ((',"fill_value":0', ',"fill_value":0,"my_extension":{"must_understand":true}'), "field 'my_extension' is not in the Zarr v3"),
    ((',"fill_value":0', ',"fill_value":0,"my_extension":5'), "field 'my_extension' is not in the Zarr v3"),
])
def test_bad_zarr_json_values_are_errors_not_crashes(fixtures_dir, tmp_path, edit, needle):
    """zarr.json values wkfs cannot honour exactly are refused with the reason (once a crash, a
    wrong fill value, or a silently ignored field)."""
    ds = _zarr_copy(fixtures_dir, tmp_path)
    meta = ds / "color" / "1" / "zarr.json"
    text = meta.read_text()
    for old, new in zip(edit[::2], edit[1::2]):
        assert old in text
        text = text.replace(old, new, 1)
    meta.write_text(text)
    _bad_input_fails(ds, needle, "color/1/zarr.json")


@pytest.mark.parametrize("fill", [9223372036854775809, 18446744073709551615])
def test_uint64_fill_values_above_2_63_read_exactly(fixtures_dir, tmp_path, fill):
    ds = _zarr_copy(fixtures_dir, tmp_path, "wk433z_segmentation_uint64")
    shutil.rmtree(ds / "segmentation" / "1" / "c")
    meta = ds / "segmentation" / "1" / "zarr.json"
    meta.write_text(meta.read_text().replace('"fill_value":0', f'"fill_value":{fill}'))
    got = h.wkfs_read(ds, "segmentation", "1", (3, 4, 5), (1, 1, 1))
    assert int.from_bytes(got, "little") == fill
    assert _tensorstore(ds / "segmentation" / "1")[0, 3, 4, 5].read().result() == fill


def test_add_mag_refuses_a_shard_of_too_many_chunks(tmp_path):
    ds = _new_zarr_dataset(tmp_path, "uint8", 1, True, 32, 64)
    proc = h.wkfs_fails("add-mag", ds, "data", "2", "--chunk-shape", "1", "--shard-shape", "1024")
    assert "chunks per shard" in proc.stderr.decode(), h.describe(proc)
    assert not (ds / "data" / "2").exists()


def test_a_write_grows_its_own_shape_even_inside_the_box(tmp_path):
    """A mag whose shape fell behind the box (an add-mag that raced a write) gets a shape that
    covers what is written into it, so tensorstore and webknossos see the data."""
    ds = _new_zarr_dataset(tmp_path, "uint8", 1, True, 32, 64)
    h.wkfs_write(ds, "data", "1", (0, 0, 0), (1, 1, 1), b"\x01")
    h.wkfs_write(ds, "data", "1", (300, 0, 0), (1, 1, 1), b"\x02")  # the box now reaches x = 301
    meta = ds / "data" / "1" / "zarr.json"
    assert '"shape":[1,320,64,64]' in meta.read_text()
    meta.write_text(meta.read_text().replace('"shape":[1,320,64,64]', '"shape":[1,64,64,64]'))
    h.wkfs_write(ds, "data", "1", (200, 0, 0), (1, 1, 1), b"\x03")  # inside the box: it does not grow
    array = _tensorstore(ds / "data" / "1")
    assert array.shape[1] >= 256 and int(array[0, 200, 0, 0].read().result()) == 3


def test_another_datasets_referenced_mag_is_left_alone(tmp_path):
    """A layer referring to another dataset's mag by path (webknossos's add_mag_as_ref): growing
    this dataset's box never rewrites the other dataset's zarr.json."""
    a = _new_zarr_dataset(tmp_path / "a", "uint8", 1, True, 32, 64)
    h.wkfs_ok("add-mag", a, "data", "2", "--chunk-shape", "32", "--shard-shape", "64")
    h.wkfs_write(a, "data", "2", (0, 0, 0), (200, 10, 10), b"\x05" * 20000)
    foreign = a / "data" / "2" / "zarr.json"
    before = foreign.read_text()
    b = _new_zarr_dataset(tmp_path / "b", "uint8", 1, True, 32, 64)
    props = json.loads((b / "datasource-properties.json").read_text())
    props["dataLayers"][0]["mags"].append({"mag": [2, 2, 2], "path": str(a / "data" / "2"), "axisOrder": {"c": 0, "x": 1, "y": 2, "z": 3}})
    (b / "datasource-properties.json").write_text(json.dumps(props, indent=4))
    h.wkfs_write(b, "data", "1", (16, 0, 0), (16, 16, 16), b"\x07" * 16**3)
    assert foreign.read_text() == before


def test_writes_past_2_31_are_refused(tmp_path):
    ds = _new_zarr_dataset(tmp_path, "uint8", 1, True, 32, 64)
    before = h.snapshot(ds)
    proc = h.wkfs_fails("write", ds, "data", "1", "--offset", "0,0,2147483647", "--size", "1,1,2", input=b"AB")
    assert "too large" in proc.stderr.decode(), h.describe(proc)
    h.assert_unchanged(ds, before)
    h.wkfs_ok("info", ds)


def test_big_integers_in_zarr_json_survive_a_shape_change(tmp_path):
    ds = _new_zarr_dataset(tmp_path, "uint8", 1, True, 32, 64)
    meta = ds / "data" / "1" / "zarr.json"
    meta.write_text(meta.read_text()[:-1] + ',"attributes":{"x":18446744073709551615}}')
    h.wkfs_write(ds, "data", "1", (500, 0, 0), (1, 1, 1), b"\x01")
    assert json.loads(meta.read_text())["attributes"]["x"] == 18446744073709551615


def test_a_write_keeps_the_fill_value_of_chunks_it_does_not_touch(tmp_path):
    """An array whose fill value is not 0: a write into one chunk of a shard leaves the shard's
    other chunks empty (they read as the fill value), not stored as zeros."""
    ds = _new_zarr_dataset(tmp_path, "uint8", 1, True, 8, 32)
    meta = ds / "data" / "1" / "zarr.json"
    meta.write_text(meta.read_text().replace('"fill_value":0', '"fill_value":7'))
    h.wkfs_write(ds, "data", "1", (0, 0, 0), (2, 2, 2), b"\x01" * 8)
    assert h.wkfs_read(ds, "data", "1", (8, 0, 0), (1, 1, 1)) == b"\x07"
    assert int(_tensorstore(ds / "data" / "1")[0, 8, 0, 0].read().result()) == 7


def test_a_shard_directory_that_is_a_file_is_reported(fixtures_dir, tmp_path):
    """A file where the chunk keys need a directory (a chunk lost): `check` and `read` say so."""
    ds = _zarr_copy(fixtures_dir, tmp_path)
    directory = _shard(ds).parent
    shutil.rmtree(directory)
    directory.write_bytes(b"junk")
    _bad_input_fails(ds, "ot a directory", str(directory))


@pytest.mark.parametrize("data_format", ["zarr3", "wkw"])
def test_a_data_file_linked_to_nothing_is_reported_not_read_as_missing(fixtures_dir, tmp_path, data_format):
    """A data file that is a symbolic link to nothing (a disk not mounted) is broken, not empty."""
    ds = _zarr_copy(fixtures_dir, tmp_path)
    if data_format == "wkw":
        h.wkfs_ok("copy", ds, tmp_path / "wkw", "--data-format", "wkw")
        ds = tmp_path / "wkw"
        data_file = next(p for p in sorted((ds / "color" / "1").rglob("*.wkw")) if p.name != "header.wkw")
    else:
        data_file = _shard(ds)
    data_file.unlink()
    data_file.symlink_to("/nonexistent/elsewhere")
    _bad_input_fails(ds, str(data_file), str(data_file))
    assert "symbolic link to nothing" in h.wkfs_fails("read", ds, "color", "1").stderr.decode()


def test_a_shard_that_is_a_symlink_loop_is_reported(fixtures_dir, tmp_path):
    ds = _zarr_copy(fixtures_dir, tmp_path)
    shard = _shard(ds)
    shard.unlink()
    shard.symlink_to(shard.name)
    _bad_input_fails(ds, "symbolic links", str(shard))
