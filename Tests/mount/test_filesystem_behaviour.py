"""The mount behaves like a file system for archivers, sync tools and long walks:
- `tar cf` of a whole mount exits 0: generated files have stable times and sizes;
- `mag.json` states its new size as soon as the bounding box grows (rsync -a compares sizes);
- inode numbers the kernel forgets are dropped (a walk does not keep every cube's number);
- rewritten data files and the properties file keep their mode and owner, new ones take their
  neighbours'.
"""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest

import mounthelp as mh

RAW = "wk433_color_uint8_raw"
LZ4HC = "wk433_color_uint8_lz4hc"


def _stat_line(path) -> tuple:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def test_tar_of_the_whole_mount_exits_0(dataset_copy, mounted, mountpoint, tmp_path):
    ds = dataset_copy(RAW)
    with mounted(ds):
        first = {p: _stat_line(mountpoint / p) for p in (".wkfs/stats", ".wkfs/errors", "color/1/mag.json")}
        time.sleep(1.1)
        second = {p: _stat_line(mountpoint / p) for p in first}
        assert first == second, "a generated file's size or mtime moved while nothing changed"
        proc = subprocess.run(["tar", "cf", str(tmp_path / "all.tar"), "-C", str(mountpoint), "."],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr


def test_mag_json_size_follows_the_bounding_box(dataset_copy, mounted, mountpoint):
    ds = dataset_copy(RAW)
    with mounted(ds):
        info = mountpoint / "color" / "1" / "mag.json"
        before = info.stat().st_size
        assert len(info.read_bytes()) == before
        # A cube far outside the box, written through the mount, grows the box.
        cube = mountpoint / "color" / "1" / "z9" / "y9" / "x9.raw"
        size = (mountpoint / "color" / "1" / mh.cube_rel(*mh.cube_files(ds / "color" / "1")[0])).stat().st_size
        (mountpoint / "color" / "1" / "z9").mkdir()
        (mountpoint / "color" / "1" / "z9" / "y9").mkdir()
        cube.write_bytes(b"\x01" * size)
        text = info.read_bytes()
        assert info.stat().st_size == len(text), "mag.json's size is stale after the box grew"
        assert len(text) != before or b"9" in text


def test_forgotten_inodes_are_dropped(tmp_path, mounted, mountpoint):
    ds = tmp_path / "ds"
    mh.new_dataset(ds, "uint8", 4, 2)  # 8³ cubes: many small files
    proc = mh.run([mh.WKFS_BIN, "write", ds, "color", "1", "--offset", "0,0,0", "--size", "96,96,64"],
                  input=b"\x05" * (96 * 96 * 64))
    assert proc.returncode == 0, mh.describe(proc)
    with mounted(ds):
        cubes = [p for p in mountpoint.rglob("x*.raw")]
        assert len(cubes) == 12 * 12 * 8
        for cube in cubes:  # a lookup of each: the kernel holds every number
            cube.stat()

        def known() -> int:
            for line in (mountpoint / ".wkfs" / "stats").read_text().splitlines():
                if line.startswith("inodes_known:"):
                    return int(line.split()[1])
            raise AssertionError("no inodes_known in .wkfs/stats")

        walked = known()
        assert walked >= len(cubes)
        # Make the kernel drop its dentries and inodes: it sends FORGET for each.
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
        assert mh.wait_until(lambda: known() < len(cubes) // 4, timeout=10), f"{known()} of {walked} inode numbers kept"
        # Names still work after their numbers were dropped.
        assert cubes[5].read_bytes() == b"\x05" * 512


@pytest.mark.parametrize("name", [RAW, LZ4HC])
def test_rewritten_files_keep_mode_and_owner(dataset_copy, mounted, mountpoint, name):
    if os.geteuid() != 0:
        pytest.skip("changing owners needs root")
    ds = dataset_copy(name)
    mag = ds / "color" / "1"
    xyz = mh.cube_files(mag)[0]
    data_file = mag / f"z{xyz[2]}" / f"y{xyz[1]}" / f"x{xyz[0]}.wkw"
    props = ds / "datasource-properties.json"
    for f in (data_file, props):
        os.chown(f, 65534, 65534)
        os.chmod(f, 0o640)
    # The row directory's files are the neighbours of a new cube there.
    for f in data_file.parent.iterdir():
        os.chown(f, 65534, 65534)
        os.chmod(f, 0o640)
    os.chown(data_file.parent, 65534, 65534)
    with mounted(ds):
        cube = mountpoint / "color" / "1" / mh.cube_rel(*xyz)
        size = cube.stat().st_size
        cube.write_bytes(b"\x07" * size)
        text = (mountpoint / "datasource-properties.json").read_text()
        (mountpoint / "datasource-properties.json").write_text(text.replace('"nanometer"', '"nanometer"'))
    # The CLI rewrites (LZ4HC) or patches (raw) the file too.
    edge = round(size ** (1 / 3))
    proc = mh.run([mh.WKFS_BIN, "write", ds, "color", "1", "--offset", ",".join(str(v * edge) for v in xyz),
                   "--size", "1,1,1"], input=b"\x09")
    assert proc.returncode == 0, mh.describe(proc)
    for f in (data_file, props):
        st = os.stat(f)
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 65534, 65534), f"{f}: {oct(st.st_mode)} {st.st_uid}:{st.st_gid}"


def test_errors_log_only_real_failures(dataset_copy, mounted, mountpoint):
    """A cube written through two descriptors of one open (`dup`, as a shell's redirections
    make), the first closed while it is incomplete: that
    close fails (EINVAL: the cube is not complete yet), the second completes it, and nothing is
    logged. A cube left incomplete at the last close: that close fails and the log says so once."""
    import errno

    ds = dataset_copy(RAW)
    xyz = mh.cube_files(ds / "color" / "1")[0]
    with mounted(ds):
        cube = mountpoint / "color" / "1" / mh.cube_rel(*xyz)
        size = cube.stat().st_size
        a = os.open(cube, os.O_WRONLY | os.O_TRUNC)
        b = os.dup(a)
        os.pwrite(a, b"\x03" * (size // 2), 0)
        with pytest.raises(OSError) as early:
            os.close(a)
        assert early.value.errno == errno.EINVAL
        os.pwrite(b, b"\x04" * (size - size // 2), size // 2)
        os.close(b)
        assert (mountpoint / ".wkfs" / "errors").read_text() == ""
        data = cube.read_bytes()
        assert data == b"\x03" * (size // 2) + b"\x04" * (size - size // 2)
        c = os.open(cube, os.O_WRONLY | os.O_TRUNC)
        os.write(c, b"\x05" * 100)
        with pytest.raises(OSError) as failure:
            os.close(c)
        assert failure.value.errno == errno.EINVAL
        assert mh.wait_until(lambda: "must be exactly" in (mountpoint / ".wkfs" / "errors").read_text(), timeout=5)
        assert (mountpoint / ".wkfs" / "errors").read_text().count("must be exactly") == 1
    assert bytes(mh.wkw_read_cube(ds / "color" / "1", xyz).reshape(-1)[:4]) == b"\x03" * 4


def test_corrupt_header_is_explained_in_the_errors_file(dataset_copy, mounted, mountpoint):
    import errno

    ds = dataset_copy(LZ4HC)
    header = ds / "color" / "1" / "header.wkw"
    raw = bytearray(header.read_bytes())
    raw[0:3] = b"XXX"
    header.write_bytes(bytes(raw))
    xyz = mh.cube_files(ds / "color" / "1")[0]
    with mounted(ds):
        with pytest.raises(OSError) as failure:
            (mountpoint / "color" / "1" / mh.cube_rel(*xyz)).read_bytes()
        assert failure.value.errno == errno.EIO
        log = (mountpoint / ".wkfs" / "errors").read_text()
        assert str(header) in log and "magic" in log, log


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MiB tmpfs, unmounted after the test: `full_disk()` fills what is left of it and returns
    the filler file (remove it to make room again)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)

    def fill(leave=0):
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\1" * 4096)
            except OSError:
                pass
        if leave:
            os.truncate(filler, os.path.getsize(filler) - leave)
        return filler

    fill.root = disk
    try:
        yield fill
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disk_reaches_the_editor_as_enospc(full_disk, mounted, mountpoint):
    """`sed -i` of the properties through a mount on a full disk fails with ENOSPC (not EIO), the
    file on disk stays as it was, and the reason is in .wkfs/errors."""
    ds = full_disk.root / "ds"
    mh.new_dataset(ds, "uint8", 8, 2)
    props = ds / "datasource-properties.json"
    before = props.read_bytes()
    full_disk()
    with mounted(ds):
        proc = mh.run(["sed", "-i", "s/nanometer/nanometer /", mountpoint / "datasource-properties.json"])
        assert proc.returncode != 0, mh.describe(proc)
        assert b"No space left on device" in proc.stderr, proc.stderr
        assert "No space left on device" in (mountpoint / ".wkfs" / "errors").read_text()
    assert props.read_bytes() == before


@pytest.mark.parametrize("data_format", ["wkw", "zarr3"])
def test_a_cube_write_refused_at_close_for_space_is_gone(full_disk, mounted, mountpoint, data_format):
    """A close that fails with ENOSPC is the program's answer: the write did not happen. Reads
    show the old cube at once, and nothing puts the refused bytes in place later, even once
    there is room before the handle is released (its other descriptor still open): both did.
    The other descriptor's close fails too, once."""
    import errno

    ds = full_disk.root / "ds"
    for args in (["create", ds, "--voxel-size", "1,1,1"],
                 ["add-layer", ds, "color", "--category", "color", "--dtype", "uint8", "--data-format", data_format],
                 ["add-mag", ds, "color", "1", "--block-len", "8", "--file-len", "4", "--compress"]):
        proc = mh.wkfs(*args)
        assert proc.returncode == 0, mh.describe(proc)
    old = np.random.default_rng(3).integers(0, 255, size=(32, 32, 32), dtype=np.uint8)
    proc = mh.wkfs("write", ds, "color", "1", "--offset", "0,0,0", "--size", "32,32,32", input=old.tobytes())
    assert proc.returncode == 0, mh.describe(proc)
    before = mh.snapshot(ds)
    new = np.random.default_rng(4).integers(0, 255, size=16384, dtype=np.uint8).tobytes()
    filler = full_disk()
    with mounted(ds):
        cube = mountpoint / "color" / "1" / mh.cube_rel(0, 0, 0)
        fd = os.open(cube, os.O_RDWR)
        other = os.dup(fd)
        try:
            assert os.pwrite(fd, new, 8192) == len(new)
            with pytest.raises(OSError) as failure:
                os.close(fd)
            assert failure.value.errno == errno.ENOSPC, failure.value
            assert cube.read_bytes() == old.tobytes()
            filler.unlink()
        finally:
            # The other descriptor's close says that writes were lost (a forked child's close
            # that failed unseen dropped what its parent wrote: the parent learns it here).
            with pytest.raises(OSError) as failure:
                os.close(other)
            assert failure.value.errno == errno.ENOSPC, failure.value
        assert cube.read_bytes() == old.tobytes()
    assert mh.snapshot(ds) == before


@pytest.mark.parametrize("leave", [0, 4096], ids=["full", "one-page-free"])
def test_mkdir_of_a_mag_on_a_full_disk_leaves_nothing(full_disk, mounted, mountpoint, leave):
    """`mkdir LAYER/2` through a mount on a full disk fails with ENOSPC and leaves no directory,
    so the same mkdir succeeds once there is room. With one page free the mag's directory is
    made and the properties cannot be saved: the mount must not show the mag either (it kept
    the unsaved entry, and the retry failed with EEXIST)."""
    import errno

    ds = full_disk.root / "ds"
    mh.new_dataset(ds, "uint8", 8, 2)
    before = mh.snapshot(ds)
    filler = full_disk(leave)
    with mounted(ds):
        with pytest.raises(OSError) as failure:
            (mountpoint / "color" / "2").mkdir()
        assert failure.value.errno == errno.ENOSPC, failure.value
        assert mh.snapshot(ds) == before
        assert sorted(os.listdir(mountpoint / "color")) == ["1"]
        filler.unlink()
        (mountpoint / "color" / "2").mkdir()
        assert (ds / "color" / "2" / "header.wkw").is_file()
