"""The aggregate over tasks of a sweep report (rliable): IQM and mean with stratified-bootstrap 95 % CIs,
probability of improvement and the performance profile, all of the final values. The bootstrap seed
is fixed, so the same runs always give the same intervals."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from offrl_zoo.bench.results import RunResult
from offrl_zoo.bench.tables import MIXED_DATA, TaskReport

DEFAULT_REPS = 2000
BOOTSTRAP_SEED = 0
MIN_SEEDS_FOR_CI = 2
MIN_TASKS_FOR_CI = 2


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """rliable's stratified bootstrap draws its indices from numpy's global RNG (not from its
    ``random_state`` argument), so the global RNG is seeded here and restored afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _final_values(runs: list[RunResult], kind: str) -> dict[tuple[str, str], list[float]]:
    """(algorithm, task) -> final values of the finished runs, in seed order."""
    out: dict[tuple[str, str], list[float]] = {}
    for r in sorted(runs, key=lambda r: r.seed):
        if r.status == "done" and (v := r.value("final", kind)) is not None:
            out.setdefault((r.algorithm, r.task), []).append(v)
    return out


def score_matrices(tasks: list[TaskReport], runs: list[RunResult]) -> tuple[dict[str, np.ndarray], list[str], dict]:
    """Per algorithm a (num_seeds × num_tasks) matrix of final values over the tasks every compared
    algorithm finished; the tasks; and {"kind", "notes"} saying what was left out and why."""
    notes = [f"{t.task}: excluded ({MIXED_DATA})" for t in tasks if t.errors]
    clean = [t for t in tasks if not t.errors]
    kind = "score" if any(t.value_kind == "score" for t in clean) else "return"
    notes += [
        f"{t.task}: excluded (raw returns cannot be averaged with normalised scores)"
        for t in clean
        if t.value_kind != kind
    ]
    eligible = [t for t in clean if t.value_kind == kind]
    values = {k: v for k, v in _final_values(runs, kind).items() if k[1] in {t.task for t in eligible}}
    algorithms = sorted({a for a, _ in values})
    everyone = sorted({c.algorithm for t in tasks for c in t.cells})
    notes += [f"{a}: excluded (no finished run on an eligible task)" for a in everyone if a not in algorithms]
    common = []
    for t in eligible:
        missing = [a for a in algorithms if (a, t.task) not in values]
        if missing:
            notes.append(f"{t.task}: excluded (no finished run of {', '.join(missing)})")
        else:
            common.append(t.task)
    if not common or not algorithms:
        return {}, [], {"kind": kind, "notes": notes}
    counts = [len(values[a, t]) for a in algorithms for t in common]
    n = min(counts)
    if n != max(counts):
        notes.append(
            f"finished seeds differ between algorithm × task ({n} to {max(counts)}): "
            f"the common minimum {n} is used (the lowest seeds of each)"
        )
    matrices = {a: np.array([values[a, t][:n] for t in common], dtype=float).T for a in algorithms}
    return matrices, common, {"kind": kind, "notes": notes}


def _interval(point: float, ci: np.ndarray | None) -> dict:
    if ci is None:
        return {"estimate": float(point), "ci_low": None, "ci_high": None}
    return {"estimate": float(point), "ci_low": float(ci[0]), "ci_high": float(ci[1])}


def _iqm_and_mean(matrices: dict[str, np.ndarray], use_ci: bool, reps: int, seed: int) -> dict:
    from rliable import library, metrics

    func: Callable[[np.ndarray], np.ndarray] = lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])
    if use_ci:
        with _seeded(seed):
            points, intervals = library.get_interval_estimates(matrices, func, reps=reps)
    else:
        points, intervals = {a: func(m) for a, m in matrices.items()}, None
    return {
        a: {
            name: _interval(points[a][i], None if intervals is None else intervals[a][:, i])
            for i, name in enumerate(("IQM", "mean"))
        }
        for a in sorted(matrices)
    }


