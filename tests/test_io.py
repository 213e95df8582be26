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
