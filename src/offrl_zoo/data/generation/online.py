"""Online SAC training of a behaviour policy, checkpointed for exact resume, with evaluated snapshots.

Layout of a run directory::

    config.json          env id, seed, SAC settings, versions
    checkpoint.pt        networks, optimisers, RNG states, env RNG, counters (written at episode ends)
    buffer/A-B.npz       replay rows [A, B), append-only chunks written before each checkpoint
    snapshots/step_N.pt  actor weights every ``snapshot_every`` env steps
    snapshots.jsonl      per snapshot: step, stochastic and deterministic returns (mean ± std), time
    metrics.jsonl        losses every ``log_every`` steps

Checkpoints are taken at episode boundaries, so a resumed run continues exactly as an uninterrupted
one would (same env RNG, same replay buffer, same torch RNG), on the same machine and thread count.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers import RandomSampler

from offrl_zoo.algorithm import derived_seed
from offrl_zoo.data.generation.rollout import actor_policy, rollout
from offrl_zoo.data.generation.sac import SAC, SACConfig
from offrl_zoo.envs.make import box, make
from offrl_zoo.io import Checkpoint, JsonlLog, load_torch, save_torch, write_json
from offrl_zoo.nets import TanhGaussianPolicy

BUFFER_KEYS = ("observation", "action", "reward", "next_observation", "terminated")


@dataclass
class BehaviourRun:
    env_id: str
    out: Path
    seed: int = 0
    total_steps: int = 1_000_000
    snapshot_every: int = 10_000
    checkpoint_every: int = 10_000
    eval_episodes: int = 10
    log_every: int = 1000


def _make_env(env_id: str) -> gym.Env:
    return make(env_id)


def evaluate_actor(env_id: str, actor: TanhGaussianPolicy, episodes: int, seed: int) -> dict:
    """Stochastic returns (the policy that generates data) and deterministic ones (tanh of the mean)."""
    out = {}
    for mode, deterministic in (("stochastic", False), ("deterministic", True)):
        result = rollout(
            lambda: _make_env(env_id),
            actor_policy(actor, deterministic),
            seed=seed,
            episodes_per_env=1,
            num_envs=episodes,
        )
        returns = np.asarray(result.episode_returns)
        out[mode] = {"mean": float(returns.mean()), "std": float(returns.std()), "returns": returns.tolist()}
    return out


class _Buffer:
    """A TorchRL replay buffer plus the numpy rows not yet saved in a chunk."""

    def __init__(self, capacity: int, batch_size: int) -> None:
        self.rb = ReplayBuffer(storage=LazyTensorStorage(capacity), sampler=RandomSampler(), batch_size=batch_size)
        self.pending: list[tuple] = []

    def __len__(self) -> int:
        return len(self.rb)

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        row = (obs, action, np.float32(reward), next_obs, bool(terminated))
        self.pending.append(row)
        self.rb.extend(_rows_to_td([np.asarray(x)[None] for x in row]))

    def flush(self, folder: Path, start: int) -> None:
        if not self.pending:
            return
        arrays = {k: np.stack([r[i] for r in self.pending]) for i, k in enumerate(BUFFER_KEYS)}
        end = start + len(self.pending)
        save_torch(folder / f"{start:08d}-{end:08d}.pt", {k: torch.from_numpy(v) for k, v in arrays.items()})
        self.pending = []

    def restore(self, folder: Path, end: int) -> None:
        """Reload rows [0, end) from the chunks; chunks past ``end`` belong to a lost checkpoint."""
        cursor = 0
        for path in sorted(folder.glob("*.pt")):
            start, stop = (int(x) for x in path.stem.split("-"))
            if start >= end:
                path.unlink()
                continue
            if start != cursor or stop > end:
                raise RuntimeError(f"{folder}: replay chunk {path.name} does not continue row {cursor}")
            chunk = load_torch(path)
            self.rb.extend(_rows_to_td([chunk[k].numpy() for k in BUFFER_KEYS]))
            cursor = stop
        if cursor != end:
            raise RuntimeError(f"{folder}: replay chunks end at row {cursor}, the checkpoint at {end}")


def _rows_to_td(cols: list[np.ndarray]) -> TensorDict:
    obs, action, reward, next_obs, terminated = (torch.as_tensor(c) for c in cols)
    n = len(obs)
    return TensorDict(
        {
            "observation": obs.float(),
            "action": action.float(),
            "next": {
                "observation": next_obs.float(),
                "reward": reward.float().reshape(n, 1),
                "terminated": terminated.bool().reshape(n, 1),
            },
        },
        batch_size=[n],
    )


def train_behaviour(run: BehaviourRun, cfg: SACConfig, progress: bool = True) -> Path:
    """Train (or resume) SAC in ``run.env_id`` until ``run.total_steps`` env steps; returns the run dir."""
    out = Path(run.out)
    (out / "buffer").mkdir(parents=True, exist_ok=True)
    (out / "snapshots").mkdir(exist_ok=True)
    env = _make_env(run.env_id)
    obs_space, action_space = box(env.observation_space), box(env.action_space)
    obs_dim, action_dim = obs_space.shape[0], action_space.shape[0]
    if not np.allclose(action_space.high, 1) or not np.allclose(action_space.low, -1):
        raise ValueError(f"{run.env_id}: SAC behaviour training expects actions in [-1, 1]")
    torch.manual_seed(run.seed)
    agent = SAC(obs_dim, action_dim, cfg)
    buffer = _Buffer(run.total_steps, cfg.batch_size)
    metrics, snapshots = JsonlLog(out / "metrics.jsonl"), JsonlLog(out / "snapshots.jsonl")
    ckpt = Checkpoint(out / "checkpoint.pt", {"metrics": metrics, "snapshots": snapshots})
    if ckpt.exists():
        _check_same_run(out, run, cfg)

    def restore(state: dict) -> None:
        agent.load_training_state(state["agent"])
        buffer.restore(out / "buffer", state["step"])
        torch.set_rng_state(state["torch_rng"])
        env.unwrapped.np_random.bit_generator.state = state["env_rng"]

    state = ckpt.resume(restore)
    if state is None:
        write_json(out / "config.json", _config(run, cfg))
        step, episode, elapsed = 0, 0, 0.0
        obs, _ = env.reset(seed=run.seed)
    else:
        step, episode, elapsed = state["step"], state["episode"], state["elapsed"]
        obs, _ = env.reset()
    saved_rows, last_ckpt = step, step

    def save_checkpoint() -> None:
        nonlocal saved_rows, last_ckpt
        buffer.flush(out / "buffer", saved_rows)
        saved_rows = last_ckpt = step
        ckpt.save(
            {
                "agent": agent.training_state(),
                "step": step,
                "episode": episode,
                "elapsed": time.perf_counter() - t0,
                "torch_rng": torch.get_rng_state(),
                "env_rng": env.unwrapped.np_random.bit_generator.state,
            }
        )

    bar = _progress(progress, run.total_steps, step, run.env_id)
    t0 = time.perf_counter() - elapsed
    episode_return, logs = 0.0, []
    while step < run.total_steps:
        if step < cfg.start_steps:
            action = (torch.rand(action_dim) * 2 - 1).numpy()
        else:
            with torch.no_grad():
                sampled = agent.actor.sample_with_log_prob(torch.as_tensor(obs, dtype=torch.float32)[None])[0][0]
            action = sampled.numpy()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs.astype(np.float32), action.astype(np.float32), reward, next_obs.astype(np.float32), terminated)
        obs, step, episode_return = next_obs, step + 1, episode_return + float(reward)
        if step >= cfg.start_steps:
            logs.append(agent.update(buffer.rb.sample()))
        if step % run.log_every == 0 and logs:
            # torch.stack of TensorDicts is a TensorDict (__torch_function__), which torch's stubs cannot say
            record = {k: float(v) for k, v in cast(TensorDict, torch.stack(logs)).mean(0).items()}
            metrics.append({"step": step, "time": round(time.perf_counter() - t0, 1), **record})
            logs = []
        if step % run.snapshot_every == 0:
            _snapshot(run, agent, step, snapshots, time.perf_counter() - t0)
        if terminated or truncated:
            episode += 1
            metrics.append({"step": step, "episode": episode, "episode_return": round(episode_return, 3)})
            episode_return = 0.0
            if step - last_ckpt >= run.checkpoint_every:
                save_checkpoint()
            obs, _ = env.reset()
        if bar is not None:
            bar.update(1)
    if last_ckpt < step:  # the budget ended inside an episode: the run is over, nothing resumes from here
        save_checkpoint()
    write_json(out / "done", {"step": step, "episodes": episode, "elapsed_s": round(time.perf_counter() - t0, 1)})
    env.close()
    return out


def _config(run: BehaviourRun, cfg: SACConfig) -> dict:
    """The run's ``config.json``."""
    return {
        "env_id": run.env_id,
        "seed": run.seed,
        "sac": asdict(cfg),
        "run": {k: v for k, v in asdict(run).items() if k not in ("env_id", "out", "seed")},
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
    }


