"""A real single-node SLURM cluster for tests: munged, slurmctld and slurmd in a temporary folder.

Import the fixture into a test module (``from tests.slurm_cluster import slurm_cluster``). It starts
once per test session, with its own munge key and socket, a slurm.conf on free ports (reached through
``SLURM_CONF``, so /etc/slurm is not touched), state, spool and logs in the folder, and one partition
``debug`` holding this machine; it stops every daemon at the end, also after a failure. It needs root
and Debian's ``munge slurmctld slurmd slurm-client`` (``.ci/setup`` installs them); without them the
tests are skipped with the reason, except under CI (``CI`` set), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTITION = "debug"
BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel")


@dataclass(frozen=True)
class SlurmCluster:
    """A running cluster: ``env`` reaches it (``SLURM_CONF``) and imports this checkout (``PYTHONPATH``)."""

    folder: Path
    env: dict[str, str]
    node: str
    partition: str = PARTITION

    def run(self, *cmd: str) -> str:
        """Run a SLURM command against this cluster; return its stdout."""
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60, check=True).stdout


def missing_capability() -> str | None:
    """Why this machine cannot run the cluster, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "a SLURM cluster in the tests needs root (slurmd starts jobs as their user)"
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"SLURM is not installed: {', '.join(missing)} not found (Debian: bash .ci/setup installs it)"
    return None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A single-node SLURM cluster, started once per session (skipped only where it cannot run)."""
    reason = missing_capability()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SLURM tests, but {reason}", pytrace=False)
        pytest.skip(reason)
    with start_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


@contextmanager
def start_cluster(folder: Path, timeout_s: float = 60.0) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd in ``folder``; wait until the node is idle; stop them all after."""
    node = socket.gethostname().split(".")[0]
    socket_path = folder / "munge" / "munge.socket"
    if len(str(socket_path)) > 100:  # a Unix socket path is limited to 108 bytes
        raise RuntimeError(f"{socket_path} is too long for a Unix socket: use a shorter --basetemp")
    env = _env(folder / "slurm.conf")
    for sub in ("munge", "state", "spool", "log"):
        (folder / sub).mkdir(mode=0o755, exist_ok=True)
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    ctld_port, slurmd_port = _free_ports(2)
    (folder / "slurm.conf").write_text(_slurm_conf(folder, node, ctld_port, slurmd_port))
    with ExitStack() as stack:
        daemons: list[tuple[str, subprocess.Popen]] = []

        def launch(name: str, *cmd: str) -> None:
            out = open(folder / "log" / f"{name}.out", "wb")
            stack.callback(out.close)
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            stack.callback(_stop, proc)  # callbacks run last first: slurmd, slurmctld, then munged
            daemons.append((name, proc))

        launch("munged", "munged", "--foreground", "--force", f"--socket={socket_path}", f"--key-file={key}",
               f"--log-file={folder / 'log' / 'munged.log'}", f"--pid-file={folder / 'munge' / 'munged.pid'}",
               f"--seed-file={folder / 'munge' / 'munged.seed'}")
        _wait(lambda: socket_path.exists(), daemons, folder, timeout_s, "munged to create its socket")
        launch("slurmctld", "slurmctld", "-D")
        launch("slurmd", "slurmd", "-D")
        cluster = SlurmCluster(folder, env, node)
        _wait(lambda: _node_state(cluster) == "idle", daemons, folder, timeout_s, f"node {node} to be idle in sinfo")
        stack.callback(_cancel_all, cluster)  # runs first: no job outlives its daemons
        yield cluster


def _env(conf: Path) -> dict[str, str]:
    # Variables of an enclosing SLURM job (tests run inside one) would leak into sbatch.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["SLURM_CONF"] = str(conf)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _slurm_conf(folder: Path, node: str, ctld_port: int, slurmd_port: int) -> str:
    cpus = os.cpu_count() or 1
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return f"""\
ClusterName=eigdisttest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder / 'munge' / 'munge.socket'}
StateSaveLocation={folder / 'state'}
SlurmdSpoolDir={folder / 'spool'}
SlurmctldPidFile={folder / 'slurmctld.pid'}
SlurmdPidFile={folder / 'slurmd.pid'}
SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}
SlurmdLogFile={folder / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
ReturnToService=2
# A cancelled job gets SIGKILL 2 s after SIGTERM (submitit's jobs ignore SIGTERM; the default is 30 s).
KillWait=2
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={max(1, mem_mb // 2)} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _node_state(cluster: SlurmCluster) -> str:
    try:
        return cluster.run("sinfo", "--noheader", "--format=%t", f"--nodes={cluster.node}").strip()
    except subprocess.SubprocessError:
        return ""  # the controller is not answering yet


def _wait(ready, daemons: list[tuple[str, subprocess.Popen]], folder: Path, timeout_s: float, what: str) -> None:
    """Poll ``ready()``; fail with the daemons' log tails when one exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        dead = [f"{name} exited with {proc.returncode}" for name, proc in daemons if proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            problem = ", ".join(dead) or f"gave up after {timeout_s:.0f} s"
            raise RuntimeError(f"waiting for {what}: {problem}\n{_log_tails(folder)}")
        time.sleep(0.2)


def _log_tails(folder: Path, lines: int = 15) -> str:
    parts = []
    for log in sorted((folder / "log").glob("*")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log}\n" + "\n".join(tail))
    return "\n".join(parts)


def _cancel_all(cluster: SlurmCluster, timeout_s: float = 20.0) -> None:
    """Cancel every job of the cluster and wait until none runs (best effort: the daemons stop next)."""
    try:
        cluster.run("scancel", "--user=root")
        deadline = time.monotonic() + timeout_s
        while cluster.run("squeue", "--noheader", "--states=running,completing").strip() and time.monotonic() < deadline:
            time.sleep(0.2)
    except subprocess.SubprocessError:
        pass


def _stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
