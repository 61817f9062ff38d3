"""A mount and `wkfs write` processes writing one dataset at once lose nothing silently, and a
raw file a killed writer left half-patched is rolled back before the mount reads or writes it."""

from __future__ import annotations

import errno
import os
from pathlib import Path
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import mounthelp as mh


def _ok(*args, input: bytes = b""):
    proc = mh.run([mh.WKFS_BIN, *args], input=input)
    assert proc.returncode == 0, mh.describe(proc)


def _raw_dataset(root, compress=False, data_format="wkw"):
    ds = root / "ds"
    _ok("create", ds, "--voxel-size", "1,1,1")
    _ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8", "--data-format", data_format)
    _ok("add-mag", ds, "color", "1", "--block-len", "32", "--file-len", "2", "--compress" if compress else "--no-compress")
    _ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", "64,64,64", input=b"\x11" * 64 ** 3)
    return ds


def _journal(offset: int, old: bytes) -> bytes:
    """An undo journal as a `wkfs write` killed after making it durable leaves it."""
    body = b"WKFSUNDO" + struct.pack("<II", 2, 1) + struct.pack("<QQB", offset, len(old), 0) + old
    h = 0xCBF29CE484222325
    for byte in body:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return body + struct.pack("<Q", h)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "lz4hc"])
def test_cli_writes_into_cubes_the_mount_writes_survive(tmp_path, mounted, mountpoint, compress):
    """`wkfs write` processes and whole-cube writes through the mount, into the same files at
    once: every voxel is the last writer's, and the bounding box covers all."""
    ds = _raw_dataset(tmp_path, compress)
    rng = np.random.default_rng(3)
    cli_parts = [((x, 0, 32), rng.integers(1, 255, size=(8, 8, 8), dtype=np.uint8)) for x in (0, 20, 40)]
    with mounted(ds):
        def cli():
            for offset, part in cli_parts:
                _ok("write", ds, "color", "1", "--offset", ",".join(map(str, offset)), "--size", "8,8,8", input=part.tobytes())
        thread = threading.Thread(target=cli)
        thread.start()
        # Meanwhile the mount writes the cube beside (x1) whole, several times.
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x1.raw"
        for value in (0x21, 0x22, 0x23):
            with open(cube, "wb") as f:
                f.write(bytes([value]) * 64 ** 3)
        thread.join(timeout=60)
    got = mh.wkw_read_cube(ds / "color" / "1", (0, 0, 0)).reshape(64, 64, 64)
    for (x, y, z), part in cli_parts:
        assert np.array_equal(got[z:z + 8, y:y + 8, x:x + 8], part), f"the CLI's write at x={x} was lost"
    assert (mh.wkw_read_cube(ds / "color" / "1", (1, 0, 0)) == 0x23).all()


@pytest.mark.parametrize("compress,data_format", [(False, "wkw"), (True, "wkw"), (True, "zarr3"), (False, "zarr3")],
                         ids=["raw", "lz4hc", "zarr3-zstd", "zarr3-raw"])
