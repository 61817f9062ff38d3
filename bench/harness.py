"""Processes, mounts and numbers for bench.py: timed runs with peak memory, FUSE mounts that are
always unmounted, page-cache dropping, medians and the result table."""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

TIME_BIN = "/usr/bin/time"


class BenchError(RuntimeError):
    pass


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---- processes -----------------------------------------------------------------------------


class PidFile:
    """Records the long-running processes we start (pid and start time) so run.sh can stop them
    if this Python process dies without cleaning up."""

    def __init__(self, path):
        self.path = path
        self.entries = {}

    @staticmethod
    def start_time(pid):
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]  # field 22

    def add(self, pid):
        try:
            self.entries[pid] = self.start_time(pid)
        except OSError:
            return
        self._write()

    def remove(self, pid):
        self.entries.pop(pid, None)
        self._write()

    def _write(self):
        with open(self.path, "w") as f:
            for pid, start in self.entries.items():
                f.write(f"{pid} {start}\n")


@dataclass
class Sample:
    seconds: float  # wall time of the whole process (or of the measured steps)
    rss_kib: int | None  # peak resident set size
    inproc: float | None = None  # time reported by the process itself (after imports)
    extra: dict = field(default_factory=dict)


def run(cmd, timeout=600, check=True, **kwargs):
    """Run an untimed helper command; raise with its stderr when it fails."""
    full = ["timeout", "-k", "10", str(int(timeout))] + [str(c) for c in cmd]
    proc = subprocess.run(full, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def run_timed(cmd, rss_path, timeout=1800, stdout_path=None):
    """Run `cmd` under /usr/bin/time and timeout; return wall seconds, max RSS (KiB) and, if the
    command printed a JSON line, its `seconds` as the in-process time."""
    full = [TIME_BIN, "-f", "%M", "-o", rss_path, "timeout", "-k", "10", str(int(timeout))]
    full += [str(c) for c in cmd]
    out = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(full, stdout=out, stderr=subprocess.PIPE, timeout=timeout + 60)
        seconds = time.perf_counter() - t0
    finally:
        if stdout_path:
            out.close()
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-2000:]
        raise BenchError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {err}")
    with open(rss_path) as f:
        rss = int(f.read().split()[-1])
    info = {}
    if not stdout_path:
        lines = proc.stdout.decode(errors="replace").strip().splitlines()
        if lines and lines[-1].startswith("{"):
            info = json.loads(lines[-1])
    return Sample(seconds, rss, info.pop("seconds", None), info)


def drop_caches():
    """Write back dirty pages and drop the page cache; False when not permitted."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


# ---- mounts --------------------------------------------------------------------------------


def thread_states(pid):
    """Each thread's state and kernel wait channel, for a report about a hung server."""
    states = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                    wchan = f.read().strip() or "-"
            except OSError:
                continue
            key = f"{state}:{wchan}"
            states[key] = states.get(key, 0) + 1
    except OSError:
        return "gone"
    return ", ".join(f"{n}x {k}" for k, n in sorted(states.items()))


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


