"""A private virtual X screen (Xvfb) for PsychoPy windows on machines without a display.

``eigdist demo`` runs its simulated observers through the real session window; on a headless
machine (no ``DISPLAY``) it starts one of these. The server picks a free display number itself
(``-displayfd``), so several can run side by side.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from typing import Iterator


def launch_xvfb(width: int, height: int, depth: int, timeout: float = 20.0) -> tuple[subprocess.Popen, str]:
    """Start one Xvfb server; return the process and its ``DISPLAY`` (the caller stops it).

    Raises
    ------
    RuntimeError
        When the server exits or names no display within ``timeout`` seconds (its error is quoted).
    """
    read_fd, write_fd = os.pipe()
    # The server's messages go to an unnamed file, not a pipe: a pipe nobody reads while the server
    # runs would block it once full (64 KiB), in the middle of a session.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x{depth}", "-nolisten", "tcp"],
            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=log,
        )
        os.close(write_fd)
        data = b""
        try:  # read up to the newline: closing the pipe earlier kills Xvfb ("Cannot write display number")
            while not data.endswith(b"\n") and select.select([read_fd], [], [], timeout)[0]:
                chunk = os.read(read_fd, 64)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(read_fd)
        number = data.decode().strip()
        if not number or proc.poll() is not None:
            proc.kill()
            proc.wait()
            log.seek(0)
            err = log.read().decode(errors="replace")[-500:]
            raise RuntimeError(f"Xvfb {width}x{height}x{depth} did not start: {err}")
    return proc, f":{number}"


@contextmanager
def start_xvfb(width: int = 800, height: int = 600, depth: int = 24, *, timeout: float = 20.0,
               attempts: int = 3) -> Iterator[str]:
    """Run an Xvfb screen of ``width × height × depth`` for the ``with`` block; yield its ``DISPLAY``.

    Raises
    ------
    FileNotFoundError
        When ``Xvfb`` is not installed (the message says which package provides it).
    RuntimeError
        When the server does not start ``attempts`` times in a row (its last error is quoted).
    """
    if shutil.which("Xvfb") is None:
        raise FileNotFoundError("Xvfb is not installed and there is no DISPLAY: install it "
                                "(Debian/Ubuntu: apt-get install xvfb) or run on a desktop")
    proc, display = launch_xvfb_retrying(width, height, depth, timeout=timeout, attempts=attempts)
    try:
        yield display
    finally:
        stop_xvfb(proc)


def launch_xvfb_retrying(width: int, height: int, depth: int, *, timeout: float = 20.0,
                         attempts: int = 3) -> tuple[subprocess.Popen, str]:
    """:func:`launch_xvfb`, tried up to ``attempts`` times: another server may take the same
    display number at the same moment."""
    for attempt in range(attempts):
        try:
            return launch_xvfb(width, height, depth, timeout)
        except RuntimeError:
            if attempt == attempts - 1:
                raise
    raise ValueError(f"attempts must be >= 1, got {attempts}")


def stop_xvfb(proc: subprocess.Popen) -> None:
    """Stop a server started by :func:`launch_xvfb` (terminate, then kill after 10 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


__all__ = ["launch_xvfb", "launch_xvfb_retrying", "start_xvfb", "stop_xvfb"]
