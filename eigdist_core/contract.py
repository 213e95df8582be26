"""The names the three stages share: one home, described in docs/formats.md.

The stimulus set (written by :mod:`eigdist_core`), the trial file (written by
:mod:`experiments`) and the analysis outputs (written by :mod:`analysis`) agree on
the names below. Every stage imports them from here; nothing else defines them.
This module is plain data (no numpy, no torch), so importing it costs nothing.
"""

from __future__ import annotations

#: The directions of a stimulus set's items, in their canonical order: a layer's own eigendistortions.
DIRECTIONS = ("max", "min", "random")

#: The directions of the items that tell layers apart (a set's ``[[contrasts]]``, docs/stimuli.md), per kind:
#: a pair's top and bottom generalized eigendistortions, and the two principal distortions of M layers.
CONTRAST_DIRECTIONS = {"generalized": ("gen_top", "gen_bottom"), "principal": ("principal_a", "principal_b")}

#: Every direction an item may have, in canonical order.
ITEM_DIRECTIONS = DIRECTIONS + tuple(d for pair in CONTRAST_DIRECTIONS.values() for d in pair)

#: The ``weights`` field of a contrast item, whose ``model`` is its kind and ``layer`` its contrast's name:
#: ``<kind>:<name> (contrast)`` names it as a source of stimuli, never as a layer of the set.
CONTRAST_WEIGHTS = "contrast"

#: Forced-choice tasks and their number of alternatives (the guess rate is 1 / n).
TASKS = {"2afc_ref": 2, "3afc_oddity": 3}

#: ``catch_type`` values in memory: easy and blank catch trials, "" on ordinary trials (``n/a`` in a file).
CATCH_TYPES = ("easy", "blank", "")
#: The direction easy catch trials show: a layer's most visible one, so that an amplitude far above
#: its threshold estimate usually still lies below the item's ceiling (docs/experiment.md). Only easy
#: catches on it, below the ceiling, are scored for attention.
EASY_CATCH_DIRECTION = "max"

#: The values a display can show: 0 → Lmin, 1 → Lmax of the monitor (per gun for colour).
DISPLAY_RANGE = (0.0, 1.0)

#: What names a stimulus condition: one item of the set, one adaptive track per participant.
CONDITION_KEY = ("image_id", "model", "layer", "weights", "direction")

#: The characters of a file-safe name (set names, image and item ids), as a regex character class.
SAFE_CHARACTERS = "A-Za-z0-9._-"

#: What every other character of a name becomes in an image or item id.
UNSAFE_REPLACEMENT = "-"

#: An item id joins the safe names of its condition's first four fields with this, then ``<direction><index>``:
#: ``<image_id>__<model>__<layer>__<weights>__<direction><index>``.
ITEM_ID_SEPARATOR = "__"

#: ``design`` values of a ``models`` track's main trials: on the fixed common design (the planned item, its own
#: track) or chosen by the models track (docs/experiment.md); ``n/a`` under the other track kinds.
TRIAL_DESIGNS = ("common", "chosen")

#: What names a network layer in the ranking.
LAYER_KEY = ("model", "layer", "weights")

#: One psychometric function is fitted per value of these.
TRACK_KEY = ("participant", *CONDITION_KEY)

#: How a trial file writes a missing value (BIDS); in memory it is ``None`` ("" for text columns).
MISSING = "n/a"

#: The BIDS task label of the trial files (``..._task-noticeability_beh.tsv``).
BIDS_TASK = "noticeability"

#: Longest participant label accepted (a BIDS label: letters and digits only).
MAX_LABEL_LENGTH = 64


def _column_table(rows: str) -> dict[str, list[str]]:
    """``name → [type, units, "long name: description"]`` from the rows of a column table below; an indented
    line continues the description above it."""
    table: dict[str, list[str]] = {}
    fields: list[str] = []
    for line in rows.strip("\n").splitlines():
        if line.startswith(" "):
            fields[-1] += " " + line.strip()  # fields is the row above's list in table
        else:
            name, *fields = line.split(maxsplit=3)
            if fields[0] not in ("str", "int", "float", "bool"):  # a typo here would make the column text
                raise ValueError(f"column {name}: type {fields[0]!r} is not str, int, float or bool")
            table[name] = fields
    return table


