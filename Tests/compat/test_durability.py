"""Durability: kills at random moments and concurrent writers, checked with the reference `wkw`.

- Several `wkfs write` processes into the same data files (raw and LZ4) and into different files:
  every region reads back, and the bounding box covers every voxel written.
- SIGKILL of `wkfs write` into raw and LZ4 mags at random moments: after `wkfs check --repair`
  (or the next open) every data file is exactly its old or its new content, and `wkfs check`
  names what the kill left before the repair.
- SIGKILL of `wkfs copy`: `wkfs check` reports the copy as incomplete, and the same copy again
  finishes it.

Counts come from the environment so that `make stress` can run more of the same:
WKFS_KILLS (per kill test, default 14; the copy test gets half) and WKFS_TRIALS (per concurrency test, default 8).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import wkfs_helpers as h

KILLS = int(os.environ.get("WKFS_KILLS", "14"))
TRIALS = int(os.environ.get("WKFS_TRIALS", "8"))


def _dataset(root: Path, *, compress: bool, block_len: int, file_len: int, name: str = "ds", data_format: str = "wkw") -> Path:
    ds = root / name
    h.wkfs_ok("create", ds, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8", "--data-format", data_format)
    h.wkfs_ok("add-mag", ds, "color", "1", "--block-len", block_len, "--file-len", file_len,
              "--compress" if compress else "--no-compress")
    return ds


def _write_array(ds: Path, offset, arr_zyx: np.ndarray) -> subprocess.Popen:
    """Starts `wkfs write` of a (z, y, x) uint8 array at `offset` (x, y, z)."""
    size = (arr_zyx.shape[2], arr_zyx.shape[1], arr_zyx.shape[0])
    proc = subprocess.Popen(
        [str(h.WKFS_BIN), "write", str(ds), "color", "1", "--offset", h.csv(offset), "--size", h.csv(size)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(arr_zyx.tobytes())
    proc.stdin.close()
    return proc


def _finish(proc: subprocess.Popen) -> None:
    proc.wait(timeout=h.TIMEOUT)
    err = proc.stderr.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == 0, err


def _read_zyx(ds: Path, offset, size) -> np.ndarray:
    """The reference's read of mag 1 as a (z, y, x) array: wkw, or tensorstore for Zarr3."""
    mag = ds / "color" / "1"
    if (mag / "zarr.json").is_file():
        import tensorstore as ts

        array = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(mag)}}).result()
        (x, y, z), (sx, sy, sz) = offset, size
        arr = array[:, x:x + sx, y:y + sy, z:z + sz].read().result()
    else:
        arr = h.wkw_read(mag, offset, size)  # (c, x, y, z)
    return np.ascontiguousarray(arr[0].transpose(2, 1, 0))


def _bbox(ds: Path):
    b = h.properties_layer(ds, "color")["boundingBox"]
    return tuple(b["topLeft"]), (b["width"], b["height"], b["depth"])


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "lz4hc"])
def test_concurrent_writes_into_one_file_keep_both(tmp_path, compress):
    """Two writers into different regions of the same data file: both regions survive."""
    rng = np.random.default_rng(7)
    for trial in range(TRIALS):
        ds = _dataset(tmp_path / f"t{trial}", compress=compress, block_len=8, file_len=4)
        a = rng.integers(1, 255, size=(32, 32, 16), dtype=np.uint8)  # x 0..15 of the one 32³ file
        b = rng.integers(1, 255, size=(32, 32, 16), dtype=np.uint8)  # x 16..31
        procs = [_write_array(ds, (0, 0, 0), a), _write_array(ds, (16, 0, 0), b)]
        for p in procs:
            _finish(p)
        got = _read_zyx(ds, (0, 0, 0), (32, 32, 32))
        assert np.array_equal(got[:, :, :16], a), f"trial {trial}: the first writer's region was lost"
        assert np.array_equal(got[:, :, 16:], b), f"trial {trial}: the second writer's region was lost"
        assert _bbox(ds) == ((0, 0, 0), (32, 32, 32))


def test_concurrent_writes_into_different_files_grow_one_bounding_box(tmp_path):
    """Four writers into four files: the bounding box covers all four regions."""
    rng = np.random.default_rng(8)
    offsets = [(0, 0, 0), (64, 0, 0), (0, 96, 0), (0, 0, 128)]
    for trial in range(TRIALS):
        ds = _dataset(tmp_path / f"t{trial}", compress=True, block_len=8, file_len=4)
        parts = [rng.integers(1, 255, size=(8, 8, 8), dtype=np.uint8) for _ in offsets]
        procs = [_write_array(ds, o, p) for o, p in zip(offsets, parts)]
        for p in procs:
            _finish(p)
        assert _bbox(ds) == ((0, 0, 0), (72, 104, 136)), f"trial {trial}: a bounding-box update was lost"
        for o, p in zip(offsets, parts):
            assert np.array_equal(_read_zyx(ds, o, (8, 8, 8)), p)