def _probability_of_improvement(matrices: dict[str, np.ndarray], use_ci: bool, reps: int, seed: int) -> dict:
    """P(x > y) for every ordered pair. rliable's estimate satisfies P(y > x) = 1 - P(x > y) exactly
    (Mann-Whitney U with ties counted half), so each unordered pair is bootstrapped once."""
    from rliable import library, metrics

    out: dict[str, dict[str, dict]] = {a: {} for a in sorted(matrices)}
    for x, y in itertools.combinations(sorted(matrices), 2):
        key = f"{x},{y}"
        if use_ci:
            with _seeded(seed):
                points, intervals = library.get_interval_estimates(
                    {key: [matrices[x], matrices[y]]}, metrics.probability_of_improvement, reps=reps
                )
            lo, hi = np.ravel(intervals[key])
        else:
            points, lo, hi = {key: metrics.probability_of_improvement(matrices[x], matrices[y])}, None, None
        p = float(np.ravel(points[key])[0])
        out[x][y] = {"estimate": p, "ci_low": lo, "ci_high": hi}
        out[y][x] = {
            "estimate": 1 - p,
            "ci_low": None if hi is None else 1 - hi,
            "ci_high": None if lo is None else 1 - lo,
        }
    return out


def _profile(matrices: dict[str, np.ndarray], use_ci: bool, reps: int, seed: int) -> dict:
    from rliable import library

    values = np.concatenate([m.ravel() for m in matrices.values()])
    lo, hi = math.floor(min(0.0, values.min())), math.ceil(values.max())
    tau = np.linspace(lo, hi if hi > lo else lo + 1, 101)
    if use_ci:
        with _seeded(seed):
            profiles, cis = library.create_performance_profile(matrices, tau, reps=reps)
    else:
        profiles, cis = {a: library.score_distributions(m, tau) for a, m in matrices.items()}, {}
    return {
        "tau": tau.tolist(),
        "algorithms": {
            a: {
                "fraction": np.asarray(profiles[a]).tolist(),
                "ci_low": cis[a][0].tolist() if a in cis else None,
                "ci_high": cis[a][1].tolist() if a in cis else None,
            }
            for a in sorted(matrices)
        },
    }


def aggregate(
    tasks: list[TaskReport], runs: list[RunResult], reps: int = DEFAULT_REPS, seed: int = BOOTSTRAP_SEED
) -> dict:
    """IQM and mean with stratified-bootstrap 95 % CIs, probability of improvement and the performance
    profile (all rliable) of the final values over the common tasks."""
    matrices, common, info = score_matrices(tasks, runs)
    out = {
        "kind": info["kind"],
        "notes": info["notes"],
        "tasks": common,
        "algorithms": sorted(matrices),
        "num_seeds": 0,
        "reps": reps,
        "bootstrap_seed": seed,
        "ci": False,
        "ci_unavailable": None,
        "metrics": {},
        "probability_of_improvement": {},
        "profile": None,
    }
    if not matrices:
        out["ci_unavailable"] = "no task was finished by every compared algorithm"
        return out
    n = next(iter(matrices.values())).shape[0]
    reasons = ([f"{n} seed per task (needs {MIN_SEEDS_FOR_CI})"] if n < MIN_SEEDS_FOR_CI else []) + (
        [f"{len(common)} common task (needs {MIN_TASKS_FOR_CI})"] if len(common) < MIN_TASKS_FOR_CI else []
    )
    use_ci = not reasons
    out.update(
        num_seeds=n,
        ci=use_ci,
        ci_unavailable="; ".join(reasons) or None,
        metrics=_iqm_and_mean(matrices, use_ci, reps, seed),
        probability_of_improvement=_probability_of_improvement(matrices, use_ci, reps, seed),
        profile=_profile(matrices, use_ci, reps, seed),
    )
    return out
