"""Every citation of the algorithm reference in the repository resolves: a `§N.M` (or `§2.3c`) is a heading
of docs/reference.md (or a lettered item of one), a `quirk #N` / `§12 #N` one of its numbered quirks, and
nothing cites the development notes that live outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
SCANNED = ["src", "algorithms", "tests", "benchmarks", "docs", "README.md", "CONTRIBUTING.md"]
SUFFIXES = {".py", ".md", ".yaml", ".toml"}
# `§` that cites a paper's own section ("DTQL paper §3", "App. §…") is not ours.
SECTION = re.compile(r"(?<!paper )(?<!paper's )§(\d+(?:\.\d+)?)([a-z])?(?:[–-](\d+(?:\.\d+)?))?")
QUIRK = re.compile(r"(?:quirks? |§12 )#(\d+)(?:[–-]#?(\d+))?")


def _files() -> list[Path]:
    out = []
    for entry in SCANNED:
        path = ROOT / entry
        found = [path] if path.is_file() else [p for p in path.rglob("*") if p.suffix in SUFFIXES]
        out += [p for p in found if "build" not in p.parts and ".egg-info" not in str(p)]
    return out


def _headings() -> tuple[set[str], set[int]]:
    text = REFERENCE.read_text()
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, flags=re.M))
    quirks = {int(n) for n in re.findall(r"^#### #(\d+) ", text, flags=re.M)}
    return sections, quirks


def test_every_section_and_quirk_citation_resolves():
    sections, quirks = _headings()
    assert {"1.5", "2.3", "12"} <= sections and set(range(1, 22)) <= quirks  # the parser reads the page
    missing = []
    for path in _files():
        text = path.read_text(errors="ignore")
        for m in SECTION.finditer(text):
            cited = [m.group(1)] + ([m.group(3)] if m.group(3) else [])
            missing += [f"{path.relative_to(ROOT)}: §{c}" for c in cited if c not in sections]
        for m in QUIRK.finditer(text):
            last = int(m.group(2) or m.group(1))
            missing += [
                f"{path.relative_to(ROOT)}: quirk #{n}" for n in range(int(m.group(1)), last + 1) if n not in quirks
            ]
    assert not missing, "citations with no heading in docs/reference.md:\n" + "\n".join(sorted(set(missing)))


def test_nothing_cites_notes_outside_the_repository():
    offenders = [
        f"{p.relative_to(ROOT)}"
        for p in _files()
        if p.name != Path(__file__).name
        and re.search(r"ALGORITHMS\.md|DESIGN\.md|DATA_NOTES\.md", p.read_text(errors="ignore"))
    ]
    assert not offenders, offenders
