"""Every message the manual quotes is one eigdist prints: each is triggered here and found in the output.

A quoted message is a code span (or a line of a code block) in README.md or docs/*.md that is a line
of the ``eigdist`` command's output: ``eigdist <command>: error: <message>``, or
``eigdist <command>: <message>`` for what a command says when it stops otherwise (Ctrl-C, a finished
session). ``…`` in a quote stands for text that varies (paths, dates, hashes). A quote without a
trigger in :data:`TRIGGERS`, and a trigger whose quote left the docs, fail: a message changed on either
side fails the tests. Messages the docs do not quote this way are described in words, not quoted.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from eigdist.cli.main import main
from tests.build_fixtures import make_tiny_set
from tests.nets import BAD_MODELS
from tests.profiles import make_profile
from tests.trial_fixtures import set_config_toml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: A line of the command's output: ``eigdist <command>: `` then the message.
QUOTE = re.compile(r"^eigdist [a-z]+: \S")
CODE_SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")


def quoted_messages() -> dict[str, str]:
    """Quote → the first page quoting it, from code spans and code-block lines (line breaks joined)."""
    found: dict[str, str] = {}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
        prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
        candidates = [line.strip() for block in blocks for line in block.splitlines()]
        candidates += [re.sub(r"\s*\n\s*", " ", span).strip() for span in CODE_SPAN.findall(prose)]
        for quote in candidates:
            if QUOTE.match(quote) and not quote.endswith(": error:"):  # `eigdist run: error:` alone is the form
                found.setdefault(quote, page.relative_to(ROOT).as_posix())
    return found


def pattern(quote: str) -> re.Pattern:
    """The quote as a pattern for one line of output; ``…`` matches any text on that line."""
    return re.compile("^" + ".*?".join(re.escape(part) for part in quote.split("…")), re.M)


def cli(folder: Path, monkeypatch, *argv: str) -> tuple[int, str]:
    """Run ``eigdist ARGV`` in-process in ``folder``; (exit status, stdout + stderr)."""
    monkeypatch.chdir(folder)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue() + err.getvalue()


# --- what the triggers need -------------------------------------------------------------------------------


def lab(folder: Path, *, days_old: int = 0) -> Path:
    """``folder`` with ``monitors/lab1.json`` (calibrated ``days_old`` days ago) and the set ``stimuli/demo``."""
    from experiments.monitor import save_profile, utc_now

    profile = make_profile(name="lab1")
    date = (utc_now() - timedelta(days=days_old)).isoformat(timespec="seconds")
    save_profile(replace(profile, calibration=replace(profile.calibration, date=date)), folder / "monitors")
    (folder / "stimuli" / "demo").mkdir(parents=True)
    make_tiny_set(folder / "stimuli" / "demo")
    return folder


SIMULATE = "weibull;seed=1"


def run_args(*more: str) -> list[str]:
    """``eigdist run`` of the lab's set and monitor by a simulated observer, as participant P01, session 1."""
    return ["run", "--stimuli", "stimuli/demo", "--monitor", "lab1", "--monitors", "monitors", "--participant",
            "P01", "--data", "data", "--pilot", "--simulate", SIMULATE, *more]


def recorded_session(folder: Path, config: Path, *, finish: bool) -> None:
    """Session P01/1 of the lab, opened as ``eigdist run`` records it (and run to its end if ``finish``)."""
    from eigdist_core.stimulus_set import StimulusSet
    from experiments.config import load_config
    from experiments.engine import open_engine, run_headless
    from experiments.observers import make_responder, parse_simulate

    responder = make_responder(parse_simulate(SIMULATE))
    engine = open_engine(StimulusSet.open(folder / "stimuli" / "demo"), load_config(config), folder / "data", "P01",
                         1, observer=responder.observer, calibrated=False, constants={"monitor": "lab1"},
                         metadata={"pilot": True, "simulate": SIMULATE})
    with engine.writer:
        if finish:
            run_headless(engine, responder)


SHORT = "[trials]\nper_condition = 2\npractice = 0\n"


def interrupt(monkeypatch, module: str, name: str) -> None:
    """Make ``module.name`` raise KeyboardInterrupt, as Ctrl-C would while it runs."""
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(f"{module}.{name}", stop)


# --- one trigger per quoted message -----------------------------------------------------------------------


def bad_participant(tmp: Path, mp) -> tuple[int, str]:
    return cli(tmp, mp, "run", "--stimuli", "stimuli/demo", "--monitor", "lab1", "--participant", "../x")


def bad_config(tmp: Path, mp) -> tuple[int, str]:
    (tmp / "bad.toml").write_text("[timing]\ntest_ms = -5\n")
    return cli(tmp, mp, "run", "--stimuli", "stimuli/demo", "--monitor", "lab1", "--participant", "P07",
               "--config", "bad.toml")


