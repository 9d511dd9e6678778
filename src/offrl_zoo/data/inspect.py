"""Statistics of a D4RL-layout file: sizes, per-episode returns, hash; and a full validity check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from offrl_zoo.data.dataset import check_arrays
from offrl_zoo.data.sources import read_d4rl_hdf5, sha256_file
from offrl_zoo.data.transforms import episode_returns


def complete_episode_returns(
    rewards: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """Undiscounted returns of the episodes that end in a terminal or timeout, and the length of the
    trailing rows that end in neither (an episode cut by the file's end, as in D4RL)."""
    ends = np.asarray(terminals, bool).reshape(-1).copy()
    if timeouts is not None:
        ends |= np.asarray(timeouts, bool).reshape(-1)
    end_idx = np.flatnonzero(ends)
    returns = episode_returns(torch.as_tensor(np.asarray(rewards).reshape(-1)), torch.from_numpy(ends))
    cut = len(ends) - (end_idx[-1] + 1 if len(end_idx) else 0)
    return returns.numpy(), int(cut)


def describe_arrays(arrays: dict[str, np.ndarray]) -> dict:
    returns, cut = complete_episode_returns(arrays["rewards"], arrays["terminals"], arrays.get("timeouts"))
    stats: dict[str, Any] = {
        "transitions": int(len(arrays["rewards"])),
        "obs_dim": int(arrays["observations"].shape[1]),
        "action_dim": int(arrays["actions"].shape[1]),
        "terminals": int(np.asarray(arrays["terminals"]).sum()),
        "timeouts": None if "timeouts" not in arrays else int(np.asarray(arrays["timeouts"]).sum()),
        "episodes": int(len(returns)),
        "trailing_cut_rows": cut,
    }
    if len(returns):
        stats["return"] = {
            "mean": float(returns.mean()),
            "std": float(returns.std()),
            "min": float(returns.min()),
            "max": float(returns.max()),
        }
    return stats


def describe_file(path: str | Path) -> dict:
    arrays = check_arrays(read_d4rl_hdf5(path), str(path))
    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path), **describe_arrays(arrays)}
