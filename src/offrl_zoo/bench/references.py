"""Reference runs: finished learning curves shipped with the package, which later comparisons are checked
against, so that a change that breaks learning shows in the next report.

A reference is one algorithm × task × budget of a results store: at each evaluation step the mean, std
(ddof 1), min and max of the value (score, or return on a task without reference scores) over its seeds,
with the data's SHA-256, the store's overrides and evaluation settings, and the code version that made
it. ``offrl-zoo reference make STORE`` writes them; the report checks every finished run whose algorithm,
task, data hash, budget, overrides and evaluation settings match one. Overrides that change how fast a run
trains and its float rounding but not the algorithm (``fast``, ``tf32``, ``cpu_bf16_matmul``) do not count:
a run on the fast path is checked against an eager reference and the other way round, a bfloat16 run
against a float32 one.

Generated data (``offrl-zoo data make``) is matched by its recipe when its hash differs: the same recipe
makes the same bytes on one CPU type but other bytes on another (the behaviour policy's float rounding
differs, and the episodes diverge from there), so a user on other hardware trains on a statistically
equal dataset whose hash no reference has. Such a check says so (``data``: ``same recipe``); an exact
hash match wins where both exist.

The band at a step is ``[min(mean − 2·std, min) − tolerance, max(mean + 2·std, max) + tolerance]``: the
seeds' spread, widened by an absolute ``tolerance`` (in the value's units; 10 by default, i.e. ten score
points) so that a one-seed reference and small numerical differences between machines still leave room.
The spread is ``max(2·std, jitter)``, where ``jitter`` is the largest change of any one seed's curve from
one evaluation to the next: a one-seed reference knows nothing of the spread over seeds, and two or three
seeds that happen to agree at a step say little about it, so a curve that oscillates (hopper) is not
flagged at every dip another seed takes at another step.
A run is outside when its value at any evaluation step the reference has lies outside that step's band.

A per-step band wide enough for a curve whose snapshots swing (TD3+BC on walker2d drops from 70 to 1 and back
between evaluations) passes a run that sits 30 points low throughout. So the run is also checked on its
**late mean**: its mean over the second half of the reference's evaluations (the last ⌊k/2⌋ of k, at least
3). The reference keeps, per seed, the mean and std of those evaluations (``late``); the band is
``M ± (2·sqrt(var_ref + std_run²/k) + tolerance)``, where ``M`` is the mean over the reference's seeds and
``var_ref`` the variance of one seed's late mean: the variance over the seeds where there are several,
never less than the seeds' own snapshot noise ``std²/k``. A run that swings gets a wide band (its own late
mean is uncertain); one that is steadily low does not.

A saved store whose run files were not kept (``benchmarks/campaign.py save`` before they were committed)
still has its report: references are then made from ``report/report.json``'s curves (mean, std, n; min
and max are known only for one seed, and otherwise left out of the band).
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
    curve: list[dict]  # per evaluation step: step, n, mean, std, min, max (None when made from a report)
    tolerance: float
    code: dict  # offrl-zoo version and git sha of the runs
    source: str  # the store it was made from, and how
    jitter: float = 0.0  # the largest change of one seed's curve between consecutive evaluations (a floor of 2·std)
    data_recipe: dict | None = None  # generated data: what it was made from (matched when the hash differs)
    late: dict | None = None  # the late-mean check's {"steps": [...], "per_seed": [{"seed", "mean", "std"}]}
    format: int = FORMAT

    def key(self) -> tuple:
        return (self.algorithm, self.task, self.budget, _algorithmic(self.overrides), self.sha256)

    def band(self, step: int) -> tuple[float, float] | None:
        point = next((p for p in self.curve if p["step"] == step), None)
        if point is None:
            return None
        spread = max(2 * point["std"] if point["std"] is not None else 0.0, self.jitter)
        low = min(point["mean"] - spread, _or(point["min"], point["mean"])) - self.tolerance
        high = max(point["mean"] + spread, _or(point["max"], point["mean"])) + self.tolerance
        return low, high

    def late_summary(self) -> dict | None:
        """Per seed, the mean and std of the evaluations in the second half of the curve; derived from the curve
        for a one-seed reference written before they were recorded; None where too short or unknown."""
        if self.late is not None:
            return self.late
        if len(self.seeds) != 1:
            return None
        return _late_summary({self.seeds[0]: {p["step"]: p["mean"] for p in self.curve}})

    def late_mean(self) -> float | None:
        """The mean of the seeds' late means: the centre of the late-mean band."""
        late = self.late_summary()
        return None if late is None else _late_centre(late)

    def late_band(self, run_std: float) -> tuple[float, float] | None:
        """The band of a run's late mean, given the std of the run's late evaluations."""
        late = self.late_summary()
        if late is None:
            return None
        k = len(late["steps"])
        means = [s["mean"] for s in late["per_seed"]]
        snapshot_var = sum(s["std"] ** 2 for s in late["per_seed"]) / len(means) / k
        seed_var = _curve_stats(means)["std"] ** 2 if len(means) > DDOF else 0.0
        centre, half = _late_centre(late), 2 * (max(seed_var, snapshot_var) + run_std**2 / k) ** 0.5 + self.tolerance
        return centre - half, centre + half

    def recipe_key(self) -> tuple | None:
        if self.data_recipe is None:
            return None
        return (*self.key()[:4], _canonical(self.data_recipe))

    def file_name(self) -> str:
        return f"{self.algorithm}__{self.task}__{self.budget}.json"


