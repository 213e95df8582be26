"""The trial design: conditions, image blocks, sessions, trial lists and frame sequences.

Pure functions of a stimulus-set manifest (the dict of ``manifest.json``),
an :class:`~experiments.config.ExperimentConfig`, a participant ID and a
session number, so the same inputs always give the same trials (which is
what lets an interrupted session resume at the next trial).

- Conditions: one per manifest item, keyed by ``image_id, model, layer,
  weights, direction`` (docs/formats.md); each has its own ``alpha_ceiling`` =
  min(the set's ``alpha_max``, the item's ``alpha_displayable_max``), the
  maximum of its track.
- Blocks: one per image and visit; the image order is a row of a Williams
  design (:func:`latin_square_row`: n rows for an even number n of images, 2n
  for odd n) chosen by the participant's number, blocks are cut into sessions
  of ``images_per_session``.
- Main trials per condition: ``trials.per_condition``, or on a chosen subset its
  ``selection.trials`` (:mod:`experiments.item_trials`; items of 0 trials are not shown, and an
  image left without items gets no block), split evenly over the visits.
- Within a block every condition gets its trials for that visit plus catch
  trials, all shuffled together; target intervals are balanced per
  condition; the sign of e is random per trial. Easy catches cycle through
  the block's ``max`` conditions (the most visible direction of each layer,
  :data:`~eigdist_core.contract.EASY_CATCH_DIRECTION`; their amplitude rule
  is in :mod:`experiments.engine`), blank catches (α = 0) through all its
  conditions; a block without a ``max`` condition gets only blank catches.
- Each session starts with a practice block (``is_practice``; not analysed).
- Under ``track.kind = "models"`` each condition's main trials of a visit are split: the first
  round(``common_share`` × n) keep their condition and its own track (``design = "common"``), the
  others (``"chosen"``) show an item and α the models track chooses among the block image's items
  (:mod:`experiments.model_session`); their condition is only a placeholder of the image. The split
  is fixed by the config, so every observer gets the same common trials.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from eigdist_core.contract import CONDITION_KEY, EASY_CATCH_DIRECTION, ITEM_DIRECTIONS, alpha_ceiling

from .config import ExperimentConfig, Timing
from .item_trials import selected_trials, visit_share
from eigdist_core.errors import EigdistError



@dataclass(frozen=True)
class Condition:
    """One adaptive track's condition: an item of the stimulus set."""

    image_id: str
    model: str
    layer: str
    weights: str
    direction: str
    item_id: str
    eigenvalue: float | None
    alpha_ceiling: float

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """The condition key (:data:`eigdist_core.contract.CONDITION_KEY`)."""
        return tuple(getattr(self, name) for name in CONDITION_KEY)


@dataclass(frozen=True)
class Trial:
    """One planned trial; the amplitude is chosen when it runs (by its track).

    Attributes
    ----------
    trial
        1-based number within the session (the ``trial`` column).
    block
        0 for the practice block, then 1, 2, … within the session.
    target_interval
        1-based: the test interval holding ``image + α·sign·e`` (``2afc_ref``:
        1 or 2 after the reference; ``3afc_oddity``: the odd one of 3).
    eig_sign
        +1 or −1, the sign of e on this trial.
    catch_type
        ``""``, ``"easy"`` or ``"blank"`` (α = 0).
    design
        ``track.kind = "models"``, main trials: ``"common"`` or ``"chosen"`` (module docstring); else ``""``.
    break_before
        Show a break screen before this trial.
    """

    trial: int
    block: int
    condition: Condition
    target_interval: int
    eig_sign: int
    is_practice: bool = False
    is_catch: bool = False
    catch_type: str = ""
    break_before: bool = False
    design: str = ""


@dataclass(frozen=True)
class SessionPlan:
    """The trials of one session and where it sits in the participant's schedule."""

    participant: str
    session: int
    n_sessions: int
    image_order: tuple[str, ...]
    blocks: tuple[tuple[str, int], ...]  # (image_id, visit) of each main block of this session
    trials: tuple[Trial, ...]