def unknown_key(tmp: Path, mp) -> tuple[int, str]:
    (tmp / "typo.toml").write_text("[timing]\ntest_msec = 50\n")
    return cli(tmp, mp, "run", "--stimuli", "stimuli/demo", "--monitor", "lab1", "--participant", "P07",
               "--config", "typo.toml")


def bad_simulate(tmp: Path, mp) -> tuple[int, str]:
    return cli(tmp, mp, "run", "--stimuli", "stimuli/demo", "--monitor", "lab1", "--participant", "P07",
               "--simulate", "weibull;slope=0")


def expired_calibration(tmp: Path, mp) -> tuple[int, str]:
    lab(tmp, days_old=41)
    return cli(tmp, mp, "run", "--stimuli", "stimuli/demo", "--monitor", "lab1", "--monitors", "monitors",
               "--participant", "P07")


def tampered_set(tmp: Path, mp) -> tuple[int, str]:
    lab(tmp)
    item = next((tmp / "stimuli" / "demo" / "items").glob("*.npy"))
    data = bytearray(item.read_bytes())
    data[len(data) - np.load(item).nbytes] ^= 1  # the first value's lowest bit: one problem, the sha256
    item.write_bytes(bytes(data))
    return cli(tmp, mp, *run_args())


def broken_profile(tmp: Path, mp) -> tuple[int, str]:
    lab(tmp)
    path = tmp / "monitors" / "lab1.json"
    profile = json.loads(path.read_text())
    del profile["calibration"]["lum_max"]
    path.write_text(json.dumps(profile))
    return cli(tmp, mp, "calibrate", "--monitors", "monitors", "show", "lab1")


def session_in_use(tmp: Path, mp) -> tuple[int, str]:
    from eigdist_core.locks import hold
    from experiments.datafile import session_paths

    lab(tmp)
    mp.chdir(tmp)
    with hold(session_paths(Path("data"), "P01", 1).lock, "another run"):
        return cli(tmp, mp, *run_args())


def run_interrupted(tmp: Path, mp) -> tuple[int, str]:
    lab(tmp)
    interrupt(mp, "experiments.session", "run_prepared")
    return cli(tmp, mp, *run_args())


def build_interrupted(tmp: Path, mp) -> tuple[int, str]:
    interrupt(mp, "eigdist_core.build", "build_set")
    return cli(tmp, mp, "stimuli", "build", "demo_quick")


def resume_with_other_config(tmp: Path, mp) -> tuple[int, str]:
    lab(tmp)
    (tmp / "first.toml").write_text(SHORT + "[timing]\ntest_ms = 30\n")
    (tmp / "now.toml").write_text(SHORT + "[timing]\ntest_ms = 50\n")
    recorded_session(tmp, tmp / "first.toml", finish=False)
    return cli(tmp, mp, *run_args("--resume", "--config", "now.toml"))


def resume_finished(tmp: Path, mp) -> tuple[int, str]:
    lab(tmp)
    (tmp / "short.toml").write_text(SHORT)
    recorded_session(tmp, tmp / "short.toml", finish=True)
    status, output = cli(tmp, mp, *run_args("--resume", "--config", "short.toml"))
    assert status == 0, output
    return 1, output  # exit 0 by design; the message is what is checked


def older_set(tmp: Path, mp) -> tuple[int, str]:
    folder = tmp / "stimuli" / "old"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"schema_version": 1}')
    return cli(tmp, mp, "analyze", "data", "--out", "out", "--stimuli", "stimuli/old")


def bad_trial_value(tmp: Path, mp) -> tuple[int, str]:
    from eigdist_core.contract import REQUIRED_COLUMNS

    row = {"participant": "p01", "session": 1, "image_id": "img", "model": "net", "layer": "l", "weights": "w",
           "direction": "max", "item_id": "img__net__l__w__max0", "alpha": 0.1, "correct": "true",
           "n_alternatives": 2, "task": "2afc_ref", "is_catch": "false", "catch_type": "n/a",
           "is_practice": "false", "observer": "human", "calibrated": "true", "set_id": "0123456789abcdef",
           "alpha_ceiling": 1.0}
    lines = ["\t".join(REQUIRED_COLUMNS)]
    for trial in range(1, 6):  # file lines 2-6; line 6 has the bad alpha
        values = dict(row, trial=trial, alpha=-0.1 if trial == 5 else 0.1)
        lines.append("\t".join(str(values[c]) for c in REQUIRED_COLUMNS))
    path = tmp / "data" / "sub-p01" / "ses-1" / "beh" / "sub-p01_ses-1_task-noticeability_beh.tsv"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n")
    return cli(tmp, mp, "analyze", "data", "--out", "out")


