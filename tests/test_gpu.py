"""The CUDA path in miniature (`benchmarks/gpu_check.py`'s exactness checks): run only where CUDA is present (skipped
on CPU machines and in CI)."""

import sys

import pytest
import torch

from conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    import gpu_check

    return gpu_check.parity_model(tmp_path_factory.mktemp("gpu"))


def test_parity_fixture_similarity_on_cuda_equals_cpu(parity):
    import gpu_check

    result = gpu_check.check_parity(*parity, CUDA)
    assert result["cpu_vs_original_max_abs_diff"] < 1e-5
    assert result["fp32_max_abs_diff"] <= 1e-4
    assert result["bf16_max_relative_diff"] <= gpu_check.TOLERANCES["bf16_similarity_relative"]


def test_one_training_step_on_cuda_equals_cpu(parity):
    import gpu_check

    result = gpu_check.check_training_step(parity[0], CUDA)
    assert result["normalised_frames_max_abs_diff"] <= 1e-6  # uint8 -> float32 normalisation on the device
    assert result["loss_abs_diff"] <= 1e-4
    assert result["gradient_max_relative_diff"] <= 1e-3
    assert result["sgd_weights_max_abs_diff"] <= 1e-5


def test_int8_scan_on_cuda_and_topk():
    import gpu_check

    result = gpu_check.check_int8_search(CUDA, rows=4096, dim=256)
    assert result["int8_scan_equal"] and result["same_topk_as_float32_scan"] == 1.0
