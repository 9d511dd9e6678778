"""Choosing one action per state among K scored candidates (DTQL, DTQL-KL, DQL, IDQL acting)."""

from __future__ import annotations

import torch

from offrl_zoo.nets import seed_batch


def select_candidates(candidates: torch.Tensor, scores: torch.Tensor, rule: str) -> torch.Tensor:
    """One action per state. ``candidates`` (B·K, A) in ``repeat_interleave`` order, ``scores`` (B, K).

    rule: ``argmax`` (highest score) | ``softmax`` (drawn ∝ exp(score), temperature 1) | ``weights``
    (drawn ∝ score, which must be ≥ 0). Draws use torch's RNG (in a seed batch, each seed's own stream), so
    seeded evaluations repeat exactly.
    """
    b, k = scores.shape
    if rule == "argmax":
        index = scores.argmax(1)
    elif rule == "softmax":
        index = seed_batch.multinomial(torch.softmax(scores, dim=1), 1).reshape(b)
    elif rule == "weights":
        index = seed_batch.multinomial(scores, 1).reshape(b)
    else:
        raise ValueError(f"rule={rule!r}: expected argmax, softmax or weights")
    return candidates.reshape(b, k, -1)[torch.arange(b, device=scores.device), index]


def describe_selection(rule: str, k: int, noun: str) -> str:
    """The words stamped next to a score for the softmax / argmax / single-sample acting rules."""
    return {
        "softmax": f"sample 1 of {k} {noun} samples with probability softmax(min target Q)",
        "argmax": f"argmax of min target Q over {k} {noun} samples",
        "policy": f"one {noun} sample",
    }[rule]
