"""The ``Dataset``: one TensorDict of transitions in TorchRL's key layout, its spec and its provenance.

Sources hand over flat arrays with D4RL's names (``observations``, ``actions``, ``rewards``,
``terminals``, ``timeouts``, ``next_observations``); ``transitions_from_arrays`` turns them into
transitions by one of two rules:

- ``qlearning`` (default): exactly D4RL's ``qlearning_dataset(terminate_on_end=False)``: row i is
  paired with observation i+1 (stored ``next_observations`` ignored), the last row and every timed-out
  row are dropped, ``done`` = true terminations only. This is what every official implementation used.
- ``next_observations``: every row kept, paired with the stored next observation; timeouts become
  ``truncated`` (never ``done``). Correct at episode ends and keeps the rows D4RL drops.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tensordict import TensorDict

from offrl_zoo.errors import DatasetError
from offrl_zoo.spec import DataSpec

TRANSITION_RULES = ("qlearning", "next_observations")


@dataclass
class Provenance:
    source: str  # toy | d4rl (real files) | generated (by offrl-zoo) | minari | file (a user HDF5)
    dataset_id: str
    path: str | None
    sha256: str
    transitions: int
    episodes: int
    rule: str
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Dataset:
    data: TensorDict  # batch [N]: observation, action, next/{observation, reward, done, terminated, truncated}
    spec: DataSpec
    provenance: Provenance
    holdout: TensorDict | None = None  # held-out transitions (``holdout_fraction``), never trained on

    def __len__(self) -> int:
        return int(self.data.batch_size[0])

    def to(self, device: torch.device | str) -> Dataset:
        holdout = None if self.holdout is None else self.holdout.to(device)
        return Dataset(self.data.to(device), self.spec, self.provenance, holdout)


def _field(arrays: dict[str, np.ndarray], key: str, origin: str) -> np.ndarray:
    if key not in arrays:
        raise DatasetError(f"{origin}: required field {key!r} is missing (found: {', '.join(sorted(arrays))})")
    return np.asarray(arrays[key])


def count_episodes(terminals: np.ndarray, timeouts: np.ndarray | None) -> int:
    ends = terminals.astype(bool) | (timeouts.astype(bool) if timeouts is not None else False)
    return int(ends.sum()) + int(len(ends) > 0 and not ends[-1])


def transitions_from_arrays(
    arrays: dict[str, np.ndarray], origin: str, rule: str = "qlearning", max_episode_steps: int = 1000
) -> TensorDict:
    """Transitions (TorchRL layout, float32) from flat D4RL-named arrays; see the module docstring."""
    if rule not in TRANSITION_RULES:
        raise DatasetError(f"{origin}: transition rule {rule!r} unknown; expected one of {TRANSITION_RULES}")
    obs = _field(arrays, "observations", origin)
    actions = _field(arrays, "actions", origin)
    rewards = _field(arrays, "rewards", origin)
    if rewards.ndim == 2 and rewards.shape[1] == 1:  # some D4RL files store (N, 1)
        rewards = rewards[:, 0]
    terminals = _field(arrays, "terminals", origin).reshape(-1).astype(bool)
    timeouts = arrays.get("timeouts")
    timeouts = None if timeouts is None else np.asarray(timeouts).reshape(-1).astype(bool)
    n = len(obs)
    for key, value in (("actions", actions), ("rewards", rewards), ("terminals", terminals), ("timeouts", timeouts)):
        if value is not None and len(value) != n:
            raise DatasetError(f"{origin}: field {key!r} has {len(value)} rows but 'observations' has {n}")
    if rewards.ndim != 1:
        raise DatasetError(f"{origin}: field 'rewards' has shape {rewards.shape}, expected ({n},) or ({n}, 1)")
    for key, value in (("observations", obs), ("actions", actions), ("rewards", rewards)):
        if value.ndim != (1 if key == "rewards" else 2):
            raise DatasetError(f"{origin}: field {key!r} has shape {value.shape}, expected (N, dim)")
        if not np.isfinite(value).all():
            bad = int(np.argwhere(~np.isfinite(value.reshape(n, -1)))[0, 0])
            raise DatasetError(f"{origin}: field {key!r} holds NaN/Inf (first at row {bad}); expected finite values")
    if n < 2:
        raise DatasetError(f"{origin}: {n} rows; at least 2 are needed to form a transition")

    if rule == "qlearning":
        keep = np.ones(n - 1, bool)
        final = timeouts[:-1] if timeouts is not None else _counter_timeouts(terminals, max_episode_steps)
        keep &= ~final
        idx = np.nonzero(keep)[0]
        next_obs = obs[idx + 1]
        truncated = np.zeros(len(idx), bool)
    else:
        next_obs_all = _field(arrays, "next_observations", origin)
        if next_obs_all.shape != obs.shape:
            raise DatasetError(
                f"{origin}: 'next_observations' has shape {next_obs_all.shape}, expected {obs.shape}"
            )
        idx = np.arange(n)
        next_obs = next_obs_all
        truncated = timeouts if timeouts is not None else np.zeros(n, bool)
    terminated = terminals[idx]

    def t(x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(x)).to(dtype)

    m = len(idx)
    return TensorDict(
        {
            "observation": t(obs[idx]),
            "action": t(actions[idx]),
            "next": {
                "observation": t(next_obs),
                "reward": t(rewards[idx]).reshape(m, 1),
                "done": t(terminated, torch.bool).reshape(m, 1),
                "terminated": t(terminated, torch.bool).reshape(m, 1),
                "truncated": t(truncated, torch.bool).reshape(m, 1),
            },
        },
        batch_size=[m],
    )


def _counter_timeouts(terminals: np.ndarray, max_episode_steps: int) -> np.ndarray:
    """D4RL's fallback when a file has no ``timeouts``: a step counter reaching max_episode_steps − 1.

    Reproduces the original loop exactly, including its off-by-one: after a terminal the counter
    restarts at 1, not 0, because it is reset before the row is appended and incremented after.
    """
    final = np.zeros(len(terminals) - 1, bool)
    step = 0
    for i, done in enumerate(terminals[:-1].tolist()):
        if step == max_episode_steps - 1:
            final[i] = True
            step = 0
            continue
        if done:
            step = 0
        step += 1
    return final


def spec_from(
    data: TensorDict, action_low: np.ndarray | None = None, action_high: np.ndarray | None = None
) -> DataSpec:
    """Spec of a transition TensorDict; bounds default to the symmetric D4RL box [−1, 1]."""
    obs_dim = int(data["observation"].shape[-1])
    action_dim = int(data["action"].shape[-1])
    low = np.full(action_dim, -1.0) if action_low is None else np.broadcast_to(action_low, (action_dim,))
    high = np.full(action_dim, 1.0) if action_high is None else np.broadcast_to(action_high, (action_dim,))
    return DataSpec(obs_dim, action_dim, tuple(map(float, low)), tuple(map(float, high)))
