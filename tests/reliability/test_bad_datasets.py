"""Bad datasets are refused before training with one message naming the file, the field and what was
expected; what D4RL itself accepts (actions outside the box, no timeouts) loads with a warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offrl_zoo.data.dataset import DatasetError, DatasetWarning
from offrl_zoo.data.loading import custom_task, load_dataset
from offrl_zoo.data.sources import load_minari

OBS, ACT, N = 11, 3, 300  # Hopper-v5 widths
FIELDS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
TRIED = {"malformed files": 0}


def valid_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "observations": rng.normal(size=(N, OBS)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (N, ACT)).astype(np.float32),
        "rewards": rng.normal(size=N).astype(np.float32),
        "terminals": np.zeros(N, bool),
        "timeouts": np.zeros(N, bool),
    }
    arrays["timeouts"][99::100] = True
    arrays["next_observations"] = np.roll(arrays["observations"], -1, axis=0)
    return arrays


def write(path: Path, arrays: dict) -> Path:
    with h5py.File(path, "w") as fh:
        for key, value in arrays.items():
            fh[key] = value
    return path


def load(path: Path, env_id: str = "Hopper-v5"):
    return load_dataset(custom_task(str(path), env_id), str(path))


def mutated(change) -> dict:
    arrays = valid_arrays()
    change(arrays)
    return arrays


def _rename(arrays: dict, old: str, new: str) -> None:
    arrays[new] = arrays.pop(old)


CASES = {
    "missing key": (lambda a: a.pop("actions"), r"required field 'actions' is missing"),
    "misnamed key": (lambda a: _rename(a, "rewards", "reward"), r"'rewards' is missing.*is 'reward' meant"),
    "mismatched lengths": (lambda a: a.update(rewards=a["rewards"][:-7]), r"'rewards' has 293 rows but"),
    "text observations": (
        lambda a: a.update(observations=a["observations"].astype("S8")),
        r"'observations' has dtype \|S8, expected real numbers",
    ),
    "complex rewards": (lambda a: a.update(rewards=a["rewards"].astype(np.complex64)), r"'rewards' has dtype complex"),
    "fractional terminals": (lambda a: a.update(terminals=np.full(N, 0.5)), r"'terminals' holds 0.5 at row 0"),
    "NaN reward": (lambda a: a["rewards"].__setitem__(17, np.nan), r"'rewards' holds NaN/Inf.*row 17"),
    "Inf action": (lambda a: a["actions"].__setitem__((5, 2), -np.inf), r"'actions' holds NaN/Inf.*row 5"),
    "beyond float32": (lambda a: a.update(observations=np.full((N, OBS), 1e300)), r"'observations' holds NaN/Inf"),
    "extra axis": (lambda a: a.update(actions=a["actions"][:, :, None]), r"'actions' has shape \(300, 3, 1\)"),
    "scalar field": (lambda a: a.update(rewards=np.float32(1.0)), r"'rewards' has shape \(\)"),
    "zero transitions": (lambda a: a.update({k: v[:0] for k, v in a.items()}), r"0 rows; at least 2"),
    "no episode ends at all": (lambda a: (a.pop("terminals"), a.pop("timeouts")), r"'terminals' is missing"),
    "every row a timeout": (lambda a: a.update(timeouts=np.ones(N, bool)), r"every row ends an episode"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_defect_is_refused_naming_file_and_field(tmp_path, name):
    change, message = CASES[name]
    path = write(tmp_path / "user-data.hdf5", mutated(change))
    with pytest.raises(DatasetError, match=message) as err:
        load(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_observation_width_must_match_the_env(tmp_path):
    path = write(tmp_path / "d.hdf5", valid_arrays())
    with pytest.raises(DatasetError, match=r"d\.hdf5: observations have width 11, but env Walker2d-v5 expects"):
        load(path, "Walker2d-v5")


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.9])
def test_truncated_or_foreign_files_are_refused(tmp_path, cut):
    whole = write(tmp_path / "whole.hdf5", valid_arrays()).read_bytes()
    path = tmp_path / "cut.hdf5"
    path.write_bytes(whole[: int(len(whole) * cut)] if cut else b"PK\x03\x04 a zip, not HDF5")
    with pytest.raises(DatasetError, match=r"cut\.hdf5: not a readable HDF5 file"):
        load(path)


def test_out_of_box_actions_and_missing_timeouts_load_with_a_warning_as_d4rl(tmp_path):
    path = write(tmp_path / "d.hdf5", mutated(lambda a: a["actions"].__setitem__((3, 0), 1.5)))
    with pytest.warns(DatasetWarning, match=r"d\.hdf5: 1 of 297 actions lie outside Hopper-v5's action box"):
        dataset = load(path)
    assert float(dataset.data["action"].max()) == 1.5  # kept, as D4RL keeps them
    path = write(tmp_path / "e.hdf5", mutated(lambda a: a.pop("timeouts")))
    with pytest.warns(DatasetWarning, match=r"e\.hdf5: no 'timeouts' field; .* step counter reaching 999"):
        assert len(load(path)) == N - 1


@pytest.mark.parametrize("damage", ["truncate", "drop rewards", "NaN action"])
def test_damaged_minari_datasets_are_refused(minari_dataset, damage):
    import minari

    main = Path(minari.load_dataset(minari_dataset).spec.data_path) / "main_data.hdf5"
    if damage == "truncate":
        main.write_bytes(main.read_bytes()[: main.stat().st_size // 2])
    else:
        with h5py.File(main, "r+") as fh:
            if damage == "drop rewards":
                del fh["episode_1/rewards"]
            else:
                fh["episode_2/actions"][4, 0] = np.nan
    with pytest.raises(DatasetError, match=f"minari:{minari_dataset}"):
        load_minari(minari_dataset)


# -- property-based: any damage either loads into finite float32 transitions or is one DatasetError -----


def _damage(draw, arrays: dict) -> None:
    key = draw(st.sampled_from(FIELDS))
    kind = draw(st.sampled_from(["drop", "rename", "rows", "dtype", "value", "shape", "flag"]))
    value = arrays.get(key)
    if value is None or kind == "drop" or (value.ndim == 0 and kind != "rename"):
        arrays.pop(key, None)
    elif kind == "rename":
        arrays[draw(st.sampled_from([key[:-1], key.upper(), key + "_", "obs"]))] = arrays.pop(key)
    elif kind == "rows":
        arrays[key] = value[: draw(st.integers(0, N + 5))]
    elif kind == "dtype" and value.dtype.kind in "fiub":
        arrays[key] = value.astype(draw(st.sampled_from(["S4", "complex64", "float16", "int8", "bool", "uint8"])))
    elif kind == "value" and value.size and value.dtype.kind in "fiub":
        flat = value.reshape(-1).astype(np.float64)
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e39, -7.0, 2.0]))
        arrays[key] = flat.reshape(value.shape)
    elif kind == "shape" and value.size and value.ndim:
        arrays[key] = draw(
            st.sampled_from(
                [
                    value[..., None],
                    value.reshape(-1),
                    value[:, :0] if value.ndim == 2 else value[None],
                    np.asarray(value.reshape(-1)[0]),
                ]
            )
        )
    elif value.dtype.kind in "fiub":
        arrays[key] = value.astype(np.float32) * draw(st.sampled_from([0.5, 2.0, -1.0, 1.0]))


@st.composite
def damaged_files(draw) -> tuple[dict, float]:
    arrays = valid_arrays(draw(st.integers(0, 3)))
    for _ in range(draw(st.integers(1, 3))):
        _damage(draw, arrays)
    return arrays, draw(st.sampled_from([1.0, 1.0, 1.0, 0.5, 0.97]))  # and sometimes cut the file's bytes


@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(damaged_files())
def test_any_damage_loads_cleanly_or_is_one_dataset_error(tmp_path, case):
    arrays, keep = case
    TRIED["malformed files"] += 1
    path = write(tmp_path / "fuzz.hdf5", arrays)
    if keep < 1:
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DatasetWarning)
            dataset = load(path)
    except DatasetError as err:
        assert str(path) in str(err) or path.name in str(err)
        return
    data = dataset.data
    assert len(data) > 0 and data["observation"].shape[1:] == (OBS,) and data["action"].shape[1:] == (ACT,)
    assert all(bool(data[k].isfinite().all()) for k in ("observation", "action", ("next", "reward")))


def teardown_module() -> None:  # shown with ``pytest -s``; the count goes into release notes
    print(f"\nproperty test: {TRIED['malformed files']} malformed D4RL files tried")
