"""Device kind, the CUDA settings for reproducible float32 products (checked without a GPU) and torch's threads."""

import os

import pytest
import torch

from eigdist_core.device import CUBLAS_WORKSPACE, device_kind, reproducible, torch_threads

FLAGS = {
    "cudnn.allow_tf32": (torch.backends.cudnn, "allow_tf32"),
    "matmul.allow_tf32": (torch.backends.cuda.matmul, "allow_tf32"),
    "cudnn.benchmark": (torch.backends.cudnn, "benchmark"),
    "cudnn.deterministic": (torch.backends.cudnn, "deterministic"),
}


def flags() -> dict[str, bool]:
    return {name: getattr(owner, attr) for name, (owner, attr) in FLAGS.items()}


@pytest.fixture
def callers_flags():
    """The opposite of what eigdist wants on CUDA, restored after the test."""
    saved = flags()
    wanted = {"cudnn.allow_tf32": True, "matmul.allow_tf32": True, "cudnn.benchmark": True, "cudnn.deterministic": False}
    for name, value in wanted.items():
        setattr(*FLAGS[name], value)
    yield wanted
    for name, value in saved.items():
        setattr(*FLAGS[name], value)


def test_cuda_products_run_in_full_float32_with_deterministic_kernels_and_the_callers_flags_come_back(callers_flags):
    with reproducible("cuda"):
        assert flags() == {"cudnn.allow_tf32": False, "matmul.allow_tf32": False, "cudnn.benchmark": False,
                           "cudnn.deterministic": True}
    assert flags() == callers_flags
    with pytest.raises(KeyError), reproducible(torch.device("cuda", 0)):
        raise KeyError("a failure inside")
    assert flags() == callers_flags


def test_the_cpu_changes_nothing(callers_flags):
    with reproducible("cpu"):
        assert flags() == callers_flags
    assert device_kind("cpu") == device_kind(torch.device("cpu")) == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_device_is_named_by_its_model():
    assert device_kind("cuda") == f"cuda: {torch.cuda.get_device_name(0)}"


def test_the_fisher_operator_records_and_takes_products_under_the_settings(monkeypatch, conv_net, small_image):
    from eigdist_core import fisher

    entered = []

    def spy(device):
        entered.append(torch.device(device))
        return reproducible(device)

    monkeypatch.setattr(fisher, "reproducible", spy)
    op = fisher.FisherOperator(conv_net, small_image)
    op @ torch.ones(op.n)  # one vector: the recorded graph
    op @ torch.ones(2, op.n)  # a block: vmap
    assert entered == [torch.device("cpu")] * 6  # the linearisation, the gradient probe, a jvp and a vjp per product


@pytest.fixture
def no_cublas_setting(monkeypatch):
    """CUBLAS_WORKSPACE_CONFIG unset during the test and the caller's value (or none) back after it."""
    monkeypatch.setenv(CUBLAS_WORKSPACE[0], "recorded")  # so that undo also removes a value the test leaves
    monkeypatch.delenv(CUBLAS_WORKSPACE[0])


def test_the_cublas_workspace_is_set_inside_only_and_a_callers_own_setting_is_kept(no_cublas_setting, monkeypatch):
    name, value = CUBLAS_WORKSPACE
    with pytest.raises(KeyError), reproducible("cuda"):
        assert os.environ[name] == value == ":4096:8"
        raise KeyError("a failure inside")
    assert name not in os.environ
    monkeypatch.setenv(name, ":16:8")
    with reproducible("cuda"):
        assert os.environ[name] == ":16:8"
    assert os.environ[name] == ":16:8"


def test_the_command_sets_the_cublas_workspace_for_its_whole_process(no_cublas_setting, tmp_path):
    from eigdist.cli.main import main

    assert main(["stimuli", "show", str(tmp_path)]) == 2  # any command, even one that fails
    assert os.environ[CUBLAS_WORKSPACE[0]] == ":4096:8"


def test_torch_threads_come_back_after_an_error(one_thread):
    with pytest.raises(KeyError), torch_threads(2):
        assert torch.get_num_threads() == 2
        raise KeyError("a failure inside")
    assert torch.get_num_threads() == 1
