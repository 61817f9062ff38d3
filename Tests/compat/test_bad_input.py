"""(e) Bad input (SPEC section 6): every error exits non-zero with a message naming the file or
argument, never crashes, and leaves every file byte-for-byte as it was. Corrupt data makes
`wkfs read` fail (never silent zeros) and `wkfs check` exit 1 naming the problem.

The dataset under test is written by webknossos 4.3.3 (built once, copied per test):
  color: uint8, mags 1 and 2, raw, block 8 / file 2 (16^3 files)
  comp:  uint8, mag 1, LZ4HC, block 8 / file 2
both with random data in (0, 0, 0) + (32, 32, 16).
"""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import webknossos as wk

import wkfs_helpers as h

BBOX = ((0, 0, 0), (32, 32, 16))
BLOCKS_PER_FILE = 2**3


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad-template") / "ds"
    rng = np.random.default_rng(3)
    ds = wk.Dataset(path, voxel_size=(1, 1, 1))
    color = ds.add_layer("color", "color", dtype="uint8", data_format="wkw")
    for m in ("1", "2"):
        color.add_mag(m, chunk_shape=8, shard_shape=16, compress=False)
    color.get_mag("1").write(h.random_array(rng, "uint8", 1, BBOX[1]), absolute_offset=BBOX[0], allow_resize=True)
    color.get_mag("2").write(h.random_array(rng, "uint8", 1, (16, 16, 8)), absolute_offset=BBOX[0], allow_resize=True)
    comp = ds.add_layer("comp", "color", dtype="uint8", data_format="wkw")
    comp.add_mag("1", chunk_shape=8, shard_shape=16, compress=True)
    comp.get_mag("1").write(h.random_array(rng, "uint8", 1, BBOX[1]), absolute_offset=BBOX[0], allow_resize=True)
    return path


@pytest.fixture
def ds(template, tmp_path) -> Path:
    path = tmp_path / "ds"
    shutil.copytree(template, path, symlinks=True)
    return path


def _mentions(proc, patterns) -> bool:
    text = (proc.stderr + proc.stdout).decode("utf-8", "replace")
    return any(re.search(p, text, re.IGNORECASE) for p in patterns)


def _word(s: str) -> str:
    return r"(?<![\w.])" + re.escape(s) + r"(?![\w])"


# --------------------------------------------------------------------------------------------
# argument errors: (id, argv with DS/TMP placeholders, stdin bytes, patterns one of which
# must appear in the output)

