"""The macro channel: how the per-response macro signal ``v_g / v_max`` travels from the driver to the loss.

ETR's macro signal must be computed from whole groups (all G responses of a prompt), which only the driver sees:
the actor workers get micro-batches that split groups. It therefore has to travel with the batch, in a field that

1. every verl trainer writes back to the batch after computing advantages — verl's legacy ``RayPPOTrainer``
   (``compute_advantage``: ``data.batch["returns"] = returns``), the V1 trainers in every ``trainer_mode``
   (``_compute_advantage`` puts ``advantages`` and ``returns`` into TransferQueue);
2. reaches the actor worker's loss function with each micro-batch (the whole batch is sent to ``update_actor``);
3. survives verl's planned declared-column data path (the ``neo`` branch materialises only the columns an engine
   declares; its training-batch spec lists ``advantages`` and ``returns``, not ad-hoc fields; whether it also
   takes a width-1 ``returns`` is unchecked: that branch is not released).

The advantage estimator's second output, ``returns``, is that field: ``etr_grpo`` returns GRPO's advantages and,
as ``returns``, the variance ratio of each response's group, one value per response (0 for an empty one).
GRPO-family runs have no critic, so verl reads ``returns`` only for its ``critic/returns/{mean,max,min}`` metrics,
which then show the macro signal (token-weighted). Limits, checked before Ray starts (:mod:`etr_verl.main`): a run
with a critic would train the critic on it (refused), and a KL penalty in the reward would make the outcome scores
non-binary (refused; use ``actor.use_kl_loss``).

Encoding, for response ``i`` with variance ratio ``r_i`` in ``[0, 1]`` and ``h_i`` = 1 when its response mask has
a valid token (0 for verl's padding samples)::

    returns_i0 = r_i * h_i             (bs, 1) fp32, exact: a product with 1 or 0
    r_i        = max_t returns_it      (exact, in whichever layout the worker gets it: (bs, 1) dense, width-1
                                        jagged rows, or a (bs, T) tensor padded with zeros, all entries <= r_i)

so the worker recovers the driver's fp32 values bit for bit, whichever trainer and batch layout carried them.
One value per response rather than one per token: a ``(bs, 1)`` field is what verl's ``(bs, T)`` code broadcasts
(``compute_data_metrics`` selects ``returns`` with the ``(bs, T)`` response mask, so ``critic/returns/*`` are still
token-weighted over the valid tokens), and writing ``(bs, T)`` copies of it was half the estimator's time on long
responses (``benchmarks/overhead.py``, docs/benchmarks.md section 2). The V1 trainers' ``response_to_nested``
stores the first ``min(1, length)`` entries of each row, so an empty response travels as an empty row (read as 0).

With ``policy_loss.etr_budget=preserve`` the channel carries, instead, each response's final elastic factor
``f_i`` (computed by the driver from the whole batch: :func:`etr_verl.elastic.budget_preserving_factor`),
*negated*: ``returns_i0 = -f_i * h_i``, ``f_i = -min_t returns_it``. The sign tells the two kinds apart, so a loss
expecting one can never read the other (a mismatch is an error naming both), and verl's ``critic/returns/*``
metrics show ``-f`` (mean over tokens).
"""

from __future__ import annotations

from typing import Any

import torch

from etr_verl.elastic import ETRInputError

FIELD = "returns"
"""The batch field carrying the macro signal (the advantage estimator's second output)."""

VARIANCE_RATIO = "variance_ratio"
FACTOR = "factor"
KINDS = (VARIANCE_RATIO, FACTOR)
"""What the channel carries: the variance ratios ``v_g / v_max`` (default) or the budget-preserving factors."""


def encode(variance_ratio: torch.Tensor, has_tokens: torch.Tensor) -> torch.Tensor:
    """The ``returns`` tensor that carries ``variance_ratio``.

    Args:
        variance_ratio: ``(bs,)`` fp32 ``v_g / v_max`` of each response's group, in ``[0, 1]``.
        has_tokens: ``(bs,)`` bool, responses with a valid token (:func:`etr_verl.elastic.response_has_tokens`).

    Returns:
        ``(bs, 1)`` fp32: ``variance_ratio[i]`` for a response with tokens, 0 for an empty one (verl's padding
        samples, whose ratio is not part of any group's).
    """
    if has_tokens.dtype != torch.bool or has_tokens.dim() != 1:
        raise TypeError(f"has_tokens must be a (bs,) bool tensor, got {has_tokens.dtype} of shape "
                        f"{tuple(has_tokens.shape)}: pass elastic.response_has_tokens(response_mask)")
    return (variance_ratio.to(torch.float32) * has_tokens).unsqueeze(-1)


