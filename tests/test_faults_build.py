"""Faults during a build (issue 16): SIGKILL and SIGINT at random points, 20 times each, then a rerun.

After every interruption the folder holds only whole files and a manifest whose items are each listed
once with their sha256; SIGINT exits 130 with the resume message and leaves no temporary file; the
rerun ends with the bytes of an uninterrupted build. Builds run in forked children of this process
(no interpreter start-up per run), on a tiny front-end set.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
import skimage.data  # noqa: F401 (imported once here, so a forked build starts at once)
import torch  # noqa: F401

import eigdist_core.build  # noqa: F401
import eigdist_core.models.frontend  # noqa: F401
from eigdist.cli.main import main
from eigdist_core.io import load_json
from eigdist_core.stimulus_set import verify_set
from tests.build_fixtures import fingerprint

TRIALS = 20

CONFIG = """\
name = "faults"
images = ["camera", "coffee", "chelsea"]
size = 16
alpha_max = 2.0

[[models]]
spec = "frontend:ln"
weights = "published"
"""


def start(config: Path, out: Path, log: Path) -> int:
    """Fork a child that runs ``eigdist stimuli build``; its stderr goes to ``log``; return its pid."""
    log.write_text("")  # here, not in the child: a signal can come before the child opens it
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            torch.set_num_threads(1)  # a forked child stays out of the parent's OpenMP pool
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # past pytest's capture, into the log
            sys.stdout = open(1, "w", closefd=False)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            code = main(["stimuli", "build", str(config), "--out", str(out), "--quiet"])
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def finish(pid: int) -> int:
    """Wait for the child; its exit status, or minus the signal that killed it."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp")) if folder.exists() else []


def assert_whole(folder: Path) -> None:
    """What an interrupted build leaves: nothing, or a manifest whose listed items are each once and intact."""
    if not (folder / "manifest.json").exists():
        return
    manifest = load_json(folder / "manifest.json")  # atomic: always a whole JSON file
    ids = [it["item_id"] for it in manifest["items"]]
    assert len(ids) == len(set(ids))
    problems = [p for p in verify_set(folder) if "complete = false" not in p]
    assert problems == [], problems


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path, float]:
    base = tmp_path_factory.mktemp("faults")
    config = base / "faults.toml"
    config.write_text(CONFIG)
    began = time.monotonic()
    assert finish(start(config, base / "ref", base / "ref.log")) == 0, (base / "ref.log").read_text()
    return config, base / "ref", time.monotonic() - began


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_builds_resume_to_the_uninterrupted_bytes(reference, tmp_path, sig):
    """Runs on one folder, each stopped at a random moment, each resuming the last, until TRIALS stops;
    whenever a run completes (the signal came after its end) the folder must equal the reference."""
    config, ref, duration = reference
    expected = fingerprint(ref)
    rng = random.Random(16 + sig)
    stops = completed = runs = 0
    out = tmp_path / "set0"
    while stops < TRIALS:
        runs += 1
        assert runs <= 5 * TRIALS, f"only {stops} of {runs} runs were stopped"
        log = tmp_path / f"run{runs}.log"
        pid = start(config, out, log)
        time.sleep(rng.uniform(0.01, duration))  # 10 ms: the child is inside main() (it imports nothing)
        os.kill(pid, sig)
        code = finish(pid)
        err = log.read_text()
        assert "Traceback" not in err, err
        if code == 0:  # finished before the signal: the resumed build is the uninterrupted one
            assert verify_set(out) == [] and fingerprint(out) == expected and temporaries(out) == []
            completed += 1
            out = tmp_path / f"set{runs}"
            # The reference's time was measured once; if the machine got faster since (its load fell),
            # most signals would come after the end: narrow the window, or too few runs are stopped.
            duration = max(0.05, duration / 2)
            continue
        stops += 1
        if sig == signal.SIGINT:
            assert code == 130, err
            assert "interrupted; rerun the same command to resume" in err  # "eigdist stimuli: …" once inside the command
            assert temporaries(out) == []  # nothing half-written stays behind
        else:
            assert code == -signal.SIGKILL, err
        assert_whole(out)
    assert finish(start(config, out, tmp_path / "last.log")) == 0, (tmp_path / "last.log").read_text()
    assert verify_set(out) == [] and fingerprint(out) == expected and temporaries(out) == []
    print(f"{sig!r}: {stops} runs stopped, {completed + 1} folders resumed to the reference bytes, {runs + 1} runs")
