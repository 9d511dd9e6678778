"""Reading a results store (``STORE/runs/<algorithm>/<task>/seed<N>/`` plus an optional
``STORE/sweep.json``) into one ``RunResult`` per run directory, and the DTQL paper's scores.

"final" is the run's final evaluation (``done``), "best" the best evaluation in ``eval.jsonl``
(optimistic: it selects on the evaluation episodes; the same as final for a run evaluated once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from offrl_zoo.io import read_jsonl

PAPER_LABEL = "paper (DTQL Table 1)"
PAPER_SCORES = Path(__file__).with_name("paper_scores.yaml")


@dataclass
class RunResult:
    """One run directory, as read from the store."""

    algorithm: str
    task: str
    seed: int
    path: str  # relative to the store
    status: str  # done | failed | unfinished
    final_score: float | None = None
    final_return: float | None = None
    best_score: float | None = None
    best_return: float | None = None
    evaluations: int = 0  # records in eval.jsonl of a finished run; with one, best is final
    # Every episode of the final evaluation returned the same: on a one-state task, one action repeated.
    identical_episodes: bool = False
    final_samples: dict | None = None  # sample metrics of the final evaluation (toys: docs/toy.md)
    elapsed_s: float | None = None
    cost: dict | None = None
    device: str | None = None  # from provenance.json; the cost record's device wins
    source: str | None = None
    sha256: str | None = None
    # Generated data: what the file was made from. The bytes of two generations of one recipe differ across
    # CPU types (float rounding of the behaviour policy), so references also match on this (references.py).
    data_recipe: dict | None = None
    protocol: dict | None = None
    failure: dict | None = None  # {"kind", "error", "step"} of a failed run
    curve: list[tuple[int, float | None, float | None]] = field(default_factory=list)  # (global step, score, return)
    # An unfinished run's last metrics line: {"stage", "step", "planned"} (planned: the steps its stage runs)
    last_logged: dict | None = None

    def value(self, which: str, kind: str) -> float | None:
        """``which``: final | best; ``kind``: score | return."""
        return getattr(self, f"{which}_{kind}")

    def label(self) -> str:
        return f"{self.algorithm}/seed{self.seed}"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _stage_steps(info: dict) -> int | None:
    """The steps a stage runs, from its provenance record (``run_steps``: after the budget's cap)."""
    steps = info.get("run_steps", info.get("planned_steps"))
    return None if steps is None else int(steps)


def _stage_offsets(provenance: dict, metrics: list[dict]) -> dict[str, int]:
    """Global step at which each stage starts. provenance.json is written with sorted keys, so its
    ``stages`` are in run order only by accident; metrics.jsonl's line order is the run order and its
    ``global_step - step`` is the trainer's own offset."""
    stages = provenance.get("stages") or {}
    order = list(dict.fromkeys([m["stage"] for m in metrics if "stage" in m] + list(stages)))
    offsets, total = {}, 0
    for name in order:
        offsets[name] = total
        total += _stage_steps(stages.get(name) or {}) or 0
    for m in metrics:
        if "global_step" in m and "step" in m and "stage" in m:
            offsets[m["stage"]] = int(m["global_step"]) - int(m["step"])
    return offsets


def _curve(evals: list[dict], offsets: dict[str, int]) -> list[tuple[int, float | None, float | None]]:
    return [
        (offsets.get(e.get("stage") or "", 0) + int(e.get("step", 0)), e.get("score_mean"), e.get("return_mean"))
        for e in evals
    ]


def _best(evals: list[dict], key: str) -> float | None:
    values = [e[key] for e in evals if e.get(key) is not None]
    return max(values) if values else None


def _identical_episodes(final: dict) -> bool:
    """All episodes equal, to float rounding (the mean of N equal returns is not always exact)."""
    std, mean = final.get("return_std"), final.get("return_mean")
    episodes = (final.get("protocol") or {}).get("episodes", 2)
    return std is not None and mean is not None and episodes > 1 and std <= 1e-9 * max(1.0, abs(mean))


def read_run(store: Path, run_dir: Path) -> RunResult:
    """Everything the report needs from one run directory."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    request = (config or {}).get("request") or {}
    provenance = _read_json(run_dir / "provenance.json") or {}
    dataset = provenance.get("dataset") or {}
    evals = read_jsonl(run_dir / "eval.jsonl")
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    done = _read_json(run_dir / "done")
    failed = None if done is not None else _read_json(run_dir / "failed")
    final = (done or {}).get("final_eval") or {}
    scored = evals if done is not None else []  # a failed or unfinished run has no result, not even a best
    protocol = final.get("protocol") or (evals[-1].get("protocol") if evals else None) or provenance.get("protocol")
    return RunResult(
        algorithm=request.get("algorithm") or run_dir.parent.parent.name,
        task=(config or {}).get("task") or run_dir.parent.name,
        seed=int(request["seed"]) if "seed" in request else int(run_dir.name.removeprefix("seed")),
        path=run_dir.relative_to(store).as_posix(),
        status="done" if done is not None else "failed" if failed is not None else "unfinished",
        final_score=final.get("score_mean"),
        final_return=final.get("return_mean"),
        best_score=_best(scored, "score_mean"),
        best_return=_best(scored, "return_mean"),
        evaluations=len(scored),
        identical_episodes=_identical_episodes(final),
        final_samples=final.get("samples"),
        elapsed_s=(done or {}).get("elapsed_s"),
        cost=(done or {}).get("cost"),
        device=provenance.get("device"),
        source=dataset.get("source"),
        sha256=dataset.get("sha256") or (config or {}).get("dataset_sha256"),
        data_recipe=(dataset.get("extra") or {}).get("recipe") if dataset.get("source") == "generated" else None,
        protocol=protocol,
        failure=None if failed is None else {k: failed.get(k) for k in ("kind", "error", "step")},
        curve=_curve(evals, _stage_offsets(provenance, metrics)),
        last_logged=None if done is not None or failed is not None else _last_logged(metrics, provenance),
    )


def _last_logged(metrics: list[dict], provenance: dict) -> dict | None:
    """Where an unfinished run's logs stop (a live run: how far it has got)."""
    last = next((m for m in reversed(metrics) if "stage" in m and "step" in m), None)
    if last is None:
        return None
    planned = _stage_steps((provenance.get("stages") or {}).get(last["stage"]) or {})
    return {"stage": last["stage"], "step": int(last["step"]), "planned": planned}


def collect_runs(store: Path) -> list[RunResult]:
    """Every ``runs/<algorithm>/<task>/seed<N>`` directory of the store, sorted."""
    dirs = [d for d in sorted((Path(store) / "runs").glob("*/*/seed*")) if d.is_dir()]
    return sorted((read_run(Path(store), d) for d in dirs), key=lambda r: (r.algorithm, r.task, r.seed))


def read_sweep(store: Path, runs: list[RunResult]) -> dict:
    """sweep.json, or what the runs imply when it is missing."""
    raw = _read_json(Path(store) / "sweep.json")
    if raw is None:
        return {
            "from": "runs/ (no sweep.json)",
            "suite": None,
            "budget": None,
            "unsupported": [],
            "algorithms": sorted({r.algorithm for r in runs}),
            "tasks": sorted({r.task for r in runs}),
            "seeds": sorted({r.seed for r in runs}),
        }
    unsupported = sorted(raw.get("unsupported") or [], key=lambda u: (u.get("algorithm"), u.get("task")))
    return {
        "from": "sweep.json",
        "suite": raw.get("suite"),
        "budget": raw.get("budget"),
        "unsupported": unsupported,
        "algorithms": sorted(set(raw.get("algorithms") or []) | {r.algorithm for r in runs}),
        "tasks": sorted(set(raw.get("tasks") or []) | {r.task for r in runs}),
        "seeds": sorted(set(raw.get("seeds") or {r.seed for r in runs})),
    }


def load_paper_scores(path: Path | None = None) -> tuple[str, dict[str, dict[str, dict]]]:
    """(source, {task: {algorithm: {"mean", "std"}}}) from paper_scores.yaml."""
    data = yaml.safe_load(Path(path or PAPER_SCORES).read_text())
    table = {}
    for task, row in (data.get("scores") or {}).items():
        table[task] = {
            alg: (
                {"mean": float(v["mean"]), "std": float(v["std"])}
                if isinstance(v, dict)
                else {"mean": float(v), "std": None}
            )
            for alg, v in row.items()
        }
    return str(data.get("source", "")), table