# Every trial-file column, one row each in file order: its name, type (str, int, float or bool; a missing
# value is n/a whatever the type) and units (- for none), then "long name: description" to the end of the
# row. The constants below are read off these rows, and the BIDS sidecar (``_beh.json``) is written from
# them, with the levels of :data:`COLUMN_LEVELS`.
_REQUIRED = _column_table("""
participant       str    -          Participant: BIDS participant label (letters and digits)
session           int    -          Session: session number, 1, 2, ... per participant
trial             int    -          Trial: trial number within the session, 1, 2, ... without gaps
image_id          str    -          Image: image of the stimulus set (manifest images[].image_id)
model             str    -          Model: model family whose eigendistortion is shown
layer             str    -          Layer: layer of the model
weights           str    -          Weights: weights of the model
direction         str    -          Direction: which eigendistortion of the layer
item_id           str    -          Item: stimulus-set item shown (n/a on blank catch trials)
alpha             float  arbitrary  Amplitude: amplitude alpha of the distortion: image + alpha * sign * e, e of
                                      unit L2 norm
correct           bool   -          Correct: whether the answer named the target interval
n_alternatives    int    -          Alternatives: number of answer alternatives (guess rate 1/n)
task              str    -          Task: forced-choice task
is_catch          bool   -          Catch trial: a catch trial (not part of any adaptive track)
catch_type        str    -          Catch type: kind of catch trial (n/a on ordinary trials)
is_practice       bool   -          Practice trial: a practice trial (not analysed)
observer          str    -          Observer: human, or the --simulate spec of a simulated observer
calibrated        bool   -          Calibrated: shown on a calibrated display (false under --pilot)
set_id            str    -          Stimulus set: set_id of the stimulus set (16 hex characters)
alpha_ceiling     float  arbitrary  Amplitude ceiling: the condition's ceiling min(alpha_max, alpha_displayable_max)
                                      that its track used
""")
_RECOMMENDED = _column_table("""
block             int    -          Block: 0 for the practice block, then 1, 2, ... within the session
eig_sign          int    -          Sign: sign of e on this trial (+1 or -1)
eigenvalue        float  -          Eigenvalue: eigenvalue of the item (manifest)
log10_alpha       float  -          log10 amplitude: log10 of alpha (n/a when alpha is 0)
rms               float  arbitrary  RMS: root-mean-square pixel change alpha / sqrt(pixels)
mse               float  arbitrary  MSE: mean squared pixel change alpha^2 / pixels
target_interval   int    -          Target interval: 1-based test interval that held the distortion
response          int    -          Response: 1-based interval the observer chose
rt                float  s          Reaction time: time from the response screen to the answer
dropped_frames    int    -          Dropped frames: frames lost during the trial (n/a for simulated observers)
clipped_pixels    int    -          Clipped pixels: pixels of the target outside the displayable range
repr_distance     float  arbitrary  Representation distance: model observers: ||f(x + alpha e) - f(x)||
stim_sha256       str    -          Stimulus hash: sha256 of the target image's float32 bytes
monitor           str    -          Monitor: monitor profile name
calibration_date  str    -          Calibration date: date of the profile's calibration
color             str    -          Colour: grey or rgb stimuli
magnification     int    -          Magnification: integer pixel replication of the stimulus on screen
stimulus_deg      float  deg        Stimulus size: achieved stimulus size in degrees of visual angle
ppd               float  -          Pixels per degree: screen pixels per degree of visual angle
distance_cm       float  cm         Viewing distance: viewing distance
lum_min           float  cd/m^2     Minimum luminance: luminance of value 0
lum_mean          float  cd/m^2     Mean luminance: background luminance
lum_max           float  cd/m^2     Maximum luminance: luminance of value 1
bpc               int    -          Bits per channel: bits per colour channel of the display
refresh_hz        float  Hz         Refresh rate: display refresh rate
psychopy_version  str    -          PsychoPy version: PsychoPy version that ran the session
seed              int    -          Seed: seed of the experiment config
timestamp         str    -          Timestamp: end of the trial (ISO 8601, UTC)
design            str    -          Design: track kind models: whether the main trial's item and amplitude are the
                                      fixed common design's or chosen by the models track (n/a otherwise)
map_layer         str    -          Most probable layer: track kind models: the layer of largest posterior after
                                      this trial, <model>:<layer> (<weights>)
p_map             float  -          Posterior of the most probable layer: track kind models: posterior probability
                                      of map_layer after this trial
posterior         str    -          Posterior: track kind models: JSON object, each layer's posterior probability
                                      after this trial
choice_ms         float  ms         Choice time: track kind models, chosen trials: time the models track took to
                                      choose the item and amplitude (before the first frame)
""")

