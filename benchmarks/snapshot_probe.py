"""Is a run's collapsed evaluation a property of one snapshot of its weights, or of the whole stretch of
training around it? For diagnosing a run whose evaluations drop between good ones (docs/results.md).

    python benchmarks/snapshot_probe.py RUN_DIR CHECKPOINT... [--episodes 10] [--seed S] [--rows 4096]

RUN_DIR gives the algorithm, task, data and evaluation protocol. Each CHECKPOINT is a copy of
RUN_DIR/checkpoint.pt taken while the run trained (the trainer keeps only the last one; copy it as it is
rewritten, e.g. with ``--checkpoint-every 2500``). Each is loaded in turn and evaluated with the run's
episode seeds (``--seed`` for others) twice: with the actor the run evaluates, and with the Polyak average
of that actor which TD3+BC keeps for its targets (``actor_target``, τ = 0.005: roughly the mean of the last
200 actor updates, 400 training steps). Printed per checkpoint: the step, both scores, the share
of episodes that end before 100 steps, and on ``--rows`` dataset states the RMS distance of the actor's
action from the data's and from the averaged actor's.

A snapshot whose actor falls, with the actor as close to the data as at a good snapshot and the averaged
actor of the same moment walking (or falling at other moments), collapses because of where the last few
updates happen to leave the weights, not because training has gone wrong.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from offrl_zoo.data.loading import load_dataset
from offrl_zoo.data.transforms import prepare
from offrl_zoo.io import load_torch
from offrl_zoo.train.evaluator import Evaluator, eval_deterministic
from offrl_zoo.train.run import load_run
from offrl_zoo.train.trainer import load_algorithm_state


def probe(run_dir: Path, checkpoints: list[Path], episodes: int | None, seed: int | None, rows: int) -> None:
    algo, task, record = load_run(run_dir)
    if not (hasattr(algo, "actor") and hasattr(algo, "actor_target")):
        raise SystemExit(f"{run_dir}: {type(algo).__name__} keeps no Polyak-averaged actor (TD3+BC's actor_target)")
    request = record["request"]
    dataset = load_dataset(task, request["dataset"], rule=request["transitions"], download=False)
    data = prepare(dataset, algo.cfg, seed=request["seed"])[0].data  # what the run trained on
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:rows]
    obs, action = data["observation"][index].float(), data["action"][index].float()
    evaluator = Evaluator(
        task,
        episodes or request["eval_episodes"] or task.eval_episodes,
        seed=request["seed"] + 100 if seed is None else seed,
        deterministic=eval_deterministic(None, request.get("deterministic_eval"), task.deterministic_eval),
    )
    columns = ("step", "score", "falls", "avg score", "avg falls", "RMS a−data", "RMS a−avg")
    print(" ".join(f"{c:>10}" for c in columns))
    states = sorted(((load_torch(path, map_location="cpu"), path) for path in checkpoints), key=_step)
    for state, path in states:
        load_algorithm_state(algo, state, path)
        algo.eval()
        with torch.no_grad():
            a_live, a_avg = algo.actor(obs), algo.actor_target(obs)
        result = evaluator(algo)
        algo.actor.load_state_dict(algo.actor_target.state_dict())  # act with the average (the next load restores)
        result_avg = evaluator(algo)
        row = (
            f"{state['next_step']}" if state["stage_index"] < len(algo.stages()) else "end",
            f"{result['score_mean']:.1f}",
            f"{_falls(result):.0%}",
            f"{result_avg['score_mean']:.1f}",
            f"{_falls(result_avg):.0%}",
            f"{_rms(a_live - action):.3f}",
            f"{_rms(a_live - a_avg):.3f}",
        )
        print(" ".join(f"{c:>10}" for c in row), flush=True)
    evaluator.close()


def _step(loaded: tuple[dict, Path]) -> tuple[int, int]:
    """(stage, step) of a checkpoint: a finished stage's last one says (next stage, 0)."""
    return loaded[0]["stage_index"], loaded[0]["next_step"]


def _rms(x: torch.Tensor) -> float:
    return x.pow(2).mean().sqrt().item()


def _falls(result: dict) -> float:
    """The share of episodes that ended before 100 steps."""
    return sum(length < 100 for length in result["lengths"]) / len(result["lengths"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--episodes", type=int)
    parser.add_argument("--seed", type=int, help="first episode seed (default: the run's)")
    parser.add_argument("--rows", type=int, default=4096)
    args = parser.parse_args()
    torch.set_num_threads(1)
    probe(args.run_dir, args.checkpoints, args.episodes, args.seed, args.rows)


if __name__ == "__main__":
    main()
