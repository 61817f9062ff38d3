"""`wkfs downsample` against webknossos 4.3.3 `Layer.downsample`.

1. Reference-written datasets (WKW and Zarr3; color uint8 with 1 and 3 channels, segmentation
   uint32/uint64 with few values so mode ties occur; isotropic and anisotropic voxel sizes, boxes
   not aligned to the mag grid, constant-z, 2D, interpolation nearest/min/max): webknossos
   downsamples one copy, wkfs another. Same mags, directory names and properties entries, same
   voxels over the layer box aligned to each mag, `wkfs check` passes, no marker is left.
   (wkfs keeps the source mag's block/file length and compression by design, so files and
   `cubeLength` are not compared.)
2. Running it again changes nothing.
3. Split work: level by level with 4 processes `--shard I/4` (and with SLURM array variables)
   gives byte for byte the files of one process.
4. Resume: a run killed with SIGKILL and run again gives what an uninterrupted run gives.
5. Bad arguments: a clear error naming the argument, the dataset unchanged.
6. `--print-slurm`: one `sbatch --array` per level, each after the one before; the printed
   commands, run as the array tasks, build what one process builds.

All reference work (creating the datasets with webknossos and downsampling them) runs in one
Python subprocess for the session: tools/ref_downsample.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import wkfs_helpers as h

TOOLS = Path(__file__).resolve().parent / "tools"
MARKER = ".wkfs-downsample-in-progress"
#: Environment variables that make a wkfs run one part of the work.
SHARD_ENV = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
             "SLURM_ARRAY_TASK_STEP", "JOB_COMPLETION_INDEX", "WKFS_SHARD_COUNT")

ANISO = [11.24, 11.24, 28.0]


def _case(fmt, dtype, channels, topleft, size, *, voxel_size=ANISO, category=None, data=None,
          chunk=8, shard=32, compress=True, interpolation=None, sampling=None, coarsest=None, seed=0,
          other_mags=None):
    category = category or ("segmentation" if dtype in ("uint32", "uint64") else "color")
    return dict(
        fmt=fmt, dtype=dtype, channels=channels, topleft=list(topleft), size=list(size),
        voxel_size=list(voxel_size), category=category,
        layer="segmentation" if category == "segmentation" else "color",
        data=data or ("lowcard" if category == "segmentation" else "random"),
        chunk=chunk, shard=shard, compress=compress, seed=seed,
        downsample=dict(interpolation_mode=interpolation, sampling_mode=sampling, coarsest_mag=coarsest),
        other_mags=other_mags,
    )


#: id -> case of tools/ref_downsample.py (src/ref paths are added by the fixture).
REF_CASES = {
    # color, median (the default)
    "wkw-u8-aniso-offset": _case("wkw", "uint8", 1, (3, 5, 7), (101, 67, 33), seed=1),
    "wkw-u8x3-isovoxels-raw": _case("wkw", "uint8", 3, (5, 0, 9), (130, 90, 45), voxel_size=(1, 1, 1),
                                    chunk=16, shard=64, compress=False, seed=2),
    "zarr3-u8-aniso-offset": _case("zarr3", "uint8", 1, (3, 5, 7), (101, 67, 33), chunk=16, shard=32, seed=3),
    "zarr3-u8x3-aniso-coarsest16": _case("zarr3", "uint8", 3, (13, 17, 2), (190, 150, 40), voxel_size=(4, 4, 40),
                                         chunk=16, shard=64, coarsest="16", seed=4),
    # segmentation, mode (the default), few values: ties
    "wkw-seg-u32-aniso": _case("wkw", "uint32", 1, (13, 17, 2), (180, 70, 20), voxel_size=(4, 4, 40), seed=5),
    "wkw-seg-u64-isovoxels-coarsest8": _case("wkw", "uint64", 1, (1, 2, 3), (90, 90, 90), voxel_size=(1, 1, 1),
                                            compress=False, coarsest="8", seed=6),
    "zarr3-seg-u32-aniso-coarsest16": _case("zarr3", "uint32", 1, (13, 17, 2), (190, 150, 40), voxel_size=(4, 4, 40),
                                            coarsest="16", seed=7),
    "zarr3-seg-u64-isotropic-mode": _case("zarr3", "uint64", 1, (3, 5, 7), (120, 100, 50), chunk=16, shard=64,
                                          sampling="isotropic", seed=8),
    # sampling modes, 2D
    "wkw-u8-constant-z": _case("wkw", "uint8", 1, (2, 3, 4), (100, 80, 30), chunk=16, sampling="constant_z", seed=9),
    "zarr3-seg-u32-constant-z": _case("zarr3", "uint32", 1, (3, 5, 7), (150, 70, 20), sampling="constant_z", seed=10),
    "wkw-u8-2d": _case("wkw", "uint8", 1, (7, 1, 0), (120, 130, 1), seed=11),
    "zarr3-u8x3-2d-default-shards": _case("zarr3", "uint8", 3, (3, 3, 5), (150, 90, 1), voxel_size=(1, 1, 1),
                                          chunk=None, shard=None, compress=False, seed=12),
    # interpolation modes of the API
    "wkw-u8-nearest": _case("wkw", "uint8", 1, (3, 5, 7), (101, 67, 33), interpolation="nearest", seed=13),
    "zarr3-u8x3-nearest-coarsest16": _case("zarr3", "uint8", 3, (13, 17, 2), (190, 150, 40), voxel_size=(4, 4, 40),
                                           chunk=16, shard=64, interpolation="nearest", coarsest="16", seed=14),
    "zarr3-seg-u64-nearest": _case("zarr3", "uint64", 1, (3, 5, 7), (70, 60, 50), interpolation="nearest",
                                   data="lowcard52", seed=15),
    # Following another layer's 2-2-1 and 4-4-4 makes a step of factor 4 in z; webknossos mirrors
    # the edge within each of its tiles (the last z tile holds one valid voxel).
    "wkw-u8-aligned-factor4-edge": _case("wkw", "uint8", 1, (0, 0, 0), (8, 8, 1025), voxel_size=(1, 1, 1),
                                         chunk=None, shard=None, compress=False, other_mags=["1", "2-2-1", "4-4-4"],
                                         seed=22),
    "wkw-u8-min": _case("wkw", "uint8", 1, (3, 5, 7), (101, 67, 33), interpolation="min", seed=16),
    "zarr3-seg-u32-min": _case("zarr3", "uint32", 1, (1, 1, 1), (70, 60, 50), voxel_size=(1, 1, 1),
                               interpolation="min", seed=17),
    "wkw-seg-u64-max": _case("wkw", "uint64", 1, (3, 5, 7), (70, 60, 50), interpolation="max", seed=18),
    "zarr3-u8x3-max": _case("zarr3", "uint8", 3, (3, 5, 7), (101, 67, 33), interpolation="max", seed=19),
    "wkw-seg-u32-median": _case("wkw", "uint32", 1, (3, 5, 7), (80, 60, 40), interpolation="median", seed=20),
}


def _wkfs_args(case: dict) -> list[str]:
    """The wkfs options that ask for what the case's `Layer.downsample` keywords ask for."""
    d = case["downsample"]
    args: list[str] = []
    if d["interpolation_mode"]:
        args += ["--interpolation", d["interpolation_mode"]]
    if d["sampling_mode"]:
        args += ["--sampling-mode", d["sampling_mode"].replace("_", "-")]
    if d["coarsest_mag"]:
        args += ["--coarsest", d["coarsest_mag"]]
    return args


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> dict[str, dict]:
    """Creates every case's source dataset and the webknossos-downsampled copy, in one subprocess."""
    root = tmp_path_factory.mktemp("downsample-ref")
    cases = {}
    for cid, case in REF_CASES.items():
        cases[cid] = dict(case, src=str(root / cid / "src"), ref=str(root / cid / "ref"))
    spec = root / "cases.json"
    spec.write_text(json.dumps(list(cases.values())))
    proc = subprocess.run([sys.executable, str(TOOLS / "ref_downsample.py"), str(spec)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert proc.returncode == 0, proc.stdout.decode(errors="replace")[-5000:]
    return cases


# --------------------------------------------------------------------------------------------
# Helpers


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SHARD_ENV}
    env.update(extra)
    return env


def _markers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob(MARKER + "*"))


