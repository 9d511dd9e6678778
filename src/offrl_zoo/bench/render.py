"""Rendering a sweep report: Markdown, plain-text summary, CSV, JSON, and writing them (``write_report``).

The numbers come from ``offrl_zoo.bench.report``; nothing here computes a statistic.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from offrl_zoo.bench.report import Report
from offrl_zoo.bench.results import PAPER_LABEL, RunResult
from offrl_zoo.bench.tables import GENERATED_NOTE, MIXED_DATA, RETURN_NOTE, SAMPLE_METRICS, Cell, TaskReport
from offrl_zoo.io import remove_stale_temps, write_json, write_text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _fmt_stat(stat: dict | None, digits: int = 1) -> str:
    if stat is None:
        return "–"
    return _fmt(stat["mean"], digits) + ("" if stat.get("std") is None else f" ± {_fmt(stat['std'], digits)}")


def _fmt_paper(cell: Cell, generated: bool) -> str:
    if cell.paper is None:
        return "–"
    text = _fmt(cell.paper["mean"]) + ("" if cell.paper["std"] is None else f" ± {cell.paper['std']:.2f}")
    return text + " (not comparable: generated data)" if generated else text


ONE_ACTION = "one action"
ONE_ACTION_NOTE = (
    f"({ONE_ACTION}): every episode of each seed's final evaluation returned the same, i.e. one action "
    "repeated (a deterministic action at the one state, or a policy collapsed onto one point); the ± is "
    "over seeds, the episodes add nothing."
)
BEST_DROPPED = "best: not shown: every run was evaluated once, so its best evaluation is its final one."
BEST_PARTLY = "best – : these runs were evaluated once (best = final)."
SAMPLE_HEADERS = {"in_support": "in-support", "modes_hit": "modes hit", "top_mode_share": "top-mode share"}
SAMPLES_NOTE = (
    "in-support, modes hit, top-mode share: of the final evaluation's samples, one per episode, mean ± std "
    "over seeds (docs/toy.md)."
)


def _fmt_value(cell: Cell, which: str) -> str:
    return {
        "ok": lambda: _fmt_ok(cell, which),
        "failed": lambda: f"failed ({cell.failed})",
        "unfinished": lambda: f"unfinished ({cell.unfinished})",
        "no-eval": lambda: "no evaluation",
        "not-run": lambda: "not run",
        "unsupported": lambda: "unsupported",
    }[cell.status]()


def _fmt_ok(cell: Cell, which: str) -> str:
    text = _fmt_stat(getattr(cell, which))
    return text + f" ({ONE_ACTION})" if which == "final" and cell.one_action else text


def _fmt_seeds(cell: Cell) -> str:
    if cell.status == "unsupported":
        return "–"
    extra = [
        (f"without evaluation ({cell.no_eval})", cell.no_eval),
        (f"failed ({cell.failed})", cell.failed),
        (f"unfinished ({cell.unfinished})", cell.unfinished),
    ]
    return ", ".join([f"{cell.finished}/{cell.planned}", *(text for text, n in extra if n)])


def _fmt_ci(entry: dict | None, digits: int = 1) -> str:
    if entry is None or entry["ci_low"] is None:
        return "unavailable"
    return f"[{entry['ci_low']:.{digits}f}, {entry['ci_high']:.{digits}f}]"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(esc, row)) + " |" for row in rows])


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    fmt = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def _value_label(t: TaskReport) -> str:
    if t.value_kind != "score":
        return "return (raw episode return)"
    return f"score ({t.score_label})" if t.score_label else "score (normalised ×100, see protocol)"


def _task_columns(t: TaskReport) -> tuple[bool, list[str]]:
    """Whether any cell has a best value, and the sample metrics any cell recorded."""
    has_best = any(c.best is not None for c in t.cells)
    return has_best, [m for m in SAMPLE_METRICS if any(m in c.samples for c in t.cells)]


def _task_table(t: TaskReport) -> str:
    generated = any(s["source"] == "generated" for s in t.sources)
    has_best, metrics = _task_columns(t)
    sample = lambda c, m: _fmt_stat(c.samples.get(m), 1 if m == "modes_hit" else 3) if c.status == "ok" else "–"
    rows = [
        [c.algorithm, _fmt_value(c, "final")]
        + ([_fmt_value(c, "best")] if has_best else [])
        + [sample(c, m) for m in metrics]
        + [_fmt_seeds(c), _fmt_paper(c, generated)]
        for c in t.cells
    ]
    header = ["algorithm", "final", *(["best"] if has_best else []), *(SAMPLE_HEADERS[m] for m in metrics)]
    return _md_table([*header, "seeds", PAPER_LABEL], rows)


def _table_notes(t: TaskReport) -> list[str]:
    """What the table's columns leave out or mark, and why."""
    has_best, metrics = _task_columns(t)
    ok = [c for c in t.cells if c.status == "ok"]
    notes = [SAMPLES_NOTE] if metrics else []
    if ok and not has_best:
        notes.append(BEST_DROPPED)
    elif any(c.best is None for c in ok):
        notes.append(BEST_PARTLY)
    return notes + ([ONE_ACTION_NOTE] if any(c.one_action for c in ok) else [])