def _check_same_run(out: Path, run: BehaviourRun, cfg: SACConfig) -> None:
    """Refuse to resume a run directory that holds a run with other settings."""
    saved = json.loads((out / "config.json").read_text())
    # A setting added to SACConfig after the run started counts at its default (the old behaviour).
    saved_sac = {**json.loads(json.dumps(asdict(SACConfig()))), **saved["sac"]}
    if saved["env_id"] != run.env_id or saved["seed"] != run.seed or saved_sac != json.loads(json.dumps(asdict(cfg))):
        raise ValueError(f"{out}: holds a run with other settings ({saved['env_id']}, seed {saved['seed']})")


def _snapshot(run: BehaviourRun, agent: SAC, step: int, log: JsonlLog, elapsed: float) -> None:
    path = run.out / "snapshots" / f"step_{step:07d}.pt"
    save_torch(path, agent.actor.state_dict())
    with torch.random.fork_rng(devices=[]):
        result = evaluate_actor(run.env_id, agent.actor, run.eval_episodes, derived_seed(run.seed, "eval", nbytes=4))
    log.append({"step": step, "time": round(elapsed, 1), "path": path.name, **result})
    print(
        f"{run.env_id} step {step}: return {result['stochastic']['mean']:.1f} ± {result['stochastic']['std']:.1f}"
        f" (deterministic {result['deterministic']['mean']:.1f})",
        flush=True,
    )


def _progress(enabled: bool, total: int, start: int, name: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=f"SAC {name}", unit="step", smoothing=0.05)
