"""Helpers for the wkfs compatibility suite.

Everything here talks to real things: the built `wkfs` binary, the files on disk, and the
reference tools (`wkw`, `webknossos`) where a test asks for them. Nothing is mocked.

Conventions (the same as the CLI, see SPEC.md section 2):
- arrays of the reference tools have axes (c, x, y, z);
- raw byte streams are C-order (z, y, x, c), i.e. `arr_cxyz.transpose(3, 2, 1, 0).tobytes()`.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[2]
WKFS_BIN = Path(os.environ.get("WKFS_BIN", REPO / ".build" / "release" / "wkfs"))
FIXTURES = Path(os.environ.get("WKFS_FIXTURES", REPO / "Tests" / "fixtures"))

#: Seconds any single subprocess may take before the test fails.
TIMEOUT = float(os.environ.get("WKFS_TEST_TIMEOUT", "120"))

DTYPES = [
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "float32",
    "float64",
]

BLOCK_TYPE_RAW, BLOCK_TYPE_LZ4, BLOCK_TYPE_LZ4HC = 1, 2, 3
BLOCK_TYPES = {"raw": BLOCK_TYPE_RAW, "lz4": BLOCK_TYPE_LZ4, "lz4hc": BLOCK_TYPE_LZ4HC}

#: Header voxel type codes (WKW-FORMAT.md section 1).
VOXEL_TYPE_CODES = {
    1: "uint8",
    2: "uint16",
    3: "uint32",
    4: "uint64",
    5: "float32",
    6: "float64",
    7: "int8",
    8: "int16",
    9: "int32",
    10: "int64",
}

#: Text that only shows up when a process crashed instead of reporting an error.
CRASH_MARKERS = (
    "Traceback (most recent call last)",
    "Fatal error",
    "Program crashed",
    "Stack dump",
    "Illegal instruction",
    "Segmentation fault",
    "core dumped",
    "Current stack trace",
)


# --------------------------------------------------------------------------------------------
# Running the binary


def csv(values: Iterable[int | float]) -> str:
    """`(1, 2, 3)` -> `"1,2,3"` for --offset/--size/--voxel-size."""
    return ",".join(str(v) for v in values)


def run_wkfs(
    *args: object,
    input: bytes | None = None,
    timeout: float = TIMEOUT,
    cwd: Path | str | None = None,
) -> subprocess.CompletedProcess:
    """Runs the wkfs binary with `args` (converted with str), never through a shell.

    stdin is `input` or /dev/null so the binary never waits on the terminal.
    Returns the CompletedProcess with bytes stdout/stderr; does not check the exit code.
    """
    if not WKFS_BIN.exists():
        raise AssertionError(
            f"wkfs binary not found at {WKFS_BIN}: run `swift build -c release` or set WKFS_BIN"
        )
    cmd = [str(WKFS_BIN), *[str(a) for a in args]]
    return subprocess.run(
        cmd,
        input=input if input is not None else b"",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=timeout,
        cwd=cwd,
    )


def describe(proc: subprocess.CompletedProcess, limit: int = 2000) -> str:
    out = proc.stdout[:limit].decode("utf-8", "replace") if proc.stdout else ""
    err = proc.stderr[:limit].decode("utf-8", "replace") if proc.stderr else ""
    args = " ".join(str(a) for a in proc.args)
    return f"$ {args}\nexit {proc.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"


def assert_no_crash(proc: subprocess.CompletedProcess) -> None:
    """The process ended by itself (no signal) and printed no crash report."""
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}\n{describe(proc)}"
    assert proc.returncode not in (132, 133, 134, 135, 136, 139), describe(proc)
    text = (proc.stdout or b"").decode("utf-8", "replace") + (proc.stderr or b"").decode(
        "utf-8", "replace"
    )
    for marker in CRASH_MARKERS:
        assert marker not in text, f"crash marker {marker!r} in output\n{describe(proc)}"


def wkfs_ok(*args: object, input: bytes | None = None, timeout: float = TIMEOUT) -> bytes:
    """Runs wkfs, requires exit 0 and no crash; returns stdout bytes."""
    proc = run_wkfs(*args, input=input, timeout=timeout)
    assert proc.returncode == 0, describe(proc)
    assert_no_crash(proc)
    return proc.stdout


def wkfs_fails(*args: object, input: bytes | None = None, timeout: float = TIMEOUT):
    """Runs wkfs, requires a clean non-zero exit (an error, not a crash)."""
    proc = run_wkfs(*args, input=input, timeout=timeout)
    assert proc.returncode != 0, f"expected failure\n{describe(proc)}"
    assert_no_crash(proc)
    return proc


def wkfs_read(
    dataset: Path,
    layer: str,
    mag: str,
    offset: Sequence[int] | None = None,
    size: Sequence[int] | None = None,
    *,
    mag1: bool = False,
) -> bytes:
    args: list[object] = ["read", dataset, layer, mag]
    if offset is not None:
        args += ["--offset", csv(offset), "--size", csv(size)]
    if mag1:
        args.append("--mag1")
    return wkfs_ok(*args)


def wkfs_write(
    dataset: Path,
    layer: str,
    mag: str,
    offset: Sequence[int],
    size: Sequence[int],
    data: bytes,
    *,
    mag1: bool = False,
    input_file: Path | None = None,
) -> None:
    args: list[object] = ["write", dataset, layer, mag, "--offset", csv(offset), "--size", csv(size)]
    if mag1:
        args.append("--mag1")
    if input_file is not None:
        input_file.write_bytes(data)
        wkfs_ok(*args, "--input", input_file)
    else:
        wkfs_ok(*args, input=data)


# --------------------------------------------------------------------------------------------
# Arrays <-> bytes


def to_bytes(arr_cxyz: np.ndarray) -> bytes:
    """(c, x, y, z) array -> the CLI's C-order (z, y, x, c) little-endian bytes."""
    arr = np.asarray(arr_cxyz)
    if arr.ndim == 3:
        arr = arr[np.newaxis]
    le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(le.transpose(3, 2, 1, 0)).tobytes()