def _md_task(t: TaskReport, figure: str | None) -> list[str]:
    sources = "; ".join(f"{s['source']} (sha256 {s['sha256'][:12]})" for s in t.sources) or "unknown"
    out = [f"### {t.task}", "", f"Data: {sources}. Value: {_value_label(t)}.", ""]
    out += [f"**ERROR: {e}**" for e in t.errors] + [f"> {n}" for n in t.notes]
    if t.errors or t.notes:
        out.append("")
    out += [_task_table(t), ""] + [line for note in _table_notes(t) for line in (note, "")]
    out += ["Evaluation protocol:", ""] + [f"- {p}" for p in t.protocols or ["unknown"]]
    out += [f"- {c.algorithm} unsupported: {c.reason}" for c in t.cells if c.status == "unsupported" and c.reason]
    out.append("")
    return out + ([f"![learning curves {t.task}]({figure})", ""] if figure else [])


def _md_aggregate(report: Report, figures: dict) -> list[str]:
    agg = report.aggregate
    out = ["## Aggregate over tasks (rliable)", ""]
    if not agg["metrics"]:
        return out + [f"Not available: {agg['ci_unavailable']}.", ""] + [f"- {n}" for n in agg["notes"]] + [""]
    ci = (
        f"95 % stratified-bootstrap CIs, {agg['reps']} replications, seed {agg['bootstrap_seed']}"
        if agg["ci"]
        else f"CIs unavailable: {agg['ci_unavailable']}"
    )
    out += [
        f"Final {agg['kind']}s on {_plural(len(agg['tasks']), 'task')} ({', '.join(agg['tasks'])}) × "
        f"{_plural(agg['num_seeds'], 'seed')} per algorithm; {ci}.",
        "",
    ] + [f"- {n}" for n in agg["notes"]]
    rows = [
        [a, _fmt(m["IQM"]["estimate"]), _fmt_ci(m["IQM"]), _fmt(m["mean"]["estimate"]), _fmt_ci(m["mean"])]
        for a, m in sorted(agg["metrics"].items())
    ]
    out += ["", _md_table(["algorithm", "IQM", "IQM 95% CI", "mean", "mean 95% CI"], rows), ""]
    out += ["Probability of improvement P(row > column):", "", _poi_table(agg["probability_of_improvement"]), ""]
    return out + [f"![{name}]({figures[name]})" for name in ("aggregate", "profile") if figures.get(name)] + [""]


def _poi_table(poi: dict) -> str:
    algs = sorted(poi)
    cell = lambda x, y: (
        "–" if x == y else f"{poi[x][y]['estimate']:.2f} {_fmt_ci(poi[x][y], 2)}".replace(" unavailable", "")
    )
    return _md_table(["P(row > column)", *algs], [[x, *(cell(x, y) for y in algs)] for x in algs])


