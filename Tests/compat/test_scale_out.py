"""Copy, downsample and compress split into parts: by a real single-node SLURM cluster running the
shipped job scripts (`sbatch --wait --array=0-3`), and by 4 plain background processes with
`--shard I/4`; every result is byte-identical to a single-process run. And compress itself:
voxels unchanged, the codec asked for, a SIGKILL mid-run finished by running it again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import slurmcluster
import wkfs_helpers as h

REPO = Path(__file__).resolve().parents[2]
SBATCH_SCRIPT = REPO / "mount-scripts" / "slurm" / "wkfs.sbatch"
DOWNSAMPLE_SCRIPT = REPO / "mount-scripts" / "slurm" / "downsample.sh"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JOB_COMPLETION", "WKFS_SHARD"))}
    env.update(extra)
    return env


def _dataset(path: Path) -> Path:
    """Two layers in small data files (many parts to split): raw WKW uint8, raw Zarr3 uint32."""
    h.wkfs_ok("create", path, "--voxel-size", "11.24,11.24,28")
    h.wkfs_ok("add-layer", path, "color", "--category", "color", "--dtype", "uint8")
    h.wkfs_ok("add-mag", path, "color", "1", "--block-len", "8", "--file-len", "2", "--no-compress")
    h.wkfs_ok("add-layer", path, "seg", "--category", "segmentation", "--dtype", "uint32", "--data-format", "zarr3",
              "--largest-segment-id", "0")
    h.wkfs_ok("add-mag", path, "seg", "1", "--chunk-shape", "8", "--shard-shape", "16", "--no-compress")
    rng = np.random.default_rng(5)
    color = rng.integers(0, 4, size=(60, 80, 100), dtype=np.uint8) * 50  # (z, y, x)
    h.wkfs_ok("write", path, "color", "1", "--offset", "3,5,7", "--size", "100,80,60", input=color.tobytes())
    seg = rng.integers(0, 5, size=(50, 70, 90), dtype=np.uint32)
    h.wkfs_ok("write", path, "seg", "1", "--offset", "0,2,1", "--size", "90,70,50", input=seg.tobytes())
    return path


def _files(root: Path) -> dict:
    return h.snapshot(root)


def _same(want: Path, got: Path) -> None:
    a, b = _files(want), _files(got)
    assert a == b, "differs from the single-process run:\n" + h.snapshot_diff(a, b)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _dataset(tmp_path_factory.mktemp("scale-out") / "src")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = slurmcluster.missing_programs()
    if missing:
        pytest.fail(f"SLURM is not installed ({', '.join(missing)} missing): `make deps` installs slurm-wlm and munge",
                    pytrace=False)
    c = slurmcluster.SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield c
    c.stop()


def _sbatch(cluster, logs: Path, *args) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    proc = cluster.sbatch("--array=0-3", f"--output={logs}/%A_%a.log", *map(str, args))
    text = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(logs.glob("*.log")))
    assert proc.returncode == 0, f"sbatch failed ({proc.returncode}): {proc.stderr}\n{text}\n{cluster.logs()}"


def _wkfs_env(cluster) -> dict:
    return dict(cluster.env, WKFS=str(h.WKFS_BIN))


def _background(argvs: list[list], env=None) -> None:
    procs = [subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env or _env()) for argv in argvs]
    for proc, argv in zip(procs, argvs):
        out, err = proc.communicate(timeout=h.TIMEOUT)
        done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        assert proc.returncode == 0, h.describe(done)
        h.assert_no_crash(done)


COPY_ARGS = ["--block-len", "8", "--file-len", "4", "--compress"]


# ---- copy -------------------------------------------------------------------------------------

def test_copy_as_slurm_array_same_as_one_process(source, cluster, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "array").mkdir()
    h.wkfs_ok("copy", source, tmp_path / "one" / "ds", *COPY_ARGS)
    cluster.env.update(WKFS=str(h.WKFS_BIN))
    _sbatch(cluster, tmp_path / "logs", SBATCH_SCRIPT, "copy", source, tmp_path / "array" / "ds", *COPY_ARGS)
    _same(tmp_path / "one" / "ds", tmp_path / "array" / "ds")
    h.wkfs_ok("check", tmp_path / "array" / "ds")


def test_copy_by_four_background_processes(source, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "parts").mkdir()
    h.wkfs_ok("copy", source, tmp_path / "one" / "ds", "--data-format", "zarr3", "--chunk-shape", "8", "--shard-shape", "16")
    _background([[h.WKFS_BIN, "copy", source, tmp_path / "parts" / "ds", "--data-format", "zarr3", "--chunk-shape", "8",
                  "--shard-shape", "16", "--shard", f"{i}/4"] for i in range(4)])
    _same(tmp_path / "one" / "ds", tmp_path / "parts" / "ds")
    h.wkfs_ok("check", tmp_path / "parts" / "ds")


def test_copy_part_alone_is_unfinished_until_every_part_ran(source, tmp_path):
    dst = tmp_path / "ds"
    h.wkfs_ok("copy", source, dst, "--shard", "1/3")
    proc = h.run_wkfs("check", dst)
    assert proc.returncode == 1 and b"incomplete copy" in proc.stdout + proc.stderr, h.describe(proc)
    h.wkfs_ok("copy", source, dst, "--shard", "0/3")
    h.wkfs_ok("copy", source, dst, "--shard", "2/3")
    h.wkfs_ok("check", dst)
    (tmp_path / "one").mkdir()
    h.wkfs_ok("copy", source, tmp_path / "one" / "ds")
    _same(tmp_path / "one" / "ds", dst)


# ---- downsample -------------------------------------------------------------------------------

def _levels(ds: Path, layer: str) -> list[str]:
    return [h.mag_dir_name(m["mag"]) for m in h.properties_layer(ds, layer)["mags"]]


def test_downsample_as_slurm_arrays_same_as_one_process(source, cluster, tmp_path):
    one, array, script = (tmp_path / d / "ds" for d in ("one", "array", "script"))
    for d in (one, array, script):
        shutil.copytree(source, d, symlinks=True)
    h.wkfs_ok("downsample", one, "color", "--coarsest", "4")
    levels = _levels(one, "color")
    assert levels == ["1", "2-2-1", "4-4-2"]
    cluster.env.update(WKFS=str(h.WKFS_BIN))
    # One array per level with the generic job script, each after the one before.
    for previous, _ in zip(levels, levels[1:]):
        _sbatch(cluster, tmp_path / f"logs-{previous}", SBATCH_SCRIPT, "downsample", array, "color",
                "--from", previous, "--coarsest", "4")
    _same(one, array)
    # A level with only some of its parts run is reported, and not started from.
    partial = tmp_path / "partial" / "ds"
    shutil.copytree(source, partial, symlinks=True)
    h.wkfs_ok("downsample", partial, "color", "--from", "1", "--coarsest", "4", "--shard", "2/4")
    proc = h.run_wkfs("check", partial)
    assert proc.returncode == 1 and b"downsampling not finished" in proc.stdout, h.describe(proc)
    # The shipped submit script: one array per level chained with --dependency=afterok.
    proc = subprocess.run(["bash", str(DOWNSAMPLE_SCRIPT), str(script), "color", "4", "--coarsest", "4"],
                          env=_wkfs_env(cluster), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    jobs = [line.split()[-1] for line in proc.stdout.splitlines() if ": job " in line]
    assert len(jobs) == 2, proc.stdout
    wait = cluster.sbatch(f"--dependency=afterok:{jobs[-1]}", f"--output={tmp_path}/wait.log", "--wrap", "true")
    assert wait.returncode == 0, wait.stderr + cluster.logs()
    _same(one, script)
    h.wkfs_ok("check", script)


# ---- compress ---------------------------------------------------------------------------------

def _voxels(ds: Path) -> dict:
    return {
        "color": h.wkfs_ok("read", ds, "color", "1", "--offset", "0,0,0", "--size", "112,96,80"),
        "seg": h.wkfs_ok("read", ds, "seg", "1", "--offset", "0,0,0", "--size", "96,80,64"),
    }


def test_compress_keeps_voxels_and_uses_the_formats_codec(source, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(source, ds, symlinks=True)
    before = _voxels(ds)
    properties = (ds / "datasource-properties.json").read_bytes()
    h.wkfs_ok("compress", ds)
    assert _voxels(ds) == before
    assert (ds / "datasource-properties.json").read_bytes() == properties
    header = (ds / "color" / "1" / "header.wkw").read_bytes()
    assert header[5] == 3, "WKW block type is LZ4HC"
    for f in (ds / "color" / "1").rglob("*.wkw"):
        assert f.read_bytes()[5] == 3, f"{f} is not LZ4HC"
    codecs = json.loads((ds / "seg" / "1" / "zarr.json").read_text())["codecs"][0]["configuration"]["codecs"]
    assert any(c["name"] == "zstd" for c in codecs), codecs
    assert not list(ds.rglob(".wkfs-compress*")), "leftovers of the compression"
    h.wkfs_ok("check", ds)
    # webknossos reads the compressed mags
    import webknossos as wk
    layer = wk.Dataset.open(ds).get_layer("seg")
    assert layer.get_mag("1").read(absolute_offset=(0, 2, 1), size=(90, 70, 50)).shape == (1, 90, 70, 50)
    # again: nothing to do, nothing changes
    snap = _files(ds)
    h.wkfs_ok("compress", ds)
    assert _files(ds) == snap


def test_compress_as_slurm_array_and_by_background_processes(source, cluster, tmp_path):
    one, array, parts = (tmp_path / d / "ds" for d in ("one", "array", "parts"))
    for d in (one, array, parts):
        shutil.copytree(source, d, symlinks=True)
    h.wkfs_ok("compress", one)
    cluster.env.update(WKFS=str(h.WKFS_BIN))
    _sbatch(cluster, tmp_path / "logs", SBATCH_SCRIPT, "compress", array)
    _same(one, array)
    _background([[h.WKFS_BIN, "compress", parts, "--shard", f"{i}/4"] for i in range(4)])
    _same(one, parts)


@pytest.mark.parametrize("kill_after", [0.05, 0.15, 0.3])
def test_compress_killed_then_run_again_gives_the_same_bytes(tmp_path, kill_after):
    src = tmp_path / "src"
    h.wkfs_ok("create", src, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", src, "color", "--category", "color", "--dtype", "uint8")
    h.wkfs_ok("add-mag", src, "color", "1", "--block-len", "8", "--file-len", "2", "--no-compress")
    data = (np.random.default_rng(9).integers(0, 3, size=(128, 256, 256), dtype=np.uint8) * 70)
    h.wkfs_ok("write", src, "color", "1", "--offset", "0,0,0", "--size", "256,256,128", input=data.tobytes())
    whole = tmp_path / "whole"
    shutil.copytree(src, whole, symlinks=True)
    h.wkfs_ok("compress", whole)
    killed = tmp_path / "killed"
    shutil.copytree(src, killed, symlinks=True)
    proc = subprocess.Popen([str(h.WKFS_BIN), "compress", str(killed)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # Meanwhile every voxel reads as before, from the old mag or the new one.
    got = np.frombuffer(h.wkfs_ok("read", killed, "color", "1", "--offset", "0,0,0", "--size", "256,256,128"), dtype=np.uint8)
    assert np.array_equal(got, data.reshape(-1))
    if list((killed / "color").glob(".wkfs-compress-*")):
        proc = h.run_wkfs("check", killed)
        assert proc.returncode == 1 and b"compression not finished" in proc.stdout, h.describe(proc)
    h.wkfs_ok("compress", killed)
    _same(whole, killed)
    h.wkfs_ok("check", killed)


@pytest.mark.parametrize("notes_left", [True, False], ids=["notes-left", "notes-gone"])
def test_the_old_copy_a_killed_compress_left_after_its_swap_is_removed_by_the_next_run(source, tmp_path, notes_left):
    """A kill right after the swap leaves the old mag beside the compressed one. With its notes
    still in the live mag (the old copy now goes first), or without them (earlier runs removed
    the notes first, and the next runs said "already compressed" and left the copy for good)."""
    ds = tmp_path / "ds"
    shutil.copytree(source, ds, symlinks=True)
    before = _voxels(ds)
    h.wkfs_ok("compress", ds)
    for layer in ("color", "seg"):
        shutil.copytree(source / layer / "1", ds / layer / ".wkfs-compress-1")
        if notes_left:
            (ds / layer / "1" / ".wkfs-compress-new").write_text("compressed copy\n")
    proc = h.run_wkfs("check", ds)
    assert proc.returncode == 1 and b"compression not finished" in proc.stdout, h.describe(proc)
    h.wkfs_ok("compress", ds)
    assert not list(ds.rglob(".wkfs-compress*")), "leftovers of the compression"
    assert _voxels(ds) == before
    h.wkfs_ok("check", ds)


def test_two_compress_runs_at_once_leave_nothing_behind(source, tmp_path):
    """The second run waits for the first one's swap instead of writing into the copy it moves
    away (it found a temporary file of its own in the live mag, and failed)."""
    ds = tmp_path / "ds"
    shutil.copytree(source, ds, symlinks=True)
    before = _voxels(ds)
    _background([[h.WKFS_BIN, "compress", ds], [h.WKFS_BIN, "compress", ds]])
    assert _voxels(ds) == before
    assert not [p for p in ds.rglob("*") if ".wkfs-compress" in p.name or p.name.endswith(".tmp")]
    h.wkfs_ok("check", ds)


def test_parts_of_two_splits_of_one_copy_leave_no_notes(source, tmp_path):
    dst = tmp_path / "ds"
    h.wkfs_ok("copy", source, dst, "--shard", "1/2")
    for i in range(3):
        h.wkfs_ok("copy", source, dst, "--shard", f"{i}/3")
    assert not [p.name for p in dst.iterdir() if p.name.startswith(".wkfs-copy")]
    h.wkfs_ok("check", dst)
