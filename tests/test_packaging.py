"""Every algorithm folder is a registered built-in, and installed data files ship."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_algorithm_folder_is_a_registered_builtin():
    """Adding a built-in is a folder plus one entry-point line in pyproject.toml: each folder is the
    target of exactly one offrl-zoo entry point, and the registry lists it as a built-in."""
    from offrl_zoo import registry

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    targets = config["project"]["entry-points"][registry.ENTRY_POINT_GROUP]
    folders = {p.parent.name for p in (ROOT / "algorithms").glob("*/__init__.py")}
    target_folders = [value.split(":")[0].split(".")[2] for value in targets.values()]
    assert sorted(target_folders) == sorted(folders)
    assert registry.builtins() == sorted(targets)


def test_algorithm_data_files_are_importable():
    from offrl_zoo import registry
    from offrl_zoo.config import algorithm_dir

    for name in registry.builtins():
        folder = algorithm_dir(registry.get(name))
        assert (folder / "tasks.yaml").is_file(), folder
    assert (algorithm_dir(registry.get("iql")) / "presets" / "corl.yaml").is_file()
    assert (algorithm_dir(registry.get("dtql")) / "presets" / "quick.yaml").is_file()


def test_shipped_policies_are_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["offrl_zoo.data.generation"]
    shipped = list((ROOT / "src" / "offrl_zoo" / "data" / "generation" / "policies").glob("*/*"))
    for path in shipped:
        assert any(path.match(p) for p in patterns), path
    assert sum(p.stat().st_size for p in shipped) < 20 * 2**20  # the package budget