def _fmt_runs(row: dict) -> str:
    return str(row["runs"]) + ("" if row["runs_with_cost"] == row["runs"] else f" ({row['runs_with_cost']} with cost)")


def _md_costs(report: Report) -> list[str]:
    rows = [
        [
            r["algorithm"],
            r["task"],
            _fmt_runs(r),
            _fmt(r["elapsed_s"]),
            _fmt(r["updates_per_s"]),
            _fmt(r["act_ms_1"], 2),
            _fmt(r["act_ms_16"], 2),
            _fmt(r["nfe_per_action"]),
            _fmt(r["peak_rss_mb"], 0),
            _fmt(r["peak_cuda_mb"], 0),
            r["device"] or "–",
        ]
        for r in report.costs
    ]
    header = [
        "algorithm",
        "task",
        "runs",
        "train time (s)",
        "updates/s",
        "act 1 obs (ms)",
        "act 16 obs (ms)",
        "NFE/action",
        "peak RSS (MB)",
        "peak CUDA (MB)",
        "device",
    ]
    reuse = [
        [
            r["algorithm"],
            str(r["reused_stage_steps"]),
            str(r["trained"]),
            "–" if r["share"] is None else f"{100 * r['share']:.1f} %",
        ]
        for r in report.reuse
    ]
    return [
        "## Cost",
        "",
        "Means over finished seeds; the cost columns (all but train time) over the runs that "
        "recorded a cost (older runs did not), – where none did.",
        "",
        _md_table(header, rows),
        "",
        "Shared stages reused from the cache (steps not trained again):",
        "",
        _md_table(["algorithm", "reused stage steps", "steps trained", "share of all steps"], reuse),
        "",
    ]


def _failure_text(failure: dict) -> str:
    lines = str(failure.get("error") or "").strip().splitlines()
    return f"{failure.get('kind')} at step {failure.get('step')}: {lines[0][:300] if lines else 'no message'}"


def _md_runs(report: Report) -> list[str]:
    failed = [f"- {r.path}: {_failure_text(r.failure or {})}" for r in report.runs if r.status == "failed"]
    unfinished = [f"- {r.path}{_progress(r)}" for r in report.runs if r.status == "unfinished"]
    out = ["## Failed and unfinished runs", ""] + (failed or ["No failed run."]) + [""]
    return out + (["Unfinished (neither `done` nor `failed`):", "", *unfinished, ""] if unfinished else [])


def _progress(run: RunResult) -> str:
    """How far an unfinished run's logs go: its last logged step and its last evaluation."""
    parts = []
    if run.last_logged is not None:
        stage, step, planned = (run.last_logged[k] for k in ("stage", "step", "planned"))
        parts.append(f"logged to {stage} step {step:,}" + ("" if planned is None else f" of {planned:,}"))
    scored = [(step, score) for step, score, _ in run.curve if score is not None]
    if scored:
        parts.append(f"last evaluation {scored[-1][1]:.1f} (score) at global step {scored[-1][0]:,}")
    return ": " + "; ".join(parts) if parts else ""


def _md_data(report: Report) -> list[str]:
    def note(t: TaskReport) -> str:
        if t.errors:
            return "ERROR: " + MIXED_DATA
        return "; ".join(n for n in t.notes if n in (GENERATED_NOTE, RETURN_NOTE))

    rows = [
        [t.task, t.source_label(), ", ".join(s["sha256"][:12] for s in t.sources) or "–", note(t)] for t in report.tasks
    ]
    return ["## Data", "", _md_table(["task", "data source", "sha256", "note"], rows), ""]


def render_markdown(report: Report, figures: dict) -> str:
    sweep = report.sweep
    out = [
        "# Benchmark report",
        "",
        f"Store `{report.store}` ({sweep['from']}); suite: {sweep['suite'] or '–'}; "
        f"budget: {sweep['budget'] or '–'}; "
        f"algorithms: {', '.join(report.algorithms)}; seeds: {', '.join(map(str, sweep['seeds']))}.",
        "",
        "Scores: mean ± std over finished seeds (std: sample standard deviation, ddof=1). final = the run's final "
        "evaluation; best = its best evaluation (optimistic: selected on the evaluation episodes). "
        f"{PAPER_LABEL}: {report.paper_source}.",
        "",
    ]
    if report.errors:
        out += ["## ERRORS", ""] + [f"- **{e}**" for e in report.errors] + [""]
    out += _md_data(report) + ["## Scores per task", ""]
    for t in report.tasks:
        out += _md_task(t, figures.get("curves", {}).get(t.task))
    out += _md_references(report) + _md_aggregate(report, figures) + _md_costs(report) + _md_runs(report)
    return "\n".join(out).rstrip() + "\n"


