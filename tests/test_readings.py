"""The family of readings (docs/algorithm.md, section 2b): each reading exact at zero against verl's `vanilla`, the
properties each one's words imply, its keys range-checked and never silently inert, its preset differing from
`etr` in ETR keys only, and the G = 8 table of the algorithm document computed by the code and checked by hand.

A real trainer step for the reading presets whose path to the workers differs (etr_upper, etr_budget) is in
test_trainer_e2e.py (slow)."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from etr_testkit import AGG_MODES, HANG_GUARD_S, load_script, loss_batch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_parity_with_vanilla import assert_same_as_vanilla

from etr_verl.adapters.loss_config import EtrPolicyLossConfig, InertReadingWarning
from etr_verl.elastic import (
    ElasticityCoefficients,
    ETRInputError,
    clip_bounds,
    elastic_factor,
    macro_weight,
    micro_factor,
)

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "etr_verl" / "hydra_configs" / "algo"
table = load_script(ROOT / "scripts" / "readings_table.py", "readings_table")
READINGS = table.reading_presets()
READING_KEYS = ("etr_micro_form", "etr_macro_floor", "etr_combine", "etr_bounds")


def preset_policy_loss(name: str) -> dict:
    return yaml.safe_load((PRESETS / f"{name}.yaml").read_text())["actor_rollout_ref"]["actor"]["policy_loss"]


def etr_keys(name: str, **changes) -> dict:
    """A preset's ETR keys as EtrPolicyLossConfig arguments (``.inf`` as YAML spells it)."""
    keys = {k: v for k, v in preset_policy_loss(name).items() if k.startswith("etr_") and k != "etr_macro_source"}
    keys.update(changes)
    return keys


def test_every_reading_the_issue_names_is_a_preset():
    forms = {name: {k: preset_policy_loss(name)[k] for k in READING_KEYS} for name in READINGS}
    assert {f["etr_micro_form"] for f in forms.values()} == {"power", "linear", "tanh"}
    assert any(f["etr_macro_floor"] > 0 for f in forms.values())
    assert {f["etr_combine"] for f in forms.values()} == {"multiply", "add"}
    assert {"both", "upper"} <= {f["etr_bounds"] for f in forms.values()}


@pytest.mark.parametrize("name", [n for n in READINGS if n not in ("etr", "etr_micro", "etr_macro")])
def test_a_reading_preset_differs_from_etr_in_etr_keys_only(name):
    def flat(node, prefix=""):
        out = {}
        for key, value in node.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    etr, reading = (flat(yaml.safe_load((PRESETS / f"{n}.yaml").read_text())) for n in ("etr", name))
    differing = {k for k in etr.keys() | reading.keys() if etr.get(k) != reading.get(k)}
    assert differing - {"algo_name"}, "a preset identical to etr"
    assert all(k.startswith("actor_rollout_ref.actor.policy_loss.etr_") for k in differing - {"algo_name"}), differing


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("off", ["alpha_beta_zero", "factor_pinned_to_one"])
@pytest.mark.parametrize("name", READINGS)
def test_each_reading_with_elasticity_off_equals_vanilla_bitwise(name, off, dtype):
    keys = etr_keys(name)
    if off == "alpha_beta_zero":
        keys.update(etr_alpha=0.0, etr_beta=0.0)
    else:
        keys.update(etr_factor_min=1.0, etr_factor_max=1.0)
    gen = torch.Generator().manual_seed(11)
    batch = loss_batch(16, 24, gen, dtype=dtype, empty_rows=2, spread=0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InertReadingWarning)  # the reading's keys are inert with its levels off
        for agg in AGG_MODES:
            for use_weights in (False, True):
                metrics = assert_same_as_vanilla(batch, agg, use_weights, keys)
    assert metrics["actor/pg_clipfrac"] > 0.05 and metrics["actor/pg_clipfrac_lower"] > 0.0


COEFFICIENTS = st.builds(
    ElasticityCoefficients,
    alpha=st.floats(0.05, 2.0), beta=st.floats(0.05, 2.0),
    adv_min=st.just(0.0), adv_max=st.sampled_from([math.inf, 3.0]),
    factor_min=st.floats(0.0, 1.0), factor_max=st.floats(1.0, 4.0),
    micro_form=st.sampled_from(["power", "linear", "tanh"]), macro_floor=st.floats(0.0, 1.0),
    combine=st.sampled_from(["multiply", "add"]), bounds=st.sampled_from(["both", "upper", "lower"]),
)


