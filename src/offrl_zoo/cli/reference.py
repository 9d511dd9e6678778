"""``offrl-zoo reference``: make reference runs from a results store, and list them (bench/references.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

REFERENCE_EXAMPLES = """\
examples:
  offrl-zoo reference list                                   # the reference runs shipped with offrl-zoo
  offrl-zoo reference make results/gym-medium-300000 --out my_refs
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
    q = rsub.add_parser("make", help="one reference per algorithm × task of a results store's finished runs")
    q.add_argument("store")
    q.add_argument("--out", required=True, help="folder to write the reference files to")
    q.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="absolute widening of the band, in the value's units (default 10: ten score points)",
    )
    q.add_argument(
        "--code-version",
        help="the commit the store's runs were trained at, recorded for runs whose provenance has no git sha "
        "(an install that is not a git checkout) and for stores whose run files are gone (made from the report)",
    )
    q.set_defaults(func=cmd_make)
    q = rsub.add_parser("list", help="the references in a folder (default: those shipped with offrl-zoo)")
    q.add_argument("--dir", help="a folder of reference files")
    q.set_defaults(func=cmd_list)


def cmd_make(args: argparse.Namespace) -> int:
    from offrl_zoo.bench.references import DEFAULT_TOLERANCE, make_references, write_references
    from offrl_zoo.errors import ReferenceFileError

    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not tolerance >= 0:
        raise ReferenceFileError(f"--tolerance {args.tolerance}: expected a number ≥ 0")
    references = make_references(Path(args.store), tolerance, args.code_version)
    if not references:
        raise ReferenceFileError(f"{args.store}: no finished runs to make references from")
    for path in write_references(references, Path(args.out)):
        print(path)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from offrl_zoo.bench.references import load_references

    for ref in load_references(Path(args.dir) if args.dir else None):
        last = ref.curve[-1] if ref.curve else None
        final = "no evaluations" if last is None else f"{ref.value} {last['mean']:.1f} at step {last['step']:,}"
        print(
            f"{ref.algorithm:8s} {ref.task:28s} budget {ref.budget:8s} seeds {len(ref.seeds)}  {final}  "
            f"data {ref.sha256[:8]}  ±{ref.tolerance:g}"
            + (f" ±{ref.jitter:.1f} (one-seed jitter)" if ref.jitter else "")
        )
    return 0
