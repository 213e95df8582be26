"""Stimulus-set builds by SLURM job arrays on a real single-node cluster (tests/slurm_cluster.py).

One tiny set (a grey 16×16 image × frontend:ln, frontend:onoff; max and min: 2 jobs, 4 items) is
built by ``eigdist stimuli build --executor slurm`` and compared with the local build byte for byte.
Each job starts Python and imports torch (seconds), so the tests keep the number of jobs small.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from eigdist_core.build import build_set
from eigdist_core.executors import ClusterError, SlurmOptions, run_submitit
from eigdist_core.io import load_json
from eigdist_core.stimulus_set import verify_set
from tests.slurm_cluster import ROOT, SlurmCluster, slurm_cluster  # noqa: F401 (fixture)
from tests.build_fixtures import fingerprint

CONFIG = """\
name = "tiny"
images = ["camera"]
color = "grey"
size = 16
value_range = [0.2, 0.8]
alpha_max = 2.0
directions = ["max", "min"]
seed = 0

[[models]]
spec = "frontend:ln"
weights = "published"

[[models]]
spec = "frontend:onoff"
weights = "published"
"""
JOBS, ITEMS = 2, 4


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def local_set(config, tmp_path_factory) -> Path:
    return build_set(config, tmp_path_factory.mktemp("local") / "set", jobs=1, progress=False)


def build_command(config: Path, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "eigdist", "stimuli", "build", str(config), "--out", str(out), "--quiet",
            "--executor", "slurm", "--time", "5", "--cpus", "1", *options]


@dataclass(frozen=True)
class SlurmBuild:
    folder: Path
    logs: Path
    array_id: str
    run: subprocess.CompletedProcess
    spans: dict[str, tuple[datetime, datetime]]  # array task → (start, end), from squeue


@pytest.fixture(scope="module")
def slurm_build(slurm_cluster: SlurmCluster, config, tmp_path_factory) -> SlurmBuild:
    """One build of the set through the command line by a job array, at most one job running at a time."""
    base = tmp_path_factory.mktemp("slurm")
    folder, logs = base / "set", base / "logs"
    cmd = build_command(config, folder, "--partition", slurm_cluster.partition, "--array-parallelism", "1",
                        "--log-folder", str(logs))
    run = subprocess.run(cmd, cwd=ROOT, env=slurm_cluster.env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    array_id = array_id_in(logs)
    assert array_id, sorted(logs.iterdir())
    # Finished jobs stay in squeue for MinJobAge (300 s): read their spans now.
    out = slurm_cluster.run("squeue", "--noheader", "--array", "--states=all", f"--jobs={array_id}", "--format=%i|%T|%S|%e")
    spans = {}
    for line in out.split():
        task, state, start, end = line.split("|")
        assert state == "COMPLETED", line
        spans[task] = (datetime.fromisoformat(start), datetime.fromisoformat(end))
    return SlurmBuild(folder, logs, array_id, run, spans)


def array_id_in(logs: Path) -> str | None:
    """The items' job array's id, from submitit's submission script ``<id>_submission.sh`` (``None``: not yet).

    A build submits two arrays: the items', then the sensitivity table's (a later, higher id).
    """
    ids = sorted(int(p.name.split("_")[0]) for p in logs.glob("*_submission.sh"))
    assert len(ids) <= 2, ids
    return str(ids[0]) if ids else None


def test_job_array_build_equals_the_local_build_byte_for_byte(slurm_build, local_set):
    assert verify_set(slurm_build.folder) == []
    assert len(load_json(slurm_build.folder / "manifest.json")["items"]) == ITEMS
    assert fingerprint(slurm_build.folder) == fingerprint(local_set)
    assert "OK, set" in slurm_build.run.stdout


def test_submitit_logs_land_in_the_log_folder(slurm_build):
    for task in range(JOBS):
        out = slurm_build.logs / f"{slurm_build.array_id}_{task}_0_log.out"
        err = slurm_build.logs / f"{slurm_build.array_id}_{task}_0_log.err"
        assert out.is_file() and err.is_file(), sorted(p.name for p in slurm_build.logs.iterdir())
        assert "Job completed successfully" in out.read_text(), out.read_text()  # submitit logs to stdout
    assert not (slurm_build.folder.parent / "set.slurm").exists()  # not the default folder: --log-folder won


def test_no_sacct_noise_without_accounting_storage(slurm_cluster, slurm_build):
    # The cluster has no accounting storage, so sacct fails there; eigdist watches jobs with squeue instead.
    with pytest.raises(subprocess.CalledProcessError):
        slurm_cluster.run("sacct", f"--jobs={slurm_build.array_id}")
    assert "sacct" not in slurm_build.run.stderr + slurm_build.run.stdout
    assert "WARNING" not in slurm_build.run.stderr


def test_array_parallelism_1_runs_the_jobs_one_at_a_time(slurm_build):
    script = (slurm_build.logs / f"{slurm_build.array_id}_submission.sh").read_text()
    assert f"#SBATCH --array=0-{JOBS - 1}%1" in script
    spans = sorted(slurm_build.spans.values())
    assert len(spans) == JOBS
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, slurm_build.spans  # each job starts after the one before it ended


@pytest.fixture
def in_cluster(slurm_cluster: SlurmCluster, monkeypatch) -> SlurmCluster:
    """This process submits to the cluster, and its jobs import this checkout."""
    for name in ("SLURM_CONF", "PYTHONPATH"):
        monkeypatch.setenv(name, slurm_cluster.env[name])
    return slurm_cluster


def test_scancel_mid_build_fails_naming_the_job_and_the_rerun_finishes_with_nothing_lost(
    in_cluster, config, local_set, tmp_path
):
    # In this process (a thread builds, the test cancels), with fast polling, to keep the test short.
    folder, logs = tmp_path / "set", tmp_path / "logs"
    options = SlurmOptions(log_folder=str(logs), partition=in_cluster.partition, time_min=5, array_parallelism=1)

    def runner(fn, tasks):
        return run_submitit(fn, tasks, options, poll_s=0.2, grace_s=1.0)

    raised: list[Exception] = []

    def build() -> None:
        try:
            build_set(config, folder, runner=runner, progress=False)
        except Exception as exc:  # noqa: BLE001 (checked below)
            raised.append(exc)

    thread = threading.Thread(target=build)
    thread.start()
    try:
        victim = first_running_task(in_cluster, logs, thread.is_alive)
        in_cluster.run("scancel", victim)
    finally:
        thread.join(timeout=300)
    assert not thread.is_alive() and len(raised) == 1, raised
    assert isinstance(raised[0], ClusterError), raised[0]
    message = str(raised[0])
    assert message.startswith(f"1 of {JOBS} jobs failed: {victim} ended CANCELLED without a result (log: {logs}/")
    assert message.endswith("run the same command again to compute only the missing ones.")
    manifest = load_json(folder / "manifest.json")
    assert manifest["complete"] is False and len(manifest["items"]) == ITEMS - 2  # the other job is recorded
    build_set(config, folder, runner=runner, progress=False)
    starts = [line for line in (folder / "build.log").read_text().splitlines() if " to do, " in line]
    assert f"{ITEMS} items, 2 to do, 1 groups" in starts[-1]  # only the cancelled job's group again
    assert fingerprint(folder) == fingerprint(local_set)


def first_running_task(cluster: SlurmCluster, logs: Path, building, timeout_s: float = 120) -> str:
    """The id (``<array>_<task>``) of the first task of the build's array that squeue shows running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and building():
        array_id = array_id_in(logs) if logs.is_dir() else None
        if array_id:
            running = cluster.run("squeue", "--noheader", "--array", "--states=running", "--format=%i",
                                  f"--jobs={array_id}").split()
            if running:
                return running[0]
        time.sleep(0.1)
    raise AssertionError(f"no job of the build ran within {timeout_s} s (build still going: {building()})")


def test_bad_partition_is_named_with_the_clusters_partitions(in_cluster, config, tmp_path, capsys):
    from eigdist.cli.main import main

    args = ["stimuli", "build", str(config), "--out", str(tmp_path / "set"), "--quiet", "--executor", "slurm",
            "--partition", "nope", "--log-folder", str(tmp_path / "logs")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("eigdist stimuli: error: SLURM refused the job array (sbatch: error: invalid partition "
                          "specified: nope; "), err
    assert f"partition 'nope' was not accepted; this cluster's partitions are {in_cluster.partition}" in err


def test_a_job_that_raises_is_reported_after_the_others_results(tmp_path):
    # submitit's local executor: no cluster needed; math.sqrt(-1) raises in its own process.
    options = SlurmOptions(log_folder=str(tmp_path), cluster="local", time_min=5)
    results = {}
    with pytest.raises(ClusterError, match=r"1 of 3 jobs failed: \S+ failed: ValueError: math domain error \(log: "):
        for task, result in run_submitit(math.sqrt, [4.0, -1.0, 9.0], options, poll_s=0.1):
            results[task] = result
    assert results == {4.0: 2.0, 9.0: 3.0}