#: Columns every trial row has (the analysis reads these), in file order.
REQUIRED_COLUMNS = tuple(_REQUIRED)

#: Further columns the experiment fills (display columns by the session), in file order.
RECOMMENDED_COLUMNS = tuple(_RECOMMENDED)

#: Every column of a trial file, in file order.
TRIAL_COLUMNS = REQUIRED_COLUMNS + RECOMMENDED_COLUMNS

_ROWS = {**_REQUIRED, **_RECOMMENDED}  # both, in file order

#: Typed columns of a trial file (the others are text).
INT_COLUMNS = frozenset(name for name, row in _ROWS.items() if row[0] == "int")
FLOAT_COLUMNS = frozenset(name for name, row in _ROWS.items() if row[0] == "float")
BOOL_COLUMNS = frozenset(name for name, row in _ROWS.items() if row[0] == "bool")

#: Required columns that may be missing: blank catch trials show no item, ordinary trials are no catch.
MAY_BE_EMPTY = frozenset({"item_id", "catch_type"})

#: What each trial column means: (long name, description, units or None), for the BIDS sidecar.
COLUMN_INFO = {name: (*text.split(": ", 1), None if units == "-" else units)
               for name, (_, units, text) in _ROWS.items()}

#: Levels of the categorical trial columns, for the BIDS sidecar.
COLUMN_LEVELS = {
    "direction": {"max": "largest-eigenvalue eigendistortion (most noticeable to the model)",
                  "min": "smallest-eigenvalue eigendistortion (least noticeable to the model)",
                  "random": "a random direction (control)",
                  "gen_top": "top generalized eigendistortion of a layer pair (A sees it best relative to B)",
                  "gen_bottom": "bottom generalized eigendistortion of a layer pair (B sees it best relative to A)",
                  "principal_a": "principal distortion a (the first layer sees it best relative to the others)",
                  "principal_b": "principal distortion b (the other principal distortion of the layers)"},
    "task": {"2afc_ref": "reference, then two test intervals; which one differs",
             "3afc_oddity": "three intervals; which one is the odd one"},
    "catch_type": {"easy": "far above the track's threshold estimate", "blank": "alpha = 0 (chance expected)"},
    **{c: {"true": "yes", "false": "no"} for c in sorted(BOOL_COLUMNS)},
    "color": {"grey": "one channel", "rgb": "three channels"},
    "design": {"common": "the planned item, its amplitude from the item's own track",
               "chosen": "item and amplitude chosen by the models track"},
}


def alpha_ceiling(set_alpha_max: float, alpha_displayable_max: float | None) -> float:
    """The α ceiling of a condition: min(the set's ``alpha_max``, the item's ``alpha_displayable_max``).

    An item without ``alpha_displayable_max`` has the set's ``alpha_max``. A recorded 0.0 is a
    ceiling of 0 (the item cannot be shown), never "missing".
    """
    if alpha_displayable_max is None:
        return float(set_alpha_max)
    return min(float(set_alpha_max), float(alpha_displayable_max))


