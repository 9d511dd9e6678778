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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict

from offrl_zoo import registry
from offrl_zoo.algorithm import Algorithm, BaseConfig
from offrl_zoo.config import field_names, preset_applies, presets, resolve
from offrl_zoo.envs import all_suites, get_suite, get_task
from offrl_zoo.errors import ConfigError, FlagError, UnsupportedTaskError
from offrl_zoo.io import write_json
from offrl_zoo.train.run_dir import FAILED, LOCK
from offrl_zoo.train.trainer import CHECKPOINT, DONE


class QuickBudget(TypedDict):
    """A ``quick`` budget: see ``QUICK``."""

    steps: int
    config: dict[str, Any]


# ``quick`` budget per suite, for every task of the suite: every stage of every algorithm capped at
# ``steps`` gradient steps, the algorithm's ``quick`` preset where its scope holds the task, then
# ``config`` values where the algorithm has the key. On the toys this is minibatches of 256 for 1 000
# steps (the official toy settings are full batches of 10 000 for 3 500 steps), so that a
# three-algorithm, three-seed toy comparison takes minutes on a CPU; its scores are lower than at the
# official settings (docs/toy.md). ``paper`` = the official settings.
QUICK: dict[str, QuickBudget] = {
    "toy": {"steps": 1000, "config": {"batch_size": 256}},
    "gym-medium": {"steps": 20_000, "config": {}},
    "gym": {"steps": 20_000, "config": {}},
}
DEFAULT_QUICK: QuickBudget = {"steps": 20_000, "config": {}}
QUICK_PRESET = "quick"


def quick_budget(task_id: str) -> QuickBudget:
    """The ``quick`` entry of the first suite in ``QUICK`` that holds the task (whatever ``--suite`` said)."""
    suites = all_suites()
    return next((quick for name, quick in QUICK.items() if task_id in suites.get(name, ())), DEFAULT_QUICK)


@dataclass(frozen=True)
class RunBudget:
    """What a budget sets for one algorithm on one task."""

    preset: str | None
    steps: int | None  # cap on every stage (None: the official number of steps)
    values: tuple[tuple[str, object], ...] = ()  # config values, applied as a config file


@dataclass(frozen=True)
class Budget:
    name: str  # paper | quick | <steps>
    steps: int | None  # cap on every stage (paper: None; quick: per suite, see ``for_run``)

    @classmethod
    def parse(cls, text: str) -> Budget:
        if text in ("paper", "quick"):
            return cls(text, None)
        try:
            steps = int(text)
        except ValueError:
            raise FlagError(f"--budget {text!r}: expected paper, quick or a number of steps per stage") from None
        if steps < 1:
            raise FlagError(f"--budget {steps}: expected at least 1 step")
        return cls(str(steps), steps)

    def for_run(self, algo_cls: type[Algorithm], task_id: str) -> RunBudget:
        """The one place a budget becomes a run's settings. The cap depends on the task alone, so every
        algorithm of a comparison gets the same one; a preset applies only on the tasks it is made for."""
        if self.name != "quick":
            return RunBudget(None, self.steps)
        quick = quick_budget(task_id)
        has_preset = QUICK_PRESET in presets(algo_cls) and preset_applies(algo_cls, QUICK_PRESET, task_id)
        keys = field_names(algo_cls.Config)
        values = tuple(sorted((k, v) for k, v in quick["config"].items() if k in keys))
        return RunBudget(QUICK_PRESET if has_preset else None, quick["steps"], values)


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
    stage_steps: tuple[tuple[str, int], ...] = ()  # each stage's steps after the cap

    def run_dir(self, store: Path) -> Path:
        return store / "runs" / self.algorithm / self.task.replace(":", "_") / f"seed{self.seed}"

    def label(self) -> str:
        return f"{self.algorithm} {self.task} seed{self.seed}"

    def settings(self) -> tuple:
        """What the run's config depends on: runs with equal settings train the same networks."""
        return (self.algorithm, self.task, self.preset, self.overrides, self.budget_config)

    def config(self) -> BaseConfig:
        """The run's config as ``train`` resolves it: the budget's values (its ``--config`` file) under the
        user's overrides (the command line, applied last)."""
        budget = [f"{k}={v}" for k, v in self.budget_config]
        cls = registry.get(self.algorithm)
        return resolve(cls, self.task, self.preset, None, [*budget, *self.overrides]).config

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
    # How every run is trained and evaluated beyond its config (evaluation interval and episodes, data
    # source): a store's finished runs are reused, so a later sweep must ask for the same.
    run_settings: dict = field(default_factory=dict)

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
        raise FlagError("compare: name at least one algorithm")
    for name in algorithms:
        registry.get(name)  # unknown names fail with suggestions
    if tasks:
        task_ids = list(tasks)
    elif suite:
        task_ids = list(get_suite(suite))
    else:
        raise FlagError("compare: give --suite NAME or --tasks TASK ...")
    for task_id in task_ids:
        get_task(task_id)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise FlagError("compare: --seeds must be at least 1")
    budget = Budget.parse(budget_text)
    sweep = Sweep(list(algorithms), task_ids, seed_list, budget.name, suite, list(overrides or []))
    for name in algorithms:
        for task_id in task_ids:
            run = budget.for_run(registry.get(name), task_id)
            spec = RunSpec(name, task_id, 0, run.preset, run.steps, tuple(sweep.overrides), run.values)
            try:
                spec = planned_stages(spec)
            except UnsupportedTaskError as err:
                sweep.unsupported.append({"algorithm": name, "task": task_id, "reason": str(err)})
                continue
            sweep.runs += [replace(spec, seed=seed) for seed in seed_list]
    check_budget_files(sweep.runs)
    return sweep


