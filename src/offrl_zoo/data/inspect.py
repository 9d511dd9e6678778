"""Statistics of a D4RL-layout file: sizes, per-episode returns, hash; and a full validity check."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offrl_zoo.data.dataset import DatasetWarning, check_arrays, count_episodes, transitions_from_checked
from offrl_zoo.data.sources import minari_arrays, minari_sha256, read_d4rl_hdf5, sha256_file
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


def describe_arrays(arrays: dict[str, np.ndarray], origin: str, rule: str = "qlearning") -> dict:
    """Sizes and episode returns of validated D4RL-named arrays, by the one counting rule of ``data info``,
    ``data verify`` and ``train`` (docs/data.md, "Counting"): ``rows`` in the file; ``transitions`` that
    training makes of them by ``rule`` (qlearning drops the last row and every timeout row); ``episodes``
    including a last one cut by the file's end, of which ``complete_episodes`` end in a terminal or a
    timeout; returns over the complete ones."""
    returns, cut = complete_episode_returns(arrays["rewards"], arrays["terminals"], arrays.get("timeouts"))
    with warnings.catch_warnings():  # a missing timeouts field is reported by the full load, not here
        warnings.simplefilter("ignore", DatasetWarning)
        transitions = len(transitions_from_checked(arrays, origin, rule))
    stats: dict[str, Any] = {
        "rows": int(len(arrays["rewards"])),
        "transitions": transitions,
        "transition_rule": rule,
        "obs_dim": int(arrays["observations"].shape[1]),
        "action_dim": int(arrays["actions"].shape[1]),
        "terminals": int(np.asarray(arrays["terminals"]).sum()),
        "timeouts": None if "timeouts" not in arrays else int(np.asarray(arrays["timeouts"]).sum()),
        "episodes": count_episodes(arrays["terminals"], arrays.get("timeouts")),
        "complete_episodes": int(len(returns)),
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
    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path), **describe_arrays(arrays, str(path))}


def describe_minari(dataset_id: str) -> dict:
    """``describe_file`` for an installed Minari dataset (every step a transition, as training reads it)."""
    ds, arrays = minari_arrays(dataset_id)
    return {
        "dataset": f"minari:{dataset_id}",
        "path": str(ds.spec.data_path),
        "sha256": minari_sha256(ds, arrays),
        "env": ds.spec.env_spec.id if ds.spec.env_spec else None,
        **describe_arrays(arrays, f"minari:{dataset_id}", rule="next_observations"),
    }


def summary_line(stats: dict) -> str:
    """The counts of ``describe_arrays`` in one line (``data verify``)."""
    cut = stats["episodes"] - stats["complete_episodes"]
    return (
        f"{stats['rows']:,} rows -> {stats['transitions']:,} transitions ({stats['transition_rule']} rule), "
        f"{stats['episodes']:,} episodes ({stats['complete_episodes']:,} complete"
        + (f", the last {stats['trailing_cut_rows']:,} rows cut by the file's end)" if cut else ")")
    )