def conditions(manifest: dict) -> list[Condition]:
    """The conditions of a stimulus set, in manifest order.

    Raises
    ------
    ValueError
        If the manifest lacks ``items``/``images``/``alpha_max``, an item has
        an unknown direction or image, or two items share a condition key
        (an experiment set has k = 1 per direction).
    """
    for key in ("images", "items", "alpha_max"):
        if key not in manifest:
            raise EigdistError(f"stimulus-set manifest has no {key!r}; is it a manifest.json of `eigdist stimuli build`?")
    images = {img["image_id"] for img in manifest["images"]}
    set_alpha_max = float(manifest["alpha_max"])
    seen: dict[tuple, str] = {}
    out = []
    for item in manifest["items"]:
        if item["direction"] not in ITEM_DIRECTIONS:
            raise EigdistError(
                f"item {item['item_id']!r}: direction must be one of {', '.join(ITEM_DIRECTIONS)}, got {item['direction']!r}"
            )
        if item["image_id"] not in images:
            raise EigdistError(f"item {item['item_id']!r}: image_id {item['image_id']!r} is not among the set's images")
        ceiling = alpha_ceiling(set_alpha_max, item.get("alpha_displayable_max"))
        if not ceiling > 0:
            raise EigdistError(f"item {item['item_id']!r} has an alpha ceiling of {ceiling:g} (alpha_max "
                             f"{set_alpha_max:g}, alpha_displayable_max {item.get('alpha_displayable_max')!r}): "
                             "it cannot be shown without clipping; rebuild the set")
        cond = Condition(
            image_id=item["image_id"], model=item["model"], layer=item["layer"], weights=item["weights"],
            direction=item["direction"], item_id=item["item_id"], eigenvalue=item.get("eigenvalue"),
            alpha_ceiling=ceiling,
        )
        if cond.key in seen:
            raise EigdistError(
                f"items {seen[cond.key]!r} and {item['item_id']!r} share the condition {cond.key}; "
                "an experiment set has one item (k = 1) per direction"
            )
        seen[cond.key] = item["item_id"]
        out.append(cond)
    if not out:
        raise EigdistError("stimulus set has no items: nothing to show")
    return out


def participant_number(participant: str) -> int:
    """The Latin-square row of a participant: the number that ends the ID (``P07`` → 7).

    IDs without a final number use a stable hash of the ID, so every ID
    gets a row; number participants consecutively for a balanced design.
    """
    match = re.search(r"(\d+)$", participant)
    if match:
        return int(match.group(1))
    return stable_int(participant)


def stable_int(*parts: Any) -> int:
    """A stable 48-bit integer from text parts (seeds that do not depend on Python's hash salt)."""
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def latin_square_rows(n: int) -> int:
    """Rows in one cycle of the Williams design of order n: n for even n, 2n for odd n."""
    return n if n % 2 == 0 else 2 * n


def latin_square_row(n: int, row: int) -> list[int]:
    """Row ``row`` of a Williams design of order n (a carry-over balanced Latin square).

    Row r < n is the cyclic shift by r of 0, n−1, 1, n−2, 2, …; for odd n, rows
    n … 2n−1 are those rows reversed. Over one cycle of :func:`latin_square_rows`
    consecutive rows (``row`` is taken modulo it), each position holds each index
    equally often and each index is followed by each other index equally often
    (once for even n, twice for odd n): first-order carry-over balance.
    """
    first, low, high = [], 0, n - 1
    for i in range(n):
        if i % 2 == 0:
            first.append(low)
            low += 1
        else:
            first.append(high)
            high -= 1
    row %= latin_square_rows(n)
    order = [(f + row) % n for f in first]
    return order if row < n else order[::-1]