class Mount:
    """A FUSE server run in the foreground as our child; stop() unmounts and reaps it.

    Peak memory is the server's VmHWM, sampled from /proc while it runs."""

    active = set()
    incidents = []  # servers that had to be stopped by a signal

    def __init__(self, name, argv, mountpoint, unmount_argv, logdir, pidfile):
        self.name, self.argv, self.mountpoint = name, [str(a) for a in argv], str(mountpoint)
        self.unmount_argv = [str(a) for a in unmount_argv]
        self.logpath = os.path.join(logdir, f"mount-{name}.log")
        self.pidfile = pidfile
        self.proc = None
        self.peak_kib = None
        self._stop_sampler = threading.Event()

    def start(self, timeout=30):
        os.makedirs(self.mountpoint, exist_ok=True)
        if is_mounted(self.mountpoint):
            raise BenchError(f"{self.mountpoint} is already mounted")
        logfile = open(self.logpath, "ab")
        # Own session: a Ctrl-C reaches bench.py, which then unmounts cleanly.
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logfile,
                                     stderr=logfile, start_new_session=True)
        logfile.close()
        Mount.active.add(self)
        self.pidfile.add(self.proc.pid)
        deadline = time.monotonic() + timeout
        while not is_mounted(self.mountpoint):
            if self.proc.poll() is not None:
                self.stop()
                raise BenchError(f"{self.name} exited ({self.proc.returncode}) before mounting; see {self.logpath}")
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"{self.name} did not mount within {timeout} s; see {self.logpath}")
            time.sleep(0.02)
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self):
        while not self._stop_sampler.is_set():
            self._read_hwm()
            self._stop_sampler.wait(0.05)

    def _read_hwm(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        value = int(line.split()[1])
                        self.peak_kib = max(self.peak_kib or 0, value)
        except (OSError, ValueError):
            pass

    def stop(self, timeout=120):
        """Unmount (the server flushes and exits), reap the process; never leave either behind."""
        if self.proc is None:
            return
        self._read_hwm()
        try:
            unmounted = "was not mounted"
            if is_mounted(self.mountpoint):
                done = subprocess.run(["timeout", "-k", "5", str(timeout)] + self.unmount_argv,
                                      capture_output=True, text=True)
                unmounted = f"unmount exit {done.returncode} {done.stderr.strip()[-300:]!r}"
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                still = "still mounted" if is_mounted(self.mountpoint) else "no longer mounted"
                message = (f"{self.name} (pid {self.proc.pid}) did not exit {timeout} s after the unmount "
                           f"({unmounted}; {still}); threads: {thread_states(self.proc.pid)}"
                           f"{self._backtraces()}")
                log(f"bench: {message}; stopping it")
                Mount.incidents.append(message)
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            if is_mounted(self.mountpoint):
                subprocess.run(["timeout", "20", "fusermount3", "-uz", self.mountpoint], capture_output=True)
        finally:
            self._stop_sampler.set()
            self.pidfile.remove(self.proc.pid)
            Mount.active.discard(self)
            self.proc = None

    def _backtraces(self):
        """Where a server that does not exit waits: every thread's stack (gdb), into a file."""
        if not shutil.which("gdb"):
            return ""
        path = os.path.join(os.path.dirname(self.logpath), f"hang-{self.name}-{self.proc.pid}.txt")
        with open(path, "w") as out:
            subprocess.run(["timeout", "60", "gdb", "-p", str(self.proc.pid), "-batch", "-ex", "thread apply all bt"],
                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        return f"; stacks in {path}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @classmethod
    def stop_all(cls):
        for mount in list(cls.active):
            try:
                mount.stop(timeout=30)
            except Exception as e:  # keep stopping the others
                log(f"bench: could not stop {mount.name}: {e}")


# ---- numbers -------------------------------------------------------------------------------


@dataclass
class Stats:
    label: str
    samples: list

    def median(self):
        return statistics.median(s.seconds for s in self.samples)

    def inproc_median(self):
        values = [s.inproc for s in self.samples if s.inproc is not None]
        return statistics.median(values) if values else None

    def peak_rss_kib(self):
        values = [s.rss_kib for s in self.samples if s.rss_kib is not None]
        return max(values) if values else None

    def as_json(self):
        return {
            "label": self.label,
            "seconds": [round(s.seconds, 4) for s in self.samples],
            "median_s": round(self.median(), 4),
            "inproc_median_s": None if self.inproc_median() is None else round(self.inproc_median(), 4),
            "peak_rss_kib": self.peak_rss_kib(),
            "extra": [s.extra for s in self.samples],
        }


def measure_group(reps, runners, title):
    """Run every labelled runner once per repetition, back to back; the order alternates
    (forward, then backward) between repetitions. Returns {label: Stats}."""
    labels = list(runners)
    samples = {label: [] for label in labels}
    for rep in range(reps):
        order = labels if rep % 2 == 0 else labels[::-1]
        for label in order:
            sample = runners[label]()
            samples[label].append(sample)
            rss = "-" if sample.rss_kib is None else f"{sample.rss_kib / 1024:.0f} MiB"
            inproc = "" if sample.inproc is None else f" (in-process {sample.inproc:.2f} s)"
            log(f"  {title} | {label} | run {rep + 1}/{reps}: {sample.seconds:.2f} s{inproc}, peak RSS {rss}")
    return {label: Stats(label, samples[label]) for label in labels}


def row(benchmark, data, wkfs, other, note=""):
    ratio = other.median() / wkfs.median() if wkfs.median() > 0 else None
    return {
        "benchmark": benchmark,
        "data": data,
        "wkfs": wkfs.as_json(),
        "other": other.as_json(),
        "ratio": None if ratio is None else round(ratio, 3),
        "note": note,
    }


def fmt_mib(kib):
    return "-" if kib is None else f"{kib / 1024:.0f}"


def fmt_s(value):
    return "-" if value is None else f"{value:.2f}"


def table(rows):
    """A plain-text table: one line per comparison."""
    head = ["benchmark", "data", "wkfs s", "other", "other s", "ratio", "other in-proc s",
            "RSS wkfs MiB", "RSS other MiB"]
    lines = []
    for r in rows:
        w, o = r["wkfs"], r["other"]
        lines.append([
            r["benchmark"], r["data"], fmt_s(w["median_s"]), o["label"], fmt_s(o["median_s"]),
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}", fmt_s(o["inproc_median_s"]),
            fmt_mib(w["peak_rss_kib"]), fmt_mib(o["peak_rss_kib"]),
        ])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    right = {2, 4, 5, 6, 7, 8}

    def fmt(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    out = [fmt(head), "  ".join("-" * w for w in widths)]
    previous = None
    for r, cells in zip(rows, lines):
        if previous is not None and r["benchmark"] != previous:
            out.append("")
        previous = r["benchmark"]
        out.append(fmt(cells))
    return "\n".join(out)


def mounts_under(path):
    root = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if p == root or p.startswith(root + "/")]


def rmtree(path):
    """Delete a directory tree, but never one with a mount inside (that would delete through it)."""
    if os.path.lexists(path):
        busy = mounts_under(path)
        if busy:
            raise BenchError(f"refusing to delete {path}: {busy[0]} is mounted")
        shutil.rmtree(path)
