"""``offrl-zoo reference``: make reference runs from a results store, and list them (bench/references.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

REFERENCE_EXAMPLES = """\
examples:
  offrl-zoo reference list                                   # the reference runs shipped with offrl-zoo
  offrl-zoo reference make results/gym-medium-300000 --out my_refs
  offrl-zoo reference make results/seed0 results/seed1 --out my_refs  # seeds of two sweeps, pooled
  offrl-zoo report results/gym-medium-300000 --references my_refs
"""


def add_reference_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reference",
        help="reference runs that comparison reports check every run against",
        description="A reference is the learning curve of one algorithm on one task at one budget (mean, std, "
        "min and max over its seeds at each evaluation step, with the data's SHA-256 and the code version). "
        "compare and report check each finished run against the matching reference and mark the runs that "
        "fall outside its band.",
        epilog=REFERENCE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rsub = p.add_subparsers(dest="reference_command", required=True, metavar="ACTION")
    q = rsub.add_parser(
        "make",
        help="one reference per algorithm × task of the finished runs of one or more results stores (the seeds "
        "of several stores with the same settings are pooled)",
    )
    q.add_argument("stores", nargs="+", metavar="STORE")
    q.add_argument("--out", required=True, help="folder to write the reference files to")
    q.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="absolute widening of the band, in the value's units (default 10: ten score points)",
    )
    q.add_argument(
        "--code-version",
        action="append",
        help="the commit the store's runs were trained at, recorded for runs whose provenance has no git sha "
        "(an install that is not a git checkout) and for stores whose run files are gone (made from the report); "
        "once for every store, or once per store in the order the stores are given",
    )
    q.set_defaults(func=cmd_make)
    q = rsub.add_parser("list", help="the references in a folder (default: those shipped with offrl-zoo)")
    q.add_argument("--dir", help="a folder of reference files")
    q.set_defaults(func=cmd_list)


def cmd_make(args: argparse.Namespace) -> int:
    from offrl_zoo.bench.references import DEFAULT_TOLERANCE, make_references, pool_references, write_references
    from offrl_zoo.errors import ReferenceFileError

    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not tolerance >= 0:
        raise ReferenceFileError(f"--tolerance {args.tolerance}: expected a number ≥ 0")
    versions = args.code_version or [None]
    if len(versions) == 1:
        versions = versions * len(args.stores)
    if len(versions) != len(args.stores):
        raise ReferenceFileError(
            f"--code-version given {len(versions)} times for {len(args.stores)} stores: give it once, or once per store"
        )
    made = [
        ref
        for store, sha in zip(args.stores, versions, strict=True)
        for ref in make_references(Path(store), tolerance, sha)
    ]
    references = pool_references(made)
    if not references:
        raise ReferenceFileError(f"{', '.join(args.stores)}: no finished runs to make references from")
    for path in write_references(references, Path(args.out)):
        print(path)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from offrl_zoo.bench.references import load_references

    for ref in load_references(Path(args.dir) if args.dir else None):
        last = ref.curve[-1] if ref.curve else None
        final = "no evaluations" if last is None else f"{ref.value} {last['mean']:.1f} at step {last['step']:,}"
        late = ref.late_summary()
        if late is not None:
            final += f", late mean {ref.late_mean():.1f} (last {len(late['steps'])})"
        print(
            f"{ref.algorithm:8s} {ref.task:28s} budget {ref.budget:8s} seeds {len(ref.seeds)}  {final}  "
            f"data {ref.sha256[:8]}  ±{ref.tolerance:g}"
            + (f" ±{ref.jitter:.1f} (largest swing of one seed)" if ref.jitter else "")
        )
    return 0