def _is_lock(rel: str) -> bool:
    return Path(rel).name.startswith(".wkfs-lock")


def _files(root: Path) -> dict[str, tuple]:
    """Snapshot of the files (no directories, no lock files) under root."""
    return {k: v for k, v in h.snapshot(root).items() if v[0] != "dir" and not _is_lock(k)}


def _mag_entries(ds: Path, layer: str) -> list[tuple]:
    return [(tuple(m["mag"]), m["path"]) for m in h.properties_layer(ds, layer)["mags"]]


def _read_mags(ds: Path, layer: str) -> dict:
    """Every mag of the layer over the layer box aligned to the mag (read by webknossos)."""
    import webknossos as wk

    lay = wk.Dataset.open(ds).get_layer(layer)
    out = {}
    for mag, view in lay.mags.items():
        bb = lay.bounding_box.align_with_mag(mag, ceil=True)
        out[mag.to_layer_name()] = view.read(absolute_bounding_box=bb)
    return out


def _first_diff(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"shapes differ: {a.shape} != {b.shape}"
    diff = np.argwhere(a != b)
    return f"{len(diff)} voxels differ, first at (c,x,y,z) index {tuple(diff[0])}: expected {a[tuple(diff[0])]}, got {b[tuple(diff[0])]}"


def _assert_same_voxels(expected: Path, got: Path, layer: str) -> None:
    want, have = _read_mags(expected, layer), _read_mags(got, layer)
    assert sorted(have) == sorted(want), f"mags: expected {sorted(want)}, got {sorted(have)}"
    for mag, arr in want.items():
        assert have[mag].dtype == arr.dtype
        assert np.array_equal(have[mag], arr), f"mag {mag}: " + _first_diff(arr, have[mag])


def _run_parallel(cmds: list[tuple[list, dict]], log_dir: Path) -> None:
    """Starts every (argv, env) at once and waits for all; each must exit 0 without a crash."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, (argv, env) in enumerate(cmds):
        out = open(log_dir / f"{i}.log", "wb")
        procs.append((subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, env=env), out, argv))
    for proc, out, argv in procs:
        try:
            rc = proc.wait(timeout=h.TIMEOUT)
        finally:
            out.close()
        text = Path(out.name).read_text(errors="replace")
        done = subprocess.CompletedProcess(argv, rc, text.encode(), b"")
        assert rc == 0, h.describe(done)
        h.assert_no_crash(done)


def _wkfs_dataset(root: Path, fmt: str, *, dtype="uint8", category="color", size=(150, 130, 70),
                  topleft=(3, 5, 7), block=8, file_len=2, voxel_size=ANISO, seed=0) -> Path:
    """A dataset written by wkfs with many small data files (default: 16^3-voxel files)."""
    ds = root / "ds"
    h.wkfs_ok("create", ds, "--voxel-size", h.csv(voxel_size))
    extra = ["--largest-segment-id", "3"] if category == "segmentation" else []
    h.wkfs_ok("add-layer", ds, "data", "--category", category, "--dtype", dtype, "--data-format", fmt, *extra)
    if fmt == "wkw":
        h.wkfs_ok("add-mag", ds, "data", "1", "--block-len", block, "--file-len", file_len, "--compress")
    else:
        h.wkfs_ok("add-mag", ds, "data", "1", "--chunk-shape", block, "--shard-shape", block * file_len, "--compress")
    rng = np.random.default_rng(seed)
    if category == "segmentation":
        data = rng.choice(np.array([0, 1, 2, 3], dtype=dtype), size=(1, *size), p=[0.4, 0.3, 0.2, 0.1])
    else:
        data = h.random_array(rng, dtype, 1, size)
    h.wkfs_write(ds, "data", "1", topleft, size, h.to_bytes(data), input_file=root / "input.raw")
    (root / "input.raw").unlink()
    return ds


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


# --------------------------------------------------------------------------------------------
# 1. Against the reference


@pytest.mark.parametrize("cid", list(REF_CASES))
def test_same_as_webknossos(reference, tmp_path, cid):
    case = reference[cid]
    src, ref, layer = Path(case["src"]), Path(case["ref"]), case["layer"]
    ours = _copy(src, tmp_path / "ours")
    h.wkfs_ok("downsample", ours, layer, *_wkfs_args(case))

    # properties: the same mag entries, in the same order; nothing else of the layer changed
    ref_entry, our_entry = h.properties_layer(ref, layer), h.properties_layer(ours, layer)
    assert _mag_entries(ours, layer) == _mag_entries(ref, layer), (
        f"mags: expected {_mag_entries(ref, layer)}, got {_mag_entries(ours, layer)}")
    for key in ref_entry:
        if key != "mags":
            assert our_entry.get(key) == ref_entry[key], f"layer {key}: expected {ref_entry[key]}, got {our_entry.get(key)}"
    assert h.read_properties(ours)["scale"] == h.read_properties(ref)["scale"]
    # directories: one per mag, named like the reference's
    ref_dirs = sorted(p.name for p in (ref / layer).iterdir() if p.is_dir())
    our_dirs = sorted(p.name for p in (ours / layer).iterdir() if p.is_dir())
    assert our_dirs == ref_dirs
    if case["fmt"] == "zarr3":
        # the layer's OME-NGFF group lists the new mags like the reference's
        ref_group = json.loads((ref / layer / "zarr.json").read_text())
        our_group = json.loads((ours / layer / "zarr.json").read_text())
        assert our_group == ref_group

    _assert_same_voxels(ref, ours, layer)
    assert _markers(ours) == []
    h.wkfs_ok("check", ours)


# --------------------------------------------------------------------------------------------
# 2. Running it again


@pytest.mark.parametrize("cid", ["wkw-u8-aniso-offset", "zarr3-seg-u64-isotropic-mode", "wkw-u8-2d"])
def test_second_run_changes_nothing(reference, tmp_path, cid):
    case = reference[cid]
    ours = _copy(Path(case["src"]), tmp_path / "ours")
    h.wkfs_ok("downsample", ours, case["layer"], *_wkfs_args(case))
    before = h.snapshot(ours)
    h.wkfs_ok("downsample", ours, case["layer"], *_wkfs_args(case))
    h.wkfs_ok("downsample", ours, case["layer"])
    h.assert_unchanged(ours, before)


# --------------------------------------------------------------------------------------------
# 3. Split work


SPLIT_CASES = [
    pytest.param(dict(fmt="wkw", dtype="uint8", category="color"), id="wkw-b8f2-uint8"),
    pytest.param(dict(fmt="zarr3", dtype="uint32", category="segmentation"), id="zarr3-c8s16-seg-uint32"),
]


def _logs(log_dir: Path) -> str:
    return "\n".join(f"--- {p.name}: " + p.read_text(errors="replace").replace("\r", "\n").strip().splitlines()[-1:].__str__()
                     for p in sorted(log_dir.glob("*.log")))
COARSEST = "8"


@pytest.fixture
def split_setup(tmp_path, request):
    """(source dataset, the same downsampled by one process, its new mags in order)."""
    src = _wkfs_dataset(tmp_path / "src", **request.param)
    whole = _copy(src, tmp_path / "whole")
    h.wkfs_ok("downsample", whole, "data", "--coarsest", COARSEST)
    mags = [h.mag_dir_name(m) for m, _ in _mag_entries(whole, "data")]
    assert mags == ["1", "2-2-1", "4-4-2", "8-8-4"]
    assert _markers(whole) == []
    return src, whole, mags


@pytest.mark.parametrize("split_setup", SPLIT_CASES, indirect=True)
def test_four_shards_per_level_same_files(split_setup, tmp_path):
    """Each level by 4 processes started at once (`--shard I/4 --from PREV`): the files of one
    process, byte for byte."""
    src, whole, mags = split_setup
    parts = _copy(src, tmp_path / "parts")
    for level in range(1, len(mags)):
        frm = ["--from", mags[level - 1]]
        logs = tmp_path / f"logs{level}"
        _run_parallel([([h.WKFS_BIN, "downsample", parts, "data", *frm, "--coarsest", COARSEST, "--shard", f"{i}/4"],
                        _clean_env()) for i in range(4)], logs)
        # exactly this level is there, complete
        have = [h.mag_dir_name(m) for m, _ in _mag_entries(parts, "data")]
        assert have == mags[: level + 1] and _markers(parts) == [], (
            f"after the 4 parts of level {level} ({mags[level]}): mags {have}, markers {_markers(parts)}\n{_logs(logs)}")
    want, got = _files(whole), _files(parts)
    assert got == want, "files differ from one process's:\n" + h.snapshot_diff(want, got)
    h.wkfs_ok("check", parts)


@pytest.mark.parametrize("split_setup", SPLIT_CASES[:1], indirect=True)
def test_slurm_array_variables_split_a_level(split_setup, tmp_path):
    """Level 1 as a 4-task SLURM array (SLURM_ARRAY_TASK_ID/COUNT, no --shard); the level is not
    complete (marker present) until every task has run; the rest by one plain run."""
    src, whole, mags = split_setup
    parts = _copy(src, tmp_path / "parts")
    argv = [h.WKFS_BIN, "downsample", parts, "data", "--from", mags[0], "--coarsest", COARSEST]
    env = lambda i: _clean_env(SLURM_ARRAY_TASK_ID=str(i), SLURM_ARRAY_TASK_COUNT="4",  # noqa: E731
                               SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_JOB_ID="4242")
    _run_parallel([(argv, env(i)) for i in (0, 2, 3)], tmp_path / "logs-a")
    assert _markers(parts / "data" / mags[1]), "level 1 looks complete after 3 of 4 tasks"
    _run_parallel([(argv, env(1))], tmp_path / "logs-b")
    assert _markers(parts) == []
    assert [h.mag_dir_name(m) for m, _ in _mag_entries(parts, "data")] == mags[:2]
    for m in mags[:2]:
        sub = f"data/{m}/"
        want = {k: v for k, v in _files(whole).items() if k.startswith(sub)}
        got = {k: v for k, v in _files(parts).items() if k.startswith(sub)}
        assert got == want, h.snapshot_diff(want, got)
    h.wkfs_ok("downsample", parts, "data", "--coarsest", COARSEST)
    want, got = _files(whole), _files(parts)
    assert got == want, "files differ from one process's:\n" + h.snapshot_diff(want, got)


@pytest.mark.parametrize("split_setup", SPLIT_CASES[:1], indirect=True)
def test_half_a_sharded_level_finished_by_a_plain_run(split_setup, tmp_path):
    """Only part 0/2 of level 1 ran; a plain run finishes everything like one process, leaving
    no marker files behind."""
    src, whole, mags = split_setup
    parts = _copy(src, tmp_path / "parts")
    h.wkfs_ok("downsample", parts, "data", "--from", mags[0], "--coarsest", COARSEST, "--shard", "0/2")
    assert _markers(parts / "data" / mags[1])
    h.wkfs_ok("downsample", parts, "data", "--coarsest", COARSEST)
    data = lambda root: {k: v for k, v in _files(root).items() if MARKER not in k}  # noqa: E731
    want, got = data(whole), data(parts)
    assert got == want, "files differ from one process's:\n" + h.snapshot_diff(want, got)
    assert _markers(parts) == []


# --------------------------------------------------------------------------------------------
# 4. Resume after SIGKILL


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory):
    """A dataset whose downsampling takes about a second: (source, uninterrupted result)."""
    root = tmp_path_factory.mktemp("downsample-big")
    src = root / "src"
    h.wkfs_ok("create", src, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", src, "color", "--category", "color", "--dtype", "uint8")
    h.wkfs_ok("add-mag", src, "color", "1", "--block-len", "16", "--file-len", "2", "--compress")
    rng = np.random.default_rng(3)
    data = (rng.integers(0, 4, size=(256, 512, 512), dtype=np.uint8) * 60)  # (z, y, x): compressible
    raw = root / "input.raw"
    raw.write_bytes(data.tobytes())
    h.wkfs_ok("write", src, "color", "1", "--offset", "0,0,0", "--size", "512,512,256", "--input", raw)
    raw.unlink()
    whole = _copy(src, root / "whole")
    t = time.perf_counter()
    h.wkfs_ok("downsample", whole, "color", "--coarsest", "8")
    print(f"uninterrupted downsample: {time.perf_counter() - t:.2f} s")
    return src, whole


@pytest.mark.parametrize("kill_in", ["2", "4"], ids=["kill-in-level1", "kill-in-level2"])
def test_killed_run_finished_by_rerun(big_dataset, tmp_path, kill_in):
    src, whole = big_dataset
    ds = _copy(src, tmp_path / "ds")
    mag_dir = ds / "color" / kill_in
    log = open(tmp_path / "killed.log", "wb")
    proc = subprocess.Popen([str(h.WKFS_BIN), "downsample", str(ds), "color", "--coarsest", "8"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=_clean_env())
    try:
        deadline = time.monotonic() + h.TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if (mag_dir / MARKER).exists() and (kill_in != "2" or len(list(mag_dir.glob("z*/y*/x*.wkw"))) >= 40):
                break
            time.sleep(0.002)
        assert proc.poll() is None, "the run ended before the kill point: make the dataset bigger"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert (mag_dir / MARKER).exists(), f"no marker in the mag being built when killed: {_markers(ds)}"

    h.wkfs_ok("downsample", ds, "color", "--coarsest", "8")
    assert _markers(ds) == []
    assert h.read_properties(ds) == h.read_properties(whole)
    assert sorted(_files(ds)) == sorted(_files(whole)), h.snapshot_diff(_files(whole), _files(ds))
    _assert_same_voxels(whole, ds, "color")
    h.wkfs_ok("check", ds)


# --------------------------------------------------------------------------------------------
# 5. Bad arguments


def test_nearest_keeps_uint64_ids_above_2_53_exact(tmp_path):
    """A documented difference: webknossos's nearest (scipy's zoom) goes through float64, so it
    turns 2**53+1 into 2**53 and 2**64-1 into 0; wkfs keeps every id exact."""
    ds = tmp_path / "ds"
    h.wkfs_ok("create", ds, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", ds, "seg", "--category", "segmentation", "--dtype", "uint64", "--largest-segment-id", "0")
    h.wkfs_ok("add-mag", ds, "seg", "1", "--block-len", "16", "--file-len", "2", "--compress")
    ids = np.array([2**64 - 1, 2**53 + 1, 2**53 - 1, 7], dtype=np.uint64)
    data = np.repeat(ids, 16 * 32 * 32 // 4).reshape(16, 32, 32)  # (z, y, x): 4 slabs of one id each
    h.wkfs_ok("write", ds, "seg", "1", "--offset", "0,0,0", "--size", "32,32,16", input=data.tobytes())
    h.wkfs_ok("downsample", ds, "seg", "--interpolation", "nearest", "--sampling-mode", "isotropic", "--coarsest", "2")
    got = np.frombuffer(h.wkfs_ok("read", ds, "seg", "2", "--offset", "0,0,0", "--size", "16,16,8"), dtype=np.uint64)
    assert set(got.tolist()) <= set(int(i) for i in ids), sorted(set(got.tolist()))
    assert int(2**64 - 1) in set(got.tolist()) and int(2**53 + 1) in set(got.tolist())


@pytest.fixture
def small_dataset(tmp_path):
    """mags 1 and 2 (WKW, 16^3-voxel files)."""
    ds = _wkfs_dataset(tmp_path, "wkw", size=(40, 30, 20))
    h.wkfs_ok("downsample", ds, "data", "--sampling-mode", "isotropic", "--coarsest", "2")
    assert [h.mag_dir_name(m) for m, _ in _mag_entries(ds, "data")] == ["1", "2"]
    return ds


@pytest.mark.parametrize("args,needles", [
    pytest.param(["nope"], [["nope"], ["layer"]], id="unknown-layer"),
    pytest.param(["data", "--from", "4"], [["4"], ["--from", "mag 4"]], id="from-mag-missing"),
    pytest.param(["data", "--from", "2-2-1"], [["2-2-1"], ["--from", "mag 2-2-1"]], id="from-mag-missing-aniso"),
    pytest.param(["data", "--from", "2", "--coarsest", "8-8-1"], [["8-8-1"], ["--coarsest", "coarsest"]],
                 id="coarsest-finer-in-z"),
    pytest.param(["data", "--coarsest", "4-1-4"], [["4-1-4"], ["--coarsest", "coarsest"]], id="coarsest-finer-in-y"),
    pytest.param(["data", "--shard", "4/4"], [["4/4"], ["--shard"]], id="shard-index-too-big"),
    pytest.param(["data", "--shard", "0/0"], [["0/0"], ["--shard"]], id="shard-count-zero"),
    pytest.param(["data", "--shard", "two"], [["two"], ["--shard"]], id="shard-not-a-number"),
    pytest.param(["data", "--interpolation", "bilinear"], [["bilinear"], ["--interpolation"]], id="interpolation"),
    pytest.param(["data", "--shard", "1/4"], [["--from"], ["--shard"]], id="part-without-from"),
    pytest.param(["data", "--print-slurm", "--tasks", "0"], [["--tasks"]], id="tasks-zero"),
])
def test_bad_arguments(small_dataset, args, needles):
    before = h.snapshot(small_dataset)
    proc = h.wkfs_fails("downsample", small_dataset, *args)
    message = proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace")
    for alternatives in needles:
        assert any(n in message for n in alternatives), f"message names none of {alternatives}\n{h.describe(proc)}"
    h.assert_unchanged(small_dataset, before)


def test_bad_slurm_variables(small_dataset):
    before = h.snapshot(small_dataset)
    env = _clean_env(SLURM_ARRAY_TASK_ID="5", SLURM_ARRAY_TASK_COUNT="4")
    proc = subprocess.run([str(h.WKFS_BIN), "downsample", str(small_dataset), "data"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=h.TIMEOUT)
    assert proc.returncode != 0, h.describe(proc)
    h.assert_no_crash(proc)
    assert b"SLURM_ARRAY_TASK_ID" in proc.stderr + proc.stdout, h.describe(proc)
    h.assert_unchanged(small_dataset, before)


# --------------------------------------------------------------------------------------------
# 6. --print-slurm


FAKE_SBATCH = """#!/bin/bash
# records its arguments (NUL-separated, one file per call) and prints a job id like `sbatch --parsable`
n=$(( $(ls "$SBATCH_LOG" | wc -l) + 1 ))
printf '%s\\0' "$@" > "$SBATCH_LOG/call$n"
echo "$(( 1000 + n ))"
"""


def test_print_slurm(tmp_path):
    src = _wkfs_dataset(tmp_path / "src", "wkw", size=(100, 90, 60))
    whole = _copy(src, tmp_path / "whole")
    h.wkfs_ok("downsample", whole, "data", "--coarsest", COARSEST)
    mags = [h.mag_dir_name(m) for m, _ in _mag_entries(whole, "data")]
    assert mags == ["1", "2-2-1", "4-4-2", "8-8-4"]

    ds = _copy(src, tmp_path / "ds").resolve()
    before = h.snapshot(ds)
    script = h.wkfs_ok("downsample", ds, "data", "--coarsest", COARSEST, "--print-slurm", "--tasks", "3").decode()
    h.assert_unchanged(ds, before)  # printing does nothing else

    # the text: a bash script, one sbatch job array of 3 tasks per level
    assert script.startswith("#!") and "bash" in script.splitlines()[0], script
    sbatch_lines = [line for line in script.splitlines() if "sbatch " in line and not line.lstrip().startswith("#")]
    assert len(sbatch_lines) == len(mags) - 1, script
    for line, mag in zip(sbatch_lines, mags[1:]):
        assert "--array=0-2" in line, line
        assert mag in line, line
    for line in sbatch_lines[1:]:
        assert "--dependency=afterok" in line, line
    (tmp_path / "submit.sh").write_text(script)
    subprocess.run(["bash", "-n", str(tmp_path / "submit.sh")], check=True, timeout=30)

    # run it with a fake sbatch: the first array has no dependency, each later one waits for the one before
    bindir, calls = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir()
    calls.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    (bindir / "sbatch").chmod(0o755)
    env = _clean_env(PATH=f"{bindir}:{os.environ['PATH']}", SBATCH_LOG=str(calls))
    env.pop("SBATCH_OPTIONS", None)
    subprocess.run(["bash", str(tmp_path / "submit.sh")], check=True, env=env, cwd=tmp_path, timeout=30,
                   stdout=subprocess.PIPE)
    recorded = [(calls / f"call{i}").read_bytes().decode().split("\0")[:-1] for i in range(1, len(list(calls.iterdir())) + 1)]
    assert len(recorded) == len(mags) - 1, recorded
    wraps = []
    for i, argv in enumerate(recorded):
        assert "--array=0-2" in argv, argv
        deps = [a for a in argv if a.startswith("--dependency")]
        assert deps == ([] if i == 0 else [f"--dependency=afterok:{1000 + i}"]), argv
        wrap = [argv[j + 1] for j, a in enumerate(argv) if a == "--wrap"] + [a[len("--wrap="):] for a in argv if a.startswith("--wrap=")]
        assert len(wrap) == 1, argv
        wraps.append(wrap[0])
    h.assert_unchanged(ds, before)

    # the printed commands, run as the array's tasks level after level, build what one process builds
    for level, command in enumerate(wraps, start=1):
        _run_parallel([(["bash", "-c", command],
                        _clean_env(SLURM_ARRAY_TASK_ID=str(i), SLURM_ARRAY_TASK_COUNT="3", SLURM_ARRAY_TASK_MIN="0"))
                       for i in range(3)], tmp_path / f"logs{level}")
    assert _markers(ds) == []
    want, got = _files(whole), _files(ds)
    assert got == want, "files differ from one process's:\n" + h.snapshot_diff(want, got)


def test_parts_of_two_splits_of_one_level_leave_no_notes(tmp_path):
    """Part 1/2 ran, then the level was split in 3 and all 3 parts ran: the level is complete
    and no note of either split stays behind."""
    ds = _wkfs_dataset(tmp_path, "wkw", size=(60, 50, 40))
    h.wkfs_ok("downsample", ds, "data", "--from", "1", "--coarsest", "2-2-1", "--shard", "1/2")
    for i in range(3):
        h.wkfs_ok("downsample", ds, "data", "--from", "1", "--coarsest", "2-2-1", "--shard", f"{i}/3")
    assert _markers(ds) == []
    h.wkfs_ok("check", ds)
