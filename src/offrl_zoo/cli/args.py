"""CLI argument types and shared flags: a bad number is refused by argparse with the option's name, before any work."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected a positive integer")
    return value


def seed_int(text: str) -> int:
    value = _int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{value}: expected a seed in [0, 2**32)")
    return value


def _int(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer") from None


def add_fast_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fast",
        action="store_true",
        help="the fast path, same as fast=true: fused Adam and torch.compile (compiles for ~1 min first)",
    )


def add_vectorize_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--vectorize-seeds",
        action="store_true",
        help="train the seeds of one algorithm and task as one batched model (vmap); each seed "
        "computes what it computes alone and keeps its own run directory",
    )
