"""The loss's fast replacements for torch ops give the ops' exact results: values, gradients, NaN/inf, dtypes."""

from __future__ import annotations

import math

import pytest
import torch

from etr_verl import elastic

# not run on the other verl releases by `make test-versions`: ETR's pure-torch kernels
pytestmark = pytest.mark.verl_independent


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_clamp_ratio_equals_torch_clamp_in_values_and_gradient(dtype):
    gen = torch.Generator().manual_seed(0)
    lower = torch.tensor([[0.8], [0.9], [1.0]], dtype=dtype)
    upper = torch.tensor([[1.28], [1.1], [1.0]], dtype=dtype)  # the last row: a zero-width range
    specials = torch.tensor([math.nan, math.inf, -math.inf, 0.0], dtype=dtype).expand(3, 4)
    ratio = torch.cat([(torch.rand(3, 64, generator=gen) * 0.8 + 0.6).to(dtype), lower.expand(3, 2),
                       upper.expand(3, 2), specials], dim=1)  # values exactly at the bounds: ties
    grad = torch.randn(ratio.shape, generator=gen).to(dtype)
    grad[0, 0] = math.inf

    reference = ratio.clone().requires_grad_(True)
    ours = ratio.clone().requires_grad_(True)
    expected = torch.clamp(reference, lower, upper)
    got = elastic.clamp_ratio(ours, lower, upper)
    expected.backward(grad)
    got.backward(grad)

    assert got.dtype == expected.dtype
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.nan_to_num(7.0), expected.nan_to_num(7.0))
    assert torch.equal(ours.grad.isnan(), reference.grad.isnan())
    assert torch.equal(ours.grad.nan_to_num(7.0), reference.grad.nan_to_num(7.0))
    # the tie tokens (ratio exactly at a bound) get the whole gradient, as with clamp
    assert torch.equal(ours.grad[:, 64:68], grad[:, 64:68])


def test_clamp_ratio_refuses_bounds_that_carry_gradient():
    bound = torch.ones(2, 1, requires_grad=True)
    with pytest.raises(elastic.ETRInputError, match="must not require grad"):
        elastic.clamp_ratio(torch.ones(2, 3), bound, bound + 1)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.float32])
def test_response_has_tokens_equals_any(dtype):
    gen = torch.Generator().manual_seed(1)
    mask = torch.rand(6, 300, generator=gen) < 0.01  # sparse rows, some empty
    mask[2] = False
    mask[4, -1] = True
    got = elastic.response_has_tokens(mask.to(dtype))
    assert got.dtype == torch.bool
    assert torch.equal(got, mask.any(dim=-1))
    assert not got[2] and got[4]
    if dtype != torch.bool:  # 0/1 weights, as verl's masks: a fractional weight counts, 0 does not
        weights = mask.to(dtype) * (3 if dtype == torch.int64 else 0.25)
        assert torch.equal(elastic.response_has_tokens(weights), mask.any(dim=-1))
    assert elastic.response_has_tokens(torch.ones(3, 0, dtype=dtype)).tolist() == [False] * 3


@pytest.mark.parametrize("width", [7, 1 << 16])  # below and above the size where only unsure rows are scanned
@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.float32])
def test_response_has_tokens_on_verls_right_padded_masks(dtype, width):
    """verl's layout: each response from column 0, padded on the right, as a slice of the attention mask (not
    contiguous); rows of length 0 (padding samples) and one whose first token is masked (a multi-turn mask)."""
    lengths = torch.tensor([5, 0, 1, width, 0, 3])
    prompt_and_response = torch.zeros(6, 4 + width, dtype=dtype)
    response = prompt_and_response[:, 4:]
    response[torch.arange(width) < lengths[:, None]] = 1
    response[3, 0] = 0
    assert not response.is_contiguous()
    assert elastic.response_has_tokens(response).tolist() == [True, False, True, True, False, True]


def test_response_advantage_magnitude_equals_masked_inf_norm():
    gen = torch.Generator().manual_seed(2)
    advantages = torch.randn(5, 40, generator=gen)
    mask = torch.rand(5, 40, generator=gen) < 0.7
    mask[3] = False
    advantages[0, ~mask[0]] = math.nan  # garbage outside the mask is ignored
    expected = torch.linalg.vector_norm(torch.where(mask, advantages, 0.0), ord=math.inf, dim=-1)
    assert torch.equal(elastic.response_advantage_magnitude(advantages, mask), expected)
    assert elastic.response_advantage_magnitude(advantages, mask)[3] == 0
