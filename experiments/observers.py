"""Who answers a trial: the keyboard or a simulated observer, behind one interface.

A :class:`Responder` gets the planned :class:`~experiments.design.Trial` and
the :class:`Stimuli` it showed, and returns a :class:`Response` (the chosen
interval, 1-based). The session (PsychoPy) and the headless engine call
every responder the same way, so a simulated run exercises the whole trial
path except the window.

Simulated observers (``--simulate SPEC``, grammar in docs/formats.md; parsed by
:func:`parse_simulate`, built by :func:`make_responder`):

``weibull[;threshold=α][;slope=β][;lapse=p][;seed=n]``
    Correct with probability :func:`eigdist_core.psychometric_function.weibull`
    (guess ``1/n_alternatives``; ``threshold`` is where F = ½, the midpoint
    between guess and 1, as in the fits: 75 % − lapse/2 in 2AFC); otherwise one of the wrong intervals at random.
``model=<model:layer>[;weights=w][;noise=σ][;lapse=p][;seed=n]``
    Looks at the stimuli through the model f: every interval's response
    (and the reference's, in ``2afc_ref``) gets independent Gaussian noise of
    standard deviation σ per unit (Berardino et al.'s additive-noise
    observer). ``2afc_ref``: it picks the test whose noisy response lies
    farthest from the noisy reference; ``3afc_oddity``: the one farthest in
    sum from the other two. With the noise fixed, the signal
    ‖f(x + α·s·e) − f(x)‖ grows with α, so P(correct) rises from chance to
    1 − lapse·(n−1)/n. ``repr_distance`` records that noise-free distance.

Randomness is drawn per trial from ``(seed, session, trial)``, so a resumed
session answers exactly as an unbroken one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from eigdist_core.psychometric_function import weibull

from .design import Trial
from eigdist_core.errors import EigdistError


@dataclass(frozen=True)
class Stimuli:
    """What one trial shows (arrays C × H × W, in the set's value range).

    Attributes
    ----------
    reference
        The undistorted image (shown first in ``2afc_ref``).
    intervals
        The test intervals in order; ``intervals[target_interval - 1]`` is
        ``reference + alpha * distortion``, the others are ``reference`` itself.
    alpha
        The amplitude shown (0 on blank catch trials).
    distortion
        ``eig_sign · e`` (unit L2 norm), or zeros on blank catch trials.
    """

    reference: np.ndarray
    intervals: tuple[np.ndarray, ...]
    alpha: float
    distortion: np.ndarray


@dataclass(frozen=True)
class Response:
    """An answer: the chosen interval (1-based), its reaction time, and a model's distance."""

    interval: int
    rt: float | None = None
    repr_distance: float | None = None


class Responder(Protocol):
    """Anything that answers trials; ``observer`` fills the CSV's ``observer`` column."""

    observer: str

    def respond(self, trial: Trial, stimuli: Stimuli, session: int) -> Response:
        """Answer one trial (blocking for a human)."""


def _rng(seed: int, session: int, trial: Trial) -> np.random.Generator:
    return np.random.default_rng([seed, session, trial.trial])


def _other_interval(rng: np.random.Generator, target: int, n: int) -> int:
    return int(rng.choice([i for i in range(1, n + 1) if i != target]))


@dataclass
class KeyboardResponder:
    """A human at the keyboard: the session supplies how keys are read.

    Parameters
    ----------
    wait_keys
        Blocks until one of the given key names is pressed; returns
        ``(key, rt_seconds)`` (e.g. a wrapper of PsychoPy's
        ``Keyboard.waitKeys``), so this module needs no display.
    keys
        Key names of intervals 1, 2, (3).
    """

    wait_keys: Callable[[tuple[str, ...]], tuple[str, float]]
    keys: tuple[str, ...] = ("1", "2", "3")
    observer: str = "human"

    def respond(self, trial: Trial, stimuli: Stimuli, session: int) -> Response:
        allowed = self.keys[: len(stimuli.intervals)]
        key, rt = self.wait_keys(allowed)
        if key not in allowed:
            raise ValueError(f"key {key!r} is not a response key; allowed: {', '.join(allowed)}")
        return Response(allowed.index(key) + 1, rt=rt)


@dataclass
class WeibullObserver:
    """A plain simulated observer with a Weibull psychometric function in α."""

    threshold: float = 0.1
    slope: float = 3.5
    lapse: float = 0.02
    seed: int = 0
    observer: str = "weibull"

    def respond(self, trial: Trial, stimuli: Stimuli, session: int) -> Response:
        rng = _rng(self.seed, session, trial)
        n = len(stimuli.intervals)
        p = float(weibull(stimuli.alpha, self.threshold, self.slope, 1.0 / n, self.lapse))
        if rng.random() < p:
            return Response(trial.target_interval)
        return Response(_other_interval(rng, trial.target_interval, n))


@dataclass
class ModelObserver:
    """A simulated observer that sees through a model with Gaussian noise σ per unit.

    Parameters
    ----------
    spec, weights
        Passed to ``eigdist_core.models.load`` (weights ``None``: the family's default).
    noise
        σ, in the model's response units.
    lapse
        Probability of answering at random instead.
    model
        An already-loaded model (tests, or to share one between observers).
    """

    spec: str
    weights: str | None = None
    noise: float = 0.1
    lapse: float = 0.0
    seed: int = 0
    observer: str = "model"
    model: Any = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.model is None:
            from eigdist_core import models

            self.model = models.load(self.spec, self.weights)

    def check(self, source: Any) -> None:
        """Refuse, before a session writes anything, a model eigdist cannot use at the images of ``source``.

        ``source`` has ``manifest["images"]`` and ``image(image_id)`` (a stimulus set): the model must be
        a function of each image (:func:`eigdist_core.validate.validate_model`), as a build requires.
        """
        for entry in source.manifest["images"]:
            self._reference(entry["image_id"], source.image(entry["image_id"]))

    def _reference(self, image_id: str, image: np.ndarray) -> Any:
        """The response at an image, checked as a build checks a model (two calls agree, finite, fixed size)."""
        from eigdist_core.validate import validate_model

        return self._checked(image_id, image, lambda x: validate_model(self.model, x))

    def _checked(self, image_id: str, image: np.ndarray, respond: Callable[[Any], Any]) -> Any:
        """``respond`` of the image as a (1, C, H, W) tensor, its buffers kept; a refusal names the model and image."""
        import torch

        from eigdist_core.errors import in_context
        from eigdist_core.model_state import keeping_buffers
        from eigdist_core.validate import ModelError

        x = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32)[None]
        try:
            with torch.no_grad(), keeping_buffers(self.model):
                return respond(x)
        except ModelError as exc:
            raise in_context(exc, f"--simulate model={self.spec} at image {image_id!r}") from exc

    def respond(self, trial: Trial, stimuli: Stimuli, session: int) -> Response:
        from eigdist_core.validate import validate_response

        image_id = trial.condition.image_id
        key = (image_id, stimuli.reference.shape)
        if key not in self._cache:
            self._cache = {key: self._reference(image_id, stimuli.reference)}  # one image at a time (blocks)
        ref = self._cache[key]
        reps = [ref if s is stimuli.reference
                else self._checked(image_id, s, lambda x: validate_response(self.model(x), x, like=ref))
                for s in stimuli.intervals]
        r_ref = ref.double().numpy().ravel()
        reps = [r.double().numpy().ravel() for r in reps]
        target = trial.target_interval
        distance = float(np.linalg.norm(reps[target - 1] - r_ref))
        rng = _rng(self.seed, session, trial)
        n = len(reps)
        if rng.random() < self.lapse:
            return Response(int(rng.integers(1, n + 1)), repr_distance=distance)
        noisy = [r + self.noise * rng.standard_normal(r.shape) for r in reps]
        if n == 2:  # 2afc_ref: which test differs from the reference
            ref = r_ref + self.noise * rng.standard_normal(r_ref.shape)
            score = [np.linalg.norm(r - ref) for r in noisy]
        else:  # 3afc_oddity: the odd one out
            score = [sum(np.linalg.norm(r - o) for o in noisy) for r in noisy]
        return Response(int(np.argmax(score)) + 1, repr_distance=distance)


