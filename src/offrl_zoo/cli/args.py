"""CLI argument types and shared flags: a bad number is refused by argparse with the option's name, before any work."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

MAX_COUNT = 10**9  # steps, intervals, sizes: more is a typo (an extra zero), never an experiment
MAX_SEEDS = 10_000  # seeds of one command: each is a run of its own
MAX_EPISODES = 100_000  # evaluation episodes
MAX_THREADS = 1_024  # torch threads or parallel jobs


def bounded_int(limit: int, unit: str = "") -> Callable[[str], int]:
    """An argparse type: a positive integer of at most ``limit`` (named in the refusal)."""

    def parse(text: str) -> int:
        value = _int(text)
        if not 1 <= value <= limit:
            raise argparse.ArgumentTypeError(f"{value}: expected a positive integer of at most {limit:,}{unit}")
        return value

    return parse


positive_int = bounded_int(MAX_COUNT)
seed_count = bounded_int(MAX_SEEDS, " seeds")
episode_count = bounded_int(MAX_EPISODES, " episodes")
thread_count = bounded_int(MAX_THREADS)


def budget_name(text: str) -> str:
    """``compare --budget``: paper, quick or a step cap per stage (a positive integer of at most 10^9)."""
    if text in ("paper", "quick"):
        return text
    try:
        return str(positive_int(text))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected paper, quick or a number of steps per stage from 1 to {MAX_COUNT:,}"
        ) from None


def seed_int(text: str) -> int:
    value = _int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{value}: expected a seed in [0, 2**32)")
    return value


def seed_range(first: int, count: int) -> list[int]:
    """Seeds ``first .. first+count-1`` of ``--seed FIRST --seeds COUNT``; the last must be a valid seed too."""
    from offrl_zoo.errors import FlagError

    last = first + count - 1
    if last >= 2**32:
        raise FlagError(f"--seed {first} --seeds {count}: the last seed, {last}, is not below 2**32")
    return list(range(first, last + 1))


def _int(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer") from None


DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def device_name(text: str) -> str:
    """cpu, cuda or cuda:N (an existing N when CUDA is there); anything else is refused by argparse."""
    if not DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected cpu, cuda or cuda:N")
    if text.startswith("cuda:"):
        import torch

        count = torch.cuda.device_count()
        if count and int(text[5:]) >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {count} CUDA device(s), cuda:0..{count - 1}")
    return text


def add_device_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def add_data_source_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-source",
        default="auto",
        choices=["auto", "d4rl", "generated"],
        help="D4RL gym tasks: the real file when cached or downloadable, else offrl-zoo's generated "
        "dataset (auto); or only one of them",
    )


def add_fast_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fast",
        action="store_true",
        help="the fast path, same as fast=true: graph-safe optimiser steps and each whole update compiled as "
        "one graph (compiles for up to a minute per stage first)",
    )


VECTORIZE_HELP = (
    "train the seeds of one algorithm and task as one batched model (vmap); each seed computes what it "
    "computes alone and keeps its own run directory"
)


def add_vectorize_flag(p: argparse.ArgumentParser, cuda_default: bool = False) -> None:
    """``--vectorize-seeds``; with ``cuda_default``, also ``--no-vectorize-seeds`` and None when neither is given
    (then on for CUDA devices, where five batched seeds cost 1.4–1.8× one seed's time, eager, on an H200 on
    2026-12-04, against 5× one after another)."""
    if not cuda_default:
        p.add_argument("--vectorize-seeds", action="store_true", help=VECTORIZE_HELP)
        return
    p.add_argument(
        "--vectorize-seeds",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=VECTORIZE_HELP + " (default: on with --device cuda, off on the CPU)",
    )


def add_eval_action_flags(p: argparse.ArgumentParser, sampled: str, deterministic: str, default: str) -> None:
    """Sampled or deterministic evaluation actions; neither flag (None) leaves the choice to ``default``."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        sampled, dest="deterministic", action="store_false", default=None, help=f"sampled actions ({default})"
    )
    group.add_argument(
        deterministic, dest="deterministic", action="store_true", help=f"deterministic actions ({default})"
    )