def encode_factors(factor: torch.Tensor, has_tokens: torch.Tensor) -> torch.Tensor:
    """The ``returns`` tensor that carries budget-preserving factors: ``-factor[i]`` for a response with tokens,
    0 for an empty one; ``(bs,)`` fp32 factors ``>= 0``, ``(bs,)`` bool ``has_tokens`` -> ``(bs, 1)`` fp32."""
    return encode(factor, has_tokens).neg_()


def decode(returns: torch.Tensor, kind: str = VARIANCE_RATIO, factor_max: float = 1.0) -> torch.Tensor:
    """The ``(bs,)`` fp32 values of ``kind`` from a padded ``returns`` tensor, ``(bs, 1)`` as ``encode`` writes it or
    ``(bs, T)`` padded with zeros (0 for empty rows).

    Raises :class:`ETRInputError` when the values cannot be ETR's: not finite, outside ``[0, 1]`` (variance
    ratios), outside ``[-factor_max, 0]`` (factors), or of the other kind (the sign tells). ``returns`` then holds
    something else, e.g. GRPO's returns from an estimator other than ``etr_grpo``.
    """
    if kind not in KINDS:
        raise ETRInputError(f"unknown macro-channel kind {kind!r}; one of {KINDS}.")
    if returns.dim() != 2:
        raise ETRInputError(f"batch field {FIELD!r} has shape {tuple(returns.shape)}; expected (batch, tokens).")
    if returns.shape[1] == 0:
        return torch.zeros(returns.shape[0], dtype=torch.float32, device=returns.device)
    if not bool(torch.isfinite(returns).all()):
        raise ETRInputError(
            f"batch field {FIELD!r} (ETR's macro signal, v_g / v_max) holds NaN/inf: the driver computed it from "
            "non-finite outcome scores, or the batch was corrupted on the way. Check the reward function."
        )
    low, high = torch.aminmax(returns)
    if kind == FACTOR:
        return _decode_factors(returns, float(low), float(high), factor_max)
    if bool(low < 0) and bool(high <= 0):
        raise ETRInputError(
            f"batch field {FIELD!r} carries budget-preserving factors (negative values), but this loss reads "
            "variance ratios: its policy_loss.etr_budget is 'computed' while the driver's "
            "algorithm.etr.budget_preserving_reading is set. Run python -m etr_verl.main, which writes one from the "
            "other."
        )
    if not (bool(low >= 0) and bool(high <= 1)):
        raise ETRInputError(
            f"batch field {FIELD!r} holds values in [{float(low)}, {float(high)}], not ETR's macro signal (in [0, 1]):"
            " with policy_loss.etr_macro_source=driver the advantage estimator must be etr_grpo "
            "(algorithm.adv_estimator=etr_grpo), which writes the signal there."
        )
    return returns.amax(dim=-1).to(torch.float32)


def _decode_factors(returns: torch.Tensor, low: float, high: float, factor_max: float) -> torch.Tensor:
    """``decode`` for ``kind=factor``: ``returns`` in ``[-factor_max, 0]`` (``low``, ``high`` its extremes)."""
    if high > 0:
        raise ETRInputError(
            f"batch field {FIELD!r} holds values in [{low}, {high}], not budget-preserving factors (which travel "
            "as values <= 0): policy_loss.etr_budget=preserve needs algorithm.adv_estimator=etr_grpo with "
            "algorithm.etr.budget_preserving_reading set, which python -m etr_verl.main writes."
        )
    if low < -float(torch.tensor(factor_max, dtype=torch.float32)):  # the driver's fp32 clamp at factor_max
        raise ETRInputError(
            f"batch field {FIELD!r} holds a factor of {-low}, above this loss's policy_loss.etr_factor_max="
            f"{factor_max}: the driver's algorithm.etr.budget_preserving_reading and the loss's keys disagree."
        )
    return returns.amin(dim=-1).neg_().to(torch.float32)


def read(micro_batch: Any, kind: str = VARIANCE_RATIO, factor_max: float = 1.0) -> torch.Tensor:
    """The ``(bs,)`` values of ``kind`` of a worker micro-batch (a TensorDict, dense or jagged ``returns``)."""
    if FIELD not in micro_batch.keys():
        raise ETRInputError(
            f"the micro-batch has no {FIELD!r} field, so the driver's macro signal cannot reach the loss: run with "
            "algorithm.adv_estimator=etr_grpo (it writes the signal there), or set "
            "policy_loss.etr_macro_source=advantages."
        )
    padded = micro_batch.select(FIELD).to_padded_tensor()[FIELD]  # as verl's ppo_loss pads its own fields
    return decode(padded, kind, factor_max)
