"""Every registered algorithm (built-ins and installed plugins) passes the same contract checks."""

import pytest

from offrl_zoo import registry, testing
from offrl_zoo.config import matches, resolve
from offrl_zoo.envs import all_tasks
from offrl_zoo.errors import UnsupportedTaskError

ALGORITHMS = sorted(registry.available())


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("check", testing.CHECKS, ids=lambda c: c.__name__)
def test_conformance(name, check):
    check(registry.get(name))


@pytest.mark.parametrize("name", ALGORITHMS)
def test_tasks_yaml_resolves_for_every_task(name):
    """Every per-task table entry names a real key with a valid type and a source tag."""
    cls = registry.get(name)
    for task_id in all_tasks():
        try:
            resolve(cls, task_id)
        except UnsupportedTaskError as err:
            assert any(matches(p, task_id) for p in cls.unsupported_tasks), err


def test_example_plugin_is_registered():
    assert registry.available().get("mlbc", "").startswith("plugin:"), (
        "the example plugin in tests/plugin_pkg is not installed: pip install ./tests/plugin_pkg"
    )


def test_a_runs_provenance_names_the_plugin_package_and_version(tmp_path):
    """A plugin's results say which package and version of it produced them, not only offrl-zoo's."""
    import json
    from importlib.metadata import version

    from offrl_zoo.train import RunRequest, train

    request = RunRequest("mlbc", task="toy-25_gaussian-far", steps=5, eval_every=5, eval_episodes=1)
    run_dir = train(request, run_dir=tmp_path / "mlbc", progress=False)
    origin = json.loads((run_dir / "provenance.json").read_text())["algorithm"]
    assert origin == {
        "name": "mlbc",
        "kind": "plugin",
        "package": "offrl-zoo-example-plugin",
        "version": version("offrl-zoo-example-plugin"),
        "entry_point": "offrl_zoo_example_plugin:MLBC",
        "module": "offrl_zoo_example_plugin",
    }
    assert registry.provenance("iql")["kind"] == "builtin"
    assert registry.provenance("iql")["package"] == "offrl-zoo"
