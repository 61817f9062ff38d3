"""A real single-node SLURM cluster for the tests, started and stopped by them.

`munged`, `slurmctld` and `slurmd` (Debian's `munge` and `slurm-wlm`, installed by `make deps`)
run as this user with a private key, socket, state directory and free ports under one folder, so
nothing of the machine's own configuration is used or changed. Jobs run on this machine, as this
user, with the test's environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_programs() -> list[str]:
    return [p for p in ("munged", "slurmctld", "slurmd", "sbatch", "sinfo") if shutil.which(p) is None
            and not Path("/usr/sbin", p).exists()]


def _program(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SlurmCluster:
    """One controller and one compute node on this host."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.folder / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def start(self, timeout: float = 30) -> "SlurmCluster":
        f = self.folder
        for sub in ("state", "spool", "log"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        key = f / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        self._run([_program("munged"), "--force", f"--key-file={key}", f"--socket={f / 'munge.socket'}",
                   f"--pid-file={f / 'munged.pid'}", f"--log-file={f / 'log' / 'munged.log'}",
                   f"--seed-file={f / 'munge.seed'}"])
        cpus = os.cpu_count() or 1
        self.conf.write_text("\n".join([
            "ClusterName=wkfstest",
            f"SlurmctldHost={self.host}",
            f"SlurmUser={os.environ.get('USER', 'root') if os.getuid() != 0 else 'root'}",
            "AuthType=auth/munge",
            f"AuthInfo=socket={f / 'munge.socket'}",
            "CredType=cred/munge",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SchedulerType=sched/builtin",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={f / 'log' / 'slurmd.log'}",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "ReturnToService=2",
            "MpiDefault=none",
            "JobCompType=jobcomp/none",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            # Array tasks share the cores: 4 tasks run at once on a 2-core machine.
            f"NodeName={self.host} CPUs={cpus} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4",
            "",
        ]))
        self._run([_program("slurmctld"), "-f", str(self.conf)])
        self._run([_program("slurmd"), "-f", str(self.conf)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated"):
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the SLURM node did not come up in {timeout} s:\n{self.logs()}")

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}\n{self.logs()}")

    def sbatch(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """`sbatch --wait ARGS`: returns when the job (every task of an array) ended."""
        return subprocess.run(["sbatch", "--wait", *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def logs(self) -> str:
        parts = []
        for log in sorted((self.folder / "log").glob("*.log")):
            parts.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:]))
        return "\n".join(parts)

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            pidfile = self.folder / f"{name}.pid"
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
