"""The trial design: conditions, Latin square, sessions, catch trials, balance, frames."""

from __future__ import annotations

from collections import Counter

import pytest

from experiments.datafile import read_trials, session_paths
from experiments.design import (
    conditions, frame_sequence, latin_square_row, latin_square_rows, participant_number, plan_session, schedule,
)
from tests.trial_fixtures import IMAGES, make_manifest, run_session, small_config


def test_conditions_follow_manifest():
    conds = conditions(make_manifest())
    assert len(conds) == 3 * 2 * 3
    assert conds[0].key == ("parrot", "resnet18", "conv1", "random:0", "max")
    assert all(c.alpha_ceiling == 0.8 for c in conds)  # min(set alpha_max, alpha_displayable_max)


@pytest.mark.parametrize("change,message", [
    (lambda m: m.pop("alpha_max"), "stimulus-set manifest has no 'alpha_max'"),
    (lambda m: m["items"][0].update(direction="sideways"), "direction must be one of max, min, random, gen_top, gen_bottom, principal_a, principal_b, got 'sideways'"),
    (lambda m: m["items"][0].update(image_id="cat"), "image_id 'cat' is not among the set's images"),
    (lambda m: m["items"].append(dict(m["items"][0], item_id="dup")), "share the condition"),
    (lambda m: m.update(items=[]), "stimulus set has no items"),
])
def test_bad_manifest_is_named(change, message):
    manifest = make_manifest()
    change(manifest)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        conditions(manifest)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_latin_square_is_carry_over_balanced_over_one_cycle(n):
    """Williams: over one cycle (n rows for even n, 2n for odd n) every ordered pair of images is
    adjacent equally often and every image holds every position equally often. For odd n the n
    cyclic rows alone are not balanced (n = 3: 0→2 twice, 0→1 never)."""
    cycle = latin_square_rows(n)
    assert cycle == (n if n % 2 == 0 else 2 * n)
    rows = [latin_square_row(n, r) for r in range(cycle)]
    assert all(sorted(row) == list(range(n)) for row in rows)
    assert all(Counter(col) == {i: cycle // n for i in range(n)} for col in zip(*rows))
    pairs = Counter((row[i], row[i + 1]) for row in rows for i in range(n - 1))
    assert len(pairs) == n * (n - 1) and set(pairs.values()) == {cycle // n}
    assert [latin_square_row(n, r + cycle) for r in range(cycle)] == rows   # participants cycle through


def test_participant_number():
    assert participant_number("P07") == 7
    assert participant_number("sub-12") == 12
    assert participant_number("anna") == participant_number("anna") != participant_number("bert")


def test_schedule_splits_images_into_sessions_and_visits():
    config = small_config(images_per_session=2, visits_per_image=2)
    sessions = schedule(make_manifest(), config, "P01")
    assert [len(s) for s in sessions] == [2, 2, 2]
    blocks = [b for s in sessions for b in s]
    assert sorted(blocks) == sorted((im, v) for im in IMAGES for v in (0, 1))
    assert [v for _, v in blocks] == [0, 0, 0, 1, 1, 1]
    orders = {tuple(im for im, v in schedule(make_manifest(), config, f"P0{p}")[0]) for p in range(3)}
    assert len(orders) == 3  # participants start with different images


def test_plan_counts_balance_and_catch_rate():
    config = small_config(per_condition=20, practice=6, images_per_session=2)
    plan = plan_session(make_manifest(), config, "P02", 1)
    trials = plan.trials
    assert [t.trial for t in trials] == list(range(1, len(trials) + 1))
    practice = [t for t in trials if t.is_practice]
    assert len(practice) == 6 and all(t.block == 0 for t in practice) and trials[:6] == tuple(practice)
    main = [t for t in trials if not t.is_practice]
    tracked = [t for t in main if not t.is_catch]
    per_cond = Counter(t.condition.key for t in tracked)
    assert len(per_cond) == 2 * 2 * 3 and set(per_cond.values()) == {20}
    assert {k[0] for k in per_cond} == {im for im, _ in plan.blocks}
    catch = [t for t in main if t.is_catch]
    assert abs(len(catch) / len(main) - 0.08) < 0.01
    assert Counter(t.catch_type for t in catch) == {"easy": len(catch) // 2, "blank": len(catch) // 2}
    for key in per_cond:  # target interval balanced within every condition
        targets = Counter(t.target_interval for t in tracked if t.condition.key == key)
        assert targets == {1: 10, 2: 10}
    signs = Counter(t.eig_sign for t in trials)
    assert set(signs) == {-1, 1} and min(signs.values()) > len(trials) * 0.35
    # conditions interleaved: within a block no long runs of one condition
    first_block = [t.condition.key for t in tracked if t.block == 1]
    assert len({k for k in first_block[:20]}) > 3
    assert plan == plan_session(make_manifest(), config, "P02", 1)  # deterministic: resumable


def test_easy_catches_show_max_directions_only():
    """Easy catches measure attention: they cycle through the block's max conditions (both layers);
    a set without max items gets blank catches only, at the same catch rate."""
    config = small_config(per_condition=20, images_per_session=2, catch_rate=0.3)
    catch = [t for t in plan_session(make_manifest(), config, "P01", 1).trials if t.is_catch]
    easy = [t for t in catch if t.catch_type == "easy"]
    assert {t.condition.direction for t in easy} == {"max"}
    for block in {t.block for t in easy}:                                  # cycled: balanced within 1
        layers = Counter(t.condition.layer for t in easy if t.block == block)
        assert set(layers) == {"conv1", "layer2"} and abs(layers["conv1"] - layers["layer2"]) <= 1
    assert {t.condition.direction for t in catch if t.catch_type == "blank"} == {"max", "min", "random"}
    no_max = make_manifest()
    no_max["items"] = [it for it in no_max["items"] if it["direction"] != "max"]
    catch_no_max = [t for t in plan_session(no_max, config, "P01", 1).trials if t.is_catch]
    assert {t.catch_type for t in catch_no_max} == {"blank"}
    assert len(catch_no_max) == 2 * round(0.3 * 20 * 4 / 0.7)               # 2 blocks of 4 conditions


def test_breaks_every_n_and_at_blocks():
    config = small_config(per_condition=20, practice=4, break_every=50)
    trials = plan_session(make_manifest(), config, "P01", 1).trials
    breaks = [t.trial for t in trials if t.break_before]
    firsts = [t.trial for t in trials[1:] if t.block != trials[t.trial - 2].block]
    assert set(firsts) <= set(breaks)
    gaps = [b - a for a, b in zip(breaks, breaks[1:])]
    assert max(gaps) <= 50


def test_oddity_targets_use_three_intervals():
    config = small_config(task="3afc_oddity", per_condition=9)
    tracked = [t for t in plan_session(make_manifest(), config, "P01", 1).trials if not t.is_catch and not t.is_practice]
    assert set(Counter(t.target_interval for t in tracked).values()) == {len(tracked) // 3}


def test_bad_session_is_named():
    with pytest.raises(ValueError, match=r"session must be an int between 1 and 2 .* got 3"):
        plan_session(make_manifest(), small_config(), "P01", 3)


def test_frame_sequences():
    timing = small_config().timing
    seq = frame_sequence("2afc_ref", timing, 60, 2)
    assert [s.name for s in seq] == ["fixation", "reference", "isi", "test1", "isi", "test2", "response"]
    assert [s.content for s in seq] == ["fixation", "image", "blank", "image", "blank", "distorted", "blank"]
    assert [s.n_frames for s in seq] == [30] * 6 + [0]
    odd = frame_sequence("3afc_oddity", timing, 120, 1)
    assert [s.content for s in odd if s.name.startswith("test")] == ["distorted", "image", "image"]
    assert odd[1].n_frames == 60
    with pytest.raises(ValueError, match="target_interval must be between 1 and 2 for 2afc_ref, got 3"):
        frame_sequence("2afc_ref", timing, 60, 3)
    with pytest.raises(ValueError, match="task must be 2afc_ref or 3afc_oddity, got 'yesno'"):
        frame_sequence("yesno", timing, 60, 1)


def test_simulated_session_rows_follow_design(tmp_path):
    """The written file holds the plan: counts per condition, catch share, balance, α rules."""
    config = small_config(per_condition=16)
    run_session(tmp_path, config=config)
    rows = read_trials(session_paths(tmp_path, "P01", 1).trials)
    plan = plan_session(make_manifest(), config, "P01", 1)
    assert len(rows) == len(plan.trials)
    assert [r["trial"] for r in rows] == list(range(1, len(rows) + 1))
    tracked = [r for r in rows if not r["is_catch"] and not r["is_practice"]]
    per_cond = Counter((r["image_id"], r["layer"], r["direction"]) for r in tracked)
    assert set(per_cond.values()) == {16} and len(per_cond) == 12
    main = [r for r in rows if not r["is_practice"]]
    assert abs(sum(r["is_catch"] for r in main) / len(main) - 0.08) < 0.01
    blank = [r for r in rows if r["catch_type"] == "blank"]
    assert blank and all(r["alpha"] == 0 and r["item_id"] is None and r["log10_alpha"] is None for r in blank)
    easy = [r for r in rows if r["catch_type"] == "easy"]
    assert easy and all(0 < r["alpha"] <= 0.8 for r in easy)
    assert all(r["alpha"] == 0.4 for r in rows if r["is_practice"])  # practice_alpha_ratio × alpha_max
    assert Counter(r["target_interval"] for r in tracked) == {1: len(tracked) // 2, 2: len(tracked) // 2}
    assert all(r["correct"] == (r["response"] == r["target_interval"]) for r in rows)
    assert all(0 < r["alpha"] <= 0.8 for r in tracked)


def test_trial_modules_import_without_display_or_torch():
    """design, staircase, datafile, observers, engine, config: no PsychoPy window, no torch at import."""
    import subprocess
    import sys

    code = ("import sys, experiments.design, experiments.staircase, experiments.datafile, "
            "experiments.observers, experiments.engine, experiments.config; "
            "print(sorted(m for m in sys.modules if m.startswith(('psychopy', 'torch', 'pyglet'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