ARG_CASES = [
    ("unknown-dtype", ["add-layer", "DS", "new", "--category", "color", "--dtype", "uint7"], None, [_word("uint7")]),
    ("unsupported-dtype-float16", ["add-layer", "DS", "new", "--category", "color", "--dtype", "float16"], None, [_word("float16")]),
    ("unknown-category", ["add-layer", "DS", "new", "--category", "colour", "--dtype", "uint8"], None, [_word("colour")]),
    ("zero-channels", ["add-layer", "DS", "new", "--category", "color", "--dtype", "uint8", "--channels", "0"], None, ["channels"]),
    ("offset-two-values", ["read", "DS", "color", "1", "--offset", "1,2", "--size", "4,4,4"], None, ["offset"]),
    ("offset-not-numbers", ["write", "DS", "color", "1", "--offset", "a,b,c", "--size", "2,2,2"], bytes(8), ["offset"]),
    ("size-bad-syntax", ["read", "DS", "color", "1", "--offset", "0,0,0", "--size", "4x4x4"], None, ["size"]),
    ("offset-without-size", ["read", "DS", "color", "1", "--offset", "0,0,0"], None, ["size"]),
    ("write-input-too-short", ["write", "DS", "color", "1", "--offset", "0,0,0", "--size", "4,4,4"], bytes(63), ["size", "input", "stdin", "byte"]),
    ("write-input-too-long", ["write", "DS", "color", "1", "--offset", "0,0,0", "--size", "4,4,4"], bytes(65), ["size", "input", "stdin", "byte"]),
    ("write-input-file-missing", ["write", "DS", "color", "1", "--offset", "0,0,0", "--size", "2,2,2", "--input", "TMP/missing.raw"], None, ["missing.raw"]),
    ("negative-offset-write", ["write", "DS", "color", "1", "--offset=-1,0,0", "--size", "2,2,2"], bytes(8), ["offset", "-1"]),
    ("negative-offset-read", ["read", "DS", "color", "1", "--offset=0,-5,0", "--size", "2,2,2"], None, ["offset", "-5"]),
    ("negative-size", ["read", "DS", "color", "1", "--offset", "0,0,0", "--size=2,-2,2"], None, ["size", "-2"]),
    ("misaligned-mag1-write", ["write", "DS", "color", "2", "--offset", "1,0,0", "--size", "2,2,2", "--mag1"], bytes(1), ["offset", "align", "mag"]),
    ("offset-overflow", ["write", "DS", "color", "1", "--offset", "9223372036854775807,0,0", "--size", "2,2,2"], bytes(8), ["offset", "9223372036854775807", "range", "overflow"]),
    ("missing-dataset-read", ["read", "TMP/nope", "color", "1"], None, ["nope"]),
    ("missing-dataset-info", ["info", "TMP/nope"], None, ["nope"]),
    ("missing-layer", ["read", "DS", "nolayer", "1"], None, ["nolayer"]),
    ("missing-mag-read", ["read", "DS", "color", "8"], None, [_word("8")]),
    ("missing-mag-write", ["write", "DS", "color", "4", "--offset", "0,0,0", "--size", "1,1,1"], bytes(1), [_word("4")]),
    ("read-output-dir-missing", ["read", "DS", "color", "1", "--output", "TMP/nodir/out.raw"], None, ["nodir"]),
    ("layer-name-slash", ["add-layer", "DS", "a/b", "--category", "color", "--dtype", "uint8"], None, [re.escape("a/b")]),
    ("layer-name-dotdot-path", ["add-layer", "DS", "../evil", "--category", "color", "--dtype", "uint8"], None, [re.escape("../evil")]),
    ("layer-name-dotdot", ["add-layer", "DS", "..", "--category", "color", "--dtype", "uint8"], None, [re.escape("..")]),
    ("symlink-layer-name-escape", ["add-symlink-layer", "DS", "OTHER/segmentation", "--name", "../evil"], None, [re.escape("../evil")]),
    ("symlink-layer-missing-target", ["add-symlink-layer", "DS", "TMP/nope/segmentation"], None, ["nope"]),
    ("symlink-layer-name-taken", ["add-symlink-layer", "DS", "OTHER/segmentation", "--name", "color"], None, [_word("color")]),
    ("add-layer-existing", ["add-layer", "DS", "color", "--category", "color", "--dtype", "uint8"], None, [_word("color")]),
    ("add-mag-existing", ["add-mag", "DS", "color", "1", "--block-len", "8", "--file-len", "2", "--no-compress"], None, [r"color/1(?!\d)", r"(?s)(?=.*color)(?=.*(?<![\d.])1(?![\d.]))"]),
    ("add-mag-bad-name", ["add-mag", "DS", "color", "3", "--no-compress"], None, [_word("3")]),
    ("add-mag-bad-block-len", ["add-mag", "DS", "color", "4", "--block-len", "12", "--no-compress"], None, ["block-len", "block len", "block_len", "block length"]),
    ("create-existing", ["create", "DS", "--voxel-size", "1,1,1"], None, [r"/ds\b"]),
    ("create-nonempty-dir", ["create", "TMP/nonempty", "--voxel-size", "1,1,1"], None, ["nonempty"]),
    ("create-bad-voxel-size", ["create", "TMP/new", "--voxel-size", "1,1"], None, ["voxel"]),
    ("copy-onto-existing", ["copy", "DS", "TMP/existing", "--no-compress"], None, ["existing"]),
]


@pytest.mark.parametrize("argv,stdin,patterns", [pytest.param(a, s, p, id=i) for i, a, s, p in ARG_CASES])
def test_argument_error(argv, stdin, patterns, ds, tmp_path):
    other = tmp_path / "other"
    other_ds = wk.Dataset(other, voxel_size=(1, 1, 1))
    seg = other_ds.add_layer("segmentation", "segmentation", dtype="uint8", data_format="wkw", largest_segment_id=0)
    seg.add_mag("1", chunk_shape=8, shard_shape=16, compress=False)
    (tmp_path / "nonempty").mkdir()
    (tmp_path / "nonempty" / "keep.txt").write_text("keep")
    shutil.copytree(ds, tmp_path / "existing", symlinks=True)
    args = [
        a.replace("DS", str(ds)).replace("TMP", str(tmp_path)).replace("OTHER", str(other))
        if a in ("DS", "TMP", "OTHER") or a.startswith(("TMP/", "OTHER/", "DS/"))
        else a
        for a in argv
    ]
    before = h.snapshot(tmp_path)
    proc = h.wkfs_fails(*args, input=stdin)
    assert _mentions(proc, patterns), f"message should name one of {patterns}\n{h.describe(proc)}"
    h.assert_unchanged(tmp_path, before)