def _fmt_band(band: list[float] | tuple[float, float] | None) -> str:
    return "–" if band is None else f"[{_fmt(band[0])}, {_fmt(band[1])}]"


def _md_references(report: Report) -> list[str]:
    """Each run checked against a shipped reference run (bench/references.py): a change that breaks
    learning shows here."""
    checks = report.reference_checks
    if not checks:
        return []
    rows = [
        [
            f"{c['algorithm']}/seed{c['seed']}",
            c["task"],
            _check_status(c),
            _fmt(c["final"]),
            _fmt_band(c["final_band"]),
            _fmt_late(c.get("late")),
            str(c["steps_compared"]),
            f"`{c['reference']}`",
            _check_data(c),
        ]
        for c in checks
    ]
    outside = sum(c["status"] == "outside" for c in checks)
    return [
        "## Against the reference runs",
        "",
        f"{_plural(len(checks), 'run')} matched a reference run (same algorithm, task, data, budget, overrides "
        f"and evaluation settings); {outside} fell outside its band at some evaluation step or in its late mean. "
        "Band at a step: the reference seeds' [min(mean − 2·std, min), max(mean + 2·std, max)], 2·std at least "
        "the largest swing of one seed's curve, widened by the reference's tolerance. Late mean: the run's mean "
        "over the second half of the reference's evaluations, against the reference's ± 2 standard errors (its "
        "seeds' spread or snapshot noise, and the run's own) plus the tolerance. "
        "Data: the same file (SHA-256), or generated data of the same recipe whose bytes differ (made on "
        "another CPU type; the same distribution, not the same transitions).",
        "",
        _md_table(
            ["run", "task", "status", "final", "final band", "late mean [band]", "steps compared", "reference", "data"],
            rows,
        ),
        "",
    ]


def _check_status(check: dict) -> str:
    """inside | not compared | outside at N steps and/or in its late mean."""
    late_outside = (check.get("late") or {}).get("status") == "outside"  # old report.json files have no late
    where = [f"at {_plural(len(check['outside']), 'step')}"] if check["outside"] else []
    where += ["in its late mean"] if late_outside else []
    return " ".join([check["status"], " and ".join(where)]).strip()


def _fmt_late(late: dict | None) -> str:
    return "–" if late is None else f"{_fmt(late['mean'])} {_fmt_band(late['band'])}"


def _check_data(check: dict) -> str:
    """How a run's data matched its reference's (old report.json files lack the key: same file)."""
    if check.get("data", "same file") == "same file":
        return "same file"
    return f"same recipe (reference data {check['reference_sha256'][:12]})"


