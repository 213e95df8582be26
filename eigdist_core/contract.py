"""The names the three stages share: one home, described in docs/formats.md.

The stimulus set (written by :mod:`eigdist_core`), the trial file (written by
:mod:`experiments`) and the analysis outputs (written by :mod:`analysis`) agree on
the names below. Every stage imports them from here; nothing else defines them.
This module is plain data (no numpy, no torch), so importing it costs nothing.
"""

from __future__ import annotations

#: The directions of a stimulus set's items, in their canonical order.
DIRECTIONS = ("max", "min", "random")

#: Forced-choice tasks and their number of alternatives (the guess rate is 1 / n).
TASKS = {"2afc_ref": 2, "3afc_oddity": 3}

#: ``catch_type`` values: easy and blank catch trials, empty on ordinary trials.
CATCH_TYPES = ("easy", "blank", "")

#: The values a display can show: 0 → Lmin, 1 → Lmax of the monitor (per gun for colour).
DISPLAY_RANGE = (0.0, 1.0)

#: What names a stimulus condition: one item of the set, one adaptive track per participant.
CONDITION_KEY = ("image_id", "model", "layer", "weights", "direction")

#: What names a network layer in the ranking.
LAYER_KEY = ("model", "layer", "weights")

#: One psychometric function is fitted per value of these.
TRACK_KEY = ("participant", *CONDITION_KEY)

#: Columns every trial row has (the analysis reads these), in file order.
REQUIRED_COLUMNS = (
    "participant", "session", "trial", "image_id", "model", "layer", "weights", "direction",
    "item_id", "alpha", "correct", "n_alternatives", "task", "is_catch", "catch_type",
    "is_practice", "observer", "calibrated",
)

#: Further columns the experiment fills (display columns by the session), in file order.
RECOMMENDED_COLUMNS = (
    "block", "eig_sign", "eigenvalue", "log10_alpha", "rms", "mse", "target_interval", "response",
    "rt", "dropped_frames", "clipped_pixels", "repr_distance", "stim_sha256", "set_id", "monitor",
    "calibration_date", "color", "magnification", "stimulus_deg", "ppd", "distance_cm", "lum_min",
    "lum_mean", "lum_max", "bpc", "refresh_hz", "psychopy_version", "seed", "timestamp",
)

#: Every column of a trial file, in file order.
TRIAL_COLUMNS = REQUIRED_COLUMNS + RECOMMENDED_COLUMNS

#: Typed columns of a trial file (the others are text).
INT_COLUMNS = frozenset({"session", "trial", "n_alternatives", "block", "eig_sign", "target_interval",
                         "response", "dropped_frames", "clipped_pixels", "bpc", "magnification",
                         "seed"})
FLOAT_COLUMNS = frozenset({"alpha", "eigenvalue", "log10_alpha", "rms", "mse", "rt", "repr_distance",
                           "stimulus_deg", "ppd", "distance_cm", "lum_min", "lum_mean", "lum_max", "refresh_hz"})
BOOL_COLUMNS = frozenset({"correct", "is_catch", "is_practice", "calibrated"})

#: Required columns that may be empty: blank catch trials show no item.
MAY_BE_EMPTY = frozenset({"item_id", "catch_type"})
