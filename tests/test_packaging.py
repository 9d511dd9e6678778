"""The pyproject package list matches the source folders, and installed data files ship."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def source_packages() -> set[str]:
    found = set()
    for init in (ROOT / "src" / "offrl_zoo").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT / "src")
        found.add(".".join(rel.parts))
    for init in (ROOT / "algorithms").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT / "algorithms")
        found.add(".".join(("offrl_zoo", "algorithms", *rel.parts)))
    return found


def test_pyproject_lists_every_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    assert listed == source_packages()


def test_algorithm_data_files_are_importable():
    from offrl_zoo import registry
    from offrl_zoo.config import algorithm_dir

    for name in registry.BUILTINS:
        folder = algorithm_dir(registry.get(name))
        assert (folder / "tasks.yaml").is_file(), folder
    assert (algorithm_dir(registry.get("iql")) / "presets" / "corl.yaml").is_file()
    assert (algorithm_dir(registry.get("dtql")) / "presets" / "quick.yaml").is_file()


def test_shipped_policies_are_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["offrl_zoo.behaviour"]
    shipped = list((ROOT / "src" / "offrl_zoo" / "behaviour" / "policies").glob("*/*"))
    for path in shipped:
        assert any(path.match(p) for p in patterns), path
    assert sum(p.stat().st_size for p in shipped) < 20 * 2**20  # the package budget