# --- Model comparison: the set's sensitivity table and the analysis' comparison outputs ---------------
# (docs/formats.md, "Sensitivities" and "Analysis outputs")

#: The sensitivity table of a stimulus set, in the set's folder (its hash and provenance: the manifest's
#: ``sensitivities`` entry).
SENSITIVITY_FILE = "sensitivities.csv"

#: The pixel (L2) baseline every comparison includes: F = I, so s = ‖v‖² (model, layer, weights).
L2_MODEL = ("l2", "pixels", "none")

#: Band of the linearity ratio ρ = ‖f(x + αv) − f(x)‖² / (α²·s): an item whose ρ leaves it at an amplitude
#: the experiment can show is flagged ``nonlinear`` (there the predicted distance is off by more than √2).
LINEARITY_BAND = (0.5, 2.0)

#: Columns of the sensitivity table before the ρ columns ``rho_1 … rho_K`` (ρ at the manifest's
#: ``sensitivities.alpha`` grid; missing where α_k > alpha_ceiling) and after them.
SENSITIVITY_COLUMNS = ("item_id", "item_sha256", "image_id", "model", "layer", "weights", "s", "alpha_ceiling")
SENSITIVITY_TAIL = ("rho_ceiling", "rho_low", "rho_high", "nonlinear")

# --- Subsets: a stimulus set chosen from a pool (docs/formats.md, "Subsets") -----------------------------

#: The criterion ``eigdist design select`` minimises: the largest, over the pool's layers as the true one,
#: bound on naming a wrong layer (docs/analysis.md, "Choosing the stimuli").
SELECTION_CRITERION = "max_layer_error_bound"

#: Fields of a subset manifest's ``selection`` entry, in the docs' order.
SELECTION_FIELDS = (
    "criterion", "value", "pairs", "bounds", "layers", "budget", "step", "item_cap", "image_cap", "per_image", "function",
    "slope", "lapse", "n_alternatives", "typical_threshold", "bits", "trials", "excluded",
)

#: The name of the noise-ceiling row of ``comparison.csv`` (in its ``model`` column).
NOISE_CEILING = "(noise ceiling)"

#: The column of ``matrix.csv`` for random directions, whichever layer's condition drew them.
RANDOM_SOURCE = "random"

#: ``comparison.csv``: one row per candidate (every layer, the L2 baseline, extra models), then the ceiling.
COMPARISON_COLUMNS = (
    "model", "layer", "weights", "bits", "ci_low", "ci_high", "explainable", "explainable_low",
    "explainable_high", "rank", "p_best", "at_ceiling", "spearman", "pearson", "r_ceiling", "n_nonlinear",
    "n_trials", "n_participants", "n_images", "cv",
)

#: ``matrix.csv``: candidate × source of the stimuli (a layer's max and min items, or ``random``).
MATRIX_COLUMNS = ("model", "layer", "weights", "source", "bits", "ci_low", "ci_high", "n_trials")

#: ``predictions.csv``: one row per participant × item × candidate.
PREDICTION_COLUMNS = (
    "participant", "image_id", "source", "direction", "item_id", "model", "layer", "weights", "threshold",
    "censored", "predicted", "s",
)

#: The mixture of the set's layers (s = Σ w_m s_m): its (model, layer, weights) in ``comparison.csv`` and ``matrix.csv``.
MIXTURE = ("(mixture)", "", "")

#: ``mixture.csv``: one row per layer of the mixture; w: the proportion w_m / Σ w, share: e^{φ_m} / Σ e^{φ}
#: (docs/analysis.md), each with its bootstrap interval.
MIXTURE_COLUMNS = ("model", "layer", "weights", "w", "ci_low", "ci_high", "share", "share_low", "share_high")


def candidate_name(model: str, layer: str, weights: str) -> str:
    """How a candidate model is named in tables and the report: ``<model>:<layer> (<weights>)``; a row that is
    no layer (the mixture) by its model column alone."""
    return f"{model}:{layer} ({weights})" if layer else model