# --------------------------------------------------------------------------------------------
# corrupt data: read fails, check exits 1 naming the file, nothing changes


def _set(path: Path, offset: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))


def _jump_table(path: Path) -> list[int]:
    raw = path.read_bytes()
    return list(struct.unpack(f"<{BLOCKS_PER_FILE}Q", raw[16 : 16 + 8 * BLOCKS_PER_FILE]))


def corrupt_header_magic(ds):
    _set(ds / "color/1/header.wkw", 0, b"XKW")
    return "color", "header.wkw"


def corrupt_header_version(ds):
    _set(ds / "color/1/header.wkw", 3, bytes([2]))
    return "color", "header.wkw"


def corrupt_datafile_magic(ds):
    _set(ds / "color/1/z0/y0/x0.wkw", 0, b"WKV")
    return "color", "y0/x0.wkw"


def corrupt_datafile_header_mismatch(ds):
    _set(ds / "color/1/z0/y0/x0.wkw", 6, bytes([2, 2]))  # uint16 where header.wkw says uint8
    return "color", "y0/x0.wkw"


def corrupt_truncated_raw(ds):
    f = ds / "color/1/z0/y0/x0.wkw"
    f.write_bytes(f.read_bytes()[: 16 + 4096 // 2])
    return "color", "y0/x0.wkw"


def corrupt_truncated_below_header(ds):
    f = ds / "color/1/z0/y0/x1.wkw"
    f.write_bytes(f.read_bytes()[:10])
    return "color", "y0/x1.wkw"


def corrupt_jump_table_decreasing(ds):
    f = ds / "comp/1/z0/y0/x0.wkw"
    jump = _jump_table(f)
    assert jump[2] < jump[3]
    jump[2], jump[3] = jump[3], jump[2]
    _set(f, 16, struct.pack(f"<{BLOCKS_PER_FILE}Q", *jump))
    return "comp", "y0/x0.wkw"


def corrupt_lz4_block(ds):
    f = ds / "comp/1/z0/y0/x0.wkw"
    start, end = 16 + 8 * BLOCKS_PER_FILE, _jump_table(f)[0]
    _set(f, start, b"\xff" * (end - start))
    return "comp", "y0/x0.wkw"


def corrupt_truncated_compressed(ds):
    f = ds / "comp/1/z0/y1/x0.wkw"
    f.write_bytes(f.read_bytes()[:-100])
    return "comp", "y1/x0.wkw"


def corrupt_json(ds):
    f = ds / "datasource-properties.json"
    f.write_text(f.read_text()[:-40])
    return "color", "datasource-properties.json"


CORRUPTIONS = [
    corrupt_header_magic,
    corrupt_header_version,
    corrupt_datafile_magic,
    corrupt_datafile_header_mismatch,
    corrupt_truncated_raw,
    corrupt_truncated_below_header,
    corrupt_jump_table_decreasing,
    corrupt_lz4_block,
    corrupt_truncated_compressed,
    corrupt_json,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.removeprefix("corrupt_"))
def test_corrupt_data(corrupt, ds, tmp_path):
    layer, name = corrupt(ds)
    before = h.snapshot(tmp_path)

    proc = h.wkfs_fails("read", ds, layer, "1")
    assert _mentions(proc, [re.escape(name)]), f"read should name {name}\n{h.describe(proc)}"

    proc = h.run_wkfs("check", ds)
    h.assert_no_crash(proc)
    assert proc.returncode == 1, f"check should exit 1\n{h.describe(proc)}"
    assert _mentions(proc, [re.escape(name)]), f"check should name {name}\n{h.describe(proc)}"

    h.assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("corrupt", [corrupt_header_magic, corrupt_header_version], ids=["header_magic", "header_version"])
def test_write_into_corrupt_mag_fails(corrupt, ds, tmp_path):
    layer, name = corrupt(ds)
    before = h.snapshot(tmp_path)
    proc = h.wkfs_fails("write", ds, layer, "1", "--offset", "1,1,1", "--size", "2,2,2", input=bytes(8))
    assert _mentions(proc, [re.escape(name)]), h.describe(proc)
    h.assert_unchanged(tmp_path, before)


def test_template_is_healthy(ds):
    """The uncorrupted dataset reads and checks fine (so the failures above are the corruption's)."""
    for layer in ("color", "comp"):
        ref = h.wkw_read(ds / layer / "1", *BBOX)
        assert h.wkfs_read(ds, layer, "1") == h.to_bytes(ref)
    proc = h.run_wkfs("check", ds)
    h.assert_no_crash(proc)
    assert proc.returncode == 0, h.describe(proc)


# --- Found in review: arguments that once crashed the CLI or left a half-done change. ---


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["read", "--offset", "0,0,0", "--size", "2000000000,2000000000,2000000000"], id="read-huge"),
        pytest.param(["read", "--offset", "0,0,0", "--size", "2000000000,2000000000,1"], id="read-huge-plane"),
        pytest.param(["write", "--offset", "0,0,0", "--size", "2000000000,2000000000,2000000000"], id="write-huge"),
    ],
)
def test_huge_regions_are_refused(args, tmp_path):
    ds = tmp_path / "ds"
    h.wkfs_ok("create", ds, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8")
    h.wkfs_ok("add-mag", ds, "color", "1", "--block-len", "8", "--file-len", "2", "--no-compress")
    before = h.snapshot(ds)
    proc = h.wkfs_fails(args[0], ds, "color", "1", *args[1:], input=b"")
    assert "--size" in proc.stderr.decode()
    assert h.snapshot(ds) == before


def test_huge_mag_and_channel_counts_are_refused(tmp_path):
    ds = tmp_path / "ds"
    h.wkfs_ok("create", ds, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8")
    before = h.snapshot(ds)
    assert "mag" in h.wkfs_fails("add-mag", ds, "color", "2097152").stderr.decode()
    assert "--channels" in h.wkfs_fails(
        "add-layer", ds, "big", "--category", "color", "--dtype", "uint64", "--channels", "2000000000000000000"
    ).stderr.decode()
    assert h.snapshot(ds) == before


def test_write_spanning_a_corrupt_file_changes_nothing(tmp_path):
    """A write split into slabs checks every file of the region before the first slab."""
    ds = tmp_path / "ds"
    h.wkfs_ok("create", ds, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8")
    h.wkfs_ok("add-mag", ds, "color", "1", "--block-len", "4", "--file-len", "2", "--compress")
    h.wkfs_ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", "8,8,16", input=b"\1" * (8 * 8 * 16))
    second = ds / "color" / "1" / "z1" / "y0" / "x0.wkw"
    second.write_bytes(second.read_bytes()[:100])  # truncate the second file
    before = h.snapshot(ds)
    proc = h.wkfs_fails("write", ds, "color", "1", "--offset", "0,0,0", "--size", "8,8,16", input=b"\2" * (8 * 8 * 16))
    assert "z1/y0/x0.wkw" in proc.stderr.decode()
    assert h.snapshot(ds) == before


def test_check_reports_every_broken_directory_and_checks_the_files_past_them(fixtures_dir, tmp_path):
    """`check` stopped a mag's listing at its first broken directory: it reported that one and
    decoded none of the mag's data files. Now every broken entry is reported, with what it is
    (a link to nothing is said to be one), and every data file found is decoded."""
    import shutil

    ds = tmp_path / "sparse"
    shutil.copytree(fixtures_dir / "wk433_sparse", ds, symlinks=True)
    mag = ds / "color_raw" / "1"
    shutil.rmtree(mag / "z2")
    (mag / "z2").write_bytes(b"not a directory")
    shutil.rmtree(mag / "z4" / "y8")
    (mag / "z4" / "y8").symlink_to("/nonexistent/elsewhere")
    corrupt = mag / "z0" / "y0" / "x1.wkw"
    corrupt.write_bytes(corrupt.read_bytes()[:100])
    proc = h.wkfs_fails("check", ds)
    report = proc.stdout.decode() + proc.stderr.decode()
    assert f"{mag / 'z2'}: is not a directory" in report, report
    assert f"{mag / 'z4' / 'y8'}: is a symbolic link to nothing" in report, report
    assert str(corrupt) in report, report