def planned_stages(spec: RunSpec) -> RunSpec:
    """``spec`` with its shareable stage kinds and capped stage steps (built at the task's shapes, on the CPU)."""
    import torch

    from offrl_zoo.bench.estimate import task_spec

    cfg = spec.config()
    with torch.random.fork_rng(devices=[]):
        stages = registry.get(spec.algorithm)(task_spec(spec.task), cfg, "cpu").stages()
    kinds = tuple(sorted({str(s.shared["kind"]) for s in stages if s.shared}))
    steps = tuple((s.name, s.steps if spec.steps is None else min(s.steps, spec.steps)) for s in stages)
    return replace(spec, shared_kinds=kinds, stage_steps=steps)


def check_budget_files(runs: list[RunSpec]) -> None:
    """One budget file per algorithm in a store: refuse tasks whose suites set different values."""
    values: dict[str, set] = {}
    for spec in runs:
        values.setdefault(spec.algorithm, set()).add(spec.budget_config)
    mixed = sorted(name for name, seen in values.items() if len(seen - {()}) > 1)
    if mixed:
        raise ConfigError(
            f"compare: the quick budget sets different values for {', '.join(mixed)} on these tasks' suites; "
            "compare the suites in separate stores"
        )


def run_status(run_dir: Path) -> str:
    """done | failed | running (its lock is held) | partial (has a checkpoint) | pending."""
    if (run_dir / DONE).is_file():
        return "done"
    if _locked(run_dir / LOCK):
        return "running"
    if (run_dir / FAILED).is_file():
        return "failed"
    return "partial" if (run_dir / CHECKPOINT).is_file() else "pending"


def resume_point(run_dir: Path) -> tuple[int, int] | None:
    """(stage index, next step) where a run resumes from its checkpoint; None without one, or with one that
    cannot be read (the run itself says why when it tries to resume)."""
    from offrl_zoo.errors import OffrlZooError
    from offrl_zoo.io import load_torch

    path = run_dir / CHECKPOINT
    if not path.is_file() or (run_dir / DONE).is_file():
        return None
    try:
        state = load_torch(path)
        return int(state["stage_index"]), int(state["next_step"])
    except (OffrlZooError, KeyError, TypeError, ValueError):
        return None


def data_conflicts(store: Path, todo: list[RunSpec], data_source: str) -> list[str]:
    """The tasks of ``todo`` whose finished runs in ``store`` used other data than a run trained now would load
    (generated data made on another CPU type, whose bytes differ; or a real D4RL file cached since), each as
    ``TASK (finished runs: SHA, here: SHA)``: one report cannot compare runs on different data, so training
    them into this store is wasted. Only data a cached file settles is compared (``cached_data_sha256``)."""
    from offrl_zoo.bench.results import collect_runs
    from offrl_zoo.data.loading import cached_data_sha256

    if not (store / "runs").is_dir():
        return []
    used: dict[str, set[str]] = {}
    for run in collect_runs(store):
        if run.status == "done" and run.sha256:
            used.setdefault(run.task, set()).add(run.sha256)
    problems = []
    for task in sorted({spec.task for spec in todo} & used.keys()):
        here = cached_data_sha256(get_task(task), data_source)
        if here is not None and here not in used[task]:
            theirs = ", ".join(sorted(h[:12] for h in used[task]))
            problems.append(f"{task} (finished runs: {theirs}, here: {here[:12]})")
    return problems


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
        keys = ("budget", "overrides", "run_settings") if "run_settings" in old else ("budget", "overrides")
        for key in keys:  # a store written before run_settings were recorded takes them on now
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
        # the suite that still holds every task (a later call naming some of a suite's tasks with --tasks
        # keeps it), else none: tasks of several suites
        suites = all_suites()
        current["suite"] = next(
            (s for s in (old.get("suite"), current["suite"]) if s and set(current["tasks"]) <= set(suites.get(s, ()))),
            None,
        )
    write_json(path, current)
