"""What a trained run's critic and policy do on its own dataset: does the critic tell actions apart, and
how far has the policy left the data? For diagnosing a run that does not learn (docs/results.md).

    python benchmarks/critic_probe.py RUN_DIR [--rows 4096] [--seed 0]

For DTQL, DTQL-KL (critic with ``q_min``) and SRPO (the target twin Q its policy climbs, and its V). On
``--rows`` transitions of the run's dataset, transformed as the run trained on them, drawn with ``--seed``,
it prints for the checkpoint:

- the min-of-ensemble Q of the dataset action, of the policy's action and of a uniformly random action,
  and V(s) where the critic has one: a critic whose Q barely changes between the dataset action and a
  random one gives the policy nothing to climb but its own errors;
- the share of states where the policy's action has a higher Q than the dataset's;
- how the behaviour diffusion model rates the policy's actions against the dataset actions: the
  trust-region loss (DTQL, DTQL-KL) or the noise-prediction loss of SRPO's behaviour model (its training
  loss, a bound on −log-likelihood up to constants; the same t and noise draws for every set), and that loss for
  uniformly random actions and for dataset actions paired with other states: a behaviour model that rates
  random actions (or another state's) as it rates the data cannot regularise the policy (or ignores the
  state);
- mean |action| and the share of saturated actions, for both, and their RMS distance.

The checkpoint is read, never written; a run still training can be probed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from offrl_zoo.data.loading import load_dataset
from offrl_zoo.data.transforms import prepare
from offrl_zoo.diffusion import trust_region_loss
from offrl_zoo.diffusion.vp_sde import vp_sde_eps_loss
from offrl_zoo.train.run import load_run


def probe(run_dir: Path, rows: int, seed: int) -> dict[str, float]:
    algo, task, record = load_run(run_dir)
    algo.eval()
    q_min, value = critic_of(algo, run_dir)
    request = record["request"]
    dataset = load_dataset(task, request["dataset"], rule=request["transitions"], download=False)
    data = prepare(dataset, algo.cfg, seed=request["seed"])[0].data  # what the run trained on
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(data), generator=generator)[:rows]
    obs, action = data["observation"][index].float(), data["action"][index].float()
    torch.manual_seed(seed)
    with torch.no_grad():
        policy_action = algo.sample_actions(obs) if hasattr(algo, "sample_actions") else algo._act(obs, True)
        random_action = (torch.rand(action.shape, generator=generator) * 2 - 1) * algo.spec.max_action
        q_data = q_min(obs, action)
        q_policy = q_min(obs, policy_action)
        out = {
            "Q(s, a_data)": q_data.mean().item(),
            "Q(s, a_policy)": q_policy.mean().item(),
            "Q(s, a_uniform)": q_min(obs, random_action).mean().item(),
            "share Q(a_policy) > Q(a_data)": (q_policy > q_data).float().mean().item(),
        }
        if value is not None:
            out["V(s)"] = value(obs).mean().item()
        shuffled = action[torch.randperm(len(action), generator=generator)]  # data actions of other states
        for name, a in (
            ("policy", policy_action),
            ("data", action),
            ("other states' data", shuffled),
            ("uniform", random_action),
        ):
            torch.manual_seed(seed)  # the same diffusion times and noise for every action set
            if hasattr(algo, "edm"):
                out[f"trust-region loss, {name}"] = trust_region_loss(
                    algo.edm, algo.behaviour, a, obs, algo.clip
                ).item()
            elif hasattr(algo, "behaviour"):
                out[f"behaviour ε-loss, {name}"] = vp_sde_eps_loss(algo.behaviour, a, obs).item()
    saturated = 0.99 * algo.spec.max_action
    for name, a in (("policy", policy_action), ("data", action)):
        out[f"mean |a|, {name}"] = a.abs().mean().item()
        out[f"share |a| > 0.99 max, {name}"] = (a.abs() > saturated).float().mean().item()
    out["RMS(a_policy − a_data)"] = (policy_action - action).pow(2).mean().sqrt().item()
    return out


def critic_of(algo, run_dir: Path) -> tuple[Callable, Callable | None]:
    """(min-of-heads Q the policy is trained on, V or None) of a run's algorithm."""
    critic = getattr(algo, "critic", None)
    if hasattr(critic, "q_min"):
        return critic.q_min, getattr(critic, "value", None)
    if hasattr(algo, "critic_target") and hasattr(algo, "v"):  # SRPO: the frozen target heads
        return (lambda obs, a: algo.critic_target(obs, a).min(0).values), algo.v
    raise SystemExit(f"{run_dir}: {type(algo).__name__} has no critic the probe reads (DTQL, DTQL-KL, SRPO)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for key, value in probe(args.run_dir, args.rows, args.seed).items():
        print(f"{key:38s} {value:10.3f}")


if __name__ == "__main__":
    main()
