"""Carry a long `offrl-zoo compare` campaign across machines or sessions without its checkpoints.

    python benchmarks/campaign.py save    STORE  benchmarks/results/campaign/NAME   # finished runs → repository
    python benchmarks/campaign.py restore benchmarks/results/campaign/NAME  STORE   # → a store compare resumes

`save` copies the store's sweep.json, budgets/ and, of every finished run (a `done` marker), its small
files: config.yaml, provenance.json, metrics.jsonl, eval.jsonl, done. Checkpoints, stage caches, locks and
unfinished runs stay behind. `restore` copies them into a store (never over a run already there); the same
`offrl-zoo compare ...` command then skips the finished runs and trains the rest. Restore on a machine of
the same CPU type: generation is seeded and gives the same SHA-256 there (hopper-medium-v2 regenerated on
the development machine), but other bytes on another CPU type (an Intel AVX-512 Xeon against the AMD
EPYC, docs/data.md). There `compare` refuses to train into the restored store (the finished runs' data
hash differs from the cached file a new run would load, and one report cannot compare runs on different
data); train the missing runs in a new store instead.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

RUN_FILES = ("config.yaml", "provenance.json", "metrics.jsonl", "eval.jsonl", "done")


def _finished_runs(store: Path) -> list[Path]:
    return sorted(d.parent for d in store.glob("runs/*/*/seed*/done"))


def _copy_sweep(source: Path, dest: Path, keep_existing: bool) -> None:
    """sweep.json (unless ``keep_existing`` and dest has one) and the budget files of a store."""
    dest.mkdir(parents=True, exist_ok=True)
    if not (keep_existing and (dest / "sweep.json").is_file()):
        shutil.copy2(source / "sweep.json", dest / "sweep.json")
    if (source / "budgets").is_dir():
        shutil.copytree(source / "budgets", dest / "budgets", dirs_exist_ok=True)


def save(store: Path, dest: Path) -> list[Path]:
    _copy_sweep(store, dest, keep_existing=False)
    saved = []
    for run in _finished_runs(store):
        target = dest / run.relative_to(store)
        target.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            if (run / name).is_file():
                shutil.copy2(run / name, target / name)
        saved.append(target)
    return saved


def restore(saved: Path, store: Path) -> list[Path]:
    _copy_sweep(saved, store, keep_existing=True)
    restored = []
    for run in _finished_runs(saved):
        target = store / run.relative_to(saved)
        if target.exists():
            continue
        shutil.copytree(run, target)
        restored.append(target)
    return restored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["save", "restore"])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    done = save(args.source, args.dest) if args.action == "save" else restore(args.source, args.dest)
    print(f"{args.action}: {len(done)} finished run(s) → {args.dest}")


if __name__ == "__main__":
    main()
