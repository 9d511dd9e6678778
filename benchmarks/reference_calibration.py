"""How the reference check behaves on real seeds: false alarms, and how far a run must fall to be caught.

    python benchmarks/reference_calibration.py STORE...

Every STORE (a saved or live results store of `offrl-zoo compare`, one seed per algorithm × task) is made
into one-seed references (`make_references`, from the run files or the saved report). For each ordered
pair of stores that share an algorithm × task (other seeds, possibly other data draws of one recipe), the
second's curve is checked against the first's reference, as the report does:

- ``steps``: evaluation steps outside their band, and ``late``: the late-mean check, for the curve as it is
  (a flag here is a false alarm: both are correct runs of the same code);
- ``shift caught``: the smallest downward shift of the whole curve (in steps of 0.5 points) that the
  per-step bands catch, and that the late-mean check catches: a code change that costs a method that
  much everywhere is flagged; one that costs less passes;
- ``flat curve caught below``: the highest flat curve (the same value at every step, as a method stuck at one
  level scores) that each check catches, counted down from the reference's late mean in steps of 0.5.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from offrl_zoo.bench.references import Reference, _late_check, make_references

SHIFT_STEP = 0.5
MAX_SHIFT = 150.0


def _values(ref: Reference) -> dict[int, float]:
    return {p["step"]: p["mean"] for p in ref.curve}


def _steps_outside(ref: Reference, values: dict[int, float]) -> int:
    bands = {step: ref.band(step) for step in values}
    return sum(1 for step, v in values.items() if bands[step] and not bands[step][0] <= v <= bands[step][1])


def _late_outside(ref: Reference, values: dict[int, float]) -> bool | None:
    check = _late_check(ref, values)
    return None if check is None else check["status"] == "outside"


def _shift_caught(ref: Reference, values: dict[int, float], caught) -> float | None:
    shift = 0.0
    while shift <= MAX_SHIFT:
        if caught(ref, {s: v - shift for s, v in values.items()}):
            return shift
        shift += SHIFT_STEP
    return None


def calibrate(stores: list[Path]) -> list[str]:
    refs: dict[tuple[str, str], list[tuple[str, Reference]]] = {}
    for store in stores:
        for ref in make_references(store):
            refs.setdefault((ref.algorithm, ref.task), []).append((store.name, ref))
    rows = [
        "| algorithm | task | reference (seed) | run (seed) | data | steps outside | late mean, band | "
        "shift caught, by steps | by late mean | flat curve caught below, by steps | by late mean |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (algorithm, task), group in sorted(refs.items()):
        for (ref_store, ref), (run_store, run) in itertools.permutations(group, 2):
            values = {s: v for s, v in _values(run).items() if ref.band(s) is not None}
            late = _late_check(ref, values)
            by_steps = _shift_caught(ref, values, lambda r, v: _steps_outside(r, v) > 0)
            by_late = _shift_caught(ref, values, lambda r, v: bool(_late_outside(r, v)))
            top = _late_centre(ref)
            flat = dict.fromkeys(values, top)
            steady_steps = _shift_caught(ref, flat, lambda r, v: _steps_outside(r, v) > 0)
            steady_late = _shift_caught(ref, flat, lambda r, v: bool(_late_outside(r, v)))
            rows.append(
                f"| {algorithm} | {task} | {ref_store} ({ref.seeds[0]}) | {run_store} ({run.seeds[0]}) | "
                f"{'same file' if ref.sha256 == run.sha256 else 'other draw'} | "
                f"{_steps_outside(ref, values)} of {len(values)} | "
                + ("–" if late is None else f"{late['mean']:.1f} [{late['band'][0]:.1f}, {late['band'][1]:.1f}]")
                + f" {'' if late is None else late['status']} | {_fmt(by_steps)} | {_fmt(by_late)} | "
                f"{_level(top, steady_steps)} | {_level(top, steady_late)} |"
            )
    return rows


def _late_centre(ref: Reference) -> float:
    centre = ref.late_mean()
    assert centre is not None, f"{ref.file_name()}: too few evaluations for a late mean"
    return centre


def _level(top: float, shift: float | None) -> str:
    return "never" if shift is None else f"{top - shift:.1f}"


def _fmt(shift: float | None) -> str:
    return f"> {MAX_SHIFT:g}" if shift is None else f"{shift:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", type=Path)
    print("\n".join(calibrate(parser.parse_args().stores)))


if __name__ == "__main__":
    main()