_NUMBER_KEYS: dict[str, tuple[type, Callable[[Any], bool], str]] = {
    "threshold": (float, lambda v: v > 0, "> 0"),
    "slope": (float, lambda v: 0 < v <= 100, "in (0, 100]"),
    "lapse": (float, lambda v: 0 <= v < 1, "in [0, 1)"),
    "noise": (float, lambda v: v >= 0, ">= 0"),
    "seed": (int, lambda v: v >= 0, ">= 0"),
}
#: The keys each simulated observer accepts.
SIMULATE_KEYS = {"weibull": ("threshold", "slope", "lapse", "seed"), "model": ("weights", "noise", "lapse", "seed")}


@dataclass(frozen=True)
class SimulateSpec:
    """A parsed ``--simulate`` spec: ``kind`` (``weibull`` or ``model``), the model spec, the keys."""

    kind: str
    model: str | None
    params: dict
    text: str


def parse_simulate(spec: str) -> SimulateSpec:
    """Parse a ``--simulate`` spec (docs/formats.md grammar).

    ``model=<model spec>[;weights=<w>][;noise=<σ>][;lapse=<p>][;seed=<n>]`` or
    ``weibull[;threshold=<α>][;slope=<β>][;lapse=<p>][;seed=<n>]``.

    Raises
    ------
    ValueError
        Naming the bad kind, key or value and listing what is allowed.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise EigdistError(f"--simulate must be 'weibull[;key=value...]' or 'model=<model:layer>[;key=value...]', got {spec!r}")
    head, *pairs = [p.strip() for p in spec.split(";")]
    if head == "weibull":
        kind, model = "weibull", None
    elif head.startswith("model="):
        kind, model = "model", head[len("model="):]
        from eigdist_core.models import parse_spec

        parse_spec(model)
    else:
        raise EigdistError(f"--simulate kind must be 'weibull' or 'model=<model:layer>', got {head!r}")
    allowed = SIMULATE_KEYS[kind]
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in allowed:
            raise EigdistError(
                f"--simulate {kind}: unknown or malformed parameter {pair!r}; allowed keys: {', '.join(allowed)}"
            )
        if key in params:
            raise EigdistError(f"--simulate {kind}: parameter {key!r} given twice")
        params[key] = _parse_value(kind, key, raw)
    return SimulateSpec(kind, model, params, spec)


def _parse_value(kind: str, key: str, raw: str) -> Any:
    if key == "weights":
        if not raw:
            raise EigdistError(f"--simulate {kind}: weights must not be empty")
        return raw
    typ, ok, bounds = _NUMBER_KEYS[key]
    try:
        value = typ(raw)
    except ValueError:
        what = "an integer" if typ is int else "a number"
        raise EigdistError(f"--simulate {kind}: {key} must be {what}, got {raw!r}") from None
    if not (math.isfinite(value) and ok(value)):
        raise EigdistError(f"--simulate {kind}: {key} must be {bounds}, got {raw!r}")
    return value


def make_responder(spec: str | SimulateSpec, *, model: Any = None, source: Any = None) -> Responder:
    """The simulated observer a ``--simulate`` spec names; its ``observer`` is the spec text.

    ``model`` may pass an already-loaded model to a ``model=`` observer; with a
    stimulus set as ``source``, that model is checked at each of its images
    first (:meth:`ModelObserver.check`), so a model a build would refuse never
    answers a trial.
    """
    parsed = parse_simulate(spec) if isinstance(spec, str) else spec
    if parsed.kind == "weibull":
        return WeibullObserver(**parsed.params, observer=parsed.text)
    observer = ModelObserver(parsed.model, **parsed.params, observer=parsed.text, model=model)
    if source is not None:
        observer.check(source)
    return observer
