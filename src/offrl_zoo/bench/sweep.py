"""A sweep: algorithms × tasks × seeds expanded into runs of one results store, with their status.

Results store (see docs/guide.md, Runs)::

    OUT/sweep.json                       what was asked (algorithms, suite, tasks, seeds, budget), merged
    OUT/runs/<algo>/<task>/seed<N>/      ordinary run directories (``offrl-zoo train`` layout)
    OUT/stages/                          finished shared stages, reused across the sweep's runs
    OUT/report/                          the report (``offrl-zoo report OUT`` rebuilds it)
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from offrl_zoo import registry
from offrl_zoo.config import field_names, presets, resolve
from offrl_zoo.envs import get_suite, get_task
from offrl_zoo.errors import ConfigError, UnsupportedTaskError
from offrl_zoo.io import write_json
from offrl_zoo.train.run import FAILED, LOCK
from offrl_zoo.train.trainer import CHECKPOINT, DONE


class QuickBudget(TypedDict):
    """A ``quick`` budget: see ``QUICK``."""

    steps: int
    config: dict[str, Any]


# ``quick`` budget per suite: every stage capped at ``steps`` gradient steps, the algorithm's ``quick``
# preset when it has one, then ``config`` values where the algorithm has the key. On the toys this is
# minibatches of 256 for 1 000 steps (the official toy settings are full batches of 10 000 for 3 500
# steps), so that a three-algorithm, three-seed toy comparison takes minutes on a CPU; its scores are
# lower than at the official settings (docs/toy.md). ``paper`` = the official settings.
QUICK: dict[str, QuickBudget] = {
    "toy": {"steps": 1000, "config": {"batch_size": 256}},
    "gym-medium": {"steps": 20_000, "config": {}},
    "gym": {"steps": 20_000, "config": {}},
}
DEFAULT_QUICK: QuickBudget = {"steps": 20_000, "config": {}}


@dataclass(frozen=True)
class Budget:
    name: str  # paper | quick | <steps>
    steps: int | None  # cap on every stage (None: the official number of steps)
    use_quick_preset: bool
    config: dict = field(default_factory=dict)  # values set where the algorithm's config has the key

    @classmethod
    def parse(cls, text: str, suite: str | None) -> Budget:
        if text == "paper":
            return cls("paper", None, False)
        if text == "quick":
            quick = QUICK.get(suite or "", DEFAULT_QUICK)
            return cls("quick", quick["steps"], True, dict(quick["config"]))
        try:
            steps = int(text)
        except ValueError:
            raise ConfigError(f"--budget {text!r}: expected paper, quick or a number of steps per stage") from None
        if steps < 1:
            raise ConfigError(f"--budget {steps}: expected at least 1 step")
        return cls(str(steps), steps, False)


@dataclass(frozen=True)
class RunSpec:
    algorithm: str
    task: str
    seed: int
    preset: str | None = None
    steps: int | None = None
    overrides: tuple[str, ...] = ()
    budget_config: tuple[tuple[str, object], ...] = ()  # the budget's values, applied as a config file
    shared_kinds: tuple[str, ...] = ()  # kinds of the shareable stages it trains (``Stage.shared["kind"]``)

    def run_dir(self, store: Path) -> Path:
        return store / "runs" / self.algorithm / self.task.replace(":", "_") / f"seed{self.seed}"

    def label(self) -> str:
        return f"{self.algorithm} {self.task} seed{self.seed}"

    def budget_file(self, store: Path) -> Path | None:
        """The budget's config values as a YAML file in the store (its path is recorded as their origin)."""
        if not self.budget_config:
            return None
        import yaml

        from offrl_zoo.io import write_text

        path = store / "budgets" / f"{self.algorithm}.yaml"
        text = yaml.safe_dump(dict(self.budget_config), sort_keys=True)
        if not path.is_file() or path.read_text() != text:
            write_text(path, text)
        return path


@dataclass
class Sweep:
    algorithms: list[str]
    tasks: list[str]
    seeds: list[int]
    budget: str
    suite: str | None = None
    overrides: list[str] = field(default_factory=list)
    runs: list[RunSpec] = field(default_factory=list)
    unsupported: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("runs")
        return out


