"""``Eigendistortion.save`` / ``load``: one result per folder, every array checked against its sha256."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from eigdist_core.eigendistortion import Eigendistortion, ResultError


@pytest.fixture
def saved(tmp_path, conv_net, small_image):
    """An ``exact`` result (with its Jacobian) and a ``lobpcg`` one (without), each saved in its own folder."""
    exact = Eigendistortion(small_image, conv_net).synthesize(method="exact")
    exact.save(tmp_path / "exact")
    iterative = Eigendistortion(small_image, conv_net).synthesize(method="lobpcg", tol=1e-3)
    iterative.save(tmp_path / "lobpcg")
    return exact, iterative


def test_a_result_saved_over_another_replaces_it_whole(tmp_path, conv_net, saved):
    exact, iterative = saved
    iterative.save(tmp_path / "exact")  # into the folder of the exact result
    assert not (tmp_path / "exact" / "jacobian.npy").exists()
    back = Eigendistortion.load(tmp_path / "exact", conv_net)
    assert back.jacobian is None and back.diagnostics["method"] == "lobpcg"
    assert torch.equal(back.eigendistortions, iterative.eigendistortions)


def test_a_folder_holding_another_results_array_is_refused(tmp_path, conv_net, saved):
    shutil.copy(tmp_path / "exact" / "jacobian.npy", tmp_path / "lobpcg" / "jacobian.npy")
    with pytest.raises(ResultError, match=r"lobpcg holds jacobian.npy, which eigendistortion.json does not list: "
                                          r"a file of another result"):
        Eigendistortion.load(tmp_path / "lobpcg", conv_net)


def test_an_array_that_does_not_match_its_sha256_is_refused(tmp_path, conv_net, small_image, saved):
    other = Eigendistortion(small_image, conv_net).synthesize(method="exact", seed=1, k=2)
    other.save(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "eigendistortions.npy", tmp_path / "exact" / "eigendistortions.npy")
    with pytest.raises(ResultError, match=r"eigendistortions.npy does not match its sha256 in eigendistortion.json"):
        Eigendistortion.load(tmp_path / "exact", conv_net)


@pytest.mark.parametrize("dtype", ["int64", "Tensor", "float16", 32])
def test_the_dtype_comes_from_a_fixed_list(tmp_path, conv_net, saved, dtype):
    meta_file = tmp_path / "exact" / "eigendistortion.json"
    meta = json.loads(meta_file.read_text())
    meta["dtype"] = dtype
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ResultError, match=rf"dtype {dtype!r} is not one of float32, float64"):
        Eigendistortion.load(tmp_path / "exact", conv_net)


def test_a_float64_result_loads_in_float64(tmp_path, conv_net, small_image):
    eig = Eigendistortion(small_image, conv_net, dtype=torch.float64).synthesize(method="exact")
    eig.save(tmp_path / "e")
    back = Eigendistortion.load(tmp_path / "e", conv_net)
    assert back.operator.dtype == torch.float64 and back.eigenvalues.dtype == torch.float64


def test_a_save_stopped_before_its_metadata_is_refused_not_mixed(tmp_path, conv_net, saved):
    (tmp_path / "exact" / "eigendistortion.json").unlink()  # what a kill between the arrays and the metadata leaves
    with pytest.raises(ResultError, match=r"exact holds no eigendistortion.json: not a saved Eigendistortion, "
                                          r"or its save was interrupted"):
        Eigendistortion.load(tmp_path / "exact", conv_net)


def test_a_missing_listed_array_is_named(tmp_path, conv_net, saved):
    (tmp_path / "exact" / "jacobian.npy").unlink()
    with pytest.raises(ResultError, match=r"jacobian.npy is missing \(eigendistortion.json lists it\)"):
        Eigendistortion.load(tmp_path / "exact", conv_net)