def from_bytes(data: bytes, dtype: str | np.dtype, channels: int, size_xyz: Sequence[int]) -> np.ndarray:
    """The CLI's (z, y, x, c) bytes -> (c, x, y, z) array."""
    dt = np.dtype(dtype).newbyteorder("<")
    x, y, z = size_xyz
    expected = x * y * z * channels * dt.itemsize
    assert len(data) == expected, f"got {len(data)} bytes, expected {expected} for {size_xyz}x{channels} {dtype}"
    return np.frombuffer(data, dtype=dt).reshape(z, y, x, channels).transpose(3, 2, 1, 0)


def random_array(rng: np.random.Generator, dtype: str, channels: int, size_xyz: Sequence[int]) -> np.ndarray:
    """Random (c, x, y, z) data using the whole value range (floats: finite, signed, fractional)."""
    shape = (channels, *size_xyz)
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
    values = rng.standard_normal(size=shape) * 1000.0
    return values.astype(dt)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def first_difference(a: bytes, b: bytes) -> str:
    if len(a) != len(b):
        return f"lengths differ: {len(a)} != {len(b)}"
    diff = np.flatnonzero(np.frombuffer(a, np.uint8) != np.frombuffer(b, np.uint8))
    if diff.size == 0:
        return "identical"
    return f"{diff.size} of {len(a)} bytes differ, first at byte {diff[0]}"


class Canvas:
    """Expected content of one mag: a zero-initialised (c, x, y, z) array in the mag's voxels."""

    def __init__(self, dtype: str, channels: int, size_xyz: Sequence[int]):
        self.arr = np.zeros((channels, *size_xyz), dtype=dtype)

    def put(self, offset: Sequence[int], data_cxyz: np.ndarray) -> None:
        x, y, z = offset
        _, sx, sy, sz = data_cxyz.shape
        self.arr[:, x : x + sx, y : y + sy, z : z + sz] = data_cxyz

    def get(self, offset: Sequence[int], size: Sequence[int]) -> np.ndarray:
        x, y, z = offset
        sx, sy, sz = size
        return self.arr[:, x : x + sx, y : y + sy, z : z + sz]


# --------------------------------------------------------------------------------------------
# Boxes


