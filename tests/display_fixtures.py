"""A virtual X display (Xvfb) for tests that open PsychoPy windows.

Import the fixtures into a test module (``from tests.display_fixtures import xvfb, xvfb_factory``).
``xvfb`` gives an 800×600×24 screen; ``xvfb_factory(width, height, depth)`` any other
(``depth=30`` for ``bpc=(10, 10, 10)``). Servers start once per test session, pick a free display
themselves (``-displayfd``) and are stopped at the end. Run PsychoPy in a subprocess with
``display.env`` (``core.quit`` and GL crashes would take pytest down).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from experiments.xvfb import launch_xvfb_retrying, stop_xvfb

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class VirtualDisplay:
    """A running Xvfb screen and the environment that reaches it."""

    display: str
    width: int
    height: int
    depth: int
    env: dict[str, str]


def _env(display: str, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    path = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(DISPLAY=display, HOME=str(home), PYTHONPATH=path)
    env.pop("GITHUB_WORKFLOW", None)  # PsychoPy would skip the gamma-ramp code the tests exercise
    return env


@pytest.fixture(scope="session")
def xvfb_factory() -> Iterator[Callable[..., VirtualDisplay]]:
    """``factory(width=800, height=600, depth=24)`` → a :class:`VirtualDisplay` (one server per shape)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (Debian: apt-get install xvfb)")
    home = Path(tempfile.mkdtemp(prefix="eigdist-xvfb-home-"))
    servers: dict[tuple[int, int, int], tuple[subprocess.Popen, VirtualDisplay]] = {}

    def factory(width: int = 800, height: int = 600, depth: int = 24) -> VirtualDisplay:
        key = (width, height, depth)
        if key not in servers:
            proc, display = launch_xvfb_retrying(width, height, depth)
            servers[key] = (proc, VirtualDisplay(display, width, height, depth, _env(display, home)))
        return servers[key][1]

    yield factory
    for proc, _ in servers.values():
        stop_xvfb(proc)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def xvfb(xvfb_factory: Callable[..., VirtualDisplay], monkeypatch: pytest.MonkeyPatch) -> VirtualDisplay:
    """An 800×600×24 virtual screen; ``DISPLAY`` and a scratch ``HOME`` are set for this test."""
    screen = xvfb_factory()
    monkeypatch.setenv("DISPLAY", screen.display)
    monkeypatch.setenv("HOME", screen.env["HOME"])
    return screen


def run_python(screen: VirtualDisplay, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``python *args`` on ``screen`` in a subprocess (from the repository root); return the result."""
    return subprocess.run([sys.executable, *args], env=screen.env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
