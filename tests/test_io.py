"""The one writer: atomic, hashed, group-readable."""

import os
import stat

import numpy as np
import pytest

from eigdist_core import io


def test_atomic_write_returns_hash_and_leaves_no_temp(tmp_path):
    digest = io.atomic_write_bytes(tmp_path / "a" / "f.bin", b"abc")
    assert digest == io.sha256_file(tmp_path / "a" / "f.bin")
    assert os.listdir(tmp_path / "a") == ["f.bin"]


def test_written_files_are_readable_like_open_would_make_them(tmp_path):
    io.save_npy(tmp_path / "x.npy", np.zeros(3, dtype=np.float32))
    (tmp_path / "ref").write_bytes(b"")
    expected = stat.S_IMODE(os.stat(tmp_path / "ref").st_mode)
    assert stat.S_IMODE(os.stat(tmp_path / "x.npy").st_mode) == expected


def test_npy_round_trip_refuses_pickles(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    io.save_npy(tmp_path / "x.npy", arr)
    assert np.array_equal(io.load_npy(tmp_path / "x.npy"), arr)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        io.load_npy(tmp_path / "obj.npy")


def test_an_interrupt_at_any_line_of_an_atomic_write_leaves_no_temporary(tmp_path):
    """Ctrl-C's KeyboardInterrupt raised before each line of the writer in turn (one run per line, through
    sys.settrace): every run leaves the old file or the new one and never a temporary."""
    import sys

    target = tmp_path / "f.bin"
    stop_at, stops = 0, 0
    while True:
        stop_at += 1
        seen = 0

        def tracer(frame, event, arg):
            nonlocal seen
            if frame.f_code.co_filename == io.__file__ and event in ("call", "line"):
                seen += 1
                if seen == stop_at:
                    raise KeyboardInterrupt
            return tracer

        sys.settrace(tracer)
        try:
            io.atomic_write_bytes(target, b"new")
            finished = True
        except KeyboardInterrupt:
            finished, stops = False, stops + 1
        finally:
            sys.settrace(None)
        assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["f.bin"]), (stop_at, list(tmp_path.iterdir()))
        if finished:
            break
    assert stops > 5 and target.read_bytes() == b"new"


def test_a_file_that_is_not_json_is_named(tmp_path):
    (tmp_path / "m.json").write_text("")
    with pytest.raises(io.FileFormatError, match=rf"^{tmp_path / 'm.json'}: not valid JSON \(Expecting value"):
        io.load_json(tmp_path / "m.json")