def nondeterministic_model(tmp: Path, mp) -> tuple[int, str]:
    (tmp / "bad_models.py").write_text(BAD_MODELS)
    return cli(tmp, mp, "synth", "--model", "python:bad_models.py:dropout", "--image", "camera", "--size", "16",
               "--out", "out")


def dead_model(tmp: Path, mp) -> tuple[int, str]:
    (tmp / "bad_models.py").write_text(BAD_MODELS)
    config = set_config_toml("bad", "camera", "grey").replace('"resnet18:conv1"', '"python:bad_models.py:dead"')
    (tmp / "bad.toml").write_text(config.replace('"random:0"', '"factory"'))
    return cli(tmp, mp, "stimuli", "build", "bad.toml", "--out", "set", "--quiet")


#: Quote (as the docs write it) → what makes eigdist print it.
TRIGGERS: dict[str, Callable] = {
    "eigdist run: error: participant ID must be letters and digits only (a BIDS label, [A-Za-z0-9]+), got '../x'":
        bad_participant,
    "eigdist run: error: bad.toml: timing.test_ms must be a number > 0, got -5": bad_config,
    "eigdist run: error: typo.toml: unknown key 'timing.test_msec'; allowed: feedback_ms, fixation_ms, isi_ms, "
    "reference_ms, test_ms": unknown_key,
    "eigdist run: error: --simulate weibull: slope must be in (0, 100], got '0'": bad_simulate,
    "eigdist run: error: monitor 'lab1': field 'calibration.date' … is 41 days old; calibrations expire after 30 "
    "days …": expired_calibration,
    "eigdist run: error: stimulus set 'stimuli/demo' failed verification (1 problem(s)): items/…npy: sha256 … "
    "differs …": tampered_set,
    "eigdist calibrate: error: …/lab1.json: calibration: field 'lum_max' is missing": broken_profile,
    "eigdist run: error: session sub-P01 ses-1 in …/data is in use by another process (pid …": session_in_use,
    "eigdist run: interrupted; every finished trial is saved; rerun with --resume to continue": run_interrupted,
    "eigdist stimuli: interrupted; rerun the same command to resume": build_interrupted,
    "eigdist run: error: cannot resume …: config.timing.test_ms was 30.0 when the session started, now 50.0 "
    "(--config differs); …": resume_with_other_config,
    "eigdist run: session … is finished (… of … trials); nothing to resume, nothing changed": resume_finished,
    "eigdist analyze: error: …/manifest.json: schema_version must be 2, got 1; it was built by an older eigdist: "
    "build it again with 'eigdist stimuli build CONFIG --force'": older_set,
    "eigdist analyze: error: data/sub-p01/ses-1/beh/sub-p01_ses-1_task-noticeability_beh.tsv, row 6, column "
    "'alpha': bad value '-0.1'; a finite number >= 0": bad_trial_value,
    "eigdist synth: error: --model python:bad_models.py:dropout (factory) at --image camera (16 px): model is not "
    "deterministic: two calls on the same image differ by up to …; turn off dropout or noise in its forward "
    "(training=False)": nondeterministic_model,
    "eigdist stimuli: error: image 'camera', model python:bad_models.py:dead (factory): model response does not "
    "change with the image here (Fisher matrix 0, e.g. a dead ReLU layer): no direction is more or less noticeable "
    "than another; use another layer or image": dead_model,
}

QUOTES = quoted_messages()


def test_every_quoted_message_has_a_trigger_and_every_trigger_a_quote():
    assert set(QUOTES) - set(TRIGGERS) == set(), "quoted in the docs, not triggered here (add to TRIGGERS)"
    assert set(TRIGGERS) - set(QUOTES) == set(), "triggered here, no longer quoted in the docs (remove it)"


@pytest.mark.parametrize("quote", sorted(TRIGGERS), ids=[TRIGGERS[q].__name__ for q in sorted(TRIGGERS)])
def test_quoted_message_is_what_eigdist_prints(quote, tmp_path, monkeypatch):
    monkeypatch.setenv("EIGDIST_MONITORS", str(tmp_path / "monitors"))
    status, output = TRIGGERS[quote](tmp_path, monkeypatch)
    assert status != 0, output
    assert pattern(quote).search(output), f"{QUOTES.get(quote, 'the docs')} quotes\n  {quote}\neigdist printed\n  {output}"


def test_the_quote_pattern_needs_every_literal_part():
    quote = "eigdist run: error: monitor 'lab1': field … is 41 days old; …"
    assert pattern(quote).search("eigdist run: error: monitor 'lab1': field 'x' 2026 is 41 days old; expire")
    assert not pattern(quote).search("eigdist run: error: monitor 'lab1': field 'x' 2026 is 40 days old; expire")
    assert not pattern(quote).search("eigdist run: error: monitor 'lab1': field\n is 41 days old; expire")
    assert not pattern(quote).search("eigdist run: monitor 'lab1': field 'x' 2026 is 41 days old; expire")
