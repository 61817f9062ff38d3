"""Reading through the mount: every cube of every fixture dataset equals what `wkw` (WKW) or
tensorstore (Zarr3: one cube per shard) reads.

The view (SPEC.md section 3): one directory per layer and per mag with the names on disk, one
`z{Z}/y{Y}/x{X}.raw` per existing `x{X}.wkw`, exactly side³ · channels · bytesize bytes in C order
(z, y, x, c). Reading never changes anything on disk.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import mounthelp as mh


def expected_layers(dataset: Path) -> list[tuple[str, Path]]:
    """(layer name, layer directory on disk) for every layer of the properties."""
    props = mh.load_properties(dataset)
    return [(layer["name"], dataset / layer["name"]) for layer in props["dataLayers"]]


@pytest.mark.parametrize("name", mh.fixture_names())
def test_every_cube_equals_the_reference(name, fixture_copies, mounted, mountpoint):
    dataset = fixture_copies / name
    before = mh.snapshot(dataset)
    checked = 0
    with mounted(dataset):
        for layer_name, layer_dir in expected_layers(dataset):
            view_layer = mountpoint / layer_name
            assert view_layer.is_dir(), f"{view_layer}: layer directory missing in the view"
            for mag_dir in mh.mag_dirs(layer_dir):
                view_mag = view_layer / mag_dir.name
                assert view_mag.is_dir(), f"{view_mag}: mag directory missing in the view"
                zarr3 = (mag_dir / "zarr.json").is_file()
                if zarr3:  # Zarr3: one cube per shard, read by tensorstore
                    info = mh.zarr3_info(mag_dir)
                    h = {"dtype": info["dtype"]}
                    size = int(np.prod(info["shard"])) * info["channels"] * info["dtype"].itemsize
                    on_disk = mh.zarr3_cube_files(mag_dir)
                else:
                    h = mh.read_header(mag_dir / "header.wkw")
                    size = mh.cube_bytes(h)
                    on_disk = mh.cube_files(mag_dir)
                in_view = sorted(
                    (int(p.stem[1:]), int(p.parent.name[1:]), int(p.parent.parent.name[1:]))
                    for p in view_mag.glob("z*/y*/x*.raw")
                )
                assert in_view == on_disk, f"{view_mag}: cubes {in_view} but WKW files {on_disk}"
                for xyz in on_disk:
                    cube = view_mag / mh.cube_rel(*xyz)
                    assert cube.stat().st_size == size, f"{cube}: size {cube.stat().st_size} != {size}"
                    data = mh.read_file_through_mount(cube)
                    assert len(data) == size, f"{cube}: read {len(data)} bytes, expected {size}"
                    ref = mh.zarr3_read_cube(mag_dir, xyz) if zarr3 else mh.wkw_read_cube(mag_dir, xyz)
                    got = np.frombuffer(data, dtype=h["dtype"]).reshape(ref.shape)
                    if not np.array_equal(got.view(np.uint8), ref.view(np.uint8)):
                        diff = np.argwhere(got.view(np.uint8) != ref.view(np.uint8))
                        pytest.fail(f"{cube}: {len(diff)} bytes differ from the reference, first at "
                                    f"(z, y, x, c) {tuple(diff[0])}")
                    checked += 1
    assert checked > 0, f"{name}: no cube checked"
    assert mh.snapshot(dataset) == before, f"{dataset}: reading through the mount changed files"


def test_numpy_fromfile_with_mag_json(fixture_copies, mounted, mountpoint):
    """mag.json says everything needed for np.fromfile(cube, dtype).reshape(side, side, side, c)."""
    dataset = fixture_copies / "wk433_color_uint8x3"
    with mounted(dataset):
        for mag_dir in mh.mag_dirs(dataset / "color"):
            info = json.loads((mountpoint / "color" / mag_dir.name / "mag.json").read_text())
            dtype = mh.mag_json_dtype(info)
            channels = mh.mag_json_int(info, "channel")
            side = mh.mag_json_side(info)
            for xyz in mh.cube_files(mag_dir)[:3]:
                cube = mountpoint / "color" / mag_dir.name / mh.cube_rel(*xyz)
                arr = np.fromfile(cube, dtype).reshape(side, side, side, channels)
                assert np.array_equal(arr, mh.wkw_read_cube(mag_dir, xyz)), cube


def test_partial_and_unaligned_reads(fixture_copies, mounted, mountpoint):
    """pread at odd offsets and lengths, across block boundaries, and at/after the end."""
    dataset = fixture_copies / "wk433_color_uint8_lz4hc"
    mag_dir = dataset / "color" / "1"
    xyz = mh.cube_files(mag_dir)[0]
    ref = mh.wkw_read_cube(mag_dir, xyz).tobytes()
    with mounted(dataset):
        cube = mountpoint / "color" / "1" / mh.cube_rel(*xyz)
        fd = os.open(cube, os.O_RDONLY)
        try:
            for off, n in [(0, 1), (7, 9), (63, 130), (4095, 4098), (len(ref) - 5, 5),
                           (len(ref) - 3, 100), (12345, 54321)]:
                assert os.pread(fd, n, off) == ref[off : off + n], f"pread({n}, {off})"
            assert os.pread(fd, 10, len(ref)) == b"", "read at the end returns data"
            assert os.pread(fd, 10, len(ref) + 4096) == b"", "read past the end returns data"
        finally:
            os.close(fd)


def test_cat_and_cp_out_of_the_mount(fixture_copies, mounted, mountpoint, tmp_path):
    dataset = fixture_copies / "wk433_segmentation_uint64"
    mag_dir = dataset / "segmentation" / "2-2-1"
    xyz = mh.cube_files(mag_dir)[-1]
    ref = mh.wkw_read_cube(mag_dir, xyz).tobytes()
    with mounted(dataset):
        cube = mountpoint / "segmentation" / "2-2-1" / mh.cube_rel(*xyz)
        r = mh.sh(f"cat '{cube}' | sha256sum")
        assert r.returncode == 0, mh.describe(r)
        import hashlib

        assert r.stdout.split()[0].decode() == hashlib.sha256(ref).hexdigest()
        out = tmp_path / "out.raw"
        r = mh.run(["cp", cube, out])
        assert r.returncode == 0, mh.describe(r)
        assert out.read_bytes() == ref
        r = mh.run(["od", "-An", "-tu1", "-N", "16", cube])
        assert r.returncode == 0, mh.describe(r)
        assert [int(v) for v in r.stdout.split()] == list(ref[:16])


def test_symlinked_layer_reads_the_target(fixture_copies, mounted, mountpoint):
    dataset = fixture_copies / "wk433_with_symlink_layer"
    target = fixture_copies / "wk433_segmentation_uint32" / "segmentation"
    assert (dataset / "segmentation").is_symlink()
    with mounted(dataset):
        link = mountpoint / "segmentation"
        assert link.is_symlink(), f"{link} is not a symbolic link in the view"
        assert os.readlink(link) == ".wkfs/links/segmentation"
        assert (mountpoint / ".wkfs" / "links" / "segmentation").is_dir()
        for mag_dir in mh.mag_dirs(target):
            for xyz in mh.cube_files(mag_dir)[:4]:
                for base in (link, mountpoint / ".wkfs" / "links" / "segmentation"):
                    cube = base / mag_dir.name / mh.cube_rel(*xyz)
                    data = mh.read_file_through_mount(cube)
                    assert data == mh.wkw_read_cube(mag_dir, xyz).tobytes(), cube


def test_parallel_readers(fixture_copies, mounted, mountpoint):
    """Several threads reading different and the same cubes at once all get the right bytes."""
    from concurrent.futures import ThreadPoolExecutor

    dataset = fixture_copies / "wk433_color_uint8_lz4hc"
    jobs = []
    for mag_dir in mh.mag_dirs(dataset / "color"):
        for xyz in mh.cube_files(mag_dir):
            jobs.append((mag_dir, xyz, mh.wkw_read_cube(mag_dir, xyz).tobytes()))
    jobs = jobs * 3

    def check(job):
        mag_dir, xyz, want = job
        got = mh.read_file_through_mount(mountpoint / "color" / mag_dir.name / mh.cube_rel(*xyz))
        return got == want, f"{mag_dir.name}/{mh.cube_rel(*xyz)}"

    with mounted(dataset, options="cache_size=1M"):
        with ThreadPoolExecutor(max_workers=8) as pool:
            bad = [name for ok, name in pool.map(check, jobs) if not ok]
    assert not bad, f"wrong bytes under parallel reads: {bad[:5]}"


def _resident_bytes(path: Path) -> int:
    """Bytes of `path` in the page cache (util-linux fincore)."""
    proc = mh.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path])
    assert proc.returncode == 0, mh.describe(proc)
    return int(proc.stdout.split()[0])


def test_opening_a_small_cube_reads_its_row_ahead(tmp_path, mounted, mountpoint):
    """Streaming many small cubes: once two cubes of a row were opened one after the other, the
    kernel is asked to read the data files of that row and of the next row, so the next cubes do
    not each wait on the disk. A single open reads nothing ahead."""
    ds = tmp_path / "small"
    mh.new_dataset(ds, "uint8", 8, 4, compress=True)
    src = tmp_path / "region.raw"
    src.write_bytes(np.random.default_rng(7).integers(0, 256, 128 * 64 * 32, dtype=np.uint8).tobytes())
    proc = mh.wkfs("write", ds, "color", "1", "--offset", "0,0,0", "--size", "128,64,32", "--input", src)
    assert proc.returncode == 0, mh.describe(proc)
    mag = ds / "color" / "1"
    ahead = [mag / "z0" / "y0" / "x3.wkw", mag / "z0" / "y1" / "x2.wkw"]
    with mounted(ds):
        os.sync()
        for path in ahead:
            fd = os.open(path, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        if any(_resident_bytes(p) for p in ahead):
            pytest.skip("the page cache kept the data files (cannot observe read-ahead here)")
        row = mountpoint / "color" / "1" / "z0" / "y0"
        with open(row / "x0.raw", "rb", buffering=0) as f:
            assert len(f.read(1)) == 1
        time.sleep(0.5)
        assert not any(_resident_bytes(p) for p in ahead), "one open read the row ahead"
        with open(row / "x1.raw", "rb", buffering=0) as f:
            assert len(f.read(1)) == 1
            for path in ahead:
                assert mh.wait_until(lambda: _resident_bytes(path) > 0, timeout=10), f"{path} was not read ahead"


@pytest.mark.parametrize("options", ["cache_size=1M", "cache_size=1M,direct_io"])
@pytest.mark.parametrize("compress", [True, False])
def test_zero_blocks_between_blocks_with_data(compress, options, tmp_path, mounted, mountpoint):
    """Blocks of zeros (holes, or compressed blocks that decode to zeros) are filled without a
    copy; blocks with data before and after them in the same read keep their bytes. (Blocks of
    64 KiB: the cache keeps groups of about 64 KiB, and only a whole group of zeros is one.)"""
    ds = tmp_path / "checker"
    mh.new_dataset(ds, "uint16", 32, 2, compress=compress)
    side = 64
    rng = np.random.default_rng(11)
    cube = rng.integers(1, 65536, (side, side, side), dtype=np.uint16)
    blocks = np.indices((2, 2, 2)).sum(axis=0) % 2 == 1  # a checkerboard of zero blocks
    cube[np.kron(blocks, np.ones((32, 32, 32), dtype=bool))] = 0
    src = tmp_path / "cube.raw"
    src.write_bytes(cube.tobytes())
    proc = mh.wkfs("write", ds, "color", "1", "--offset", "0,0,0", "--size", f"{side},{side},{side}", "--input", src)
    assert proc.returncode == 0, mh.describe(proc)
    want = cube.tobytes()
    with mounted(ds, options=options):
        path = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        assert mh.read_file_through_mount(path) == want
        fd = os.open(path, os.O_RDONLY)
        try:
            for size in (4096, 1000, 3 * side * side * 2 + 6):
                got = b"".join(os.pread(fd, size, at) for at in range(0, len(want), size))
                assert got == want, f"reads of {size} bytes"
        finally:
            os.close(fd)


def test_direct_io_mount(dataset_copy, mounted, mountpoint):
    """-o direct_io: read-only handles bypass the page cache (reads equal wkw, a read-only mmap
    is refused with ENODEV as documented); writable handles keep the page cache, so memmap r+
    still writes."""
    import errno
    import mmap

    ds = dataset_copy("wk433_color_uint8_lz4hc")
    mag = ds / "color" / "1"
    xyz = mh.cube_files(mag)[0]
    want = mh.wkw_read_cube(mag, xyz).tobytes()
    with mounted(ds, options="direct_io"):
        path = mountpoint / "color" / "1" / mh.cube_rel(*xyz)
        assert mh.read_file_through_mount(path) == want
        assert _resident_bytes(path) == 0, "the read went through the kernel's page cache"
        with open(path, "rb") as f:
            # Refused with ENODEV where libfuse cannot offer FUSE_DIRECT_IO_ALLOW_MMAP (3.14 here);
            # where it can, the mapping must show the cube.
            try:
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except OSError as refused:
                assert refused.errno == errno.ENODEV
            else:
                with mapped:
                    assert mapped[:] == want
            # A private mapping (numpy.memmap mode="c") works either way.
            assert np.array_equal(np.memmap(path, dtype=np.uint8, mode="c"), np.frombuffer(want, np.uint8))
        view = np.memmap(path, dtype=np.uint8, mode="r+")
        view[0] = (int(view[0]) + 1) % 256
        view.flush()
        del view
        changed = mh.read_file_through_mount(path)
        assert changed[0] == (want[0] + 1) % 256 and changed[1:] == want[1:]
    assert mh.wkw_read_cube(mag, xyz).tobytes()[0] == (want[0] + 1) % 256


@pytest.mark.parametrize("data_format", ["wkw", "zarr3"])
def test_reading_a_cube_front_to_back_decodes_each_block_once(data_format, tmp_path, mounted, mountpoint):
    """A cube read plane after plane in a mount whose cache holds a fraction of it: every block is
    decoded once. Zarr3 numbers its chunks along z: caching 128 of them together made the first
    plane decode the whole cube, which did not fit, and every later plane decode it again; and
    the cache dropped blocks still in use when it dropped a generation of them."""
    ds = tmp_path / "ds"
    side = 256
    layout = ["--block-len", "8", "--file-len", "32"] if data_format == "wkw" else ["--chunk-shape", "8", "--shard-shape", "256"]
    for args in (["create", ds, "--voxel-size", "1,1,1"],
                 ["add-layer", ds, "color", "--category", "color", "--dtype", "uint8", "--data-format", data_format],
                 ["add-mag", ds, "color", "1", *layout, "--compress"]):
        proc = mh.wkfs(*args)
        assert proc.returncode == 0, mh.describe(proc)
    want = np.random.default_rng(5).integers(1, 256, side**3, dtype=np.uint8).tobytes()
    src = tmp_path / "cube.raw"
    src.write_bytes(want)
    proc = mh.wkfs("write", ds, "color", "1", "--offset", "0,0,0", "--size", f"{side},{side},{side}", "--input", src)
    assert proc.returncode == 0, mh.describe(proc)
    with mounted(ds, options="cache_size=16M"):
        got = bytearray()
        with open(mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw", "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                got += chunk
        assert bytes(got) == want
        stats = dict(line.split(": ", 1) for line in (mountpoint / ".wkfs" / "stats").read_text().splitlines()
                     if line and not line.startswith("#"))
        assert int(stats["decoded_bytes"]) == len(want), stats