def plan(
    algorithms: list[str],
    suite: str | None,
    tasks: list[str] | None,
    seeds: int | list[int],
    budget_text: str,
    overrides: list[str] | None = None,
) -> Sweep:
    """Expand the sweep; every name is checked here, before any work starts."""
    if not algorithms:
        raise ConfigError("compare: name at least one algorithm")
    for name in algorithms:
        registry.get(name)  # unknown names fail with suggestions
    if tasks:
        task_ids = list(tasks)
    elif suite:
        task_ids = list(get_suite(suite))
    else:
        raise ConfigError("compare: give --suite NAME or --tasks TASK ...")
    for task_id in task_ids:
        get_task(task_id)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("compare: --seeds must be at least 1")
    budget = Budget.parse(budget_text, suite)
    sweep = Sweep(list(algorithms), task_ids, seed_list, budget.name, suite, list(overrides or []))
    for name in algorithms:
        cls = registry.get(name)
        preset = "quick" if budget.use_quick_preset and "quick" in presets(cls) else None
        values = tuple(sorted((k, v) for k, v in budget.config.items() if k in field_names(cls.Config)))
        for task_id in task_ids:
            try:
                cfg = resolve(cls, task_id, preset, None, [*sweep.overrides, *(f"{k}={v}" for k, v in values)]).config
            except UnsupportedTaskError as err:
                sweep.unsupported.append({"algorithm": name, "task": task_id, "reason": str(err)})
                continue
            kinds = shared_stage_kinds(cls, cfg, task_id)
            for seed in seed_list:
                sweep.runs.append(
                    RunSpec(name, task_id, seed, preset, budget.steps, tuple(sweep.overrides), values, kinds)
                )
    return sweep


def shared_stage_kinds(cls: type, cfg: object, task_id: str) -> tuple[str, ...]:
    """The shareable stages an algorithm trains on a task (built at the task's shapes, on the CPU)."""
    import torch

    from offrl_zoo.bench.estimate import task_spec

    with torch.random.fork_rng(devices=[]):
        stages = cls(task_spec(task_id), cfg, "cpu").stages()
    return tuple(sorted({str(s.shared["kind"]) for s in stages if s.shared}))


def run_status(run_dir: Path) -> str:
    """done | failed | running (its lock is held) | partial (has a checkpoint) | pending."""
    if (run_dir / DONE).is_file():
        return "done"
    if _locked(run_dir / LOCK):
        return "running"
    if (run_dir / FAILED).is_file():
        return "failed"
    return "partial" if (run_dir / CHECKPOINT).is_file() else "pending"


def _locked(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


STORE_LOCK = ".sweep.lock"


def record_sweep(store: Path, sweep: Sweep) -> None:
    """Write (or merge into) ``sweep.json``; a store holds one budget and one set of overrides.

    Two sweeps starting at once on one store merge their records one after the other (a lock), and a
    folder that holds anything but a store is refused before anything is written into it.
    """
    path = store / "sweep.json"
    contents = (
        [p for p in store.iterdir() if p.name != STORE_LOCK and not p.name.endswith(".tmp")] if store.is_dir() else []
    )
    if contents and not path.is_file():
        raise ConfigError(f"{store} is not empty and holds no sweep.json: not a results store; use another --out")
    store.mkdir(parents=True, exist_ok=True)
    with open(store / STORE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        _merge_sweep(path, sweep.to_json())


def _merge_sweep(path: Path, current: dict) -> None:
    if path.is_file():
        old = json.loads(path.read_text())
        for key in ("budget", "overrides"):
            if old.get(key) != current[key]:
                raise ConfigError(
                    f"{path.parent} holds a sweep with {key} {old.get(key)!r}, not {current[key]!r}: runs of "
                    f"different settings are not mixed in one results store; use another --out"
                )
        for key in ("algorithms", "tasks", "seeds"):
            current[key] = old[key] + [x for x in current[key] if x not in old[key]]
        seen = {(u["algorithm"], u["task"]) for u in old.get("unsupported", [])}
        current["unsupported"] = old.get("unsupported", []) + [
            u for u in current["unsupported"] if (u["algorithm"], u["task"]) not in seen
        ]
        if old.get("suite") != current["suite"]:
            current["suite"] = None  # tasks of several suites
    write_json(path, current)