# Config keys that change a run's speed and its float rounding, not the algorithm: a run with them is checked
# against a reference made without them, which is how a rounding that breaks learning would show.
SPEED_ONLY_OVERRIDES = ("fast", "tf32", "cpu_bf16_matmul")


def _algorithmic(overrides: list[str]) -> tuple[str, ...]:
    """The overrides that matter when matching a run with a reference: all but the speed-only ones."""
    return tuple(o for o in overrides if o.split("=", 1)[0].strip() not in SPEED_ONLY_OVERRIDES)


def _canonical(recipe: dict) -> str:
    return json.dumps(recipe, sort_keys=True)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


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


def _code_version(store: Path, runs: list[RunResult], code_version: str | None) -> dict:
    """The offrl-zoo versions and git shas in the runs' provenance, of every session that trained them
    (a resumed run lists its earlier ones); ``code_version`` stands in for the sha of sessions that record
    none (an install that is not a git checkout records ``git_sha: null``)."""
    versions, shas = set(), set()
    for run in runs:
        provenance = json.loads((store / run.path / "provenance.json").read_text())
        for session in (*provenance.get("earlier_sessions", []), provenance):
            versions.add((session.get("versions") or {}).get("offrl-zoo"))
            shas.add(session.get("git_sha") or code_version)
    return {"offrl_zoo": sorted(str(v) for v in versions if v), "git_sha": sorted(str(s) for s in shas if s)}


LATE_MIN_EVALUATIONS = 3  # fewer evaluations in the second half of a curve give no late-mean check