def box_union(a, b):
    """Union of two (topleft, size) boxes; a box with a 0 size is neutral."""
    if a is None or 0 in a[1]:
        return b
    if b is None or 0 in b[1]:
        return a
    lo = [min(a[0][i], b[0][i]) for i in range(3)]
    hi = [max(a[0][i] + a[1][i], b[0][i] + b[1][i]) for i in range(3)]
    return (tuple(lo), tuple(hi[i] - lo[i] for i in range(3)))


def box_in_mag(box, mag: Sequence[int]):
    """Mag-1 box -> the box in the mag's voxels, snapped outward (floor top-left, ceil bottom-right)."""
    (tl, size) = box
    lo = [tl[i] // mag[i] for i in range(3)]
    hi = [-((-(tl[i] + size[i])) // mag[i]) for i in range(3)]
    return (tuple(lo), tuple(hi[i] - lo[i] for i in range(3)))


def properties_bbox(layer_entry: dict):
    bb = layer_entry["boundingBox"]
    return (tuple(bb["topLeft"]), (bb["width"], bb["height"], bb["depth"]))


# --------------------------------------------------------------------------------------------
# datasource-properties.json


def element_class(dtype: str, channels: int) -> str:
    """The reference's own conversion (webknossos 4.3.3)."""
    from webknossos.dataset_properties.dtype_conversion import dtype_per_channel_to_element_class

    return dtype_per_channel_to_element_class(dtype, channels)


def mag_dir_name(mag: Sequence[int]) -> str:
    return str(mag[0]) if mag[0] == mag[1] == mag[2] else "-".join(str(m) for m in mag)


def layer_entry(
    name: str,
    dtype: str,
    channels: int,
    bbox,
    mags: Sequence[tuple[Sequence[int], int]],
    *,
    category: str = "color",
    largest_segment_id: int | None = None,
) -> dict:
    """A current-schema layer entry; `mags` is [(mag, cube_length)], directories `<name>/<mag>`."""
    (tl, size) = bbox
    entry: dict = {
        "name": name,
        "category": category,
        "boundingBox": {
            "topLeft": list(tl),
            "width": size[0],
            "height": size[1],
            "depth": size[2],
        },
        "dataFormat": "wkw",
        "mags": [
            {
                "mag": list(mag),
                "path": f"./{name}/{mag_dir_name(mag)}",
                "cubeLength": cube_length,
                "axisOrder": {"c": 0, "x": 1, "y": 2, "z": 3},
            }
            for mag, cube_length in mags
        ],
        "numChannels": channels,
        "elementClass": element_class(dtype, channels),
    }
    if category == "segmentation" and largest_segment_id is not None:
        entry["largestSegmentId"] = largest_segment_id
    return entry


def write_properties(dataset: Path, layers: list[dict], voxel_size=(1.0, 1.0, 1.0)) -> None:
    props = {
        "id": {"name": dataset.name, "team": ""},
        "scale": {"factor": [float(v) for v in voxel_size], "unit": "nanometer"},
        "dataLayers": layers,
        "version": 1,
    }
    (dataset / "datasource-properties.json").write_text(json.dumps(props, indent=4))


def read_properties(dataset: Path) -> dict:
    return json.loads((dataset / "datasource-properties.json").read_text())


def properties_layer(dataset: Path, name: str) -> dict:
    for layer in read_properties(dataset)["dataLayers"]:
        if layer["name"] == name:
            return layer
    raise AssertionError(f"no layer {name!r} in {dataset}/datasource-properties.json")


# --------------------------------------------------------------------------------------------
# WKW files, checked byte by byte (independent of wkfs and of libwkw)


def parse_header(raw: bytes) -> dict:
    assert len(raw) >= 16, f"header too short: {len(raw)} bytes"
    magic, version, lengths, block_type, voxel_type, voxel_size, data_offset = struct.unpack(
        "<3sBBBBBQ", raw[:16]
    )
    return {
        "magic": magic,
        "version": version,
        "block_len": 1 << (lengths & 0x0F),
        "file_len": 1 << (lengths >> 4),
        "block_type": block_type,
        "voxel_type": VOXEL_TYPE_CODES.get(voxel_type, f"?{voxel_type}"),
        "voxel_size": voxel_size,
        "data_offset": data_offset,
    }


def validate_mag_dir(mag_dir: Path) -> list[str]:
    """Structural problems of a mag directory per WKW-FORMAT.md (empty list = valid).

    Checks header.wkw, that every data file agrees with it, raw files' full length, compressed
    files' data offset and increasing jump table ending at the file's end, and no leftovers
    (temporary files) next to the data files.
    """
    problems: list[str] = []
    header_path = mag_dir / "header.wkw"
    if not header_path.is_file():
        return [f"{header_path}: missing"]
    hraw = header_path.read_bytes()
    h = parse_header(hraw)
    if hraw[:3] != b"WKW" or h["version"] != 1:
        problems.append(f"{header_path}: bad magic/version")
    if h["data_offset"] != 0 or len(hraw) != 16:
        problems.append(f"{header_path}: data offset {h['data_offset']}, length {len(hraw)}")
    blocks_per_file = h["file_len"] ** 3
    block_bytes = h["voxel_size"] * h["block_len"] ** 3
    for path in sorted(mag_dir.rglob("*")):
        rel = path.relative_to(mag_dir)
        if path.is_dir() or rel == Path("header.wkw"):
            continue
        parts = rel.parts
        if not (
            len(parts) == 3
            and parts[0][:1] == "z"
            and parts[1][:1] == "y"
            and parts[2][:1] == "x"
            and parts[2].endswith(".wkw")
        ):
            problems.append(f"{path}: unexpected file in mag directory")
            continue
        raw = path.read_bytes()
        if len(raw) < 16:
            problems.append(f"{path}: shorter than a header ({len(raw)} bytes)")
            continue
        if raw[:8] != hraw[:8]:
            problems.append(f"{path}: header bytes {raw[:8]!r} differ from header.wkw {hraw[:8]!r}")
        fh = parse_header(raw)
        if h["block_type"] == BLOCK_TYPE_RAW:
            if fh["data_offset"] != 16:
                problems.append(f"{path}: raw data offset {fh['data_offset']} != 16")
            want = 16 + blocks_per_file * block_bytes
            if len(raw) != want:
                problems.append(f"{path}: raw file length {len(raw)} != {want}")
        else:
            want_offset = 16 + 8 * blocks_per_file
            if fh["data_offset"] != want_offset:
                problems.append(f"{path}: data offset {fh['data_offset']} != {want_offset}")
                continue
            jump = struct.unpack(f"<{blocks_per_file}Q", raw[16:want_offset])
            prev = want_offset
            for i, end in enumerate(jump):
                if end < prev:
                    problems.append(f"{path}: jump table decreases at block {i}")
                    break
                prev = end
            if jump[-1] != len(raw):
                problems.append(f"{path}: jump table ends at {jump[-1]}, file length {len(raw)}")
    return problems


def data_files(mag_dir: Path) -> list[Path]:
    return sorted(p for p in mag_dir.glob("z*/y*/x*.wkw"))


# --------------------------------------------------------------------------------------------
# Reference readers


def wkw_read(mag_dir: Path, offset: Sequence[int], size: Sequence[int]) -> np.ndarray:
    import wkw

    with wkw.Dataset.open(str(mag_dir)) as ds:
        return ds.read(list(offset), list(size))


def wkw_header(mag_dir: Path):
    import wkw

    with wkw.Dataset.open(str(mag_dir)) as ds:
        return ds.header


# --------------------------------------------------------------------------------------------
# Snapshots


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything under `root` (not following symlinks): files by sha256, links by target, dirs."""
    snap: dict[str, tuple] = {}
    root = Path(root)
    if not root.exists() and not root.is_symlink():
        return snap
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                snap[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                snap[rel] = ("dir",)
            else:
                data = path.read_bytes()
                snap[rel] = ("file", len(data), sha256(data))
    return snap


def snapshot_diff(before: dict, after: dict) -> str:
    lines = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            lines.append(f"removed: {key}")
        elif key not in before:
            lines.append(f"added:   {key} {after[key][:2]}")
        elif before[key] != after[key]:
            lines.append(f"changed: {key} {before[key][:2]} -> {after[key][:2]}")
    return "\n".join(lines)


def assert_unchanged(root: Path, before: dict) -> None:
    after = snapshot(root)
    assert after == before, "files changed:\n" + snapshot_diff(before, after)
