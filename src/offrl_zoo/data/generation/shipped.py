"""The behaviour policies shipped inside the package, and how snapshots of a SAC run become them.

``policies/<domain>/<name>.pt`` holds an actor's weights (``TanhGaussianPolicy``, 256×256) and
``<name>.json`` its metadata: env id and versions, SAC training step, evaluated returns, SHA-256 of the
weights file. Names: ``medium``, ``expert`` and ``replay_<step>`` (the training snapshots whose
rollouts stand in for D4RL's medium-replay buffer). Weights are verified against the metadata's
SHA-256 before they are used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym

from offrl_zoo.data.generation.sac import SACConfig, make_actor
from offrl_zoo.envs.make import box, make
from offrl_zoo.errors import DatasetError
from offrl_zoo.io import load_torch, write_json
from offrl_zoo.nets import TanhGaussianPolicy

PACKAGE_POLICIES = Path(__file__).parent / "policies"
ENV_IDS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
# Returns of D4RL's medium data that the shipped medium policies aim at (stochastic rollouts).
MEDIUM_RANGES = {"hopper": (1200.0, 1600.0), "halfcheetah": (4500.0, 4800.0), "walker2d": (2800.0, 3200.0)}
REPLAY_SNAPSHOTS = 10  # training snapshots kept per env for medium-replay (package size)
RECHECK_EPISODES = 50  # a training snapshot's 10 episodes are too few to place a hopper policy in its range
EXPERT_CANDIDATES = 5  # best training-time returns re-checked before the expert is chosen


def policy_root() -> Path:
    """$OFFRL_ZOO_POLICIES (e.g. a user's own exported policies), else the ones in the package."""
    return Path(os.environ.get("OFFRL_ZOO_POLICIES", PACKAGE_POLICIES))


@dataclass(frozen=True)
class ShippedPolicy:
    domain: str
    name: str
    meta: dict
    root: Path

    @property
    def path(self) -> Path:
        return self.root / self.domain / f"{self.name}.pt"

    @property
    def step(self) -> int:
        return int(self.meta["training_steps"])

    def load(self) -> TanhGaussianPolicy:
        from offrl_zoo.data.sources import sha256_file

        digest = sha256_file(self.path)
        if digest != self.meta["sha256"]:
            raise DatasetError(
                f"{self.path}: SHA-256 {digest[:12]}… does not match its metadata "
                f"({self.meta['sha256'][:12]}…); the policy file is corrupt or was replaced"
            )
        cfg = SACConfig(**{k: v for k, v in self.meta["sac"].items() if k in SACConfig.__dataclass_fields__})
        actor = make_actor(self.meta["obs_dim"], self.meta["action_dim"], cfg)
        actor.load_state_dict(load_torch(self.path))
        return actor.eval()


def shipped_policies(domain: str, root: Path | None = None) -> dict[str, ShippedPolicy]:
    root = root or policy_root()
    folder = root / domain
    if not folder.is_dir():
        return {}
    return {
        p.stem: ShippedPolicy(domain, p.stem, json.loads(p.read_text()), root) for p in sorted(folder.glob("*.json"))
    }


def get_policy(domain: str, name: str) -> ShippedPolicy:
    policies = shipped_policies(domain)
    if name not in policies:
        have = ", ".join(policies) or "none"
        raise DatasetError(
            f"no shipped {name!r} behaviour policy for {domain} in {policy_root() / domain} (have: {have}); "
            f"train one with `offrl-zoo data train-behaviour {ENV_IDS.get(domain, domain)}` and export it"
        )
    return policies[name]


def replay_sequence(domain: str) -> list[ShippedPolicy]:
    return sorted((p for n, p in shipped_policies(domain).items() if n.startswith("replay_")), key=lambda p: p.step)


ROLES = ("medium", "replay", "expert")


def export_policies(
    run_dir: Path,
    domain: str,
    dest: Path | None = None,
    expert_max_step: int = 1_000_000,
    medium_range: tuple[float, float] | None = None,
    roles: tuple[str, ...] = ROLES,
    recheck_episodes: int = RECHECK_EPISODES,
) -> dict:
    """Pick medium, expert and replay snapshots of a SAC run and write them with metadata to ``dest/domain``.

    medium: the snapshot whose stochastic return is closest to the middle of ``medium_range`` (default
    ``MEDIUM_RANGES[domain]``, D4RL's medium returns); expert: the best stochastic
    return within ``expert_max_step`` steps; replay: up to ``REPLAY_SNAPSHOTS`` snapshots evenly spaced
    over the steps up to the medium one (the medium snapshot last). Only ``roles`` are (re)written, so
    the expert can be exported after the medium data, once the run has trained long enough.
    ``recheck_episodes``: the choices are made on returns evaluated again with this many episodes (0: no
    re-check): for medium, of the snapshots whose training-time return lies within one range width of the
    range; for expert, of the ``EXPERT_CANDIDATES`` best training-time returns, since the maximum of many
    10-episode means overstates the policy it picks.
    """
    import mujoco

    from offrl_zoo.data.sources import sha256_file
    from offrl_zoo.io import JsonlLog

    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    records = JsonlLog(run_dir / "snapshots.jsonl").read()
    if not records:
        raise DatasetError(f"{run_dir}: no evaluated snapshots yet")
    low, high = medium_range or MEDIUM_RANGES[domain]
    env = make(config["env_id"])
    dims = {"obs_dim": box(env.observation_space).shape[0], "action_dim": box(env.action_space).shape[0]}
    env.close()
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"roles {sorted(unknown)}: expected some of {', '.join(ROLES)}")
    wants_medium = bool({"medium", "replay"} & set(roles))  # the replay sequence ends at the medium snapshot
    width = high - low
    near_medium = {r["step"] for r in records if low - width <= r["stochastic"]["mean"] <= high + width}
    eligible = [r for r in records if r["step"] <= expert_max_step]
    top = {r["step"] for r in sorted(eligible, key=lambda r: r["stochastic"]["mean"])[-EXPERT_CANDIDATES:]}
    recheck = (near_medium if wants_medium else set()) | (top if "expert" in roles else set())
    candidates = records  # replay snapshots keep their training-time returns
    if recheck and recheck_episodes > 0:
        candidates = _recheck(run_dir, config, dims, records, recheck, recheck_episodes)
    chosen = {}
    if wants_medium:
        medium = _closest_in_range(run_dir, candidates, (low, high))
        early = [r for r in records if r["step"] <= medium["step"]]
        stride = max(1, -(-len(early) // REPLAY_SNAPSHOTS))
        replay = early[::-1][::stride][::-1]  # evenly spaced, always ending with the medium snapshot
        chosen = {"medium": medium, **{f"replay_{r['step']:07d}": r for r in replay}}
    if "expert" in roles:
        chosen["expert"] = max((r for r in candidates if r["step"] in top), key=lambda r: r["stochastic"]["mean"])
    chosen = {name: record for name, record in chosen.items() if _role(name) in roles}

    out = (dest or PACKAGE_POLICIES) / domain
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):
        if _role(old.stem) in roles:
            old.unlink()
    last_step = records[-1]["step"]
    for name, record in chosen.items():
        weights = out / f"{name}.pt"
        weights.write_bytes((run_dir / "snapshots" / record["path"]).read_bytes())
        role = _role(name)
        write_json(
            out / f"{name}.json",
            {
                "domain": domain,
                "name": name,
                "role": role,
                "env_id": config["env_id"],
                "gymnasium_version": gym.__version__,
                "mujoco_version": mujoco.__version__,
                "training_steps": record["step"],
                "trained_steps_of_run": last_step,
                "seed": config["seed"],
                "return_stochastic": {k: record["stochastic"][k] for k in ("mean", "std")},
                "return_deterministic": {k: record["deterministic"][k] for k in ("mean", "std")},
                "eval_episodes": len(record["stochastic"]["returns"]),
                "selected_by": _SELECTION[role],
                "sac": config["sac"],
                **dims,
                "sha256": sha256_file(weights),
            },
        )
    return {name: (r["step"], r["stochastic"]["mean"]) for name, r in chosen.items()}


_SELECTION = {
    "medium": "stochastic return closest to the middle of D4RL's medium range, after the re-check",
    "expert": f"best re-checked stochastic return of the {EXPERT_CANDIDATES} best training-time evaluations",
    "replay": "evenly spaced training snapshots up to the medium one; training-time returns",
}


def _closest_in_range(run_dir: Path, records: list[dict], medium_range: tuple[float, float]) -> dict:
    low, high = medium_range
    middle = (low + high) / 2
    in_range = [r for r in records if low <= r["stochastic"]["mean"] <= high]
    if not in_range:
        near = sorted(records, key=lambda r: abs(r["stochastic"]["mean"] - middle))[:3]
        seen = ", ".join(
            f"step {r['step']}: {r['stochastic']['mean']:.0f} ({len(r['stochastic']['returns'])} episodes)"
            for r in near
        )
        raise DatasetError(
            f"{run_dir}: no snapshot has a stochastic return in [{low:g}, {high:g}] (nearest: {seen}); "
            "train on, or retrain with a smaller --snapshot-every"
        )
    return min(in_range, key=lambda r: abs(r["stochastic"]["mean"] - middle))


def _recheck(
    run_dir: Path, config: dict, dims: dict, records: list[dict], steps: set[int], episodes: int
) -> list[dict]:
    """The snapshot records, those at ``steps`` re-evaluated with ``episodes`` episodes per mode."""
    from offrl_zoo.data.generation.online import evaluate_actor

    sac = SACConfig(**{k: v for k, v in config["sac"].items() if k in SACConfig.__dataclass_fields__})
    out = []
    for record in records:
        if record["step"] in steps:
            actor = make_actor(dims["obs_dim"], dims["action_dim"], sac)
            actor.load_state_dict(load_torch(run_dir / "snapshots" / record["path"]))
            returns = evaluate_actor(config["env_id"], actor.eval(), episodes, seed=10_000 + record["step"])
            record = {**record, **returns}
        out.append(record)
    return out


def _role(name: str) -> str:
    return "replay" if name.startswith("replay_") else name