def format_summary(report: Report) -> str:
    """Compact plain-text tables for a terminal: final values per task and the aggregates."""
    rows = []
    for t in report.tasks:
        cells = {c.algorithm: c for c in t.cells}
        rows.append(
            [
                t.task,
                t.source_label() + (" (return)" if t.value_kind == "return" else ""),
                *(f"{_fmt_value(cells[a], 'final')} [{_fmt_seeds(cells[a])}]" for a in report.algorithms),
            ]
        )
    out = [
        "Final scores (mean ± std over finished seeds) [finished/planned]",
        _text_table(["task", "data", *report.algorithms], rows),
    ]
    agg = report.aggregate
    if agg["metrics"]:
        out += [
            "",
            f"Aggregate over {_plural(len(agg['tasks']), 'task')} × {_plural(agg['num_seeds'], 'seed')} "
            f"({'95% CI' if agg['ci'] else 'CIs unavailable: ' + agg['ci_unavailable']})",
            _text_table(
                ["algorithm", "IQM", "CI", "mean", "CI"],
                [
                    [a, _fmt(m["IQM"]["estimate"]), _fmt_ci(m["IQM"]), _fmt(m["mean"]["estimate"]), _fmt_ci(m["mean"])]
                    for a, m in sorted(agg["metrics"].items())
                ],
            ),
        ]
    else:
        out += ["", f"Aggregate: not available ({agg['ci_unavailable']})"]
    checks = report.reference_checks
    if checks:
        outside = [c for c in checks if c["status"] == "outside"]
        by_recipe = sum(_check_data(c) != "same file" for c in checks)
        note = f" ({by_recipe} on data of the reference's recipe, not its file)" if by_recipe else ""
        inside = len(checks) - len(outside)
        out += ["", f"Reference runs: {inside} of {len(checks)} checked runs inside their band{note}"]
        out += [
            f"OUTSIDE REFERENCE: {c['algorithm']} seed {c['seed']} on {c['task']}: final {_fmt(c['final'])}, "
            f"band {_fmt_band(c['final_band'])}; late mean {_fmt_late(c.get('late'))} ({_check_status(c)}; "
            f"{c['reference']}; data: {_check_data(c)})"
            for c in outside
        ]
    out += [f"ERROR: {e}" for e in report.errors]
    return "\n".join(out) + "\n"


# -- CSV and writing ----------------------------------------------------------------------------------
def _csv_num(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def to_csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_csv_num(v) if isinstance(v, float) else ("" if v is None else v) for v in row] for row in rows])
    return buf.getvalue()


def runs_csv(report: Report) -> str:
    kinds = {t.task: t.value_kind for t in report.tasks}
    rows = []
    for r in report.runs:
        kind = kinds.get(r.task, "score")
        rows.append(
            [
                r.algorithm,
                r.task,
                r.seed,
                r.status,
                kind,
                r.value("final", kind),
                r.value("best", kind),
                r.evaluations,
                r.elapsed_s,
                (r.cost or {}).get("updates_per_s"),
                r.source,
                r.sha256,
                (r.failure or {}).get("kind"),
            ]
        )
    return to_csv(
        [
            "algorithm",
            "task",
            "seed",
            "status",
            "value",
            "final",
            "best",
            "evaluations",
            "elapsed_s",
            "updates_per_s",
            "source",
            "sha256",
            "failure",
        ],
        rows,
    )


def aggregate_csv(report: Report) -> str:
    agg = report.aggregate
    rows = [
        [name, a, "", e["estimate"], e["ci_low"], e["ci_high"], agg["num_seeds"], len(agg["tasks"])]
        for a, m in sorted(agg["metrics"].items())
        for name, e in m.items()
    ]
    rows += [
        [
            "probability_of_improvement",
            x,
            y,
            e["estimate"],
            e["ci_low"],
            e["ci_high"],
            agg["num_seeds"],
            len(agg["tasks"]),
        ]
        for x, row in sorted(agg["probability_of_improvement"].items())
        for y, e in sorted(row.items())
    ]
    return to_csv(["metric", "algorithm", "other", "estimate", "ci_low", "ci_high", "num_seeds", "num_tasks"], rows)


def write_report(report: Report, out_dir: Path | None = None) -> Path:
    """Write report.md, report.json, runs.csv, aggregate.csv and figures/ (atomically); the folder."""
    from offrl_zoo.bench import plots

    out = Path(out_dir) if out_dir is not None else report.out_dir
    for folder in (out, out / plots.FIGURES):  # temps of a writer killed over 10 minutes ago
        if folder.is_dir():
            remove_stale_temps(folder, older_than_s=600)
    figures = plots.write_figures(report, out)
    write_text(out / "report.md", render_markdown(report, figures))
    write_json(out / "report.json", report.to_dict() | {"figures": figures})
    write_text(out / "runs.csv", runs_csv(report))
    write_text(out / "aggregate.csv", aggregate_csv(report))
    return out
