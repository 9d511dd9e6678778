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

import difflib
import warnings
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


REQUIRED_FIELDS = ("observations", "actions", "rewards", "terminals")
FLAG_FIELDS = ("terminals", "timeouts")
VALUE_FIELDS = {"observations": 2, "actions": 2, "rewards": 1, "next_observations": 2}  # field -> ndim


class DatasetWarning(UserWarning):
    """Data that D4RL itself accepts but that deserves a look (actions outside the box, no timeouts)."""


def require_fields(found: list[str], origin: str) -> None:
    """Refuse a file without D4RL's required fields, suggesting a near-miss name (``reward``)."""
    for key in REQUIRED_FIELDS:
        if key not in found:
            close = difflib.get_close_matches(key, found, n=1, cutoff=0.6)
            hint = f"; is {close[0]!r} meant to be {key!r}?" if close else ""
            raise DatasetError(
                f"{origin}: required field {key!r} is missing (found: {', '.join(sorted(found)) or 'nothing'}){hint}"
            )


def check_arrays(arrays: dict[str, np.ndarray], origin: str) -> dict[str, np.ndarray]:
    """Validated copies of the D4RL fields: present, numeric, finite, 0/1 flags, one row count, ≥ 2 rows.

    Every refusal is one ``DatasetError`` naming ``origin``, the field and what was expected.
    """
    require_fields(list(arrays), origin)
    known = dict.fromkeys((*REQUIRED_FIELDS, *FLAG_FIELDS, *VALUE_FIELDS))  # observations first: it sets N
    out = {k: np.asarray(arrays[k]) for k in known if k in arrays}
    n = len(out["observations"]) if out["observations"].ndim else 0
    for key, value in out.items():
        if value.ndim == 2 and value.shape[1] == 1 and key in ("rewards", *FLAG_FIELDS):
            value = out[key] = value[:, 0]  # some D4RL files store (N, 1)
        ndim = VALUE_FIELDS.get(key, 1)
        if value.ndim != ndim or (ndim == 2 and value.shape[1] == 0):
            expected = "(N,) or (N, 1)" if ndim == 1 else "(N, dim) with dim ≥ 1"
            raise DatasetError(f"{origin}: field {key!r} has shape {value.shape}, expected {expected}")
        if len(value) != n:
            raise DatasetError(f"{origin}: field {key!r} has {len(value)} rows but 'observations' has {n}")
        if key in FLAG_FIELDS:
            out[key] = _flags(value, key, origin)
        elif value.dtype.kind not in "fiu":
            raise DatasetError(f"{origin}: field {key!r} has dtype {value.dtype}, expected real numbers (float32)")
        elif not (finite := np.isfinite(value) & (np.abs(value) <= np.finfo(np.float32).max)).all():
            bad = int(np.argwhere(~finite.reshape(n, -1))[0, 0])
            raise DatasetError(
                f"{origin}: field {key!r} holds NaN/Inf or values beyond float32 (first at row "
                f"{bad}); expected finite values"
            )
    if n < 2:
        raise DatasetError(f"{origin}: {n} rows; at least 2 are needed to form a transition")
    return out


def _flags(value: np.ndarray, key: str, origin: str) -> np.ndarray:
    if value.dtype.kind == "b":
        return value
    if value.dtype.kind not in "fiu":
        raise DatasetError(f"{origin}: field {key!r} has dtype {value.dtype}, expected booleans (or 0/1 numbers)")
    bad = np.flatnonzero((value != 0) & (value != 1))
    if len(bad):
        raise DatasetError(
            f"{origin}: field {key!r} holds {value[bad[0]].item()!r} at row {int(bad[0])}; expected "
            "booleans (or 0/1 numbers)"
        )
    return value.astype(bool)


def count_episodes(terminals: np.ndarray, timeouts: np.ndarray | None) -> int:
    ends = terminals.astype(bool) | (timeouts.astype(bool) if timeouts is not None else False)
    return int(ends.sum()) + int(len(ends) > 0 and not ends[-1])


def transitions_from_arrays(
    arrays: dict[str, np.ndarray], origin: str, rule: str = "qlearning", max_episode_steps: int = 1000
) -> TensorDict:
    """Transitions (TorchRL layout, float32) from flat D4RL-named arrays; see the module docstring."""
    return transitions_from_checked(check_arrays(arrays, origin), origin, rule, max_episode_steps)


def transitions_from_checked(
    arrays: dict[str, np.ndarray], origin: str, rule: str = "qlearning", max_episode_steps: int = 1000
) -> TensorDict:
    """``transitions_from_arrays`` for arrays that ``check_arrays`` has already validated."""
    if rule not in TRANSITION_RULES:
        raise DatasetError(f"{origin}: transition rule {rule!r} unknown; expected one of {TRANSITION_RULES}")
    obs, actions, rewards, terminals = (arrays[k] for k in REQUIRED_FIELDS)
    timeouts = arrays.get("timeouts")
    n = len(obs)

    if rule == "qlearning":
        if timeouts is None:
            warnings.warn(
                f"{origin}: no 'timeouts' field; episode ends are inferred as D4RL does, from a step "
                f"counter reaching {max_episode_steps - 1}",
                DatasetWarning,
                stacklevel=2,
            )
            final = _counter_timeouts(terminals, max_episode_steps)
        else:
            final = timeouts[:-1]
        idx = np.flatnonzero(~final)
        if len(idx) == 0:
            raise DatasetError(f"{origin}: every row ends an episode by timeout; no transitions remain")
        next_obs = obs[idx + 1]
        truncated = np.zeros(len(idx), bool)
    else:
        if "next_observations" not in arrays:
            raise DatasetError(f"{origin}: required field 'next_observations' is missing (its rule needs it)")
        next_obs_all = arrays["next_observations"]
        if next_obs_all.shape != obs.shape:
            raise DatasetError(f"{origin}: 'next_observations' has shape {next_obs_all.shape}, expected {obs.shape}")
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
