"""The private Xvfb server: its messages never fill a pipe, and a failed start quotes them."""

import shutil

import pytest

from experiments.xvfb import launch_xvfb, stop_xvfb

pytestmark = [pytest.mark.display, pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb")]


def test_a_running_server_writes_its_messages_to_a_file_not_a_pipe():
    proc, display = launch_xvfb(320, 240, 24)
    try:
        assert display.startswith(":") and proc.poll() is None
        assert proc.stderr is None  # a pipe nobody reads would block the server once full
    finally:
        stop_xvfb(proc)
    assert proc.returncode is not None


def test_a_server_that_cannot_start_is_refused_quoting_its_error():
    with pytest.raises(RuntimeError, match=r"(?s)Xvfb 320x240x7 did not start: .*Fatal server error"):
        launch_xvfb(320, 240, 7)  # no 7-bit visual