def schedule(manifest: dict, config: ExperimentConfig, participant: str) -> list[list[tuple[str, int]]]:
    """The participant's blocks ``(image_id, visit)`` cut into sessions (list per session).

    Under a subset's ``selection.trials`` an image none of whose items has a trial gets no block.
    """
    selected = selected_trials(manifest, config)
    shown = None if selected is None else {it["image_id"] for it in manifest["items"] if selected[it["item_id"]]}
    image_ids = [img["image_id"] for img in manifest["images"] if shown is None or img["image_id"] in shown]
    order = [image_ids[i] for i in latin_square_row(len(image_ids), participant_number(participant))]
    blocks = [(image_id, visit) for visit in range(config.visits_per_image) for image_id in order]
    per = config.images_per_session
    return [blocks[i:i + per] for i in range(0, len(blocks), per)]


def main_trials(manifest: dict, config: ExperimentConfig) -> dict[str, int]:
    """Each shown item's main trials over all visits (experiments/item_trials.py): ``per_condition`` each,
    or a subset's ``selection.trials`` without its items of 0 trials."""
    selected = selected_trials(manifest, config)
    if selected is None:
        return {cond.item_id: config.per_condition for cond in conditions(manifest)}
    return {item_id: n for item_id, n in selected.items() if n > 0}


def n_catch(config: ExperimentConfig, n_main: int) -> tuple[int, int]:
    """``(easy, blank)`` catch trials to add to ``n_main`` tracked trials (catch share = catch_rate)."""
    total = round(config.catch_rate * n_main / (1.0 - config.catch_rate))
    easy = round(total * config.easy_fraction)
    return easy, total - easy


def main_designs(config: ExperimentConfig, n: int) -> list[str]:
    """The ``design`` of a condition's n main trials of a visit (module docstring); ``""`` unless models."""
    if config.track_kind != "models":
        return [""] * n
    common = round(config.track_options["common_share"] * n)
    return ["common"] * common + ["chosen"] * (n - common)


def _balanced_targets(n: int, n_alternatives: int, rng: np.random.Generator) -> list[int]:
    targets = [1 + i % n_alternatives for i in range(n)]
    rng.shuffle(targets)
    return targets


def plan_session(manifest: dict, config: ExperimentConfig, participant: str, session: int) -> SessionPlan:
    """Every trial of one session, in order.

    Parameters
    ----------
    manifest
        The stimulus set's ``manifest.json`` as a dict.
    config
        The checked experiment configuration.
    participant
        The participant ID (``[A-Za-z0-9_-]+``; its final number picks the Latin-square row).
    session
        1-based session number.

    Raises
    ------
    ValueError
        If ``session`` is not between 1 and the number of sessions the
        schedule needs.
    """
    sessions = schedule(manifest, config, participant)
    if isinstance(session, bool) or not isinstance(session, int) or not 1 <= session <= len(sessions):
        raise EigdistError(
            f"session must be an int between 1 and {len(sessions)} (this set and config need "
            f"{len(sessions)} sessions), got {session!r}"
        )
    totals = main_trials(manifest, config)
    by_image: dict[str, list[Condition]] = {}
    for cond in (c for c in conditions(manifest) if c.item_id in totals):
        by_image.setdefault(cond.image_id, []).append(cond)
    blocks = sessions[session - 1]
    n_alt = config.n_alternatives
    planned: list[dict] = []

    rng = np.random.default_rng([config.seed, stable_int(participant), session, 0])
    session_conds = [c for image_id, _ in blocks for c in by_image.get(image_id, [])]
    if config.practice and session_conds:
        picks = rng.choice(len(session_conds), size=config.practice, replace=True)
        for cond_i, target in zip(picks, _balanced_targets(config.practice, n_alt, rng)):
            planned.append(dict(block=0, condition=session_conds[cond_i], target_interval=target, is_practice=True))

    for block_no, (image_id, visit) in enumerate(blocks, start=1):
        rng = np.random.default_rng([config.seed, stable_int(participant), session, block_no])
        block_conds = by_image.get(image_id, [])
        trials: list[dict] = []
        for cond in block_conds:
            per = visit_share(totals[cond.item_id], config.visits_per_image, visit)
            designs = main_designs(config, per)
            trials += [dict(block=block_no, condition=cond, target_interval=t, design=d)
                       for t, d in zip(_balanced_targets(per, n_alt, rng), designs)]
        easy, blank = n_catch(config, len(trials))
        pools = {"easy": [c for c in block_conds if c.direction == EASY_CATCH_DIRECTION], "blank": block_conds}
        if not pools["easy"]:  # nothing visible by construction: every catch is blank
            easy, blank = 0, easy + blank
        catch_types = ["easy"] * easy + ["blank"] * blank
        catch_targets = _balanced_targets(len(catch_types), n_alt, rng)
        cycles = {kind: list(rng.permutation(len(pool))) for kind, pool in pools.items()}
        shown = dict.fromkeys(pools, 0)
        for kind, target in zip(catch_types, catch_targets):
            cycle = cycles[kind]
            trials.append(dict(block=block_no, condition=pools[kind][cycle[shown[kind] % len(cycle)]],
                               target_interval=target, is_catch=True, catch_type=kind))
            shown[kind] += 1
        planned += [trials[i] for i in rng.permutation(len(trials))]

    signs = np.random.default_rng([config.seed, stable_int(participant), session, 10**6]).choice(
        [-1, 1], size=len(planned))
    out, since_break, last_block = [], 0, 0
    for number, (spec, sign) in enumerate(zip(planned, signs), start=1):
        new_block = spec["block"] != last_block and number > 1
        since_break = 0 if new_block else since_break + 1
        brk = new_block or (since_break > 0 and since_break % config.break_every == 0)
        last_block = spec["block"]
        out.append(Trial(trial=number, eig_sign=int(sign), break_before=brk, **spec))
    order = tuple(image_id for blocks_ in sessions for image_id, visit in blocks_ if visit == 0)
    return SessionPlan(participant, session, len(sessions), order, tuple(blocks), tuple(out))


