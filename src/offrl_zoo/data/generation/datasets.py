"""D4RL-style locomotion datasets generated on this machine from the shipped behaviour policies.

What D4RL did, with Gymnasium's v5 envs: ``random`` = uniform actions, ``medium``/``expert`` = stochastic
rollouts of one SAC snapshot, ``medium-expert`` = medium's complete episodes followed by expert,
``medium-replay`` = rollouts of the run's training snapshots up to the medium one, each taking the share
of rows that its stretch of training took in the replay buffer (the first ``start_steps`` rows uniform
random, as the SAC run explored). The last one approximates D4RL's replay buffer (a buffer mixes every
policy between snapshots; here each stretch is played by the snapshot that ends it).

Files are written in D4RL's HDF5 layout to ``<cache>/generated/<task>.hdf5`` with a sidecar
``<task>.json`` (SHA-256, recipe); a file whose hash or recipe does not match is generated again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from offrl_zoo.data.generation.rollout import Rollout, actor_policy, rollout, uniform_policy
from offrl_zoo.data.generation.shipped import ENV_IDS, ShippedPolicy, get_policy, replay_sequence
from offrl_zoo.errors import DatasetError
from offrl_zoo.io import atomic_path, write_json

KINDS = ("random", "medium", "medium-replay", "medium-expert", "expert")
# Rows per file as in D4RL v2 (medium-replay: the size of each env's replay dump).
SIZES = {"random": 1_000_000, "medium": 1_000_000, "expert": 1_000_000}
REPLAY_SIZES = {"hopper": 402_000, "halfcheetah": 202_000, "walker2d": 302_000}
NUM_ENVS = 16
FORMAT_VERSION = 1
# D4RL's medium-expert counts exactly the complete-episode rows of its medium and expert files (hopper
# 999 906 + 999 494 = 1 999 400): the medium file's cut last episode is not glued onto the first expert one.
MEDIUM_EXPERT_JOIN = "medium's complete episodes, then the whole expert file"


def parse_task(task_id: str) -> tuple[str, str]:
    """``hopper-medium-replay-v2`` → (``hopper``, ``medium-replay``)."""
    for domain in ENV_IDS:
        for kind in KINDS:
            if task_id == f"{domain}-{kind}-v2":
                return domain, kind
    raise DatasetError(f"{task_id!r} cannot be generated: expected <{'|'.join(ENV_IDS)}>-<{'|'.join(KINDS)}>-v2")


def can_generate(task_id: str) -> bool:
    try:
        parse_task(task_id)
    except DatasetError:
        return False
    return True


def generated_dir(cache: Path | None = None) -> Path:
    from offrl_zoo.data.sources import cache_dir

    return (cache or cache_dir()) / "generated"


def recipe(task_id: str, seed: int = 0, size: int | None = None) -> dict:
    """Everything the generated file depends on; a cached file with another recipe is stale."""
    domain, kind = parse_task(task_id)
    recipe: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "task": task_id,
        "env_id": ENV_IDS[domain],
        "seed": seed,
        "size": size or _default_size(domain, kind),
        "policies": {},
    }
    for policy in policies_for(domain, kind):
        recipe["policies"][policy.name] = policy.meta["sha256"]
    if kind == "medium-expert":
        recipe["join"] = MEDIUM_EXPERT_JOIN
    return recipe


def _default_size(domain: str, kind: str) -> int:
    if kind == "medium-replay":
        return REPLAY_SIZES[domain]
    if kind == "medium-expert":
        return SIZES["medium"] + SIZES["expert"]
    return SIZES[kind]


def policies_for(domain: str, kind: str) -> list[ShippedPolicy]:
    """The shipped policies a dataset kind is rolled out from (none for random); raises if one is missing."""
    if kind == "random":
        return []
    if kind == "medium-replay":
        sequence = replay_sequence(domain)
        if not sequence:
            get_policy(domain, "replay_")  # raises the "no shipped policy" error
        return sequence
    if kind == "medium-expert":
        return [get_policy(domain, "medium"), get_policy(domain, "expert")]
    return [get_policy(domain, kind)]


def generated_path(task_id: str, seed: int = 0, size: int | None = None, cache: Path | None = None) -> Path:
    """Where a generated dataset is cached: ``TASK.hdf5`` for the default recipe, else with seed and size."""
    from offrl_zoo.data.sources import checked_id

    checked_id(task_id)
    default = _default_size(*parse_task(task_id))
    size = size or default
    if (seed, size) == (0, default):  # the default recipe asked for by its size (medium-expert's halves)
        return generated_dir(cache) / f"{task_id}.hdf5"
    return generated_dir(cache) / f"{task_id}-seed{seed}-n{size}.hdf5"


def ensure_generated(
    task_id: str,
    cache: Path | None = None,
    seed: int = 0,
    size: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> Path:
    """Path of the cached generated dataset, generating it first when missing, stale, corrupt or ``force``d."""
    from offrl_zoo.data.sources import sha256_file

    want = recipe(task_id, seed, size)
    path = generated_path(task_id, seed, size, cache)
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file() and not force:
        meta = json.loads(sidecar.read_text())
        if meta.get("recipe") != want:
            log(f"{path}: made by another recipe (policies or settings changed); generating it again")
        elif sha256_file(path) != meta.get("sha256"):
            log(f"{path}: SHA-256 does not match {sidecar.name} (corrupt or modified); generating it again")
        else:
            return path
    generate(task_id, path, seed=seed, size=want["size"], progress=progress, log=log, cache=cache)
    return path


def generate(
    task_id: str,
    path: Path,
    seed: int = 0,
    size: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    cache: Path | None = None,
) -> dict:
    """Write the dataset to ``path`` (atomically) and its sidecar; returns the sidecar's content."""
    from offrl_zoo.data.sources import sha256_file

    domain, kind = parse_task(task_id)
    want = recipe(task_id, seed, size)
    n = want["size"]
    env_id = ENV_IDS[domain]
    start = time.perf_counter()
    at_most = "up to " if kind == "medium-expert" else ""  # medium's cut last episode is left out
    log(f"generating {task_id} ({at_most}{n:,} transitions in {env_id}) → {path}")
    if kind == "medium-expert":  # D4RL: the medium file followed by the expert file
        half = {k: (seed, None if size is None else n // 2) for k in ("medium", "expert")}
        medium, expert = (
            _read_all(ensure_generated(f"{domain}-{k}-v2", cache, s, m, progress, log)) for k, (s, m) in half.items()
        )
        keep = _complete_rows(medium)
        arrays = {k: np.concatenate([medium[k][:keep], expert[k]]) for k in medium}
        policy_meta = None
    else:
        arrays, policy_meta = _roll(domain, kind, env_id, n, seed, progress, task_id)
    # Only what determines the content goes into the file (no times, hosts or versions), so that the
    # same recipe gives the same bytes and the same SHA-256.
    provenance = {"generated_by": f"offrl-zoo from {_describe(domain, kind)}", "recipe": want}
    write_d4rl_hdf5(path, arrays, provenance, policy_meta)
    meta: dict[str, Any] = {
        "recipe": want,
        "sha256": sha256_file(path),
        "transitions": len(arrays["rewards"]),
        "generated_by": provenance["generated_by"],
        "seconds": round(time.perf_counter() - start, 1),
        "versions": _versions(),
    }
    write_json(path.with_suffix(".json"), meta)
    log(f"{task_id}: {meta['transitions']:,} transitions in {meta['seconds']} s, sha256 {meta['sha256'][:16]}…")
    return meta


def _versions() -> dict:
    import gymnasium
    import mujoco
    import torch

    return {
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "mujoco": mujoco.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
    }


def _describe(domain: str, kind: str) -> str:
    if kind == "random":
        return f"uniform random actions in {ENV_IDS[domain]}"
    names = ", ".join(f"{domain}/{p.name} (sha256 {p.meta['sha256'][:12]}…)" for p in policies_for(domain, kind))
    return f"policy {names}" if kind in ("medium", "expert") else f"policies {names}"


def _roll(domain: str, kind: str, env_id: str, n: int, seed: int, progress: bool, label: str):
    from offrl_zoo.algorithm import derived_seed
    from offrl_zoo.envs.make import box, make

    make_env = lambda: make(env_id)  # noqa: E731
    bar = _bar(progress, n, label)
    if kind == "random":
        env = make_env()
        space = box(env.action_space)
        policy = uniform_policy(space.low, space.high)
        env.close()
        segments = [(policy, n)]
        policy_meta = None
    elif kind in ("medium", "expert"):
        shipped = get_policy(domain, kind)
        segments = [(actor_policy(shipped.load()), n)]
        policy_meta = shipped
    else:
        segments = _replay_segments(domain, env_id, n)
        policy_meta = None
    pieces: list[Rollout] = []
    done = 0
    for i, (policy, rows) in enumerate(segments):
        report = None if bar is None else (lambda k, base=done: bar.update(base + k - bar.n))
        part = rollout(
            make_env,
            policy,
            seed=derived_seed(seed, label, i, nbytes=4),
            transitions=rows,
            num_envs=NUM_ENVS,
            progress=report,
        )
        pieces.append(part)
        done += rows
    if bar is not None:
        bar.close()
    arrays = {k: np.concatenate([p.arrays[k] for p in pieces]) for k in pieces[0].arrays}
    return arrays, policy_meta


def _replay_segments(domain: str, env_id: str, n: int) -> list:
    from offrl_zoo.envs.make import box, make

    sequence = replay_sequence(domain)
    start_steps = int(sequence[0].meta["sac"]["start_steps"])
    stretches: list[tuple[ShippedPolicy | None, int]] = [(None, start_steps)]
    previous = start_steps
    for policy in sequence:
        stretches.append((policy, max(0, policy.step - previous)))
        previous = policy.step
    total = sum(length for _, length in stretches)
    rows = [int(n * length // total) for _, length in stretches]
    rows[-1] += n - sum(rows)  # rounding goes to the medium snapshot
    env = make(env_id)
    space = box(env.action_space)
    random_policy = uniform_policy(space.low, space.high)
    env.close()
    pairs = zip(stretches, rows, strict=True)
    return [(random_policy if p is None else actor_policy(p.load()), r) for (p, _), r in pairs if r > 0]


def _bar(enabled: bool, total: int, label: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"generate {label}", unit="step", smoothing=0.05)


def _complete_rows(arrays: dict[str, np.ndarray]) -> int:
    """Rows up to the last episode end: D4RL's medium-expert leaves out the medium file's cut last episode."""
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    return int(ends[-1]) + 1 if len(ends) else 0


def _read_all(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as fh:
        out: dict[str, np.ndarray] = {}
        fh.visititems(
            lambda name, obj: (
                out.__setitem__(name, obj[()])
                if isinstance(obj, h5py.Dataset) and not name.startswith("metadata")
                else None
            )
        )
    return out


def write_d4rl_hdf5(
    path: Path, arrays: dict[str, np.ndarray], provenance: dict, policy: ShippedPolicy | None = None
) -> None:
    """D4RL's layout: flat arrays, ``infos/*``, ``metadata/*`` (policy weights as D4RL's rlkit names)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        for key in sorted(arrays):
            fh.create_dataset(key, data=arrays[key], compression="gzip")
        fh["metadata/algorithm"] = np.bytes_("SAC")
        fh["metadata/offrl_zoo"] = np.bytes_(json.dumps(provenance, sort_keys=True))
        if policy is not None:
            fh["metadata/iteration"] = np.int64(policy.step)
            _write_policy(fh, policy)


def _write_policy(fh: h5py.File, policy: ShippedPolicy) -> None:
    """rlkit's names: fc0, fc1, last_fc (mean), last_fc_log_std; our last layer holds both heads."""
    state = {k: v.numpy() for k, v in policy.load().state_dict().items()}
    action_dim = policy.meta["action_dim"]
    linear = sorted({k.rsplit(".", 1)[0] for k in state}, key=lambda k: int(k.split(".")[-1]))
    for i, name in enumerate(linear[:-1]):
        fh[f"metadata/policy/fc{i}/weight"] = state[f"{name}.weight"]
        fh[f"metadata/policy/fc{i}/bias"] = state[f"{name}.bias"]
    last = linear[-1]
    for head, rows in (("last_fc", slice(0, action_dim)), ("last_fc_log_std", slice(action_dim, None))):
        fh[f"metadata/policy/{head}/weight"] = state[f"{last}.weight"][rows]
        fh[f"metadata/policy/{head}/bias"] = state[f"{last}.bias"][rows]
    fh["metadata/policy/nonlinearity"] = np.bytes_("relu")
    fh["metadata/policy/output_distribution"] = np.bytes_("tanh_gaussian")