@settings(max_examples=150, deadline=None)
@given(coeffs=COEFFICIENTS, magnitudes=st.lists(st.floats(0.0, 10.0), min_size=2, max_size=16),
       ratio=st.floats(0.0, 1.0))
def test_every_reading_is_monotone_in_the_advantage_and_bounded(coeffs, magnitudes, ratio):
    adv = torch.tensor(sorted(magnitudes))
    factor = elastic_factor(adv, torch.full_like(adv, ratio), coeffs)
    assert bool((factor[1:] >= factor[:-1]).all())  # every micro form is non-decreasing in |A|
    assert bool((factor >= coeffs.factor_min).all()) and bool((factor <= coeffs.factor_max).all())
    if coeffs.micro_form != "power":  # linear and tanh never narrow: m >= 1
        assert bool((micro_factor(adv, coeffs) >= 1.0).all())
    if coeffs.micro_form == "tanh":
        assert bool((micro_factor(adv, coeffs) <= 1.0 + coeffs.alpha + 1e-6).all())


@settings(max_examples=150, deadline=None)
@given(coeffs=COEFFICIENTS, group_size=st.integers(2, 64), data=st.data())
def test_every_macro_weight_is_symmetric_largest_at_one_half_and_floored(coeffs, group_size, data):
    """Pass rates of real groups, k / G: p and 1 - p = (G - k) / G give the same variance ratio bit for bit."""
    k = data.draw(st.integers(0, group_size))

    def weight(successes):
        p, q = successes / group_size, (group_size - successes) / group_size
        return float(macro_weight(torch.tensor([4 * p * q]), coeffs)[0])

    assert weight(k) == weight(group_size - k)
    assert weight(k) <= weight(group_size // 2) + 1e-6 or group_size % 2  # p = 1/2 when G is even
    assert weight(k) <= float(macro_weight(torch.tensor([1.0]), coeffs)[0]) + 1e-6  # v / v_max = 1 at p = 1/2
    assert coeffs.macro_floor - 1e-6 <= weight(k) <= 1.0 + 1e-6


@pytest.mark.parametrize("name", READINGS)
def test_group_factors_are_symmetric_in_successes_and_failures(name):
    coeffs = table.preset_coefficients(name)
    for k in range(1, table.GROUP_SIZE):
        success, _ = table.group_factors(coeffs, k)
        _, mirrored_failure = table.group_factors(coeffs, table.GROUP_SIZE - k)
        if coeffs.bounds == "both":  # a success at p is a failure at 1 - p, with the same |A| and variance
            assert success == pytest.approx(mirrored_failure, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(coeffs=COEFFICIENTS, seed=st.integers(0, 2**16), cut=st.integers(1, 15))
def test_every_reading_is_micro_batch_invariant(coeffs, seed, cut):
    """The factor of a response depends on its own |A_i| and its group's signal (carried whole from the driver):
    computing it on any split of the batch gives the same bits."""
    gen = torch.Generator().manual_seed(seed)
    adv, ratio = torch.rand(16, generator=gen) * 3, torch.rand(16, generator=gen)
    whole = elastic_factor(adv, ratio, coeffs)
    parts = torch.cat([elastic_factor(adv[:cut], ratio[:cut], coeffs), elastic_factor(adv[cut:], ratio[cut:], coeffs)])
    assert torch.equal(whole, parts)


@pytest.mark.parametrize("bounds", ["upper", "lower"])
def test_a_static_bound_stays_exactly_static(bounds):
    factor = torch.tensor([0.5, 1.0, 1.7, 2.0])
    lower, upper = clip_bounds(factor, 0.2, 0.28, torch.bfloat16, bounds=bounds)
    static_lower, static_upper = clip_bounds(torch.ones(4), 0.2, 0.28, torch.bfloat16)
    elastic_lower, elastic_upper = clip_bounds(factor, 0.2, 0.28, torch.bfloat16)
    if bounds == "upper":
        assert torch.equal(lower, static_lower) and torch.equal(upper, elastic_upper)
    else:
        assert torch.equal(upper, static_upper) and torch.equal(lower, elastic_lower)


def test_the_algorithm_document_shows_the_table_the_code_prints():
    printed = subprocess.run([sys.executable, str(ROOT / "scripts" / "readings_table.py")], capture_output=True,
                             text=True, check=True, timeout=HANG_GUARD_S).stdout.strip()
    document = (ROOT / "docs" / "algorithm.md").read_text()
    embedded = document.split("<!-- readings-table:start -->\n", 1)[1].split("\n<!-- readings-table:end -->", 1)[0]
    assert embedded == printed


def test_the_table_against_values_worked_by_hand():
    """G = 8, 0/1 scores. k = 1: mean 1/8, unbiased var (49/64 + 7/64) / 7 = 1/8, std = 0.353553; the success
    has |A| = 0.875 / 0.353553 = 2.474874, the failures 0.125 / 0.353553 = 0.353553; v / v_max = 4 (1/8)(7/8) =
    0.4375. k = 4: std = sqrt(2/7) = 0.534522, |A| = 0.5 / 0.534522 = 0.935414, v / v_max = 1."""
    etr, linear, floor = (table.preset_coefficients(n) for n in ("etr", "etr_linear", "etr_floor"))
    # etr: f = |A| * sqrt(v / v_max), clamped to [0.5, 2]
    assert table.group_factors(etr, 1) == pytest.approx((2.474874 * 0.661438, 0.5), abs=1e-4)  # 1.637 / floor
    assert table.group_factors(etr, 4) == pytest.approx((0.935414, 0.935414), abs=1e-4)
    # etr_linear: f = (1 + 0.5 |A|) * sqrt(v / v_max)
    assert table.group_factors(linear, 1) == pytest.approx(((1 + 0.5 * 2.474874) * 0.661438,
                                                            (1 + 0.5 * 0.353553) * 0.661438), abs=1e-4)
    assert table.group_factors(linear, 4) == pytest.approx((1.467707, 1.467707), abs=1e-4)
    # etr_floor: w = 0.5 + 0.5 sqrt(v / v_max) = 0.830719 at k = 1; the success's 2.474874 * 0.830719 hits 2
    assert table.group_factors(floor, 1) == pytest.approx((2.0, 0.5), abs=1e-4)
    # k = 2: std = sqrt(1.5 / 7) = 0.462910, the successes have |A| = 0.75 / 0.462910 = 1.620185, v / v_max = 0.75
    assert table.group_factors(floor, 2)[0] == pytest.approx(1.620185 * (0.5 + 0.5 * math.sqrt(0.75)), abs=1e-4)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("etr_micro_form", "cube", "etr_micro_form='cube' is not one of ('power', 'linear', 'tanh')"),
    ("etr_combine", "max", "etr_combine='max' is not one of ('multiply', 'add')"),
    ("etr_bounds", "neither", "etr_bounds='neither' is not one of ('both', 'upper', 'lower')"),
    ("etr_macro_floor", 1.5, "etr_macro_floor=1.5 is out of range: it must be in [0, 1]"),
    ("etr_macro_floor", -0.1, "etr_macro_floor=-0.1 is out of range"),
])
def test_a_bad_reading_key_is_named(key, value, message):
    with pytest.raises(ETRInputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        EtrPolicyLossConfig(**{key: value})


@pytest.mark.parametrize(("keys", "named"), [
    (dict(etr_alpha=0.0, etr_micro_form="linear"), "etr_micro_form='linear' does nothing with"),
    (dict(etr_beta=0.0, etr_macro_floor=0.3), "etr_macro_floor=0.3 does nothing with"),
    (dict(etr_beta=0.0, etr_combine="add"), "etr_combine='add' equals 'multiply' unless both levels are on"),
    (dict(etr_alpha=0.0, etr_beta=0.0, etr_bounds="upper"), "etr_bounds='upper' does nothing with both levels off"),
])
def test_an_inert_reading_key_warns_with_its_name(keys, named):
    with pytest.warns(InertReadingWarning, match=named):
        EtrPolicyLossConfig(**keys)


def test_the_default_reading_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", InertReadingWarning)
        for name in READINGS:
            EtrPolicyLossConfig(**{k: (math.inf if v == ".inf" else v) for k, v in etr_keys(name).items()})
