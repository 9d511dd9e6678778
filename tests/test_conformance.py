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
