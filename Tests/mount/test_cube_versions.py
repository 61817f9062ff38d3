"""A cube replaced on disk by another program (`wkfs write`, another mount) while a program
reads it through the mount: the reader keeps the version it opened, whole, as the open
descriptors of a local file replaced by rename do; a new open reads the new version."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import mounthelp as mh

EDGE = 128  # a cube of 2 MiB (uint8): far more than the kernel reads ahead


def _ok(*args, input: bytes = b""):
    proc = mh.run([mh.WKFS_BIN, *args], input=input)
    assert proc.returncode == 0, mh.describe(proc)


def _dataset(root, data_format):
    ds = root / "ds"
    _ok("create", ds, "--voxel-size", "1,1,1")
    _ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8", "--data-format", data_format)
    _ok("add-mag", ds, "color", "1", "--block-len", "32", "--file-len", str(EDGE // 32), "--compress")
    _ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", f"{EDGE},{EDGE},{EDGE}", input=b"\x11" * EDGE ** 3)
    return ds


def _replace_with_cli(ds, value: int) -> bytes:
    """Another process commits a new version of cube (0, 0, 0): random voxels, none `0x11`."""
    rng = np.random.default_rng(value)
    new = rng.integers(0x20, 0xFF, size=EDGE ** 3, dtype=np.uint8).tobytes()
    _ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", f"{EDGE},{EDGE},{EDGE}", input=new)
    return new


@pytest.mark.parametrize("data_format", ["wkw", "zarr3"])
def test_reader_keeps_the_version_it_opened_while_another_program_replaces_it(tmp_path, mounted, mountpoint, data_format):
    ds = _dataset(tmp_path, data_format)
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        fd = os.open(cube, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead: later reads go to the mount
            first = os.pread(fd, 4096, 0)
            new = _replace_with_cli(ds, 1)
            rest = b""
            while len(first) + len(rest) < EDGE ** 3:
                chunk = os.pread(fd, 1 << 16, len(first) + len(rest))
                assert chunk, "short read"
                rest += chunk
            assert first + rest == b"\x11" * EDGE ** 3, "the open descriptor read parts of the new version"
            # Opened while the old descriptor is still open (within the kernel's name cache
            # time): the new version, whole, through another inode.
            with open(cube, "rb") as f:
                assert f.read() == new
                assert os.fstat(f.fileno()).st_ino != os.fstat(fd).st_ino
            assert os.pread(fd, 4096, EDGE ** 3 - 4096) == b"\x11" * 4096
        finally:
            os.close(fd)
        with open(cube, "rb") as f:
            assert f.read() == new
        errors = (mountpoint / ".wkfs" / "errors").read_text()
        assert "ESTALE" not in errors and "stale" not in errors.lower(), errors


def test_mapped_reader_keeps_its_version(tmp_path, mounted, mountpoint):
    """A mapped cube (what numpy.memmap does), another program replaces the file, the mapping
    pages in the rest: all of it the old version."""
    ds = _dataset(tmp_path, "wkw")
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        script = (
            "import mmap, numpy as np, sys\n"
            "f = open(sys.argv[1], 'rb')\n"
            "mapping = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n"
            "mapping.madvise(mmap.MADV_RANDOM)  # page in what is touched only (no readahead)\n"
            "m = np.frombuffer(mapping, dtype=np.uint8)\n"
            "assert m[0] == 0x11\n"
            "print('mapped', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(int((m != 0x11).sum()), flush=True)\n"
            "del m\n"
            "mapping.close()\n"
        )
        reader = subprocess.Popen([sys.executable, "-c", script, str(cube)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert reader.stdout.readline().strip() == "mapped"
            new = _replace_with_cli(ds, 2)
            reader.stdin.write("go\n")
            reader.stdin.flush()
            differing = reader.stdout.readline().strip()
            assert reader.wait(timeout=60) == 0
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait()
        assert differing == "0", f"{differing} voxels of the mapping came from the new version"
        with open(cube, "rb") as f:
            assert f.read() == new


def test_write_through_the_mount_reaches_readers_of_the_same_version(tmp_path, mounted, mountpoint):
    """A change made through the mount is an in-place change of the file the readers have open:
    they read it (only other programs' replacements are kept from them)."""
    ds = _dataset(tmp_path, "wkw")
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        fd = os.open(cube, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            assert os.pread(fd, 16, 0) == b"\x11" * 16
            offset = EDGE ** 3 - 4096
            proc = mh.run(["dd", "of=" + str(cube), "bs=4096", f"seek={offset // 4096}", "conv=notrunc", "status=none"],
                          input=b"\x42" * 4096)
            assert proc.returncode == 0, mh.describe(proc)
            assert os.pread(fd, 4096, offset) == b"\x42" * 4096
            assert os.pread(fd, 4096, offset - 4096) == b"\x11" * 4096
            assert os.stat(cube).st_ino == os.fstat(fd).st_ino
        finally:
            os.close(fd)


@pytest.mark.parametrize("data_format", ["wkw", "zarr3"])
def test_reopen_through_proc_fd_keeps_the_descriptors_version(tmp_path, mounted, mountpoint, data_format):
    """`/proc/self/fd/N` of a replaced cube opens the version the descriptor holds, as on a local disk."""
    ds = _dataset(tmp_path, data_format)
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        fd = os.open(cube, os.O_RDONLY)
        try:
            _replace_with_cli(ds, 3)
            with open(f"/proc/self/fd/{fd}", "rb") as f:
                assert f.read() == b"\x11" * EDGE ** 3
        finally:
            os.close(fd)


@pytest.mark.limit(120)
def test_openers_after_a_replacement_read_the_new_version_whole(tmp_path, mounted, mountpoint):
    """The kernel cached the old version's pages; after another program replaced the cube,
    threads opening it at once each read the new version whole (never old pages mixed in),
    and concurrent readers and replacements never hand ESTALE to a program."""
    import threading
    ds = _dataset(tmp_path, "zarr3")
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        problems = []
        current = b"\x11" * EDGE ** 3
        for round in range(12):
            assert cube.read_bytes() == current  # the kernel caches this version's pages
            current = _replace_with_cli(ds, 100 + round)

            def read():
                try:
                    with open(cube, "rb") as f:
                        got = f.read()
                    if got != current:
                        problems.append(f"round {round}: read another version")
                except OSError as e:
                    problems.append(f"round {round}: {e}")
            threads = [threading.Thread(target=read) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
        assert not problems, problems[:5]
