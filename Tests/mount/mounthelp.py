"""Helpers of the mount suite: run the real `wkfs mount`, always unmount, compare with `wkw`.

Nothing here is mocked: the mounts are real FUSE mounts of the built binary, and every voxel the
mount shows is compared with what the reference library (`wkw` 1.1.24) reads from the same files.

Safety rules every helper follows:
- every subprocess has a timeout;
- a mount is started only through `Mount`, whose exit always unmounts (`fusermount3 -u`, then
  `-u -z`, then kills the child) and which registers itself so the per-test watchdog and the
  session finalizer can clean up after a hang;
- processes are only ever ended by their pid, and only processes this suite started.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WKFS_BIN = Path(os.environ.get("WKFS_BIN", REPO / ".build" / "release" / "wkfs"))
FIXTURES = Path(os.environ.get("WKFS_FIXTURES", REPO / "Tests" / "fixtures"))

#: Seconds one subprocess (other than a mount) may take.
TIMEOUT = float(os.environ.get("WKFS_MOUNT_CMD_TIMEOUT", "60"))
#: Seconds a mount may take to appear in /proc/mounts.
MOUNT_WAIT = float(os.environ.get("WKFS_MOUNT_WAIT", "10"))
#: Seconds the foreground process may take to end after an unmount.
EXIT_WAIT = float(os.environ.get("WKFS_MOUNT_EXIT_WAIT", "10"))

FUSERMOUNT = shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"

#: Text that only shows up when a process crashed instead of reporting an error.
CRASH_MARKERS = (
    "Fatal error",
    "Program crashed",
    "Stack dump",
    "Illegal instruction",
    "Segmentation fault",
    "core dumped",
    "Current stack trace",
)

#: Header voxel type codes (WKW-FORMAT.md section 1).
VOXEL_TYPES = {
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

#: errno values that mean "refused" for a bad name (the exact one is the implementer's choice).
BAD_NAME_ERRNOS = {errno.EINVAL, errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP}
#: errno values for a cube whose final size is wrong, refused at close.
BAD_SIZE_ERRNOS = {errno.EINVAL, errno.EIO, errno.EFBIG}
#: errno values for a write or truncate past the end of a cube.
PAST_END_ERRNOS = {errno.EFBIG, errno.EINVAL, errno.ENOSPC, errno.EIO}
#: errno values for a refused properties file (close, fsync or rename fails).
BAD_PROPERTIES_ERRNOS = {errno.EINVAL, errno.EIO, errno.EPERM, errno.EACCES, errno.EBADMSG}


# --------------------------------------------------------------------------------------------
# Processes and mounts


def run(cmd: Iterable[object], *, input: bytes | None = b"", timeout: float = TIMEOUT,
        cwd: Path | str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs `cmd` (no shell unless cmd[0] is 'bash'), stdin from `input`, with a timeout."""
    return subprocess.run(
        [str(c) for c in cmd],
        input=input,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def sh(script: str, *, timeout: float = TIMEOUT, cwd: Path | str | None = None,
       env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs a bash script (`set -u -o pipefail`) with a timeout."""
    return run(["bash", "-c", "set -u -o pipefail\n" + script], timeout=timeout, cwd=cwd, env=env)


def wkfs(*args: object, timeout: float = TIMEOUT, input: bytes | None = None) -> subprocess.CompletedProcess:
    return run([WKFS_BIN, *args], timeout=timeout, input=input)


def new_dataset(path: Path, dtype: str, block_len: int, file_len: int, compress: bool = False) -> None:
    """A new dataset at `path` with one color layer `color` of `dtype` and its mag 1."""
    for args in (["create", path, "--voxel-size", "1,1,1"],
                 ["add-layer", path, "color", "--category", "color", "--dtype", dtype],
                 ["add-mag", path, "color", "1", "--block-len", block_len, "--file-len", file_len,
                  "--compress" if compress else "--no-compress"]):
        proc = wkfs(*args)
        assert proc.returncode == 0, describe(proc)


def describe(proc: subprocess.CompletedProcess, limit: int = 3000) -> str:
    out = (proc.stdout or b"")[:limit].decode("utf-8", "replace")
    err = (proc.stderr or b"")[:limit].decode("utf-8", "replace")
    args = " ".join(str(a) for a in proc.args) if isinstance(proc.args, list) else str(proc.args)
    return f"$ {args}\nexit {proc.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"


def _unescape_mount_field(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def proc_mounts() -> list[dict]:
    """The entries of /proc/mounts as dicts: source, target, fstype, options (a list)."""
    entries = []
    with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4:
                continue
            entries.append(
                {
                    "source": _unescape_mount_field(parts[0]),
                    "target": _unescape_mount_field(parts[1]),
                    "fstype": parts[2],
                    "options": parts[3].split(","),
                }
            )
    return entries


def mount_entry(mountpoint: Path | str) -> dict | None:
    """The last /proc/mounts entry whose target is `mountpoint` (real path), or None."""
    target = os.path.realpath(str(mountpoint))
    found = None
    for e in proc_mounts():
        if e["target"] == target or e["target"] == str(mountpoint):
            found = e
    return found


def is_mounted(mountpoint: Path | str) -> bool:
    return mount_entry(mountpoint) is not None


def mounts_under(root: Path | str) -> list[str]:
    root = os.path.realpath(str(root)).rstrip("/") + "/"
    return [e["target"] for e in proc_mounts() if (e["target"].rstrip("/") + "/").startswith(root)]


def force_unmount(mountpoint: Path | str) -> None:
    """Unmounts `mountpoint` however possible: fusermount3 -u, then -u -z, then umount -l."""
    mp = str(mountpoint)
    for cmd in ([FUSERMOUNT, "-u", mp], [FUSERMOUNT, "-u", "-z", mp], ["umount", "-l", mp]):
        if not is_mounted(mp):
            return
        try:
            run(cmd, timeout=15)
        except subprocess.TimeoutExpired:
            pass
        # The kernel may take a moment to drop the entry.
        deadline = time.monotonic() + 2
        while is_mounted(mp) and time.monotonic() < deadline:
            time.sleep(0.05)


def allow_other_ok() -> bool:
    """Whether this user may mount with allow_other (root, or user_allow_other in fuse.conf)."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/etc/fuse.conf") as f:
            return any(line.strip() == "user_allow_other" for line in f)
    except OSError:
        return False


def _pid_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _pid_exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def wkfs_processes(mentioning: str | Path) -> list[int]:
    """Pids of running wkfs processes whose command line mentions `mentioning` (a path)."""
    needle = str(mentioning)
    real = os.path.realpath(needle)
    binary = os.path.realpath(str(WKFS_BIN))
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == os.getpid():
            continue
        argv = _pid_cmdline(pid)
        if not argv:
            continue
        exe = _pid_exe(pid).removesuffix(" (deleted)")
        is_wkfs = exe == binary or os.path.basename(argv[0]) == WKFS_BIN.name or exe.endswith("/wkfs")
        if not is_wkfs:
            continue
        if any(needle in a or real in a for a in argv[1:]):
            pids.append(pid)
    return pids


def end_process(pid: int, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds, for one pid this suite started."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}") or _is_zombie(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class MountFailed(AssertionError):
    pass


#: Mounts currently alive (for the watchdog and the session finalizer).
ACTIVE_MOUNTS: "set[Mount]" = set()
_ACTIVE_LOCK = threading.Lock()


class Mount:
    """`wkfs mount DATASET MOUNTPOINT -f [-o OPTIONS]` as a child process, always unmounted.

    Use as a context manager. On entry it starts the child (stdout and stderr into a log file),
    waits at most MOUNT_WAIT seconds for the mount to appear in /proc/mounts (failing with the
    log if the child exits or the time runs out). On exit, whatever happened, it unmounts
    (`fusermount3 -u`, falling back to `fusermount3 -u -z`), waits for the child and kills it
    after EXIT_WAIT seconds. If the body succeeded, a child that did not end cleanly (exit 0,
    no crash text in its log) fails the test.
    """

    def __init__(self, dataset: Path | str, mountpoint: Path | str, options: str | None = None,
                 extra_args: Iterable[str] = (), log: Path | None = None):
        self.dataset = Path(dataset)
        self.mountpoint = Path(mountpoint)
        self.options = options
        self.extra_args = list(extra_args)
        self.log_path = Path(log) if log else self.mountpoint.parent / (self.mountpoint.name + ".log")
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.unmounted_cleanly = False

    @property
    def args(self) -> list[str]:
        args = [str(WKFS_BIN), "mount", str(self.dataset), str(self.mountpoint), "-f"]
        if self.options:
            args += ["-o", self.options]
        return args + self.extra_args

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def __enter__(self) -> "Mount":
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if is_mounted(self.mountpoint):
            raise MountFailed(f"{self.mountpoint} is already a mount point")
        logf = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT
            )
        finally:
            logf.close()
        with _ACTIVE_LOCK:
            ACTIVE_MOUNTS.add(self)
        try:
            ok = wait_until(lambda: is_mounted(self.mountpoint) or self.proc.poll() is not None,
                            MOUNT_WAIT)
            if self.proc.poll() is not None and not is_mounted(self.mountpoint):
                raise MountFailed(
                    f"`{' '.join(self.args)}` exited with {self.proc.returncode} before mounting:\n"
                    + self.log()
                )
            if not ok:
                raise MountFailed(
                    f"`{' '.join(self.args)}`: no mount at {self.mountpoint} after {MOUNT_WAIT} s:\n"
                    + self.log()
                )
        except BaseException:
            self._teardown()
            raise
        return self

    def _teardown(self) -> None:
        try:
            if is_mounted(self.mountpoint):
                try:
                    r = run([FUSERMOUNT, "-u", self.mountpoint], timeout=15)
                    self.unmounted_cleanly = r.returncode == 0
                except subprocess.TimeoutExpired:
                    self.unmounted_cleanly = False
                if not self.unmounted_cleanly:
                    # Something still uses the mount (or the daemon hangs): detach it lazily.
                    force_unmount(self.mountpoint)
            else:
                self.unmounted_cleanly = True
            if self.proc is not None:
                try:
                    self.returncode = self.proc.wait(timeout=EXIT_WAIT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.returncode = self.proc.wait(timeout=EXIT_WAIT)
                    self.unmounted_cleanly = False
            # A killed daemon leaves "Transport endpoint is not connected" behind.
            if is_mounted(self.mountpoint):
                force_unmount(self.mountpoint)
        finally:
            with _ACTIVE_LOCK:
                ACTIVE_MOUNTS.discard(self)

    def unmount(self) -> None:
        """Unmounts now (idempotent); the check of the exit status happens here too."""
        self._teardown()
        self._check_exit()

    def _check_exit(self) -> None:
        log = self.log()
        crashed = [m for m in CRASH_MARKERS if m in log]
        if crashed or (self.returncode is not None and self.returncode != 0):
            raise MountFailed(
                f"`{' '.join(self.args)}` ended with exit {self.returncode}"
                f"{' (crash: ' + ', '.join(crashed) + ')' if crashed else ''}:\n{log}"
            )
        if not self.unmounted_cleanly:
            raise MountFailed(f"{self.mountpoint} did not unmount cleanly:\n{log}")

    def __exit__(self, exc_type, exc, tb) -> None:
        already = self.proc is None or self.returncode is not None
        self._teardown()
        if exc_type is None and not already:
            self._check_exit()

    def kill_now(self) -> None:
        """For the watchdog: kill the child so that blocked file operations return."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass


def emergency_cleanup(under: Path | str | None = None) -> list[str]:
    """Kills our mount children, unmounts our mounts and those under `under`; returns what it did."""
    done = []
    with _ACTIVE_LOCK:
        active = list(ACTIVE_MOUNTS)
    for m in active:
        m.kill_now()
        done.append(f"killed child of {m.mountpoint}")
    for m in active:
        force_unmount(m.mountpoint)
    if under is not None:
        for pid in wkfs_processes(under):
            end_process(pid, grace=2)
            done.append(f"ended wkfs process {pid}")
        for target in mounts_under(under):
            force_unmount(target)
            done.append(f"unmounted {target}")
    return done


# --------------------------------------------------------------------------------------------
# Fixture datasets


def _make_writable(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o644)


def read_header(path: Path | str) -> dict:
    """The 16-byte WKW header of `path`, decoded field by field."""
    with open(path, "rb") as f:
        raw = f.read(16)
    assert len(raw) == 16 and raw[:3] == b"WKW", f"{path}: not a WKW header: {raw!r}"
    block_len = 1 << (raw[4] & 0x0F)
    file_len = 1 << (raw[4] >> 4)
    vtype = VOXEL_TYPES[raw[6]]
    itemsize = np.dtype(vtype).itemsize
    return {
        "version": raw[3],
        "block_len": block_len,
        "file_len": file_len,
        "side": block_len * file_len,
        "block_type": raw[5],
        "dtype": vtype,
        "voxel_size": raw[7],
        "channels": raw[7] // itemsize,
        "raw": raw,
    }


def _element_class(dtype: str, channels: int) -> str:
    bits = np.dtype(dtype).itemsize * 8 * channels
    if dtype.startswith("float"):
        return {32: "float", 64: "double"}.get(bits, f"float{bits}")
    prefix = "int" if dtype.startswith("int") else "uint"
    return f"{prefix}{bits}"


def wrap_mag_as_dataset(mag_dir: Path, dataset_dir: Path) -> None:
    """Makes a webknossos dataset (layer `color` or `segmentation`, mag 1) around a bare mag dir."""
    h = read_header(mag_dir / "header.wkw")
    side = h["side"]
    boxes = []
    for f in mag_dir.glob("z*/y*/x*.wkw"):
        x, y, z = int(f.stem[1:]), int(f.parent.name[1:]), int(f.parent.parent.name[1:])
        boxes.append((x * side, y * side, z * side))
    lo = [min(b[i] for b in boxes) for i in range(3)] if boxes else [0, 0, 0]
    hi = [max(b[i] for b in boxes) + side for i in range(3)] if boxes else [0, 0, 0]
    segmentation = h["dtype"] in ("uint32", "uint64") and h["channels"] == 1
    name = "segmentation" if segmentation else "color"
    dataset_dir.mkdir(parents=True)
    shutil.copytree(mag_dir, dataset_dir / name / "1")
    layer = {
        "name": name,
        "category": "segmentation" if segmentation else "color",
        "boundingBox": {"topLeft": lo, "width": hi[0] - lo[0], "height": hi[1] - lo[1],
                        "depth": hi[2] - lo[2]},
        "dataFormat": "wkw",
        "mags": [{"mag": [1, 1, 1], "path": f"./{name}/1", "cubeLength": side,
                  "axisOrder": {"c": 0, "x": 1, "y": 2, "z": 3}}],
        "numChannels": h["channels"],
        "elementClass": _element_class(h["dtype"], h["channels"]),
    }
    if segmentation:
        layer["largestSegmentId"] = 1
    props = {"id": {"name": dataset_dir.name, "team": ""},
             "scale": {"factor": [1.0, 1.0, 1.0], "unit": "nanometer"},
             "dataLayers": [layer], "version": 1}
    (dataset_dir / "datasource-properties.json").write_text(json.dumps(props, indent=4))


def fixture_names() -> list[str]:
    """Every dataset of the fixtures (webknossos datasets and bare wkw mag directories)."""
    if not FIXTURES.is_dir():
        return []
    names = []
    for p in sorted(FIXTURES.iterdir()):
        if p.is_dir() and ((p / "datasource-properties.json").is_file() or (p / "header.wkw").is_file()):
            names.append(p.name)
    return names


def symlink_siblings(name: str) -> list[str]:
    """Other fixture datasets that `name`'s layer links point into (by the manifest or the text)."""
    out = []
    src = FIXTURES / name
    targets = []
    manifest = FIXTURES / f"{name}.manifest.json"
    if manifest.is_file():
        try:
            for f in json.loads(manifest.read_text()).get("files", []):
                if "symlink_to" in f:
                    targets.append(f["symlink_to"])
        except ValueError:
            pass
    if src.is_dir():
        for entry in src.iterdir():
            if entry.is_symlink():
                targets.append(os.readlink(entry))
    for t in targets:
        parts = Path(t).parts
        if len(parts) >= 2 and parts[0] == "..":
            sib = parts[1]
            if (FIXTURES / sib).is_dir() and sib not in out and sib != name:
                out.append(sib)
    return out


def copy_fixture(name: str, dest_root: Path) -> Path:
    """A writable copy of fixture dataset `name` (and the datasets its links need) in dest_root.

    Bare wkw mag directories are wrapped into a one-layer dataset. Returns the dataset path.
    """
    dest_root.mkdir(parents=True, exist_ok=True)
    for n in [name, *symlink_siblings(name)]:
        if (dest_root / n).exists():
            continue
        src = FIXTURES / n
        if (src / "header.wkw").is_file() and not (src / "datasource-properties.json").exists():
            tmp = dest_root / f".{n}.mag"
            shutil.copytree(src, tmp, symlinks=True)
            _make_writable(tmp)
            wrap_mag_as_dataset(tmp, dest_root / n)
            shutil.rmtree(tmp)
        else:
            shutil.copytree(src, dest_root / n, symlinks=True)
            manifest = FIXTURES / f"{n}.manifest.json"
            if manifest.is_file():
                shutil.copy(manifest, dest_root / manifest.name)
    _make_writable(dest_root)
    return dest_root / name


# --------------------------------------------------------------------------------------------
# Dataset inspection on disk


def load_properties(dataset: Path) -> dict:
    return json.loads((dataset / "datasource-properties.json").read_text())


def layer_entry(props: dict, name: str) -> dict | None:
    for layer in props.get("dataLayers", []):
        if layer.get("name") == name:
            return layer
    return None


def mag_dirs(layer_dir: Path) -> list[Path]:
    """The mag directories of a layer on disk (those holding header.wkw or, Zarr3, an array's
    zarr.json), sorted by name."""
    def is_mag(p: Path) -> bool:
        if (p / "header.wkw").is_file():
            return True
        meta = p / "zarr.json"
        return meta.is_file() and json.loads(meta.read_text()).get("node_type") == "array"
    return sorted(p for p in layer_dir.iterdir() if p.is_dir() and is_mag(p))


def cube_files(mag_dir: Path) -> list[tuple[int, int, int]]:
    """(x, y, z) file indices of the data files of a mag on disk."""
    out = []
    for f in mag_dir.glob("z*/y*/x*.wkw"):
        try:
            out.append((int(f.stem[1:]), int(f.parent.name[1:]), int(f.parent.parent.name[1:])))
        except ValueError:
            continue
    return sorted(out)


def cube_rel(x: int, y: int, z: int, ext: str = "raw") -> str:
    return f"z{z}/y{y}/x{x}.{ext}"


def mag_vector(name: str) -> tuple[int, int, int]:
    parts = [int(p) for p in name.split("-")]
    return (parts[0],) * 3 if len(parts) == 1 else tuple(parts)  # type: ignore[return-value]


def bbox_of(layer: dict) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    bb = layer["boundingBox"]
    return tuple(bb["topLeft"]), (bb["width"], bb["height"], bb["depth"])  # type: ignore[return-value]


def bbox_covers(layer: dict, offset_mag1, size_mag1) -> bool:
    (tx, ty, tz), (w, h, d) = bbox_of(layer)
    lo = (tx, ty, tz)
    hi = (tx + w, ty + h, tz + d)
    return all(lo[i] <= offset_mag1[i] and offset_mag1[i] + size_mag1[i] <= hi[i] for i in range(3))


def cube_bytes(h: dict) -> int:
    return h["side"] ** 3 * h["voxel_size"]


def wkw_read_cube(mag_dir: Path, xyz: tuple[int, int, int]) -> np.ndarray:
    """The decoded voxels of one data file, read by the reference `wkw`, as (z, y, x, c)."""
    import wkw

    h = read_header(mag_dir / "header.wkw")
    side = h["side"]
    with wkw.Dataset.open(str(mag_dir)) as ds:
        arr = ds.read(tuple(i * side for i in xyz), (side, side, side))  # (c, x, y, z)
    return np.ascontiguousarray(arr.transpose(3, 2, 1, 0))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 (files) or 'link:TARGET' or 'dir' of everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            rel = os.path.relpath(p, root)
            out[rel] = f"link:{os.readlink(p)}" if os.path.islink(p) else "dir"
        for n in filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            out[rel] = f"link:{os.readlink(p)}" if os.path.islink(p) else sha256_file(Path(p))
    return out


def read_file_through_mount(path: Path) -> bytes:
    """Reads a file of the mount with plain reads of an odd size (not page aligned)."""
    chunks = []
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(100_003)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)


def oserror_errno(fn, *args, **kwargs) -> int | None:
    """Calls fn; returns the errno of the OSError it raised, or None when it succeeded."""
    try:
        fn(*args, **kwargs)
    except OSError as e:
        return e.errno
    return None


def errno_name(code: int | None) -> str:
    return "success" if code is None else f"{errno.errorcode.get(code, code)} ({os.strerror(code)})"


def find_key(obj, *patterns: str) -> list[tuple[str, object]]:
    """(key, value) pairs anywhere in a JSON object whose lowercased key contains a pattern."""
    hits = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            lk = k.lower().replace("_", "").replace("-", "")
            if any(p in lk for p in patterns):
                hits.append((k, v))
        for v in obj.values():
            hits.extend(find_key(v, *patterns))
    elif isinstance(obj, list):
        for v in obj:
            hits.extend(find_key(v, *patterns))
    return hits


def iter_tree(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            yield Path(dirpath) / n


# mag.json readers, tolerant of the key spelling (the spec fixes the content, not the names).

def mag_json_dtype(info: dict) -> str:
    for _k, v in find_key(info, "dtype", "voxeltype", "datatype", "elementtype", "type"):
        if isinstance(v, str):
            try:
                dt = np.dtype(v)
            except TypeError:
                continue
            if dt.kind in "uif":
                return dt.name
    raise AssertionError(f"mag.json names no numpy dtype: {info}")


def mag_json_int(info: dict, pattern: str) -> int:
    for _k, v in find_key(info, pattern):
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    raise AssertionError(f"mag.json has no integer {pattern!r} field: {info}")


def mag_json_side(info: dict) -> int:
    for _k, v in find_key(info, "shape", "side", "cubelength", "cubesize", "edge"):
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, list) and len(v) >= 3 and all(isinstance(i, int) for i in v[:3]):
            if v[0] == v[1] == v[2]:
                return v[0]
    raise AssertionError(f"mag.json says no cube shape: {info}")


# --------------------------------------------------------------------------------------------
# Zarr3 mags (webknossos's default format): the reference reader is tensorstore.


def zarr3_info(mag_dir: Path) -> dict:
    """dtype, channels and shard shape (x, y, z) of a Zarr3 mag (dimensions c, x, y, z)."""
    meta = json.loads((mag_dir / "zarr.json").read_text())
    grid = meta["chunk_grid"]["configuration"]["chunk_shape"]
    return {"dtype": np.dtype(meta["data_type"]), "channels": meta["shape"][0], "shard": tuple(grid[1:])}


def zarr3_cube_files(mag_dir: Path) -> list[tuple[int, int, int]]:
    """(x, y, z) of every shard file `c/0/X/Y/Z`, sorted."""
    found = []
    for p in (mag_dir / "c" / "0").glob("*/*/*"):
        if p.is_file() and all(part.isdigit() for part in (p.parent.parent.name, p.parent.name, p.name)):
            found.append((int(p.parent.parent.name), int(p.parent.name), int(p.name)))
    return sorted(found)


def zarr3_read_cube(mag_dir: Path, xyz: tuple[int, int, int]) -> np.ndarray:
    """The voxels of one shard as tensorstore reads them, as (z, y, x, c)."""
    import tensorstore as ts

    shard = zarr3_info(mag_dir)["shard"]
    array = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(mag_dir)}}).result()
    lo = [i * s for i, s in zip(xyz, shard)]
    arr = array[:, lo[0]:lo[0] + shard[0], lo[1]:lo[1] + shard[1], lo[2]:lo[2] + shard[2]].read().result()
    return np.ascontiguousarray(arr.transpose(3, 2, 1, 0))
