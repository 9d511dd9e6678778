"""Reuse of finished shared stages (``Stage.shared``) across runs and algorithms.

A shared stage's identity is everything its result depends on: the ``shared`` dict the algorithm
declares, the raw dataset's SHA-256, the data preparation settings, the data spec, the seed, the
planned number of steps, batch size, sampling (and who draws it) and device type. The trainer reseeds every stage from
(seed, stage) at its start, so the stage's result is a function of that identity alone, and a cached
stage gives exactly the modules (and optimiser states) that training it again would give.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from offrl_zoo.algorithm import Algorithm, BaseConfig, Stage
from offrl_zoo.data.dataset import Dataset
from offrl_zoo.io import load_torch, save_torch, write_json


def stage_identity(
    stage: Stage, algo: Algorithm, dataset: Dataset, seed: int, steps: int, vectorized: bool = False
) -> dict:
    # capture replays the compiled update, the same numbers: it does not split the cache
    prep = {f.name: getattr(algo.cfg, f.name) for f in dataclasses.fields(BaseConfig) if f.name != "capture"}
    # who draws the batches changes them (draw=auto resolves by device and capture): the resolved rule splits it
    prep["draw"] = algo.batch_draw(stage, vectorized)
    # a stage trained in a seed batch rounds differently from one trained alone (as fast/eager do)
    batched = {"vectorized_seeds": True} if vectorized else {}
    return {
        **batched,
        "shared": stage.shared,
        "dataset_sha256": dataset.provenance.sha256,
        "prep": prep,
        "spec": dataclasses.asdict(dataset.spec),
        "seed": seed,
        "steps": steps,
        "batch_size": stage.batch_size,
        "sampling": stage.sampling,
        "device": algo.device.type,
    }


def identity_key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _stage_state(algo: Algorithm, stage: Stage) -> dict:
    return {
        "modules": {name: getattr(algo, name).state_dict() for name in stage.modules},
        "optimizers": {k: o.state_dict() for k, o in algo.optimizers.items() if k in stage.modules},
        "schedulers": {k: s.state_dict() for k, s in algo.schedulers.items() if k in stage.modules},
    }


def stage_folder(cache_dir: Path, identity: dict, stage: Stage) -> Path:
    return Path(cache_dir) / f"{stage.name}-{identity_key(identity)}"


def is_cached(cache_dir: Path, identity: dict, stage: Stage) -> bool:
    return (stage_folder(cache_dir, identity, stage) / "identity.json").is_file()


def save_stage(cache_dir: Path, identity: dict, algo: Algorithm, stage: Stage) -> Path:
    folder = stage_folder(cache_dir, identity, stage)
    save_torch(folder / "stage.pt", _stage_state(algo, stage))
    write_json(folder / "identity.json", identity)  # written last: its presence marks a complete entry
    return folder


def load_stage(cache_dir: Path, identity: dict, algo: Algorithm, stage: Stage) -> Path | None:
    """Load a cached result of ``stage`` into ``algo``; the entry's folder, or None if there is none."""
    folder = stage_folder(cache_dir, identity, stage)
    if not is_cached(cache_dir, identity, stage):
        return None
    state = load_torch(folder / "stage.pt", map_location="cpu")
    for name, module_state in state["modules"].items():
        getattr(algo, name).load_state_dict(module_state)
    algo.load_optimizer_states(state["optimizers"], state["schedulers"])
    return folder
