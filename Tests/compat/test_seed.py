"""(b) The seed document's steps (the reference "Dataset Usage" document), done with the wkfs CLI and checked with the reference.

Smaller arrays than the seed: mag 1 gets 3x64x64x16 at (10, 20, 30), mag 2 gets 3x32x32x8 at
(5, 10, 15) in mag-2 voxels, which is the same box in mag 1: (10, 20, 30) + (64, 64, 16).
Each stage is a module fixture; later stages work on copies, so earlier stages stay as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import webknossos as wk
import wkw

import wkfs_helpers as h

OFF1, SIZE1 = (10, 20, 30), (64, 64, 16)
OFF2, SIZE2 = (5, 10, 15), (32, 32, 8)
BBOX = ((10, 20, 30), (64, 64, 16))
BLOCK_LEN, FILE_LEN = 16, 2  # what the old webknossos wrote for the seed (see fixtures)


class Seed:
    def __init__(self, root: Path):
        self.root = root
        self.src = root / "my_new_dataset"
        rng = np.random.default_rng(1234)
        self.d1 = h.random_array(rng, "uint8", 3, SIZE1)
        self.d2 = h.random_array(rng, "uint8", 3, SIZE2)


@pytest.fixture(scope="module")
def seed(tmp_path_factory) -> Seed:
    s = Seed(tmp_path_factory.mktemp("seed"))
    h.wkfs_ok("create", s.src, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", s.src, "color", "--category", "color", "--dtype", "uint8", "--channels", "3")
    for mag in ("1", "2"):
        h.wkfs_ok(
            "add-mag", s.src, "color", mag,
            "--block-len", BLOCK_LEN, "--file-len", FILE_LEN, "--no-compress",
        )
    h.wkfs_write(s.src, "color", "1", OFF1, SIZE1, h.to_bytes(s.d1))  # stdin
    h.wkfs_write(s.src, "color", "2", OFF2, SIZE2, h.to_bytes(s.d2), input_file=s.root / "d2.raw")
    return s


# --------------------------------------------------------------------------------------------
# reading back through the CLI


def test_read_subsets(seed):
    assert h.wkfs_read(seed.src, "color", "1", OFF1, SIZE1) == h.to_bytes(seed.d1)
    assert h.wkfs_read(seed.src, "color", "2", OFF2, SIZE2) == h.to_bytes(seed.d2)


def test_read_default_is_bbox(seed):
    # the layer bbox is exactly the written box in both mags
    assert h.wkfs_read(seed.src, "color", "1") == h.to_bytes(seed.d1)
    assert h.wkfs_read(seed.src, "color", "2") == h.to_bytes(seed.d2)


def test_read_mag1_coordinates(seed):
    got = h.wkfs_read(seed.src, "color", "2", OFF1, SIZE1, mag1=True)
    assert got == h.to_bytes(seed.d2)


def test_read_with_zero_margin_and_output_file(seed, tmp_path):
    off, size = (0, 0, 0), (80, 90, 50)
    canvas = h.Canvas("uint8", 3, size)
    canvas.put(OFF1, seed.d1)
    out = tmp_path / "out.raw"
    stdout = h.wkfs_ok("read", seed.src, "color", "1", "--offset", h.csv(off), "--size", h.csv(size), "--output", out)
    assert stdout == b""
    assert out.read_bytes() == h.to_bytes(canvas.arr)


def test_read_output_to_a_device_writes_in_place(seed, tmp_path):
    # a private null device: `--output /dev/null` once replaced /dev/null with a regular file
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    h.wkfs_ok("read", seed.src, "color", "1", "--output", null)
    assert stat.S_ISCHR(null.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_read_output_to_a_fifo_streams(seed, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = bytearray()
    reader = threading.Thread(target=lambda: got.extend(fifo.read_bytes()), daemon=True)
    reader.start()
    h.wkfs_ok("read", seed.src, "color", "1", "--output", fifo)
    reader.join(timeout=60)
    assert bytes(got) == h.to_bytes(seed.d1)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_read_output_through_a_symlink_keeps_the_link(seed, tmp_path):
    target = tmp_path / "target.raw"
    target.write_bytes(b"old")
    link = tmp_path / "link.raw"
    link.symlink_to("target.raw")
    h.wkfs_ok("read", seed.src, "color", "1", "--output", link)
    assert link.is_symlink() and os.readlink(link) == "target.raw"
    assert target.read_bytes() == h.to_bytes(seed.d1)


# --------------------------------------------------------------------------------------------
# the reference sees what wkfs wrote


def test_properties_schema(seed):
    props = h.read_properties(seed.src)
    assert props["id"]["name"] == "my_new_dataset"
    assert props["version"] == 1
    scale = props["scale"]
    assert scale["factor"] == [1.0, 1.0, 1.0] and scale["unit"] == "nanometer"
    [layer] = props["dataLayers"]
    assert layer["name"] == "color" and layer["category"] == "color"
    assert layer["dataFormat"] == "wkw"
    assert layer["numChannels"] == 3 and layer["elementClass"] == "uint24"
    assert h.properties_bbox(layer) == BBOX
    mags = {tuple(m["mag"]) if isinstance(m["mag"], list) else (m["mag"],) * 3: m for m in layer["mags"]}
    assert set(mags) == {(1, 1, 1), (2, 2, 2)}
    for mag, entry in mags.items():
        assert entry["cubeLength"] == BLOCK_LEN * FILE_LEN
        if "path" in entry:
            assert (seed.src / entry["path"]).resolve() == (seed.src / "color" / h.mag_dir_name(mag)).resolve()
    text = (seed.src / "datasource-properties.json").read_text()
    assert "\n    " in text, "properties should be pretty-printed"


def test_webknossos_opens(seed):
    ds = wk.Dataset.open(seed.src)
    assert tuple(ds.voxel_size) == (1.0, 1.0, 1.0)
    layer = ds.get_layer("color")
    assert layer.category == "color"
    assert layer.num_channels == 3
    assert np.dtype(layer.dtype) == np.uint8
    assert layer.bounding_box == wk.BoundingBox(*BBOX)
    assert {str(m) for m in layer.mags} == {"1", "2"}
    bbox = wk.BoundingBox(*BBOX)
    np.testing.assert_array_equal(layer.get_mag("1").read(absolute_bounding_box=bbox), seed.d1)
    np.testing.assert_array_equal(layer.get_mag("2").read(absolute_bounding_box=bbox), seed.d2)
    # the reference's read() without arguments = bbox in that mag
    np.testing.assert_array_equal(layer.get_mag("2").read(), seed.d2)


def test_wkw_opens(seed):
    for mag, data, off, size in (("1", seed.d1, OFF1, SIZE1), ("2", seed.d2, OFF2, SIZE2)):
        mag_dir = seed.src / "color" / mag
        hdr = h.wkw_header(mag_dir)
        assert (hdr.version, hdr.block_len, hdr.file_len) == (1, BLOCK_LEN, FILE_LEN)
        assert hdr.block_type == wkw.Header.BLOCK_TYPE_RAW
        assert hdr.voxel_type == np.uint8 and hdr.num_channels == 3
        np.testing.assert_array_equal(h.wkw_read(mag_dir, off, size), data)
        assert h.validate_mag_dir(mag_dir) == []


def test_info_json(seed):
    info = json.loads(h.wkfs_ok("info", seed.src, "--json"))
    text = json.dumps(info)
    assert '"color"' in text and "uint8" in text
    for value in ("10", "20", "30", "64", "16"):
        assert value in text


def test_check_ok(seed):
    proc = h.run_wkfs("check", seed.src)
    h.assert_no_crash(proc)
    assert proc.returncode == 0, h.describe(proc)


def test_add_mag_defaults(seed, tmp_path):
    """Without --block-len/--file-len a mag gets the reference defaults: 32 and 32."""
    ds = tmp_path / "ds"
    shutil.copytree(seed.src, ds)
    h.wkfs_ok("add-mag", ds, "color", "4", "--no-compress")
    hdr = h.wkw_header(ds / "color" / "4")
    assert (hdr.block_len, hdr.file_len, hdr.block_type) == (32, 32, 1)
    layer = wk.Dataset.open(ds).get_layer("color")
    assert {str(m) for m in layer.mags} == {"1", "2", "4"}


def test_reference_keeps_writing(seed, tmp_path):
    """webknossos writes into the wkfs dataset (growing the bbox); wkfs reads both writes."""
    ds = tmp_path / "ds"
    shutil.copytree(seed.src, ds)
    extra = h.random_array(np.random.default_rng(5), "uint8", 3, (20, 10, 6))
    mag = wk.Dataset.open(ds).get_layer("color").get_mag("1")
    mag.write(extra, absolute_offset=(70, 80, 44), allow_unaligned=True, allow_resize=True)
    layer = h.properties_layer(ds, "color")
    assert h.properties_bbox(layer) == ((10, 20, 30), (80, 70, 20))
    assert h.wkfs_read(ds, "color", "1", (70, 80, 44), (20, 10, 6)) == h.to_bytes(extra)
    canvas = h.Canvas("uint8", 3, (100, 100, 60))
    canvas.put(OFF1, seed.d1)
    canvas.put((70, 80, 44), extra)
    assert h.wkfs_read(ds, "color", "1", OFF1, SIZE1) == h.to_bytes(canvas.get(OFF1, SIZE1))


# --------------------------------------------------------------------------------------------
# copy with new block/file lengths and compression


@pytest.fixture(scope="module")
def seed_copy(seed) -> Path:
    before = h.snapshot(seed.src)
    dst = seed.root / "copy_of_dataset"
    h.wkfs_ok("copy", seed.src, dst, "--block-len", "8", "--file-len", "8", "--compress")
    h.assert_unchanged(seed.src, before)
    return dst


def test_copy_headers(seed_copy):
    for mag in ("1", "2"):
        mag_dir = seed_copy / "color" / mag
        hdr = h.wkw_header(mag_dir)
        assert (hdr.block_len, hdr.file_len) == (8, 8)
        assert hdr.block_type in (wkw.Header.BLOCK_TYPE_LZ4, wkw.Header.BLOCK_TYPE_LZ4HC)
        assert hdr.voxel_type == np.uint8 and hdr.num_channels == 3
        assert h.data_files(mag_dir), f"no data files in {mag_dir}"
        assert h.validate_mag_dir(mag_dir) == []


def test_copy_voxels(seed, seed_copy):
    ds = wk.Dataset.open(seed_copy)
    layer = ds.get_layer("color")
    assert layer.bounding_box == wk.BoundingBox(*BBOX)
    assert layer.num_channels == 3
    bbox = wk.BoundingBox(*BBOX)
    np.testing.assert_array_equal(layer.get_mag("1").read(absolute_bounding_box=bbox), seed.d1)
    np.testing.assert_array_equal(layer.get_mag("2").read(absolute_bounding_box=bbox), seed.d2)
    np.testing.assert_array_equal(h.wkw_read(seed_copy / "color" / "1", OFF1, SIZE1), seed.d1)
    assert h.wkfs_read(seed_copy, "color", "2") == h.to_bytes(seed.d2)
    for m in h.properties_layer(seed_copy, "color")["mags"]:
        assert m["cubeLength"] == 64


# --------------------------------------------------------------------------------------------
# segmentation layer in the source, symlinked into the copy


@pytest.fixture(scope="module")
def seed_symlink(seed, seed_copy):
    root = seed.root / "sym"
    src, dst = root / "my_new_dataset", root / "copy_of_dataset"
    shutil.copytree(seed.src, src, symlinks=True)
    shutil.copytree(seed_copy, dst, symlinks=True)
    h.wkfs_ok(
        "add-layer", src, "segmentation",
        "--category", "segmentation", "--dtype", "uint8", "--largest-segment-id", "0",
    )
    h.wkfs_ok("add-mag", src, "segmentation", "1", "--block-len", "8", "--file-len", "4", "--compress")
    seg = h.random_array(np.random.default_rng(7), "uint8", 1, (40, 30, 20))
    h.wkfs_write(src, "segmentation", "1", (12, 22, 32), (40, 30, 20), h.to_bytes(seg))
    h.wkfs_ok("add-symlink-layer", dst, src / "segmentation")
    return root, src, dst, seg


def test_segmentation_layer_in_source(seed_symlink):
    _, src, _, seg = seed_symlink
    entry = h.properties_layer(src, "segmentation")
    assert entry["category"] == "segmentation"
    assert entry.get("largestSegmentId") == 0
    layer = wk.Dataset.open(src).get_layer("segmentation")
    assert layer.category == "segmentation"
    np.testing.assert_array_equal(
        layer.get_mag("1").read(absolute_bounding_box=wk.BoundingBox((12, 22, 32), (40, 30, 20))), seg
    )


def test_symlink_is_relative(seed_symlink):
    _, src, dst, _ = seed_symlink
    link = dst / "segmentation"
    assert link.is_symlink(), f"{link} is not a symbolic link"
    target = os.readlink(link)
    assert not os.path.isabs(target), f"link target {target!r} is absolute"
    assert link.resolve() == (src / "segmentation").resolve()
    entry = h.properties_layer(dst, "segmentation")
    assert entry["category"] == "segmentation"


def test_symlink_layer_opens_in_webknossos(seed_symlink):
    _, _, dst, seg = seed_symlink
    ds = wk.Dataset.open(dst)
    assert set(ds.layers) == {"color", "segmentation"}
    layer = ds.get_layer("segmentation")
    bbox = wk.BoundingBox((12, 22, 32), (40, 30, 20))
    np.testing.assert_array_equal(layer.get_mag("1").read(absolute_bounding_box=bbox), seg)
    assert h.wkfs_read(dst, "segmentation", "1", (12, 22, 32), (40, 30, 20)) == h.to_bytes(seg)
    proc = h.run_wkfs("check", dst)
    h.assert_no_crash(proc)
    assert proc.returncode == 0, h.describe(proc)


def test_symlinked_pair_can_move(seed_symlink, tmp_path):
    """Relative links (and properties) survive moving both datasets together."""
    root, _, _, seg = seed_symlink
    moved = tmp_path / "moved"
    shutil.copytree(root, moved, symlinks=True)
    ds = wk.Dataset.open(moved / "copy_of_dataset")
    bbox = wk.BoundingBox((12, 22, 32), (40, 30, 20))
    np.testing.assert_array_equal(ds.get_layer("segmentation").get_mag("1").read(absolute_bounding_box=bbox), seg)
    got = h.wkfs_read(moved / "copy_of_dataset", "segmentation", "1", (12, 22, 32), (40, 30, 20))
    assert got == h.to_bytes(seg)


def test_symlink_layer_with_name(seed_symlink, tmp_path):
    root, _, _, seg = seed_symlink
    work = tmp_path / "w"
    shutil.copytree(root, work, symlinks=True)
    dst = work / "copy_of_dataset"
    h.wkfs_ok("add-symlink-layer", dst, work / "my_new_dataset" / "segmentation", "--name", "seg2")
    assert (dst / "seg2").is_symlink() and not os.path.isabs(os.readlink(dst / "seg2"))
    layer = wk.Dataset.open(dst).get_layer("seg2")
    bbox = wk.BoundingBox((12, 22, 32), (40, 30, 20))
    np.testing.assert_array_equal(layer.get_mag("1").read(absolute_bounding_box=bbox), seg)


def test_read_output_through_a_dangling_symlink_creates_the_target(seed, tmp_path):
    (tmp_path / "t").mkdir()
    link = tmp_path / "link.raw"
    link.symlink_to("t/out.raw")
    h.wkfs_ok("read", seed.src, "color", "1", "--output", link)
    assert link.is_symlink() and os.readlink(link) == "t/out.raw"
    assert (tmp_path / "t" / "out.raw").read_bytes() == h.to_bytes(seed.d1)


def test_thousands_of_small_files_within_a_low_descriptor_limit(tmp_path):
    """File length 1: a 256x256x32 region is 4,096 data files. Reads and writes keep only a few
    open at once, so a hard limit of 256 descriptors is enough."""
    import resource
    import subprocess

    ds = tmp_path / "small"
    h.wkfs_ok("create", ds, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8")
    h.wkfs_ok("add-mag", ds, "color", "1", "--block-len", "8", "--file-len", "1", "--compress")
    rng = np.random.default_rng(7)
    size = (256, 256, 32)
    data = rng.integers(0, 256, size=size[0] * size[1] * size[2], dtype=np.uint8).tobytes()
    (tmp_path / "in.raw").write_bytes(data)

    def limited(*args):
        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        return subprocess.run([str(h.WKFS_BIN), *map(str, args)], capture_output=True, timeout=300, preexec_fn=limit)

    for _ in range(2):  # a new mag, then over existing files
        proc = limited("write", ds, "color", "1", "--offset", "0,0,0", "--size", h.csv(size), "--input", tmp_path / "in.raw")
        assert proc.returncode == 0, proc.stderr.decode()
    proc = limited("read", ds, "color", "1", "--offset", "0,0,0", "--size", h.csv(size), "--output", tmp_path / "out.raw")
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "out.raw").read_bytes() == data
    assert len(list((ds / "color" / "1").rglob("*.wkw"))) == 1 + 32 * 32 * 4