def _old_or_new(after: np.ndarray, old: np.ndarray, new: np.ndarray, edge: int, what: str) -> str:
    """Whether every data file (an `edge`³ part of the (z, y, x) arrays) is old, new, or some of
    each ("mixed files"); fails the test for a file that is neither."""
    kinds = set()
    for fz in range(after.shape[0] // edge):
        for fy in range(after.shape[1] // edge):
            for fx in range(after.shape[2] // edge):
                part = np.s_[fz * edge:(fz + 1) * edge, fy * edge:(fy + 1) * edge, fx * edge:(fx + 1) * edge]
                if np.array_equal(after[part], old[part]):
                    kinds.add("old")
                elif np.array_equal(after[part], new[part]):
                    kinds.add("new")
                else:
                    pytest.fail(f"{what}: file x{fx} y{fy} z{fz} is neither old nor new")
    return "mixed files" if len(kinds) > 1 else kinds.pop()


def _file_contents(mag: Path) -> dict[str, bytes]:
    return {str(f.relative_to(mag)): f.read_bytes() for f in h.data_files(mag)}


def _kill_during(args: list, data: bytes, delay: float) -> int:
    proc = subprocess.Popen([str(h.WKFS_BIN), *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=h.TIMEOUT)


@pytest.mark.parametrize("compress,data_format", [(False, "wkw"), (True, "wkw"), (True, "zarr3")],
                         ids=["raw", "lz4hc", "zarr3-zstd"])
def test_kill_during_write_leaves_each_file_old_or_new(tmp_path, compress, data_format):
    """SIGKILL of `wkfs write` over 16 existing files (WKW files, Zarr3 shards) at random moments."""
    rng = np.random.default_rng(11 if compress else 12)
    random.seed(13)
    ds = _dataset(tmp_path, compress=compress, block_len=32, file_len=2, data_format=data_format)  # 64³ files
    mag = ds / "color" / "1"
    size = (256, 256, 64)  # 4 × 4 × 1 files
    old = rng.integers(0, 255, size=size[::-1], dtype=np.uint8)
    h.wkfs_ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", h.csv(size), input=old.tobytes())
    # The new region covers each file partly (an unaligned box) so raw files are patched in place.
    new_offset, new_size = (5, 3, 1), (250, 250, 60)
    new = rng.integers(0, 255, size=new_size[::-1], dtype=np.uint8)
    expected_new = old.copy()
    expected_new[1:61, 3:253, 5:255] = new
    # How long an uninterrupted write takes, to spread the kills over it.
    scratch = _dataset(tmp_path / "timing", compress=compress, block_len=32, file_len=2, data_format=data_format)
    h.wkfs_ok("write", scratch, "color", "1", "--offset", "0,0,0", "--size", h.csv(size), input=old.tobytes())
    start = time.monotonic()
    h.wkfs_ok("write", scratch, "color", "1", "--offset", h.csv(new_offset), "--size", h.csv(new_size), input=new.tobytes())
    duration = time.monotonic() - start
    outcomes = {"old": 0, "new": 0, "mixed files": 0, "rolled back": 0}
    for kill in range(KILLS):
        state = _read_zyx(ds, (0, 0, 0), size)
        delay = random.uniform(0.0, duration)
        _kill_during(["write", ds, "color", "1", "--offset", h.csv(new_offset), "--size", h.csv(new_size)],
                     new.tobytes(), delay)
        check = subprocess.run([str(h.WKFS_BIN), "check", str(ds)], capture_output=True, text=True, timeout=h.TIMEOUT)
        leftovers = sorted(p.name for p in mag.rglob("*") if ".wkfs-undo" in p.name or p.name.endswith(".tmp"))
        if leftovers:
            assert check.returncode == 1, f"kill {kill}: check passed with leftovers {leftovers}"
        repair = subprocess.run([str(h.WKFS_BIN), "check", "--repair", str(ds)], capture_output=True, text=True,
                                timeout=h.TIMEOUT)
        assert repair.returncode == 0, f"kill {kill} after {delay:.3f}s: repair failed:\n{repair.stdout}{repair.stderr}"
        assert not [p for p in mag.rglob("*") if ".wkfs-undo" in p.name or p.name.endswith(".tmp")]
        after = _read_zyx(ds, (0, 0, 0), size)
        outcomes[_old_or_new(after, state, expected_new, 64, f"kill {kill} after {delay:.3f}s")] += 1
        outcomes["rolled back"] += repair.stdout.count("rolled back")
        # Start the next kill from the old content again.
        h.wkfs_ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", h.csv(size), input=old.tobytes())
    print(f"{KILLS} kills of wkfs write ({data_format}, {'compressed' if compress else 'raw'}): {outcomes}")


def test_kill_during_a_growing_zarr3_write_leaves_no_shard_outside_the_shape(tmp_path):
    """Readers of a Zarr3 array (tensorstore, zarr-python, webknossos) see only what lies inside
    its shape. A write that grows the array grows zarr.json before its shards are in place, so a
    kill anywhere leaves none outside it; shards used to be put in place first (the killed
    write's voxels were on disk, but hidden from every reader except wkfs)."""
    import json

    rng = np.random.default_rng(21)
    random.seed(22)
    size = (256, 256, 64)  # 4 × 4 × 1 shards of 64³, none there before
    data = rng.integers(1, 255, size=size[::-1], dtype=np.uint8)
    timing = _dataset(tmp_path / "timing", compress=True, block_len=32, file_len=2, data_format="zarr3")
    start = time.monotonic()
    h.wkfs_ok("write", timing, "color", "1", "--offset", "0,0,0", "--size", h.csv(size), input=data.tobytes())
    duration = time.monotonic() - start
    for kill in range(KILLS // 2):
        ds = _dataset(tmp_path / f"k{kill}", compress=True, block_len=32, file_len=2, data_format="zarr3")
        mag = ds / "color" / "1"
        delay = random.uniform(0.0, duration)
        _kill_during(["write", ds, "color", "1", "--offset", "0,0,0", "--size", h.csv(size)], data.tobytes(), delay)
        shape = json.loads((mag / "zarr.json").read_text())["shape"][1:]
        shards = [tuple(int(p) for p in f.relative_to(mag / "c").parts[1:]) for f in (mag / "c").rglob("*")
                  if f.is_file() and not f.name.endswith(".tmp")] if (mag / "c").is_dir() else []
        outside = [s for s in shards if any(i * 64 >= extent for i, extent in zip(s, shape))]
        assert not outside, f"kill {kill} after {delay:.3f}s: shards {outside} outside the shape {shape}"


def test_kill_during_a_write_of_several_slabs_leaves_each_file_old_or_new(tmp_path):
    """A raw write into existing files that each take several slabs (64 MiB of region at a time):
    a kill or a failure in a later slab must not leave the earlier slabs written."""
    rng = np.random.default_rng(31)
    random.seed(32)
    ds = _dataset(tmp_path, compress=False, block_len=32, file_len=4)  # 128³ files
    size = (1024, 256, 192)  # 8 × 2 × 2 files; slabs of 64 planes: each file spans 2 or 3 slabs
    old = np.full(size[::-1], 7, dtype=np.uint8)
    h.wkfs_ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", h.csv(size), input=old.tobytes())
    new = rng.integers(0, 255, size=size[::-1], dtype=np.uint8)
    start = time.monotonic()
    scratch = _dataset(tmp_path / "timing", compress=False, block_len=32, file_len=4)
    h.wkfs_ok("write", scratch, "color", "1", "--offset", "0,0,0", "--size", h.csv(size), input=old.tobytes())
    start = time.monotonic()
    h.wkfs_ok("write", scratch, "color", "1", "--offset", "0,0,0", "--size", h.csv(size), input=new.tobytes())
    duration = time.monotonic() - start
    outcomes = {"old": 0, "new": 0, "mixed files": 0}
    for kill in range(max(2, KILLS // 2)):
        _kill_during(["write", ds, "color", "1", "--offset", "0,0,0", "--size", h.csv(size)], new.tobytes(),
                     random.uniform(0.0, duration))
        h.wkfs_ok("check", "--repair", ds)  # rolls back what the kill left
        after = _read_zyx(ds, (0, 0, 0), size)  # the reference's read
        outcomes[_old_or_new(after, old, new, 128, f"kill {kill}")] += 1
        h.wkfs_ok("check", ds)
        h.wkfs_ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", h.csv(size), input=old.tobytes())
    print(f"{max(2, KILLS // 2)} kills of a several-slab raw write: {outcomes}")


def test_kill_during_copy_is_reported_and_finished_by_copying_again(tmp_path):
    """SIGKILL of `wkfs copy`: check says the copy is incomplete; the same copy again finishes it."""
    rng = np.random.default_rng(21)
    random.seed(22)
    src = _dataset(tmp_path, compress=False, block_len=8, file_len=4, name="src")
    size = (192, 128, 64)
    data = rng.integers(0, 255, size=size[::-1], dtype=np.uint8)
    h.wkfs_ok("write", src, "color", "1", "--offset", "0,0,0", "--size", h.csv(size), input=data.tobytes())
    start = time.monotonic()
    h.wkfs_ok("copy", src, tmp_path / "timing", "--block-len", "8", "--file-len", "2", "--compress")
    duration = time.monotonic() - start
    finished = resumed = 0
    for kill in range(max(2, KILLS // 2)):
        dst = tmp_path / f"copy{kill}"
        delay = random.uniform(0.0, duration)
        _kill_during(["copy", src, dst, "--block-len", "8", "--file-len", "2", "--compress"], b"", delay)
        if (dst / "datasource-properties.json").exists():
            check = subprocess.run([str(h.WKFS_BIN), "check", str(dst)], capture_output=True, text=True, timeout=h.TIMEOUT)
            if check.returncode == 0:
                # Only a copy that had finished may pass; copying again is refused then.
                assert np.array_equal(_read_zyx(dst, (0, 0, 0), size), data), f"kill {kill}: check passed an incomplete copy"
                finished += 1
                continue
            assert "incomplete copy" in check.stdout, check.stdout + check.stderr
        resumed += 1
        h.wkfs_ok("copy", src, dst, "--block-len", "8", "--file-len", "2", "--compress")
        h.wkfs_ok("check", dst)
        assert np.array_equal(_read_zyx(dst, (0, 0, 0), size), data), f"kill {kill}: the finished copy differs"
    print(f"{max(2, KILLS // 2)} kills of wkfs copy: {resumed} finished by copying again, {finished} had finished")


def _dead_pid() -> int:
    """A process id that no process has now."""
    for pid in range(4_000_000, 3_000_000, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise AssertionError("no free process id")


def test_add_mag_and_add_layer_run_again_after_a_kill_left_their_directory(tmp_path):
    """A kill between making a mag's (or a layer's) directory and naming it in the properties
    left the directory with a temporary file in it; every later run of the same step said
    "already exists". What a killed process left is cleared; anything else still stops it."""
    ds = tmp_path / "ds"
    h.wkfs_ok("create", ds, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8")
    h.wkfs_ok("add-layer", ds, "zc", "--category", "color", "--dtype", "uint8", "--data-format", "zarr3")
    dead = _dead_pid()
    for left in (ds / "color" / "1" / f"header.wkw.{dead}-1.tmp", ds / "zc" / "1" / f"zarr.json.{dead}-2.tmp",
                 ds / "zl" / f"zarr.json.{dead}-3.tmp"):
        left.parent.mkdir(parents=True)
        left.write_bytes(b"{")
    (ds / "zl" / "empty").mkdir()
    h.wkfs_ok("add-mag", ds, "color", "1")
    h.wkfs_ok("add-mag", ds, "zc", "1", "--chunk-shape", "32", "--shard-shape", "64")
    h.wkfs_ok("add-layer", ds, "zl", "--category", "color", "--dtype", "uint8", "--data-format", "zarr3")
    assert not [p for p in ds.rglob("*.tmp")]
    h.wkfs_ok("check", ds)
    # A temporary file of a process that runs, or any other file, is not a leftover.
    for name, owner in (("2", os.getpid()), ("4", None)):
        kept = ds / "zc" / name / (f"zarr.json.{owner}-4.tmp" if owner else "notes.txt")
        kept.parent.mkdir()
        kept.write_bytes(b"mine")
        proc = h.run_wkfs("add-mag", ds, "zc", name)
        assert proc.returncode != 0 and b"already exists" in proc.stderr, h.describe(proc)
        assert kept.read_bytes() == b"mine"
    # A run killed right after making its directory leaves nothing to tell it by: the message
    # says what to do.
    (ds / "zc" / "8").mkdir()
    proc = h.run_wkfs("add-mag", ds, "zc", "8")
    assert proc.returncode != 0 and b"holding no files" in proc.stderr and b"remove it and run again" in proc.stderr, h.describe(proc)
    (ds / "zc" / "8").rmdir()
    h.wkfs_ok("add-mag", ds, "zc", "8")
    (ds / "empty").mkdir()
    proc = h.run_wkfs("add-layer", ds, "empty", "--category", "color", "--dtype", "uint8")
    assert proc.returncode != 0 and b"remove it and run again" in proc.stderr, h.describe(proc)