def _late_steps(steps: list[int]) -> list[int]:
    return sorted(steps)[len(steps) - len(steps) // 2 :]


def _late_centre(late: dict) -> float:
    """The centre of the late-mean band: the mean of the seeds' late means."""
    return sum(s["mean"] for s in late["per_seed"]) / len(late["per_seed"])


def _late_summary(curves: dict[int, dict[int, float]]) -> dict | None:
    """``curves``: seed -> {step: value} over the reference's steps. Per seed, the mean and std (ddof 1) of its
    values at the last ⌊k/2⌋ of the k steps; None when that is fewer than ``LATE_MIN_EVALUATIONS``."""
    steps = _late_steps(list(next(iter(curves.values()))))
    if len(steps) < LATE_MIN_EVALUATIONS:
        return None
    per_seed = []
    for seed, curve in sorted(curves.items()):
        stats = _curve_stats([curve[step] for step in steps])
        per_seed.append({"seed": seed, "mean": stats["mean"], "std": stats["std"]})
    return {"steps": steps, "per_seed": per_seed}


def _jitter(curves: list[list[float]]) -> float:
    """The largest change between consecutive evaluations of any one seed (``curves``: one list per seed)."""
    return max((abs(b - a) for c in curves for a, b in zip(c, c[1:], strict=False)), default=0.0)


def _one_dataset(store: Path, algorithm: str, task: str, hashes: set) -> str:
    if len(hashes) != 1 or None in hashes:
        raise ReferenceFileError(
            f"{store}: the runs of {algorithm} on {task} used different or unknown data ({hashes})"
        )
    return hashes.pop()


def make_references(
    store: Path, tolerance: float = DEFAULT_TOLERANCE, code_version: str | None = None
) -> list[Reference]:
    """One reference per algorithm × task with finished runs on one dataset in ``store`` (from its report when
    the run files are gone). ``code_version``: the commit the runs were trained at, where they record none."""
    store = Path(store)
    settings = _store_settings(store)
    if not (store / "runs").is_dir():
        return _references_from_report(store, settings, tolerance, code_version)
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for run in collect_runs(store):
        if run.status == "done":
            groups.setdefault((run.algorithm, run.task), []).append(run)
    references = []
    for (algorithm, task), runs in sorted(groups.items()):
        sha256 = _one_dataset(store, algorithm, task, {r.sha256 for r in runs})
        kind = "score" if all(r.final_score is not None for r in runs) else "return"
        by_step: dict[int, list[float]] = {}
        for run in runs:
            for point in run.curve:
                value = _value(point, kind)
                if value is not None:
                    by_step.setdefault(point[0], []).append(value)
        curve = [{"step": step, **_curve_stats(v)} for step, v in sorted(by_step.items()) if len(v) == len(runs)]
        steps = {p["step"] for p in curve}
        by_seed = {
            run.seed: {p[0]: v for p in run.curve if p[0] in steps and (v := _value(p, kind)) is not None}
            for run in runs
        }
        references.append(
            _reference(
                (algorithm, task, sha256, kind),
                sorted(r.seed for r in runs),
                curve,
                tolerance,
                _code_version(store, runs, code_version),
                f"results store {store.name}, `offrl-zoo reference make`",
                settings,
                _jitter([list(values.values()) for values in by_seed.values()]),
                runs[0].data_recipe,  # one hash, so one recipe
                _late_summary(by_seed),
            )
        )
    return references


def _reference(
    what: tuple[str, str, str, str],
    seeds: list[int],
    curve: list[dict],
    tolerance: float,
    code: dict,
    source: str,
    settings: dict,
    jitter: float,
    data_recipe: dict | None,
    late: dict | None,
) -> Reference:
    """The reference of ``what`` = (algorithm, task, data sha256, value kind)."""
    algorithm, task, sha256, kind = what
    return Reference(
        algorithm=algorithm,
        task=task,
        sha256=sha256,
        value=kind,
        seeds=seeds,
        curve=curve,
        tolerance=tolerance,
        jitter=jitter,
        data_recipe=data_recipe,
        late=late,
        code=code,
        source=source,
        **settings,
    )


def _references_from_report(store: Path, settings: dict, tolerance: float, code_version: str | None) -> list[Reference]:
    """References from a saved store's ``report/report.json``: its per-step curves (mean over seeds) stand in
    for the run files. The report records no code version; ``code_version`` gives it."""
    path = store / "report" / "report.json"
    if not path.is_file():
        raise ReferenceFileError(f"{store}: neither runs/ nor report/report.json to make references from")
    try:
        report = json.loads(path.read_text())
        kinds = {t["task"]: t["value_kind"] for t in report["tasks"]}
        done = [r for r in report["runs"] if r["status"] == "done"]
        curves = report["curves"]
    except (ValueError, KeyError, TypeError) as err:
        raise ReferenceFileError(f"{path}: not a report of `offrl-zoo report` ({err!r})") from None
    references = []
    for task, per_algorithm in sorted(curves.items()):
        for algorithm, points in sorted(per_algorithm.items()):
            runs = [r for r in done if (r["algorithm"], r["task"]) == (algorithm, task)]
            sha256 = _one_dataset(store, algorithm, task, {r.get("sha256") for r in runs})
            one_seed = len(runs) == 1
            curve = [
                {
                    "step": p["step"],
                    "n": p["n"],
                    "mean": p["mean"],
                    "std": p.get("std"),
                    "min": p["mean"] if one_seed else None,
                    "max": p["mean"] if one_seed else None,
                }
                for p in points
                if p["n"] == len(runs)
            ]
            references.append(
                _reference(
                    (algorithm, task, sha256, kinds[task]),
                    sorted(r["seed"] for r in runs),
                    curve,
                    tolerance,
                    {"offrl_zoo": [], "git_sha": [code_version] if code_version else []},
                    f"report of results store {store.name} (run files not kept), `offrl-zoo reference make`",
                    settings,
                    _jitter([[p["mean"] for p in curve]]) if one_seed else 0.0,  # several: per-seed curves unknown
                    runs[0].get("data_recipe"),  # absent from reports written before it was recorded
                    _late_summary({runs[0]["seed"]: {p["step"]: p["mean"] for p in curve}}) if one_seed else None,
                )
            )
    return references


def pool_references(references: list[Reference]) -> list[Reference]:
    """One reference per algorithm × task × budget × overrides × data out of ``references`` made from several
    stores (seeds trained in different sweeps or sessions): each step's statistics over all their seeds,
    pooled exactly from each part's n, mean, std, min and max (min and max stay unknown where a part made from
    a multi-seed report lacks them). The parts must share their evaluation settings and value kind and hold
    different seeds; the curve keeps the steps every seed has."""
    groups: dict[tuple, list[Reference]] = {}
    for ref in references:
        groups.setdefault(ref.key(), []).append(ref)
    return [_pooled(parts) if len(parts) > 1 else parts[0] for parts in groups.values()]


def _pooled(parts: list[Reference]) -> Reference:
    first = parts[0]
    what = f"{first.algorithm} on {first.task} at budget {first.budget}"
    for other in parts[1:]:
        if (other.run_settings, other.value, other.tolerance) != (first.run_settings, first.value, first.tolerance):
            raise ReferenceFileError(
                f"{what}: cannot pool runs evaluated differently ({first.source}: {first.run_settings}, "
                f"{first.value}; {other.source}: {other.run_settings}, {other.value})"
            )
    seeds = [seed for part in parts for seed in part.seeds]
    if len(set(seeds)) != len(seeds):
        raise ReferenceFileError(
            f"{what}: seed(s) {sorted({s for s in seeds if seeds.count(s) > 1})} in several stores"
        )
    steps = set.intersection(*({p["step"] for p in part.curve} for part in parts))
    curve = []
    for step in sorted(steps):
        points = [next(p for p in part.curve if p["step"] == step) for part in parts]
        curve.append({"step": step, **_pool_points(points)})
    code = {key: sorted({v for part in parts for v in part.code.get(key, [])}) for key in ("offrl_zoo", "git_sha")}
    return _reference(
        (first.algorithm, first.task, first.sha256, first.value),
        sorted(seeds),
        curve,
        first.tolerance,
        code,
        "pooled: " + "; ".join(part.source for part in parts),
        {"budget": first.budget, "overrides": first.overrides, "run_settings": first.run_settings},
        max(part.jitter for part in parts),
        next((part.data_recipe for part in parts if part.data_recipe is not None), None),
        _pooled_late([part.late_summary() for part in parts]),
    )


def _pooled_late(parts: list[dict | None]) -> dict | None:
    """The parts' per-seed late summaries side by side; None unless every part has one over the same steps."""
    known = [part for part in parts if part is not None]
    if len(known) < len(parts) or any(part["steps"] != known[0]["steps"] for part in known):
        return None
    return {"steps": known[0]["steps"], "per_seed": [s for part in known for s in part["per_seed"]]}


def _pool_points(points: list[dict]) -> dict:
    """Chan et al.'s pairwise update of (n, mean, sum of squared deviations), one part at a time."""
    n, mean, m2 = 0, 0.0, 0.0
    for p in points:
        part_m2 = 0.0 if p["n"] == 1 else (p["std"] or 0.0) ** 2 * (p["n"] - DDOF)
        total = n + p["n"]
        delta = p["mean"] - mean
        mean += delta * p["n"] / total
        m2 += part_m2 + delta**2 * n * p["n"] / total
        n = total
    lows, highs = [p["min"] for p in points], [p["max"] for p in points]
    return {
        "n": n,
        "mean": mean,
        "std": (m2 / (n - DDOF)) ** 0.5 if n > DDOF else None,
        "min": None if None in lows else min(lows),
        "max": None if None in highs else max(highs),
    }


def write_references(references: list[Reference], folder: Path) -> list[Path]:
    names: dict[str, Reference] = {}
    for ref in references:
        other = names.setdefault(ref.file_name(), ref)
        if other is not ref:  # same algorithm, task and budget, other data or overrides: one file for both
            raise ReferenceFileError(
                f"{ref.file_name()}: two references of {ref.algorithm} on {ref.task} at budget {ref.budget} "
                f"differ in their data or overrides ({other.source}: {other.sha256[:12]} {other.overrides}; "
                f"{ref.source}: {ref.sha256[:12]} {ref.overrides}); make them into separate folders"
            )
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
    comparable = [ref for ref in references if ref.run_settings == settings["run_settings"]]
    by_key = {ref.key(): ref for ref in comparable}
    by_recipe = {ref.recipe_key(): ref for ref in comparable if ref.data_recipe is not None}
    checks = []
    for run in runs:
        key = (run.algorithm, run.task, settings["budget"], _algorithmic(settings["overrides"]), run.sha256)
        ref, data = by_key.get(key), "same file"
        if ref is None and run.data_recipe is not None:
            ref, data = by_recipe.get((*key[:4], _canonical(run.data_recipe))), "same recipe"
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
        late = _late_check(ref, {point[0]: _value(point, ref.value) for point in run.curve})
        final = run.curve[-1] if run.curve else None
        checks.append(
            {
                "algorithm": run.algorithm,
                "task": run.task,
                "seed": run.seed,
                "reference": ref.file_name(),
                "data": data,
                "reference_sha256": ref.sha256,
                "value": ref.value,
                "steps_compared": compared,
                "final": None if final is None else _value(final, ref.value),
                "final_band": None if final is None else ref.band(final[0]),
                "outside": outside,
                "late": late,
                "status": _status(compared, outside, late),
            }
        )
    return checks


def _late_check(ref: Reference, values: dict[int, float | None]) -> dict | None:
    """The run's mean over the reference's late steps against its band; None when the reference has no late
    summary or the run lacks one of those steps."""
    late = ref.late_summary()
    late_values = [] if late is None else [values.get(step) for step in late["steps"]]
    if late is None or None in late_values:
        return None
    stats = _curve_stats([v for v in late_values if v is not None])
    band = ref.late_band(stats["std"])
    assert band is not None  # a late summary gives a band
    inside = band[0] <= stats["mean"] <= band[1]
    return {"mean": stats["mean"], "std": stats["std"], "steps": len(late["steps"]), "band": list(band),
            "status": "inside" if inside else "outside"}  # fmt: skip


def _status(compared: int, outside: list, late: dict | None) -> str:
    if compared == 0:
        return "not compared"
    return "outside" if outside or (late is not None and late["status"] == "outside") else "inside"
