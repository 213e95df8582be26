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


def _holder_on(host: str, lock, seconds: float) -> str:
    """A process that claims to run on ``host`` and holds ``lock`` as a session does (then is SIGKILLed)."""
    return (f"import socket, time\nsocket.gethostname = lambda: {host!r}\nfrom eigdist_core.locks import hold\n"
            f"with hold({str(lock)!r}, 'session', across_hosts_s={seconds}):\n print('held', flush=True); time.sleep(60)")


def test_a_lock_left_by_a_crash_on_another_machine_holds_until_removed_or_expired(tmp_path, monkeypatch):
    """Two machines on a shared drive (two processes claiming two host names). pc-a crashes while it holds
    the session: its OS lock is gone (as on a drive whose OS locks do not reach across machines), but its
    note keeps pc-b out, naming it, until the note is removed or has expired; pc-a itself, after its
    crash, takes the lock back at once (its pid is dead)."""
    import socket

    lock = tmp_path / "data" / "session.lock"
    with subprocess.Popen([sys.executable, "-c", _holder_on("pc-a", lock, 3600)], stdout=subprocess.PIPE,
                          text=True) as child:
        assert child.stdout.readline().strip() == "held"
        child.kill()
    monkeypatch.setattr(socket, "gethostname", lambda: "pc-b")
    with pytest.raises(LockedError, match=rf"session is in use by another process \(pid {child.pid} on pc-a boot "
                                          rf".*remove {lock}.holder"):
        with hold(lock, "session", across_hosts_s=3600):
            pass
    with hold(lock, "session", across_hosts_s=0):  # expired: another machine's note holds for across_hosts_s
        pass
    monkeypatch.setattr(socket, "gethostname", lambda: "pc-a")
    with subprocess.Popen([sys.executable, "-c", _holder_on("pc-a", lock, 3600)], stdout=subprocess.PIPE,
                          text=True) as child:
        assert child.stdout.readline().strip() == "held"
        child.kill()
    with hold(lock, "session", across_hosts_s=3600):  # this machine, a dead pid: stale
        pass
    assert not (tmp_path / "data" / "session.lock.holder").exists()
