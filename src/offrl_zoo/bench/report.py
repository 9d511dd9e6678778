"""The report of a benchmark sweep (``offrl-zoo compare``).

``build_report`` reads a results store (``results``: ``STORE/runs/<algorithm>/<task>/seed<N>/`` plus an
optional ``STORE/sweep.json``) and composes the per-task score tables, cost columns, data-source checks
and the DTQL paper's numbers (``tables``) with the rliable aggregates over tasks (``stats``);
``render.write_report`` writes ``report.md``, ``report.json``, ``runs.csv``, ``aggregate.csv`` and
``figures/``. The same store always gives byte-identical files: no timestamps or absolute paths,
everything sorted, a fixed bootstrap seed. Aggregates use the final value only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from offrl_zoo.bench.references import check_runs, load_references
from offrl_zoo.bench.results import RunResult, collect_runs, load_paper_scores, read_sweep
from offrl_zoo.bench.stats import BOOTSTRAP_SEED, DEFAULT_REPS, aggregate
from offrl_zoo.bench.tables import DDOF, TaskReport, cost_rows, curves, reuse_rows, task_report


@dataclass
class Report:
    store: str  # the store folder's name (no absolute path: the report must not depend on where it lives)
    sweep: dict
    algorithms: list[str]
    tasks: list[TaskReport]
    runs: list[RunResult]
    aggregate: dict
    costs: list[dict]
    reuse: list[dict]
    curves: dict  # task -> algorithm -> [{"step", "n", "mean", "std"}]
    errors: list[str]
    paper_source: str
    settings: dict
    reference_checks: list[dict] = field(default_factory=list)  # bench/references.py ``check_runs``
    out_dir: Path = field(repr=False, default=Path("report"))

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("out_dir")
        for run in data["runs"]:
            run.pop("curve")  # the curves are in "curves" (mean over seeds) and figures/curves_*.csv
        return _clean(data)


def build_report(
    store: Path,
    out: Path | None = None,
    *,
    reps: int = DEFAULT_REPS,
    seed: int = BOOTSTRAP_SEED,
    paper_scores: Path | None = None,
    references: Path | bool = True,
) -> Report:
    """Read the store and compute everything; ``out`` is where ``write_report`` writes by default
    (``STORE/report``). ``reps``/``seed``: bootstrap replications and seed of every confidence interval.
    ``references``: the folder of reference runs to check the runs against (True: the shipped ones,
    False: none)."""
    store = Path(store)
    if not (store / "runs").is_dir():
        raise FileNotFoundError(f"{store}: not a results store (no runs/ folder)")
    runs = collect_runs(store)
    sweep = read_sweep(store, runs)
    paper_source, paper = load_paper_scores(paper_scores)
    tasks = [task_report(t, [r for r in runs if r.task == t], sweep, paper) for t in sweep["tasks"]]
    checks = []
    if references is not False:
        checks = check_runs(store, runs, load_references(None if references is True else references))
    return Report(
        store=store.name,
        sweep=sweep,
        algorithms=sweep["algorithms"],
        tasks=tasks,
        runs=runs,
        aggregate=aggregate(tasks, runs, reps, seed),
        costs=cost_rows(runs),
        reuse=reuse_rows(runs),
        curves=curves(runs, tasks),
        errors=[e for t in tasks for e in t.errors],
        paper_source=paper_source,
        reference_checks=checks,
        settings={
            "std_ddof": DDOF,
            "reps": reps,
            "bootstrap_seed": seed,
            "ci": "95 % stratified bootstrap",
            "aggregate_value": "final",
        },
        out_dir=Path(out) if out is not None else store / "report",
    )


def _clean(obj: Any) -> Any:
    """JSON-safe and stable: numpy scalars to Python, NaN/inf to null, floats rounded to 6 decimals."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return round(obj, 6) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return obj.as_posix()
    return obj
