"""Config layering, source tags and validation."""

from __future__ import annotations

import pytest

from offrl_zoo import registry
from offrl_zoo.config import ConfigError, matches, resolve, tagged_entries
from offrl_zoo.errors import UnsupportedTaskError

IQL = registry.get("iql")


def test_layers_apply_in_order(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("beta: 4.0\ntau: 0.01\n")
    r = resolve(IQL, "hopper-medium-v2", preset="corl", user_file=user, overrides=["tau=0.02"])
    cfg = r.config
    assert cfg.reward_transform == "return_range"  # tasks.yaml, then preset task row
    assert cfg.normalize_obs is True and cfg.step_order == "corl"  # preset defaults
    assert cfg.beta == 4.0 and r.sources["beta"] == str(user)
    assert cfg.tau == 0.02 and r.sources["tau"] == "command line"
    assert "official-code" in r.sources["deterministic_actor"]


def test_task_patterns():
    assert matches("hopper-*|walker2d-*", "walker2d-medium-v2")
    assert not matches("hopper-*", "halfcheetah-medium-v2")
    cfg = resolve(IQL, "halfcheetah-medium-v2").config
    assert (cfg.expectile, cfg.beta, cfg.reward_transform) == (0.7, 3.0, "return_range")
    toy = resolve(IQL, "toy-25_gaussian-far").config
    assert toy.reward_transform == "raw"


def test_tagged_entries_validate_format():
    with pytest.raises(ConfigError, match="source 'guess'"):
        tagged_entries({"*": {"beta": {"value": 1.0, "source": "guess"}}}, "x", "t.yaml")
    with pytest.raises(ConfigError, match=r"expected \{value: \.\.\., source: \.\.\.\}"):
        tagged_entries({"*": {"beta": 1.0}}, "x", "t.yaml")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["actr_lr=1"], "unknown key 'actr_lr'.*Did you mean 'actor_lr'"),
        (["actor_lr=-1"], "actor_lr=-1.0: expected a positive number"),
        (["expectile=1.0"], r"expectile=1.0: expected a value in the open interval \(0, 1\)"),
        (["step_order=weird"], "step_order='weird': expected one of original, corl"),
        (["batch_size=many"], "batch_size"),
        (["hidden"], "expected key=value"),
    ],
)
def test_bad_values_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(IQL, "toy-25_gaussian-far", overrides=overrides)


def test_unknown_preset_lists_known():
    with pytest.raises(ConfigError, match="known presets: corl"):
        resolve(IQL, "toy-25_gaussian-far", preset="cql")


def test_user_file_unknown_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("expectle: 0.9\n")
    with pytest.raises(ConfigError, match=f"{bad}: unknown key 'expectle'.*Did you mean 'expectile'"):
        resolve(IQL, "toy-25_gaussian-far", user_file=bad)


def test_unsupported_task_is_refused_unless_the_user_sets_the_missing_key(monkeypatch):
    cls = registry.get("bc")
    monkeypatch.setattr(cls, "unsupported_tasks", {"toy-*": ("no official value", "hidden")})
    with pytest.raises(UnsupportedTaskError, match=r"bc does not support toy-25_gaussian-far: no official value"):
        resolve(cls, "toy-25_gaussian-far")
    assert resolve(cls, "toy-25_gaussian-far", overrides=["hidden=[8]"]).config.hidden == [8]
    resolve(cls, "hopper-medium-v2")  # other tasks are unaffected


def test_a_preset_scope_limits_the_tasks_it_applies_to(tmp_path, monkeypatch):
    from offrl_zoo import config

    path = tmp_path / "toyish.yaml"
    path.write_text('scope: "toy-*|pen-*"\ndefaults:\n  expectile: {value: 0.8, source: tuned-here}\n')
    monkeypatch.setattr(config, "preset_files", lambda cls: {"toyish": path})
    assert resolve(IQL, "toy-25_gaussian-far", preset="toyish").config.expectile == 0.8
    assert config.preset_applies(IQL, "toyish", "pen-human-v1")
    assert not config.preset_applies(IQL, "toyish", "hopper-medium-v2")
    with pytest.raises(ConfigError, match=r"preset 'toyish' of iql is made for tasks 'toy-\*\|pen-\*' only, not hop"):
        resolve(IQL, "hopper-medium-v2", preset="toyish")
    path.write_text("scope: [toy]\n")
    with pytest.raises(ConfigError, match="scope must be a task pattern"):
        resolve(IQL, "toy-25_gaussian-far", preset="toyish")
