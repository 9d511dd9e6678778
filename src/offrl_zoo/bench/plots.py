"""Figures of a benchmark report: learning curves per task, the aggregate intervals and the performance
profile. Each PNG comes with the CSV of the numbers it draws; everything is drawn on Agg canvases, and
the PNGs carry no matplotlib version, so the same report gives the same files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from offrl_zoo.io import atomic_write, write_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from offrl_zoo.bench.report import Report
    from offrl_zoo.bench.tables import TaskReport

FIGURES = "figures"
PNG_METADATA = {"Software": None}
DPI = 110


def safe_name(text: str) -> str:
    """A file-name-safe version of a task id (custom tasks may contain ':' or '/')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)  # attach an Agg canvas whatever pyplot's backend is
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight", metadata=PNG_METADATA))


def _ylabel(kind: str) -> str:
    return "normalised score" if kind == "score" else "return"


def value_label(task: TaskReport) -> str:
    """The task's own score definition when its runs agree on one (the toys' is not D4RL's)."""
    return (task.value_kind == "score" and task.score_label) or _ylabel(task.value_kind)


def draw_curves(ax: Axes, per_alg: dict[str, list[dict]]) -> None:
    """One line per algorithm with a ± std band. Markers on every evaluation: a run evaluated once or
    twice has a single point (or a short segment) that a bare line would not show; a single point gets
    its ± std as an error bar, as a band of zero width would not show either."""
    for alg, points in sorted(per_alg.items()):
        steps = np.array([p["step"] for p in points], dtype=float)
        mean = np.array([p["mean"] for p in points])
        std = np.array([np.nan if p["std"] is None else p["std"] for p in points])
        (line,) = ax.plot(steps, mean, label=alg, linewidth=1.5, marker="o", markersize=4)
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)  # NaN: no band
        if len(points) == 1 and np.isfinite(std).all():
            ax.errorbar(steps, mean, yerr=std, fmt="none", ecolor=line.get_color(), elinewidth=1.5)


def _curve_figure(report: Report, task: str, out: Path) -> str | None:
    from offrl_zoo.bench.render import to_csv

    per_alg = report.curves.get(task) or {}
    if not per_alg:
        return None
    report_task = next(t for t in report.tasks if t.task == task)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    draw_curves(ax, per_alg)
    rows = [
        [task, alg, p["step"], p["n"], p["mean"], p["std"]] for alg, points in sorted(per_alg.items()) for p in points
    ]
    title = f"{task} ({report_task.source_label()}; mean ± std over seeds)"
    ax.set(title=title, xlabel="global step", ylabel=value_label(report_task))
    ax.grid(alpha=0.25)
    ax.legend()
    name = f"curves_{safe_name(task)}"
    _save(fig, out / FIGURES / f"{name}.png")
    write_text(
        out / FIGURES / f"{name}.csv", to_csv(["task", "algorithm", "global_step", "n_seeds", "mean", "std"], rows)
    )
    return f"{FIGURES}/{name}.png"


def _aggregate_figure(report: Report, out: Path) -> str | None:
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    from offrl_zoo.bench.render import to_csv

    agg = report.aggregate
    if not agg["metrics"]:
        return None
    algs = sorted(agg["metrics"])
    names = ("IQM", "mean")
    points = {a: np.array([agg["metrics"][a][m]["estimate"] for m in names]) for a in algs}
    # Without CIs the interval collapses to the point estimate.
    bounds = {
        a: np.array(
            [
                [agg["metrics"][a][m][k] if agg["ci"] else agg["metrics"][a][m]["estimate"] for m in names]
                for k in ("ci_low", "ci_high")
            ]
        )
        for a in algs
    }
    row_height = max(0.6, 1.2 / len(algs))
    # rliable places the x label at a fixed figure fraction; keep it below the tick labels at any height
    fig, _ = plot_utils.plot_interval_estimates(
        points,
        bounds,
        metric_names=list(names),
        algorithms=algs,
        xlabel=_ylabel(agg["kind"]),
        row_height=row_height,
        xlabel_y_coordinate=0.11 - 0.55 / (row_height * len(algs)),
    )
    try:
        _save(fig, out / FIGURES / "aggregate.png")
    finally:
        plt.close(fig)
    rows = [
        [m, a, agg["metrics"][a][m]["estimate"], agg["metrics"][a][m]["ci_low"], agg["metrics"][a][m]["ci_high"]]
        for m in names
        for a in algs
    ]
    write_text(out / FIGURES / "aggregate.csv", to_csv(["metric", "algorithm", "estimate", "ci_low", "ci_high"], rows))
    return f"{FIGURES}/aggregate.png"


def _profile_figure(report: Report, out: Path) -> str | None:
    from rliable import plot_utils

    from offrl_zoo.bench.render import to_csv

    profile = report.aggregate.get("profile")
    if not profile:
        return None
    tau = np.array(profile["tau"])
    algs = sorted(profile["algorithms"])
    curves = {a: np.array(profile["algorithms"][a]["fraction"]) for a in algs}
    cis = {
        a: np.array([profile["algorithms"][a]["ci_low"], profile["algorithms"][a]["ci_high"]])
        for a in algs
        if profile["algorithms"][a]["ci_low"] is not None
    }
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    plot_utils.plot_performance_profiles(
        curves,
        tau,
        performance_profile_cis=cis or None,
        ax=ax,
        xlabel=rf"{_ylabel(report.aggregate['kind'])} ($\tau$)",
        ylabel=r"fraction of runs with value $> \tau$",
        legend=True,
        labelsize="medium",
        ticklabelsize="medium",
        legendsize="medium",
    )
    _save(fig, out / FIGURES / "profile.png")
    rows = [
        [
            t,
            a,
            profile["algorithms"][a]["fraction"][i],
            *((profile["algorithms"][a][k][i] if a in cis else None) for k in ("ci_low", "ci_high")),
        ]
        for a in algs
        for i, t in enumerate(profile["tau"])
    ]
    write_text(out / FIGURES / "profile.csv", to_csv(["tau", "algorithm", "fraction", "ci_low", "ci_high"], rows))
    return f"{FIGURES}/profile.png"


def write_figures(report: Report, out_dir: Path) -> dict:
    """Write every figure and its CSV under ``out_dir/figures``; their paths relative to ``out_dir``:
    {"curves": {task: path}, "aggregate": path | None, "profile": path | None}."""
    out_dir = Path(out_dir)
    curves = {t.task: path for t in report.tasks if (path := _curve_figure(report, t.task, out_dir))}
    return {
        "curves": curves,
        "aggregate": _aggregate_figure(report, out_dir),
        "profile": _profile_figure(report, out_dir),
    }
