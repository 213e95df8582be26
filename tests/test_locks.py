"""eigdist_core.locks: a second holder is refused, naming what and who holds it."""

import os
import subprocess
import sys
import textwrap

import pytest

from eigdist_core.locks import LockedError, hold


def test_second_holder_refused_naming_holder(tmp_path):
    lock = tmp_path / "x.lock"
    script = textwrap.dedent(f"""
        import sys, time
        from eigdist_core.locks import hold
        with hold({str(lock)!r}, "thing"):
            print("held", flush=True)
            sys.stdin.readline()
    """)
    # the with block closes the child's pipes (its stdin last: that ends it) and waits for it
    with subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, env={**os.environ}) as child:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=rf"stimulus set out is in use by another process \(pid {child.pid} "):
            with hold(lock, "stimulus set out"):
                pass
    with hold(lock, "thing") as held:  # released when the holder ends
        assert held == lock
    assert not (tmp_path / "x.lock.holder").exists()


def test_released_after_sigkill(tmp_path):
    lock = tmp_path / "y.lock"
    script = f"from eigdist_core.locks import hold\nimport time\nwith hold({str(lock)!r}, 't'):\n print('held', flush=True); time.sleep(60)"
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout.readline().strip() == "held"
        child.kill()
    with hold(lock, "t"):
        pass