@dataclass(frozen=True)
class Segment:
    """One part of a trial's frame sequence.

    ``content`` is ``"fixation"`` (grey + fixation mark), ``"blank"`` (grey),
    ``"image"`` (the undistorted image), ``"distorted"`` (image + α·sign·e)
    or ``"response"`` (wait for the answer, unlimited).
    """

    name: str
    content: str
    n_frames: int


def frames(ms: float, refresh_hz: float) -> int:
    """Whole frames for a duration (at least 1)."""
    return max(1, round(ms * refresh_hz / 1000.0))


def frame_sequence(task: str, timing: Timing, refresh_hz: float, target_interval: int) -> list[Segment]:
    """The frames of one trial.

    ``2afc_ref``: fixation, reference (image), isi, test 1, isi, test 2, response;
    the target test shows the distorted image, the other the image.
    ``3afc_oddity``: fixation, test 1, isi, test 2, isi, test 3, response; the
    target (odd one) is distorted. The response segment has ``n_frames = 0``
    (unlimited).
    """
    n_tests = {"2afc_ref": 2, "3afc_oddity": 3}.get(task)
    if n_tests is None:
        raise ValueError(f"task must be 2afc_ref or 3afc_oddity, got {task!r}")
    if not 1 <= target_interval <= n_tests:
        raise ValueError(f"target_interval must be between 1 and {n_tests} for {task}, got {target_interval!r}")
    seq = [Segment("fixation", "fixation", frames(timing.fixation_ms, refresh_hz))]
    if task == "2afc_ref":
        seq += [Segment("reference", "image", frames(timing.reference_ms, refresh_hz)),
                Segment("isi", "blank", frames(timing.isi_ms, refresh_hz))]
    for i in range(1, n_tests + 1):
        if i > 1:
            seq.append(Segment("isi", "blank", frames(timing.isi_ms, refresh_hz)))
        content = "distorted" if i == target_interval else "image"
        seq.append(Segment(f"test{i}", content, frames(timing.test_ms, refresh_hz)))
    seq.append(Segment("response", "blank", 0))
    return seq

