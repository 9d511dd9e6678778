"""Every registered algorithm (built-ins and installed plugins) passes the same contract checks."""

import pytest

from offrl_zoo import registry, testing
from offrl_zoo.config import resolve
from offrl_zoo.envs import all_tasks

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
        resolve(cls, task_id)


def test_example_plugin_is_registered():
    assert registry.available().get("mlbc", "").startswith("plugin:"), (
        "the example plugin in tests/plugin_pkg is not installed: pip install ./tests/plugin_pkg"
    )