def test_partial_block_written_by_the_mount_and_the_cli_keeps_both(tmp_path, mounted, mountpoint, compress, data_format):
    """A program changes one voxel of a block through the mount and closes later; meanwhile
    `wkfs write` changes another voxel of that block. Both changes survive: the mount's commit
    merges the block it had loaded with what is on disk now (WKW and Zarr3)."""
    ds = _raw_dataset(tmp_path, compress, data_format)
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        # A separate process holds the descriptor, so that nothing else flushes it early.
        program = subprocess.Popen(
            [sys.executable, "-c",
             "import os, sys\n"
             f"fd = os.open({str(cube)!r}, os.O_RDWR)\n"
             "os.pwrite(fd, b'\\x22', 0)\n"
             "print('written', flush=True)\n"
             "sys.stdin.readline()\n"
             "os.close(fd)\n"
             "print('closed', flush=True)\n"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert program.stdout.readline().strip() == "written"
            _ok("write", ds, "color", "1", "--offset", "5,0,0", "--size", "1,1,1", input=b"\x33")
            program.stdin.write("\n")
            program.stdin.flush()
            assert program.stdout.readline().strip() == "closed", program.stderr.read()
        finally:
            program.kill()
            program.wait(timeout=10)
        assert "another writer" not in (mountpoint / ".wkfs" / "errors").read_text()
    cube = mh.zarr3_read_cube(ds / "color" / "1", (0, 0, 0)) if data_format == "zarr3" else mh.wkw_read_cube(ds / "color" / "1", (0, 0, 0))
    row = bytes(cube.reshape(-1)[:8])
    assert row == bytes([0x22, 0x11, 0x11, 0x11, 0x11, 0x33, 0x11, 0x11]), row.hex(" ")


def test_half_patched_raw_file_is_rolled_back_before_the_mount_uses_it(tmp_path, mounted, mountpoint):
    """A journal beside a data file means its writer died in the middle of a patch: the mount
    reads the old content, and a write through the mount starts from it."""
    ds = _raw_dataset(tmp_path)
    mag = ds / "color" / "1"
    data_file = mag / "z0" / "y0" / "x0.wkw"
    raw = bytearray(data_file.read_bytes())
    offset = 16  # raw data starts right after the 16-byte header
    count = 32 ** 3  # block 0
    journal = mag / "z0" / "y0" / "x0.wkw.wkfs-undo"
    journal.write_bytes(_journal(offset, bytes(raw[offset:offset + count])))
    raw[offset:offset + count // 2] = b"\x99" * (count // 2)  # the half-done patch
    data_file.write_bytes(bytes(raw))
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        assert set(mh.read_file_through_mount(cube)) == {0x11}
        assert not journal.exists()
    assert (mh.wkw_read_cube(mag, (0, 0, 0)) == 0x11).all()


def test_read_only_mount_refuses_a_half_patched_file_without_writing(tmp_path, mounted, mountpoint):
    ds = _raw_dataset(tmp_path)
    mag = ds / "color" / "1"
    data_file = mag / "z0" / "y0" / "x0.wkw"
    raw = bytearray(data_file.read_bytes())
    journal = mag / "z0" / "y0" / "x0.wkw.wkfs-undo"
    journal.write_bytes(_journal(16, bytes(raw[16:16 + 512])))
    raw[16:16 + 512] = b"\x99" * 512
    data_file.write_bytes(bytes(raw))
    before = mh.snapshot(ds)
    with mounted(ds, options="ro"):
        with pytest.raises(OSError) as failure:
            mh.read_file_through_mount(mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw")
        assert failure.value.errno == errno.EIO
        assert "interrupted write" in (mountpoint / ".wkfs" / "errors").read_text()
    assert mh.snapshot(ds) == before


SED_KILLS = int(os.environ.get("WKFS_SED_KILLS", "15"))


def _abort_connection(mountpoint) -> None:
    """Aborts the FUSE connection of a hung mount (fusectl), so that its waiters return."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mountpoint):
            connections = Path("/sys/fs/fuse/connections")
            if not any(connections.iterdir()):
                subprocess.run(["mount", "-t", "fusectl", "none", str(connections)], check=False)
            abort = connections / fields[2].split(":")[1] / "abort"
            if abort.exists():
                abort.write_text("1")


@pytest.mark.limit(240)
def test_daemon_killed_during_sed_edits_never_hangs(tmp_path):
    """SIGKILL of the mount daemon while `sed -i` edits the properties in a loop: the daemon
    dies, sed returns, the mount point unmounts; the properties on disk are valid and the old or a
    new version. (A notification waiting for the root's lock once made the mount unkillable.)"""
    import json
    import random
    import time

    ds = _raw_dataset(tmp_path)
    props = ds / "datasource-properties.json"
    random.seed(5)
    hung = 0
    for kill in range(SED_KILLS):
        mp = tmp_path / f"mnt{kill}"
        m = mh.Mount(ds, mp)
        with m:
            script = (f"for i in $(seq 1 200); do sed -i 's/\"unit\": \"[a-z]*\"/\"unit\": \"nanometer\"/' "
                      f"{mp}/datasource-properties.json || exit 0; done")
            # Two editors and a lister keep requests on the root in flight at every moment.
            editors = [subprocess.Popen(["bash", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                       for _ in range(2)]
            editors.append(subprocess.Popen(["bash", "-c", f"for i in $(seq 1 2000); do ls {mp} >/dev/null || exit 0; done"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(random.uniform(0.05, 0.4))
            m.proc.kill()
            stuck = False
            try:
                m.returncode = m.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                stuck = True
            for editor in editors:
                try:
                    editor.wait(timeout=1 if stuck else 20)
                except subprocess.TimeoutExpired:
                    stuck = True
            if stuck:
                # Unstick it so the suite goes on, and count it.
                hung += 1
                _abort_connection(mp)
                for editor in editors:
                    editor.kill()
                m.returncode = m.proc.wait(timeout=20)
            mh.force_unmount(mp)
        assert not mh.is_mounted(mp), f"kill {kill}: the mount point stays mounted"
        json.loads(props.read_text())  # valid, whole
    assert hung == 0, f"{hung} of {SED_KILLS} kills left a hung daemon or sed"
    print(f"{SED_KILLS} daemon kills during sed -i: 0 hung")


def test_cli_read_while_the_mount_writes_never_fails(tmp_path, mounted, mountpoint):
    """`wkfs read` of a cube that the mount keeps replacing: every read succeeds (a replaced file
    is read again inside wkfs) and gives one version of the cube, never a mix."""
    ds = _raw_dataset(tmp_path, compress=True)
    stop = threading.Event()
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"

        def writer():
            value = 0x40
            while not stop.is_set():
                value = 0x41 if value == 0x40 else 0x40
                with open(cube, "r+b") as f:
                    f.write(bytes([value]) * 64 ** 3)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            for i in range(60):
                proc = mh.run([mh.WKFS_BIN, "read", ds, "color", "1", "--offset", "0,0,0", "--size", "64,64,64"], input=None)
                assert proc.returncode == 0, f"read {i}: {mh.describe(proc)}"
                assert len(set(proc.stdout)) == 1, f"read {i}: a mix of versions {sorted(set(proc.stdout))}"
        finally:
            stop.set()
            thread.join(timeout=60)


DAEMON_KILLS = int(os.environ.get("WKFS_DAEMON_KILLS", "6"))


@pytest.mark.limit(240)
@pytest.mark.parametrize("tool", ["cp", "dd"])
def test_daemon_killed_during_cp_or_dd_leaves_every_cube_old_or_new(tmp_path, tool):
    """SIGKILL of the mount daemon while `cp` replaces cubes or `dd` patches them: every data
    file reads with the reference `wkw` as its old or its new content, `check` passes after
    `check --repair`, and the mount point unmounts."""
    import random
    import time

    rng = np.random.default_rng(9)
    ds = tmp_path / "ds"
    _ok("create", ds, "--voxel-size", "1,1,1")
    _ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8")
    _ok("add-mag", ds, "color", "1", "--block-len", "32", "--file-len", "2", "--compress")
    old = rng.integers(0, 255, size=(64, 128, 128), dtype=np.uint8)  # 2 × 2 cubes of 64³
    _ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", "128,128,64", input=old.tobytes())
    new_cube = tmp_path / "new.raw"
    new_cube.write_bytes(rng.integers(0, 255, size=64 ** 3, dtype=np.uint8).tobytes())
    patch = tmp_path / "patch.raw"
    patch.write_bytes(b"\xEE" * 8192)
    random.seed(10)
    cubes = [(x, y) for y in range(2) for x in range(2)]
    for kill in range(DAEMON_KILLS):
        before = {c: mh.wkw_read_cube(ds / "color" / "1", (c[0], c[1], 0)).reshape(-1).tobytes() for c in cubes}
        mp = tmp_path / f"mnt{kill}"
        m = mh.Mount(ds, mp)
        with m:
            paths = " ".join(f"{mp}/color/1/z0/y{y}/x{x}.raw" for x, y in cubes)
            if tool == "cp":
                script = f"for i in $(seq 1 50); do for c in {paths}; do cp {new_cube} $c || exit 0; done; done"
            else:
                script = (f"for i in $(seq 1 50); do for c in {paths}; do "
                          f"dd if={patch} of=$c bs=4096 seek=7 conv=notrunc status=none || exit 0; done; done")
            work = subprocess.Popen(["bash", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(random.uniform(0.05, 0.5))
            m.proc.kill()
            m.returncode = m.proc.wait(timeout=20)
            work.wait(timeout=20)
            mh.force_unmount(mp)
        assert not mh.is_mounted(mp)
        repair = mh.run([mh.WKFS_BIN, "check", "--repair", ds])
        assert repair.returncode == 0, mh.describe(repair)
        for c in cubes:
            got = mh.wkw_read_cube(ds / "color" / "1", (c[0], c[1], 0)).reshape(-1).tobytes()
            patched = before[c][:7 * 4096] + patch.read_bytes() + before[c][7 * 4096 + 8192:]
            allowed = [before[c], new_cube.read_bytes()] if tool == "cp" else [before[c], patched]
            assert got in allowed, f"kill {kill}: cube {c} is neither its old nor its new content"


@pytest.mark.limit(180)
@pytest.mark.parametrize("compress,data_format", [(False, "wkw"), (True, "wkw"), (True, "zarr3")],
                         ids=["raw", "lz4hc", "zarr3-zstd"])
def test_cli_processes_and_a_mount_writing_at_once_match_a_model(tmp_path, mounted, mountpoint, compress, data_format):
    """Three `wkfs write` processes at a time and a program writing through the mount, all into
    the same cubes and blocks at once, each into its own voxels (x stripes of 4, interleaved, so
    every block is shared): the result equals a model of every write."""
    rng = np.random.default_rng(77 + compress)
    ds = _raw_dataset(tmp_path, compress, data_format)  # 64³ cube of 0x11 at the origin, 32³ blocks
    side = 64
    model = np.full((side, side, side), 0x11, dtype=np.uint8)  # (z, y, x)
    owner = (np.arange(side) // 4) % 4  # the writer of each x column
    plans = []
    for writer in range(3):
        writes = []
        for _ in range(12):
            stripe = rng.choice(np.nonzero(owner == writer)[0][::4])
            y0, z0 = rng.integers(0, side - 8, size=2)
            sy, sz = rng.integers(1, 9, size=2)
            data = rng.integers(0, 255, size=(sz, sy, 4), dtype=np.uint8)
            writes.append(((int(stripe), int(y0), int(z0)), data))
            model[z0:z0 + sz, y0:y0 + sy, stripe:stripe + 4] = data
        plans.append(writes)
    mount_writes = []
    for _ in range(8):
        batch = []
        for _ in range(40):
            stripe = int(rng.choice(np.nonzero(owner == 3)[0][::4]))
            y, z = (int(v) for v in rng.integers(0, side, size=2))
            data = rng.integers(0, 255, size=4, dtype=np.uint8)
            batch.append(((stripe, y, z), data))
            model[z, y, stripe:stripe + 4] = data
        mount_writes.append(batch)
    failures = []
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"

        def cli(writes):
            for (x, y, z), data in writes:
                proc = mh.run([mh.WKFS_BIN, "write", ds, "color", "1", "--offset", f"{x},{y},{z}",
                               "--size", f"4,{data.shape[1]},{data.shape[0]}"], input=data.tobytes())
                if proc.returncode != 0:
                    failures.append(mh.describe(proc))

        def through_mount():
            for batch in mount_writes:
                fd = os.open(cube, os.O_RDWR)
                try:
                    for (x, y, z), data in batch:
                        os.pwrite(fd, data.tobytes(), (z * side + y) * side + x)
                finally:
                    os.close(fd)

        threads = [threading.Thread(target=cli, args=(plan,)) for plan in plans] + [threading.Thread(target=through_mount)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not failures, failures[0]
    read = mh.zarr3_read_cube if data_format == "zarr3" else mh.wkw_read_cube
    got = read(ds / "color" / "1", (0, 0, 0)).reshape(side, side, side)
    wrong = np.argwhere(got != model)
    assert len(wrong) == 0, f"{len(wrong)} voxels differ from the model, first at (z, y, x) {tuple(wrong[0])}"


def _replace_in_child(cube: Path, value: int) -> subprocess.CompletedProcess:
    """`cp`-like whole replacement (open with O_TRUNC, write, close) by another process."""
    code = (f"import sys\nwith open(sys.argv[1], 'wb') as f:\n    f.write(bytes([{value}]) * {64 ** 3})\n")
    return subprocess.run([sys.executable, "-c", code, str(cube)], capture_output=True, text=True, timeout=60)


def test_cube_open_for_reading_is_not_replaced_under_the_reader(tmp_path, mounted, mountpoint):
    """A cube mapped by a reader cannot be replaced whole meanwhile (the kernel would shrink it
    for the reader: SIGBUS); the replacement is refused with EBUSY, named in `.wkfs/errors`, and
    works once the reader closes."""
    ds = _raw_dataset(tmp_path)
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        with open(cube, "rb") as f:
            mapped = np.memmap(f, dtype=np.uint8, mode="r")
            refused = _replace_in_child(cube, 0x22)
            assert refused.returncode != 0 and "Device or resource busy" in refused.stderr, refused.stderr
            # The whole cube, still the old one, through the mapping (no SIGBUS) and read().
            assert mapped.size == 64 ** 3 and np.all(mapped == 0x11)
            f.seek(0)
            assert f.read() == b"\x11" * 64 ** 3
            del mapped
        errors = (mountpoint / ".wkfs" / "errors").read_text()
        assert "x0.raw: open elsewhere" in errors, errors
        # Closed: the release reaches the daemon asynchronously; the replacement waits for it.
        done = _replace_in_child(cube, 0x22)
        assert done.returncode == 0, done.stderr
        assert cube.read_bytes() == b"\x22" * 64 ** 3


def test_cube_being_replaced_is_not_opened_until_committed(tmp_path, mounted, mountpoint):
    """While a program replaces a cube whole, other opens wait briefly and then get EBUSY
    instead of a short or half-new cube; after its close they read the new cube whole."""
    ds = _raw_dataset(tmp_path)
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        with open(cube, "wb") as writer:
            writer.write(b"\x33" * (64 ** 3 // 2))
            writer.flush()
            for flags in (os.O_RDONLY, os.O_RDWR):
                with pytest.raises(OSError) as caught:
                    os.close(os.open(cube, flags))
                assert caught.value.errno == errno.EBUSY
            writer.write(b"\x33" * (64 ** 3 // 2))
        assert cube.read_bytes() == b"\x33" * 64 ** 3
        assert "being replaced whole" in (mountpoint / ".wkfs" / "errors").read_text()


@pytest.mark.limit(120)
def test_readers_of_a_cube_replaced_in_a_loop_see_it_whole(tmp_path, mounted, mountpoint):
    """Readers (whole reads and maps) in a loop while another process replaces the cube in a
    loop: every read is the old or a new cube whole, or EBUSY; no reader dies, no replacement
    is lost once the reader is gone."""
    ds = _raw_dataset(tmp_path)
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        whole = {bytes([v]) * 64 ** 3 for v in (0x11, *range(0x40, 0x40 + 30))}
        stop = threading.Event()
        replaced = []

        def replace():
            for value in range(0x40, 0x40 + 30):
                if _replace_in_child(cube, value).returncode == 0:
                    replaced.append(value)
            stop.set()

        thread = threading.Thread(target=replace)
        thread.start()
        reads = busy = 0
        # Maps in a child: a SIGBUS kills the child, not the test.
        mapper = subprocess.Popen([sys.executable, "-c",
            "import sys, numpy as np\n"
            "for _ in range(300):\n"
            "    try:\n"
            "        m = np.memmap(sys.argv[1], dtype=np.uint8, mode='r')\n"
            "    except OSError:\n"
            "        continue\n"
            "    v = int(m[0]); assert m.size == 64 ** 3 and bool(np.all(m == v)), 'mixed map'\n"
            "    del m\n", str(cube)], stderr=subprocess.PIPE, text=True)
        while not stop.is_set():
            try:
                data = cube.read_bytes()
            except OSError as e:
                assert e.errno == errno.EBUSY, e
                busy += 1
                continue
            assert data in whole, f"read {len(data)} bytes, not a whole cube"
            reads += 1
        thread.join()
        _, err = mapper.communicate(timeout=60)
        assert mapper.returncode == 0, err
        assert reads > 0 and replaced, (reads, busy, replaced)
        assert cube.read_bytes() == bytes([replaced[-1]]) * 64 ** 3


@pytest.mark.limit(120)
def test_replacement_is_not_starved_by_readers_and_does_not_stall_the_mount(tmp_path, mounted, mountpoint):
    """16 processes read a cube in a loop while another replaces it 10 times: every replacement
    lands (waiting readers do not overtake it), and a cube nobody replaces stays quick to read."""
    ds = _raw_dataset(tmp_path)
    _ok("write", ds, "color", "1", "--offset", "64,0,0", "--size", "1,1,1", input=b"\x01")
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        other = mountpoint / "color" / "1" / "z0" / "y0" / "x1.raw"
        loop = ("import sys, time\nend = time.time() + float(sys.argv[2])\n"
                "while time.time() < end:\n    try:\n        open(sys.argv[1], 'rb').read()\n"
                "    except OSError:\n        pass\n")
        readers = [subprocess.Popen([sys.executable, "-c", loop, str(cube), "6"]) for _ in range(16)]
        try:
            results = [_replace_in_child(cube, value) for value in range(0x50, 0x5A)]
            started = time.monotonic()
            other.read_bytes()
            unrelated = time.monotonic() - started
        finally:
            for r in readers:
                r.wait(timeout=60)
        assert [r.returncode for r in results] == [0] * 10, [r.stderr for r in results if r.returncode]
        assert unrelated < 0.5, f"reading another cube took {unrelated:.2f} s"
        assert cube.read_bytes() == b"\x59" * 64 ** 3


def test_emptying_a_cube_waits_for_a_reader_that_just_closed(tmp_path, mounted, mountpoint):
    """ftruncate(0) of a cube a reader is about to close waits for it, as O_TRUNC does."""
    ds = _raw_dataset(tmp_path)
    with mounted(ds):
        cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
        reader = open(cube, "rb")
        timer = threading.Timer(0.3, reader.close)
        timer.start()
        try:
            with open(cube, "r+b") as f:
                f.truncate(0)
                f.write(b"\x66" * 64 ** 3)
        finally:
            timer.join()
        assert cube.read_bytes() == b"\x66" * 64 ** 3


@pytest.mark.parametrize("block_len", [8, 32], ids=["pages-cover-whole-blocks", "pages-cover-part-blocks"])
@pytest.mark.parametrize("data_format", ["wkw", "zarr3"])
@pytest.mark.parametrize("read_first", [False, True], ids=["mapped", "mapped-and-read"])
def test_a_memory_map_made_before_another_write_keeps_it(tmp_path, mounted, mountpoint, data_format, block_len, read_first):
    """numpy.memmap(mode="r+") of a cube, then `wkfs write` beside the mount replaces the cube's
    file, then one voxel of the map is changed: the kernel writes back whole pages of the map,
    which hold the cube as it was when mapped. The other write's voxels in those pages went
    back to their old values; the pages are now merged against the version the map was made
    from, so both changes stay. (Compressed files are replaced whole; a raw WKW file patched in
    place by the other writer cannot be told apart once the map holds its page: not covered.)"""
    ds = tmp_path / "ds"
    _ok("create", ds, "--voxel-size", "1,1,1")
    _ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8", "--data-format", data_format)
    _ok("add-mag", ds, "color", "1", "--block-len", block_len, "--file-len", 64 // block_len, "--compress")
    _ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", "64,64,64", input=b"\x11" * 64 ** 3)
    with mounted(ds):
        cube = mountpoint / "color" / "1" / mh.cube_rel(0, 0, 0)
        mapped = np.memmap(cube, dtype=np.uint8, mode="r+", shape=(64, 64, 64))
        if read_first:
            assert mapped[0, 0, 0] == 0x11
        _ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", "4,4,4", input=b"\x22" * 64)
        mapped[0, 0, 6] = 0x77  # beside the other write, in the same page
        mapped.flush()
        del mapped
    got = np.frombuffer(_ok_out("read", ds, "color", "1", "--offset", "0,0,0", "--size", "8,8,8"), np.uint8).reshape(8, 8, 8)
    assert (got[:4, :4, :4] == 0x22).all(), "the other write's voxels went back to the old ones"
    assert got[0, 0, 6] == 0x77
    assert (got[4:] == 0x11).all() and (got[:4, 4:] == 0x11).all()


def _ok_out(*args) -> bytes:
    proc = mh.run([mh.WKFS_BIN, *args])
    assert proc.returncode == 0, mh.describe(proc)
    return proc.stdout


@pytest.mark.parametrize("data_format", ["wkw", "zarr3"])
def test_a_value_written_back_on_purpose_is_kept(tmp_path, mounted, mountpoint, data_format):
    """A program that read a voxel, then writes that old value back with a small `pwrite` after
    another writer changed it (an eraser resetting labels), keeps its value: small writes are
    merged against the file as it is now, not against the version the program read (which
    only whole pages, a memory map's write-back, are)."""
    ds = tmp_path / "ds"
    _ok("create", ds, "--voxel-size", "1,1,1")
    _ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8", "--data-format", data_format)
    _ok("add-mag", ds, "color", "1", "--block-len", "32", "--file-len", "2", "--compress")
    _ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", "64,64,64", input=b"\x11" * 64 ** 3)
    with mounted(ds):
        cube = mountpoint / "color" / "1" / mh.cube_rel(0, 0, 0)
        fd = os.open(cube, os.O_RDWR)
        try:
            assert os.pread(fd, 1, 0) == b"\x11"
            _ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", "2,1,1", input=b"\x22\x22")
            assert os.pwrite(fd, b"\x11", 0) == 1
            os.fsync(fd)
        finally:
            os.close(fd)
    got = _ok_out("read", ds, "color", "1", "--offset", "0,0,0", "--size", "2,1,1")
    assert got == b"\x11\x22", got
