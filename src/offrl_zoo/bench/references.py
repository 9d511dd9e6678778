"""Reference runs: finished learning curves shipped with the package, which later comparisons are checked
against, so that a change that breaks learning shows in the next report.

A reference is one algorithm × task × budget of a results store: at each evaluation step the mean, std
(ddof 1), min and max of the value (score, or return on a task without reference scores) over its seeds,
with the data's SHA-256, the store's overrides and evaluation settings, and the code version that made
it. ``offrl-zoo reference make STORE`` writes them; the report checks every finished run whose algorithm,
task, data hash, budget, overrides and evaluation settings match one.

The band at a step is ``[min(mean − 2·std, min) − tolerance, max(mean + 2·std, max) + tolerance]``: the
seeds' spread, widened by an absolute ``tolerance`` (in the value's units; 10 by default, i.e. ten score
points) so that a one-seed reference and small numerical differences between machines still leave room.
A run is outside when its value at any evaluation step the reference has lies outside that step's band.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from offrl_zoo.bench.results import RunResult, collect_runs
from offrl_zoo.bench.tables import DDOF
from offrl_zoo.errors import ReferenceFileError
from offrl_zoo.io import write_json

SHIPPED = Path(__file__).with_name("references")  # package data: one JSON file per reference
DEFAULT_TOLERANCE = 10.0
FORMAT = 1


@dataclass(frozen=True)
class Reference:
    algorithm: str
    task: str
    budget: str
    overrides: list[str]
    run_settings: dict  # the store's evaluation interval, episodes and data source
    sha256: str  # the data's
    value: str  # score | return
    seeds: list[int]
    curve: list[dict]  # per evaluation step: step, n, mean, std, min, max
    tolerance: float
    code: dict  # offrl-zoo version and git sha of the runs
    source: str  # the store it was made from, and how
    format: int = FORMAT

    def key(self) -> tuple:
        return (self.algorithm, self.task, self.budget, tuple(self.overrides), self.sha256)

    def band(self, step: int) -> tuple[float, float] | None:
        point = next((p for p in self.curve if p["step"] == step), None)
        if point is None:
            return None
        spread = 2 * (point["std"] or 0.0)
        low = min(point["mean"] - spread, point["min"]) - self.tolerance
        high = max(point["mean"] + spread, point["max"]) + self.tolerance
        return low, high

    def file_name(self) -> str:
        return f"{self.algorithm}__{self.task}__{self.budget}.json"


def _store_settings(store: Path) -> dict:
    path = store / "sweep.json"
    if not path.is_file():
        raise ReferenceFileError(
            f"{store}: no sweep.json; references are made from a results store of `offrl-zoo compare`"
        )
    sweep = json.loads(path.read_text())
    return {
        "budget": str(sweep.get("budget")),
        "overrides": list(sweep.get("overrides") or []),
        "run_settings": dict(sweep.get("run_settings") or {}),
    }


def _value(point: tuple[int, float | None, float | None], kind: str) -> float | None:
    """The score or the return of one (step, score, return) point of a run's curve."""
    return point[1] if kind == "score" else point[2]


def _curve_stats(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - DDOF)) ** 0.5 if n > DDOF else None
    return {"n": n, "mean": mean, "std": std, "min": min(values), "max": max(values)}


def _code_version(store: Path, runs: list[RunResult]) -> dict:
    versions, shas = set(), set()
    for run in runs:
        provenance = json.loads((store / run.path / "provenance.json").read_text())
        versions.add((provenance.get("versions") or {}).get("offrl-zoo"))
        shas.add(provenance.get("git_sha"))
    return {"offrl_zoo": sorted(map(str, versions)), "git_sha": sorted(map(str, shas))}


def make_references(store: Path, tolerance: float = DEFAULT_TOLERANCE) -> list[Reference]:
    """One reference per algorithm × task with finished runs on one dataset in ``store``."""
    store = Path(store)
    settings = _store_settings(store)
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for run in collect_runs(store):
        if run.status == "done":
            groups.setdefault((run.algorithm, run.task), []).append(run)
    references = []
    for (algorithm, task), runs in sorted(groups.items()):
        hashes = {r.sha256 for r in runs}
        if len(hashes) != 1 or None in hashes:
            raise ReferenceFileError(
                f"{store}: the runs of {algorithm} on {task} used different or unknown data ({hashes})"
            )
        kind = "score" if all(r.final_score is not None for r in runs) else "return"
        by_step: dict[int, list[float]] = {}
        for run in runs:
            for point in run.curve:
                value = _value(point, kind)
                if value is not None:
                    by_step.setdefault(point[0], []).append(value)
        curve = [{"step": step, **_curve_stats(v)} for step, v in sorted(by_step.items()) if len(v) == len(runs)]
        references.append(
            Reference(
                algorithm=algorithm,
                task=task,
                sha256=hashes.pop() or "",
                value=kind,
                seeds=sorted(r.seed for r in runs),
                curve=curve,
                tolerance=tolerance,
                code=_code_version(store, runs),
                source=f"results store {store.name}, `offrl-zoo reference make`",
                **settings,
            )
        )
    return references


def write_references(references: list[Reference], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ref in references:
        path = folder / ref.file_name()
        write_json(path, asdict(ref))
        paths.append(path)
    return paths


def load_references(folder: Path | None = None) -> list[Reference]:
    """Every reference in ``folder`` (default: the shipped ones), sorted by file name."""
    folder = SHIPPED if folder is None else Path(folder)
    if not folder.is_dir():
        raise ReferenceFileError(f"{folder}: no such folder of references")
    refs = []
    for path in sorted(folder.glob("*.json")):
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            ref = Reference(**data)
        except (ValueError, TypeError) as err:
            raise ReferenceFileError(f"{path}: not a reference file of offrl-zoo ({err})") from None
        if ref.format != FORMAT:
            raise ReferenceFileError(f"{path}: reference format {ref.format}, expected {FORMAT}")
        refs.append(ref)
    return refs


def check_runs(store: Path, runs: list[RunResult], references: list[Reference]) -> list[dict]:
    """For each finished run with a matching reference: the steps compared, those outside their band, and
    ``status``: inside | outside | not compared (no evaluation step in common)."""
    settings = _store_settings(store) if (store / "sweep.json").is_file() else None
    if settings is None:
        return []
    by_key = {ref.key(): ref for ref in references if ref.run_settings == settings["run_settings"]}
    checks = []
    for run in runs:
        key = (run.algorithm, run.task, settings["budget"], tuple(settings["overrides"]), run.sha256)
        ref = by_key.get(key)
        if ref is None or run.status != "done":
            continue
        outside = []
        compared = 0
        for point in run.curve:
            band, value = ref.band(point[0]), _value(point, ref.value)
            if band is None or value is None:
                continue
            compared += 1
            if not band[0] <= value <= band[1]:
                outside.append({"step": point[0], "value": value, "band": list(band)})
        final = run.curve[-1] if run.curve else None
        checks.append(
            {
                "algorithm": run.algorithm,
                "task": run.task,
                "seed": run.seed,
                "reference": ref.file_name(),
                "value": ref.value,
                "steps_compared": compared,
                "final": None if final is None else _value(final, ref.value),
                "final_band": None if final is None else ref.band(final[0]),
                "outside": outside,
                "status": "not compared" if compared == 0 else "outside" if outside else "inside",
            }
        )
    return checks
