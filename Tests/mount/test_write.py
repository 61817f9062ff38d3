"""Writing cubes through the mount, checked while mounted and, after unmount, with `wkw`.

SPEC.md section 3: `cp`, `dd conv=notrunc seek=…`, `rsync --inplace`, numpy `tofile` and memmap
writes land in the WKW file (recompressed with the mag's block type); new cubes can be created
under new `z*/y*` directories; a wrong final size is refused at close with nothing written; the
layer's bounding box grows to cover what was written; `-o ro` refuses every write with EROFS.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import mounthelp as mh

#: (fixture, layer, mag): a RAW mag, an LZ4HC mag with 3 channels, an anisotropic uint16 mag.
TARGETS = [
    pytest.param(("wk433_color_uint8_raw", "color", "1"), id="raw-uint8"),
    pytest.param(("wk433_color_uint8x3", "color", "2"), id="lz4hc-uint8x3-mag2"),
    pytest.param(("wk433_color_uint16", "color", "2-2-1"), id="raw-uint16-2-2-1"),
    # Zarr3 (webknossos's default format): one cube per shard, the same writes.
    pytest.param(("wk433z_color_uint8x3_zstd", "color", "1"), id="zarr3-zstd-uint8x3"),
    pytest.param(("wk433z_color_uint16_raw", "color", "2-2-1"), id="zarr3-raw-uint16-2-2-1"),
]
#: Fewer targets for the slower or rarer kinds of write.
TARGETS_2 = TARGETS[:2] + TARGETS[3:4]


class Target:
    """One cube of one mag of a fresh dataset copy, with everything needed to check a write."""

    def __init__(self, dataset: Path, layer: str, mag: str, mountpoint: Path, xyz=None):
        self.dataset, self.layer, self.mag, self.mountpoint = dataset, layer, mag, mountpoint
        self.mag_dir = dataset / layer / mag
        self.zarr3 = (self.mag_dir / "zarr.json").is_file()
        if self.zarr3:
            info = mh.zarr3_info(self.mag_dir)
            assert len(set(info["shard"])) == 1, "the write tests use cubic shards"
            self.header = {"side": info["shard"][0], "channels": info["channels"], "dtype": info["dtype"].name,
                           "voxel_size": info["channels"] * info["dtype"].itemsize}
        else:
            self.header = mh.read_header(self.mag_dir / "header.wkw")
        self.side = self.header["side"]
        self.channels = self.header["channels"]
        self.dtype = np.dtype(self.header["dtype"])
        self.shape = (self.side, self.side, self.side, self.channels)
        self.size = self.side ** 3 * self.header["voxel_size"]
        if xyz is None:
            xyz = (mh.zarr3_cube_files(self.mag_dir) if self.zarr3 else mh.cube_files(self.mag_dir))[0]
        self.xyz = xyz
        # The data file behind the cube: a WKW file, or a Zarr3 shard (c/0/X/Y/Z).
        self.wkw_file = (self.mag_dir / "c" / "0" / str(xyz[0]) / str(xyz[1]) / str(xyz[2]) if self.zarr3
                         else self.mag_dir / mh.cube_rel(*self.xyz, "wkw"))
        self.cube = mountpoint / layer / mag / mh.cube_rel(*self.xyz)
        self.mag_vec = mh.mag_vector(mag)
        self.before = mh.snapshot(dataset)
        self.original = (self.reference_cube() if self.wkw_file.exists() else np.zeros(self.shape, self.dtype))

    def reference_cube(self) -> np.ndarray:
        """The cube as the reference reads it from disk: wkw, or tensorstore for Zarr3."""
        return mh.zarr3_read_cube(self.mag_dir, self.xyz) if self.zarr3 else mh.wkw_read_cube(self.mag_dir, self.xyz)

    def random(self, shape, seed) -> np.ndarray:
        rng = np.random.default_rng(seed)
        info = np.iinfo(self.dtype) if self.dtype.kind in "ui" else None
        if info is not None:
            return rng.integers(info.min, info.max, size=shape, dtype=self.dtype, endpoint=True)
        return rng.standard_normal(size=shape).astype(self.dtype)

    def voxel_box_of_bytes(self, start: int, length: int):
        """(offset, size) in cube-local voxels (x, y, z) covering bytes [start, start+length)."""
        vs = self.header["voxel_size"]
        idx = np.arange(start // vs, (start + length - 1) // vs + 1)
        z, y, x = np.unravel_index(idx, self.shape[:3])
        lo = (int(x.min()), int(y.min()), int(z.min()))
        hi = (int(x.max()) + 1, int(y.max()) + 1, int(z.max()) + 1)
        return lo, tuple(h - l for h, l in zip(hi, lo))

    def reread_in_mount(self, expected: np.ndarray, wait: float = 0.0) -> None:
        want = expected.tobytes()
        deadline = time.monotonic() + wait
        while True:
            got = mh.read_file_through_mount(self.cube)
            if got == want or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        assert len(got) == len(want), f"{self.cube}: {len(got)} bytes after the write, not {len(want)}"
        if got != want:
            diff = np.argwhere(np.frombuffer(got, np.uint8) != np.frombuffer(want, np.uint8))
            pytest.fail(f"{self.cube}: re-read differs from what was written at "
                        f"{len(diff)} bytes, first at byte {int(diff[0][0])}")

    def check_on_disk(self, expected: np.ndarray, box=None) -> None:
        """After unmount: wkw reads `expected`; only this file and the properties changed."""
        assert self.wkw_file.is_file(), f"{self.wkw_file} was not written"
        got = self.reference_cube()
        if not np.array_equal(got.view(np.uint8), expected.view(np.uint8)):
            diff = np.argwhere(got.view(np.uint8) != expected.view(np.uint8))
            pytest.fail(f"{self.wkw_file}: the reference reads {len(diff)} differing bytes, first at "
                        f"(z, y, x, c) {tuple(diff[0])}")
        if not self.zarr3:
            h = mh.read_header(self.wkw_file)
            hw = self.header["raw"]
            assert h["raw"][:8] == hw[:8], f"{self.wkw_file}: header {h['raw'][:8]!r} vs header.wkw {hw[:8]!r}"
        after = mh.snapshot(self.dataset)
        rel = str(self.wkw_file.relative_to(self.dataset))
        changed = {k for k in set(after) | set(self.before) if after.get(k) != self.before.get(k)}
        allowed = {rel, "datasource-properties.json", str(Path(rel).parent), str(Path(rel).parent.parent)}
        if self.zarr3:  # the shard's directories, the array's shape (grows with the box), the lock file
            mag_rel = self.mag_dir.relative_to(self.dataset)
            allowed |= {str(p) for p in Path(rel).parents if str(p).startswith(str(mag_rel))}
            allowed |= {k for k in changed if k.endswith("zarr.json") or k.endswith("/.wkfs-lock")}
        assert changed <= allowed, f"unexpected changes on disk: {sorted(changed - allowed)}"
        leftovers = [p for p in after if p.endswith((".tmp", ".wkw_tmp", "~")) or ("/." in "/" + p and not p.endswith("/.wkfs-lock"))]
        assert not leftovers, f"temporary files left in the dataset: {leftovers}"
        if box is not None:
            (lo, size) = box
            side = self.side
            off_mag = [self.xyz[i] * side + lo[i] for i in range(3)]
            off1 = [off_mag[i] * self.mag_vec[i] for i in range(3)]
            size1 = [size[i] * self.mag_vec[i] for i in range(3)]
            layer = mh.layer_entry(mh.load_properties(self.dataset), self.layer)
            assert mh.bbox_covers(layer, off1, size1), (
                f"bounding box {layer['boundingBox']} does not cover the write at mag-1 {off1} + {size1}")
        r = mh.wkfs("check", self.dataset)
        assert r.returncode == 0, mh.describe(r)


@pytest.fixture
def target(dataset_copy, mountpoint):
    def make(spec, xyz=None) -> Target:
        name, layer, mag = spec
        return Target(dataset_copy(name), layer, mag, mountpoint, xyz)

    return make


def _whole(t: Target):
    return (0, 0, 0), (t.side, t.side, t.side)


@pytest.mark.parametrize("spec", TARGETS)
def test_dd_notrunc_partial(spec, target, mounted, tmp_path):
    t = target(spec)
    start = t.size // 3 + 5  # not voxel-, row- or block-aligned
    length = min(t.size // 4, 70_001)
    patch = np.random.default_rng(1).integers(0, 256, size=length, dtype=np.uint8).tobytes()
    (tmp_path / "patch").write_bytes(patch)
    expected_bytes = bytearray(t.original.tobytes())
    expected_bytes[start : start + length] = patch
    expected = np.frombuffer(bytes(expected_bytes), t.dtype).reshape(t.shape)
    with mounted(t.dataset) as m:
        r = mh.run(["dd", f"if={tmp_path / 'patch'}", f"of={t.cube}", "bs=4096", f"seek={start}",
                    "oflag=seek_bytes", "conv=notrunc", "status=none"])
        assert r.returncode == 0, mh.describe(r)
        assert t.cube.stat().st_size == t.size
        t.reread_in_mount(expected)
    t.check_on_disk(expected, t.voxel_box_of_bytes(start, length))


@pytest.mark.parametrize("spec", TARGETS)
def test_numpy_memmap(spec, target, mounted):
    t = target(spec)
    s = t.side
    sl = (slice(s // 4, s // 2 + 1), slice(1, s - 2), slice(s // 3, s // 3 + 5), slice(None))
    patch = t.random((sl[0].stop - sl[0].start, s - 3, 5, t.channels), seed=2)
    expected = t.original.copy()
    expected[sl] = patch
    with mounted(t.dataset):
        mm = np.memmap(t.cube, dtype=t.dtype, mode="r+", shape=t.shape)
        mm[sl] = patch
        mm.flush()
        del mm
        t.reread_in_mount(expected, wait=3.0)
    box = ((s // 3, 1, s // 4), (5, s - 3, sl[0].stop - sl[0].start))
    t.check_on_disk(expected, box)


@pytest.mark.parametrize("spec", TARGETS)
def test_cp_whole_cube(spec, target, mounted, tmp_path):
    t = target(spec)
    new = t.random(t.shape, seed=3)
    src = tmp_path / "new.raw"
    new.tofile(src)
    with mounted(t.dataset):
        r = mh.run(["cp", src, t.cube])
        assert r.returncode == 0, mh.describe(r)
        t.reread_in_mount(new)
    t.check_on_disk(new, _whole(t))


@pytest.mark.parametrize("spec", TARGETS_2)
def test_rsync_inplace(spec, target, mounted, tmp_path):
    if shutil.which("rsync") is None:
        pytest.skip("rsync is not installed")
    t = target(spec)
    new = t.original.copy()
    new[1:3] = t.random(new[1:3].shape, seed=4)  # rsync sends what differs (whole file locally)
    src = tmp_path / t.cube.name
    new.tofile(src)
    with mounted(t.dataset):
        r = mh.run(["rsync", "--inplace", src, t.cube])
        assert r.returncode == 0, mh.describe(r)
        t.reread_in_mount(new)
    t.check_on_disk(new, ((0, 0, 1), (t.side, t.side, 2)))


def _rewrite_after_o_trunc(t: Target, mounted, seed: int, steps) -> None:
    """Opens the cube read-write with O_TRUNC, runs `steps(fd, data)` (which must write all
    of `data`, new random voxels) and closes it: the cube holds `data`, in the mount and on disk."""
    new = t.random(t.shape, seed=seed)
    with mounted(t.dataset):
        fd = os.open(t.cube, os.O_RDWR | os.O_TRUNC)
        try:
            steps(fd, new.tobytes())
        finally:
            os.close(fd)
        t.reread_in_mount(new)
    t.check_on_disk(new, _whole(t))


@pytest.mark.parametrize("spec", TARGETS)
def test_truncate_then_sequential_writes(spec, target, mounted):
    """O_TRUNC, then small sequential writes (what many programs do), then close."""
    def steps(fd, data):
        for i in range(0, len(data), 4093):
            os.write(fd, data[i : i + 4093])

    _rewrite_after_o_trunc(target(spec), mounted, 5, steps)


@pytest.mark.parametrize("spec", TARGETS_2)
def test_a_truncated_cube_reads_back_what_was_written_before_close(spec, target, mounted):
    """Between O_TRUNC and the write that completes the cube, a read on the same descriptor
    gives what was written since and ends there (it gave the old cube's bytes)."""
    def steps(fd, data):
        half = len(data) // 2 + 3
        os.write(fd, data[:half])
        assert os.pread(fd, len(data), 0) == data[:half]
        assert os.pread(fd, 100, half - 50) == data[half - 50:half]
        assert os.pread(fd, 100, half) == b""
        os.write(fd, data[half:])
        assert os.pread(fd, len(data), 0) == data

    _rewrite_after_o_trunc(target(spec), mounted, 15, steps)


@pytest.mark.parametrize("spec", TARGETS_2)
def test_dd_conv_sparse_ending_in_zeros(spec, target, mounted, tmp_path):
    """`dd conv=sparse` truncates, seeks over blocks of zeros and extends the file only when
    fstat says it is shorter (it was refused at close: the cube said it was whole all along)."""
    t = target(spec)
    new = t.random(t.shape, seed=16)
    new[t.side // 2:] = 0  # the second half of the planes
    src = tmp_path / "cube.raw"
    new.tofile(src)
    with mounted(t.dataset):
        r = mh.run(["dd", f"if={src}", f"of={t.cube}", f"bs={t.size // 8}", "conv=sparse", "status=none"])
        assert r.returncode == 0, mh.describe(r)
        t.reread_in_mount(new)
    t.check_on_disk(new, _whole(t))


@pytest.mark.parametrize("spec", TARGETS_2)
def test_a_truncated_cube_is_as_long_as_written_for_every_stat(spec, target, mounted):
    """fstat, a stat by path (a lookup) and a stat by another program all give what was
    written since O_TRUNC: a lookup gave the whole size, which the kernel then kept for the
    inode, so `dd conv=sparse`-like programs did not extend the cube and lost it at close."""
    t = target(spec)

    def steps(fd, data):
        written = len(data) // 3
        os.write(fd, data[:written])
        assert os.fstat(fd).st_size == written
        assert os.stat(t.cube).st_size == written
        r = mh.run(["stat", "-c", "%s", t.cube])
        assert r.stdout.decode().strip() == str(written), mh.describe(r)
        assert os.fstat(fd).st_size == written
        os.pwrite(fd, data[-1:], len(data) - 1)  # the last byte only: the rest was seeked over
        assert os.fstat(fd).st_size == len(data) and os.stat(t.cube).st_size == len(data)
        os.pwrite(fd, data[written:-1], written)

    _rewrite_after_o_trunc(t, mounted, 17, steps)


@pytest.mark.parametrize("spec", TARGETS_2)
def test_numpy_memmap_w_plus_makes_a_new_cube(spec, target, mounted):
    """np.memmap(mode="w+") extends a new file only when fstat says it is shorter: a new cube
    said it was whole from its creation, numpy mapped it as it was, and the close failed."""
    t = target(spec, xyz=(7, 7, 7))
    new = t.random(t.shape, seed=18)
    with mounted(t.dataset):
        t.cube.parent.mkdir(parents=True, exist_ok=True)
        mapped = np.memmap(t.cube, dtype=t.dtype, mode="w+", shape=t.shape)
        mapped[...] = new
        mapped.flush()
        del mapped
        t.reread_in_mount(new)
    t.check_on_disk(new, _whole(t))


def test_a_new_cube_read_before_close_grows_the_bounding_box(target, mounted, mountpoint):
    """A read on a cube whose writes are complete makes them durable first, as a close does:
    the layer's bounding box grows there too (it did only at the close, so a program that read
    its new cube back before closing left it outside the box)."""
    t = target(("wk433_color_uint8_raw", "color", "1"), xyz=(0, 0, 3))
    new = t.random(t.shape, seed=19)
    with mounted(t.dataset):
        t.cube.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(t.cube, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, new.tobytes())
            assert os.pread(fd, 10, 0) == new.tobytes()[:10]
        finally:
            os.close(fd)
        t.reread_in_mount(new)
    t.check_on_disk(new, _whole(t))


@pytest.mark.parametrize("spec", TARGETS_2)
def test_numpy_tofile(spec, target, mounted):
    t = target(spec)
    new = t.random(t.shape, seed=6)
    with mounted(t.dataset):
        new.tofile(t.cube)
        got = np.fromfile(t.cube, t.dtype).reshape(t.shape)
        assert np.array_equal(got.view(np.uint8), new.view(np.uint8))
    t.check_on_disk(new, _whole(t))


@pytest.mark.parametrize("spec", TARGETS)
def test_new_cube_under_new_directories(spec, target, mounted, mountpoint, tmp_path):
    name, layer, mag = spec
    probe = target(spec)
    existing = mh.zarr3_cube_files(probe.mag_dir) if probe.zarr3 else mh.cube_files(probe.mag_dir)
    zmax = max(z for _x, _y, z in existing)
    xyz = (3, 0, zmax + 2)
    assert xyz not in existing
    t = target(spec, xyz=xyz)
    new = t.random(t.shape, seed=7)
    src = tmp_path / "new.raw"
    new.tofile(src)
    vmag = mountpoint / layer / mag
    with mounted(t.dataset):
        assert not t.cube.exists()
        r = mh.run(["mkdir", "-p", vmag / f"z{xyz[2]}" / f"y{xyz[1]}"])
        assert r.returncode == 0, mh.describe(r)
        assert (vmag / f"z{xyz[2]}" / f"y{xyz[1]}").is_dir()
        r = mh.run(["cp", src, t.cube])
        assert r.returncode == 0, mh.describe(r)
        assert t.cube.stat().st_size == t.size
        t.reread_in_mount(new)
    t.check_on_disk(new, _whole(t))


def test_new_cube_in_existing_directory(target, mounted, mountpoint):
    spec = ("wk433_color_uint8_lz4hc", "color", "1")
    probe = target(spec)
    existing = mh.cube_files(probe.mag_dir)
    x0, y0, z0 = existing[0]
    xyz = next((x, y0, z0) for x in range(0, 64) if (x, y0, z0) not in existing)
    t = target(spec, xyz=xyz)
    new = t.random(t.shape, seed=8)
    with mounted(t.dataset):
        with open(t.cube, "xb") as f:  # O_CREAT | O_EXCL
            f.write(new.tobytes())
        t.reread_in_mount(new)
    t.check_on_disk(new, _whole(t))
    assert mh.read_header(t.wkw_file)["block_type"] == 3, "recompressed with the mag's block type"


# ------------------------------------------------------------------------------------------
# Refused writes: the WKW file stays as it was.


def _close_errno(fd: int) -> int | None:
    return mh.oserror_errno(os.close, fd)


def _write_all(fd: int, data: bytes) -> tuple[int | None, bool]:
    """Writes `data` like a careful program; returns (errno or None, whether a write came up short)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view[: 1 << 16])
        except OSError as e:
            return e.errno, False
        if n <= 0:
            return None, True
        view = view[n:]
    return None, False


def test_wrong_size_refused_at_close(target, mounted):
    t = target(("wk433_color_uint8x3", "color", "1"))
    sha = mh.sha256_file(t.wkw_file)
    half = t.random(t.shape, seed=9).tobytes()[: t.size // 2]
    with mounted(t.dataset):
        fd = os.open(t.cube, os.O_WRONLY | os.O_TRUNC)
        write_err = mh.oserror_errno(os.write, fd, half)
        code = _close_errno(fd)
        assert write_err is None, f"a short write failed early: {mh.errno_name(write_err)}"
        assert code in mh.BAD_SIZE_ERRNOS, f"close after a short whole-cube write: {mh.errno_name(code)}"
        # The view shows the old content again, and the next writer starts from it.
        t.reread_in_mount(t.original)
    assert mh.sha256_file(t.wkw_file) == sha, f"{t.wkw_file} changed"
    assert mh.snapshot(t.dataset) == t.before


def test_oversized_cube_refused(target, mounted):
    """Writing more than a cube: the write past the end or the close fails; the voxels stay."""
    t = target(("wk433_color_uint8_raw", "color", "1"))
    with mounted(t.dataset):
        fd = os.open(t.cube, os.O_WRONLY | os.O_TRUNC)
        # The old voxels plus 17 bytes: whichever part is refused, the cube must not change.
        w, short = _write_all(fd, t.original.tobytes() + b"\x55" * 17)
        c = _close_errno(fd)
        assert w in mh.PAST_END_ERRNOS or short or c in mh.BAD_SIZE_ERRNOS | mh.PAST_END_ERRNOS, (
            f"oversized cube accepted: write {mh.errno_name(w)}, close {mh.errno_name(c)}")
        assert t.cube.stat().st_size == t.size
        t.reread_in_mount(t.original)
    assert np.array_equal(mh.wkw_read_cube(t.mag_dir, t.xyz), t.original)
    r = mh.wkfs("check", t.dataset)
    assert r.returncode == 0, mh.describe(r)


def test_truncate_existing_cube_refused(target, mounted):
    t = target(("wk433_color_uint8_raw", "color", "1"))
    with mounted(t.dataset):
        fd = os.open(t.cube, os.O_RDWR)
        trunc = mh.oserror_errno(os.ftruncate, fd, t.size // 2)
        code = _close_errno(fd)
        assert trunc is not None or code is not None, "a cube truncated to half its size was accepted"
        assert {trunc, code} - {None} <= mh.BAD_SIZE_ERRNOS | mh.PAST_END_ERRNOS
        assert mh.wait_until(lambda: t.cube.stat().st_size == t.size, 2.5), t.cube.stat()
        assert mh.oserror_errno(os.truncate, t.cube, 100) in mh.BAD_SIZE_ERRNOS | mh.PAST_END_ERRNOS
        t.reread_in_mount(t.original)
    assert mh.snapshot(t.dataset) == t.before


def test_short_new_cube_refused_and_not_created(target, mounted, mountpoint):
    spec = ("wk433_color_uint8_raw", "color", "1")
    t = target(spec, xyz=(9, 9, 9))
    with mounted(t.dataset):
        (mountpoint / "color" / "1" / "z9" / "y9").mkdir(parents=True)
        fd = os.open(t.cube, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"\1" * (t.size - 1))
        code = _close_errno(fd)
        assert code in mh.BAD_SIZE_ERRNOS, f"close of a short new cube: {mh.errno_name(code)}"
        assert t.cube.name not in os.listdir(t.cube.parent), f"{t.cube} is listed after it was refused"
        # (The kernel may remember the name for its entry timeout unless wkfs invalidates it.)
        assert mh.wait_until(lambda: not t.cube.exists(), 2.5), f"{t.cube} exists after it was refused"
    assert not t.wkw_file.exists(), f"{t.wkw_file} was written"
    layer = mh.layer_entry(mh.load_properties(t.dataset), "color")
    assert not mh.bbox_covers(layer, (9 * t.side,) * 3, (1, 1, 1)), "bounding box grew for a refused cube"


def test_write_past_end_refused(target, mounted):
    t = target(("wk433_color_uint8_lz4hc", "color", "1"))
    with mounted(t.dataset):
        fd = os.open(t.cube, os.O_WRONLY)
        w = mh.oserror_errno(os.pwrite, fd, b"\7" * 10, t.size)
        w2 = mh.oserror_errno(os.pwrite, fd, b"\7", t.size + 100_000) if w is None else w
        c = _close_errno(fd)
        assert w in mh.PAST_END_ERRNOS or w2 in mh.PAST_END_ERRNOS or c in mh.BAD_SIZE_ERRNOS | mh.PAST_END_ERRNOS, (
            f"a write past the end was accepted: {mh.errno_name(w)}, close {mh.errno_name(c)}")
        assert t.cube.stat().st_size == t.size
        t.reread_in_mount(t.original)
    assert mh.snapshot(t.dataset) == t.before


def test_bad_names_refused(target, mounted, mountpoint):
    t = target(("wk433_color_uint8_raw", "color", "1"))
    x, y, z = t.xyz
    vmag = mountpoint / "color" / "1"
    with mounted(t.dataset):
        bad_files = [vmag / f"z{z}" / f"y{y}" / "x1.txt", vmag / f"z{z}" / f"y{y}" / "foo.raw",
                     vmag / f"z{z}" / f"y{y}" / "x01.raw", vmag / f"z{z}" / f"y{y}" / "x1.wkw",
                     vmag / "x0.raw", vmag / f"z{z}" / "x0.raw", vmag / "header.wkw"]
        for p in bad_files:
            code = mh.oserror_errno(lambda: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)))
            assert code in mh.BAD_NAME_ERRNOS | {errno.ENOENT}, f"create {p}: {mh.errno_name(code)}"
            assert not p.exists(), p
        bad_dirs = [vmag / "zz", vmag / "z", vmag / "y0", vmag / "z1x", vmag / f"z{z}" / "yy",
                    vmag / f"z{z}" / f"y{y}" / "z0", vmag / f"z{z}" / f"y{y}" / "x0"]
        for p in bad_dirs:
            code = mh.oserror_errno(os.mkdir, p)
            assert code in mh.BAD_NAME_ERRNOS, f"mkdir {p}: {mh.errno_name(code)}"
            assert not p.exists(), p
        # Renaming a cube to another name is not a way around it either.
        code = mh.oserror_errno(os.rename, t.cube, vmag / f"z{z}" / f"y{y}" / "x1.txt")
        assert code is not None, "renaming a cube to a bad name succeeded"
        assert t.cube.exists()
    assert mh.snapshot(t.dataset) == t.before


def test_read_only_mount_refuses_writes(target, mounted, mountpoint, tmp_path):
    t = target(("wk433_with_symlink_layer", "color", "1"))
    sibling = t.dataset.parent / "wk433_segmentation_uint32"
    sibling_before = mh.snapshot(sibling)
    props = mountpoint / "datasource-properties.json"
    with mounted(t.dataset, options="ro"):
        assert "ro" in mh.mount_entry(mountpoint)["options"]
        assert t.cube.read_bytes() == t.original.tobytes()  # reading works
        attempts = {
            "open cube for writing": lambda: os.close(os.open(t.cube, os.O_WRONLY)),
            "truncate cube": lambda: os.truncate(t.cube, 0),
            "write properties": lambda: os.close(os.open(props, os.O_WRONLY | os.O_TRUNC)),
            "create temp file": lambda: os.close(os.open(mountpoint / "sedXYZ", os.O_WRONLY | os.O_CREAT, 0o644)),
            "mkdir mag": lambda: os.mkdir(mountpoint / "color" / "8"),
            "mkdir cube dir": lambda: os.mkdir(mountpoint / "color" / "1" / "z40"),
            "rmdir": lambda: os.rmdir(mountpoint / "color" / "1"),
            "symlink layer": lambda: os.symlink(str(sibling / "segmentation"), mountpoint / "seg2"),
            "remove symlinked layer": lambda: os.unlink(mountpoint / "segmentation"),
            "rename properties": lambda: os.rename(props, mountpoint / "x.json"),
            "write through the link": lambda: os.close(os.open(
                mountpoint / "segmentation" / "1" / "z0" / "y0" / "x0.raw", os.O_WRONLY)),
        }
        for what, fn in attempts.items():
            code = mh.oserror_errno(fn)
            assert code == errno.EROFS, f"-o ro, {what}: {mh.errno_name(code)}"
        r = mh.run(["dd", "if=/dev/zero", f"of={t.cube}", "bs=1", "count=1", "conv=notrunc",
                    "status=none"])
        assert r.returncode != 0 and b"Read-only" in r.stderr, mh.describe(r)
    assert mh.snapshot(t.dataset) == t.before
    assert mh.snapshot(sibling) == sibling_before


# ------------------------------------------------------------------------------------------
# Robustness: bounded memory for a big sequential write; a killed daemon leaves the old file.


def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


@pytest.mark.limit(120)
def test_sequential_whole_cube_write_has_bounded_memory(mounted, mountpoint, tmp_path):
    """cp of a 128 MiB cube: the daemon's peak memory grows by far less than the cube's size."""
    ds = tmp_path / "big"
    mh.new_dataset(ds, "uint8", 32, 16, compress=True)
    side = 512
    z = np.arange(side, dtype=np.uint32)[:, None, None]
    y = np.arange(side, dtype=np.uint32)[None, :, None]
    x = np.arange(side, dtype=np.uint32)[None, None, :]
    data = ((x // 8 + y // 4 + z) % 251).astype(np.uint8)  # compressible, not constant
    src = tmp_path / "cube.raw"
    data.tofile(src)
    cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
    with mounted(ds, options="cache_size=8M") as m:
        (mountpoint / "color" / "1" / "z0" / "y0").mkdir(parents=True)
        base = _vm_hwm_kib(m.proc.pid)
        r = mh.run(["cp", src, cube], timeout=90)
        assert r.returncode == 0, mh.describe(r)
        grown_mib = (_vm_hwm_kib(m.proc.pid) - base) / 1024
    print(f"daemon peak memory grew by {grown_mib:.1f} MiB while a 128 MiB cube was written")
    assert grown_mib < 64, f"peak memory grew by {grown_mib:.0f} MiB for a 128 MiB cube"
    got = mh.wkw_read_cube(ds / "color" / "1", (0, 0, 0))
    assert np.array_equal(got[..., 0], data), "the big cube reads back wrong"


@pytest.mark.limit(180)
@pytest.mark.parametrize("compress", [True, False], ids=["lz4", "raw"])
def test_scattered_overwrites_past_the_write_budget(compress, mounted, mountpoint, tmp_path):
    """Overlapping writes at unaligned offsets all over a 128 MiB cube, far more than the write
    budget (16 MiB): blocks go from pending to encoded, spilled (LZ4) or placed (raw), and are
    written again after that. The committed cube holds every last write."""
    ds = tmp_path / "big"
    mh.new_dataset(ds, "uint8", 32, 16, compress=compress)
    side = 512
    rng = np.random.default_rng(5)
    expected = rng.integers(0, 256, size=side**3, dtype=np.uint8)
    cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
    with mounted(ds):
        (mountpoint / "color" / "1" / "z0" / "y0").mkdir(parents=True)
        with open(cube, "wb") as f:
            f.write(expected.tobytes())
        fd = os.open(cube, os.O_WRONLY)
        try:
            for i in range(48):
                start = int(rng.integers(0, side**3 - (4 << 20)))
                chunk = rng.integers(0, 256, size=int(rng.integers(1, 4 << 20)), dtype=np.uint8)
                chunk[: 1 << 12] = i  # compressible parts too
                assert os.pwrite(fd, chunk.tobytes(), start) == chunk.size
                expected[start : start + chunk.size] = chunk
        finally:
            os.close(fd)
        assert np.array_equal(np.fromfile(cube, dtype=np.uint8), expected), "the mount reads back other voxels"
    got = mh.wkw_read_cube(ds / "color" / "1", (0, 0, 0))
    assert np.array_equal(got[..., 0].reshape(-1), expected), "wkw reads back other voxels"


def test_killed_daemon_leaves_the_old_file(target, mounted):
    """SIGKILL in the middle of a whole-cube write: the WKW file on disk is the old one."""
    t = target(("wk433_color_uint8x3", "color", "1"))
    sha = mh.sha256_file(t.wkw_file)
    new = t.random(t.shape, seed=11).tobytes()
    m = mounted(t.dataset)
    with m:
        fd = os.open(t.cube, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, new[: len(new) * 2 // 3])
            m.proc.kill()
            m.returncode = m.proc.wait(timeout=10)
        finally:
            mh.oserror_errno(os.close, fd)  # ENOTCONN: the daemon is gone
        mh.force_unmount(m.mountpoint)
    assert not mh.is_mounted(m.mountpoint)
    assert mh.sha256_file(t.wkw_file) == sha, "a killed write changed the WKW file"
    after = mh.snapshot(t.dataset)
    new_files = sorted(set(after) - set(t.before))
    assert not [p for p in new_files if p.endswith(".wkw")], f"new WKW files after a kill: {new_files}"
    r = mh.wkfs("check", t.dataset)
    assert r.returncode == 0, mh.describe(r)
