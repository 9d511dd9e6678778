"""Where datasets come from: D4RL HDF5 files (local or downloaded), Minari datasets, generated toys."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from offrl_zoo.data.dataset import (
    Dataset,
    DatasetError,
    Provenance,
    check_arrays,
    count_episodes,
    require_fields,
    spec_from,
    transitions_from_arrays,
    transitions_from_checked,
)

D4RL_FIELDS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


def cache_dir() -> Path:
    """Root of downloaded/generated data: $OFFRL_ZOO_CACHE, else ~/.cache/offrl-zoo."""
    return Path(os.environ.get("OFFRL_ZOO_CACHE", Path.home() / ".cache" / "offrl-zoo")).expanduser()


_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


def checked_id(dataset_id: str, slashes: bool = False) -> str:
    """A dataset id that can be joined under the cache dir: no absolute path, no ``..``, no odd characters.

    Ids come from task entries and configs; a path there must never read or write outside the cache.
    """
    if not (isinstance(dataset_id, str) and _SAFE_ID.fullmatch(dataset_id) and (slashes or "/" not in dataset_id)):
        shape = "'mujoco/hopper/medium-v0'" if slashes else "'hopper-medium-v2'"
        raise DatasetError(
            f"dataset id {dataset_id!r} refused: expected a name like {shape} (letters, digits, "
            "'.', '_', '-'), not a path; give your own files with --dataset PATH"
        )
    return dataset_id


def d4rl_cache_path(dataset_id: str, root: Path | None = None) -> Path:
    return (root or cache_dir()) / "d4rl" / f"{checked_id(dataset_id)}.hdf5"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dataset_file_sha256(path: str | Path) -> str:
    """The SHA-256 of a user's dataset file (``--dataset PATH``), which identifies its runs; a file that
    cannot be read is a ``DatasetError``."""
    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot be read ({err.strerror})") from err


def sha256_arrays(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def read_d4rl_hdf5(path: str | Path) -> dict[str, np.ndarray]:
    """The flat D4RL fields of an HDF5 file (``infos/`` and ``metadata/`` groups are not needed)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as fh:
            require_fields(list(fh.keys()), str(path))
            arrays = {}
            for key in D4RL_FIELDS:
                if key in fh:
                    if not isinstance(fh[key], h5py.Dataset):
                        raise DatasetError(f"{path}: {key!r} is a group, expected an array")
                    arrays[key] = fh[key][()]
    except OSError as err:
        raise DatasetError(f"{path}: not a readable HDF5 file ({err})") from err
    return arrays


def load_d4rl_file(
    path: str | Path,
    dataset_id: str,
    rule: str,
    max_episode_steps: int,
    source: str = "d4rl",
    extra: dict | None = None,
    sha256: str | None = None,
) -> Dataset:
    """A D4RL-layout HDF5 file; ``source`` says whose it is (``d4rl``, ``generated`` by offrl-zoo, ``file``).
    ``sha256``: the file's digest when the caller has just verified it (saves hashing the file twice)."""
    arrays = check_arrays(read_d4rl_hdf5(path), str(path))  # validated: flags as booleans, (N,) rows
    data = transitions_from_checked(arrays, origin=str(path), rule=rule, max_episode_steps=max_episode_steps)
    provenance = Provenance(
        source=source,
        dataset_id=dataset_id,
        path=str(Path(path).resolve()),
        sha256=sha256 or sha256_file(path),
        transitions=len(data),
        episodes=count_episodes(arrays["terminals"], arrays.get("timeouts")),
        rule=rule,
        extra=dict(extra or {}),
    )
    return Dataset(data, spec_from(data), provenance)


def d4rl_url(dataset_id: str) -> str:
    """Download address of a D4RL dataset (TorchRL's table of the official ones), always over HTTPS."""
    from torchrl.data.datasets.d4rl_infos import D4RL_DATASETS

    if dataset_id not in D4RL_DATASETS:
        raise DatasetError(f"D4RL dataset {dataset_id!r} is not in TorchRL's D4RL table; pass --dataset PATH")
    return https_url(D4RL_DATASETS[dataset_id])


def https_url(url: str) -> str:
    """``url`` over HTTPS. The D4RL table lists http:// addresses; their server also answers on https://,
    and no checksums are published, so a plain-HTTP download could not be verified: it is never made."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise DatasetError(f"download address {url!r}: expected an http(s):// URL")
    return f"https://{rest}"


def pin_file(path: Path, origin: str) -> str:
    """Record the SHA-256 of a file entering the cache (``PATH.sha256.json``); later loads check it."""
    from offrl_zoo.io import write_json  # offrl_zoo.train imports this module

    digest = sha256_file(path)
    write_json(path.with_name(path.name + ".sha256.json"), {"sha256": digest, "origin": origin})
    return digest


def pinned_sha256(path: Path) -> str | None:
    """The SHA-256 recorded when the file entered the cache, if one was."""
    pin = path.with_name(path.name + ".sha256.json")
    return json.loads(pin.read_text())["sha256"] if pin.is_file() else None


def check_pinned(path: Path) -> bool:
    """False when the file no longer has the SHA-256 recorded when it entered the cache (corrupt or altered)."""
    pinned = pinned_sha256(path)
    return pinned is None or pinned == sha256_file(path)


def fetch_d4rl(dataset_id: str, root: Path | None = None, download: bool = True) -> Path:
    """Path of the raw D4RL HDF5 file in the cache, downloading it once (HTTPS, atomically) if allowed.

    A downloaded file is checked to be a valid D4RL file before it enters the cache, and its SHA-256 is
    pinned then; a cached file that no longer matches its pin is downloaded again (or refused offline).
    TorchRL's ``D4RLExperienceReplay`` converts the file with its own conventions (timeouts counted as
    done, next observations zeroed at done), so the raw file is kept and converted here with D4RL's rule.
    """
    target = d4rl_cache_path(dataset_id, root)
    if target.is_file():
        if check_pinned(target):
            return target
        if not download:
            raise DatasetError(
                f"{target}: its SHA-256 no longer matches the one recorded when it was cached "
                "(corrupt or altered); delete it or allow a download"
            )
    url = d4rl_url(dataset_id)
    if not download:
        raise DatasetError(f"{target}: not in the cache and download is disabled (source {url})")
    from offrl_zoo.io import atomic_path  # offrl_zoo.train imports this module

    try:
        with atomic_path(target) as tmp:
            urllib.request.urlretrieve(url, tmp)
            check_arrays(read_d4rl_hdf5(tmp), f"{url} (downloaded)")
    except OSError as err:
        raise DatasetError(f"could not download {dataset_id} from {url}: {err}") from err
    pin_file(target, url)
    return target


def load_minari(dataset_id: str, download: bool = False) -> Dataset:
    """A Minari dataset (local, or downloaded when ``download``); every step becomes a transition.
    Dict observations are flattened in the order of the dataset's observation space."""
    ds, arrays = minari_arrays(dataset_id, download)
    data = transitions_from_arrays(arrays, origin=f"minari:{dataset_id}", rule="next_observations")
    space = ds.spec.action_space
    spec = spec_from(data, getattr(space, "low", None), getattr(space, "high", None))
    provenance = Provenance(
        source="minari",
        dataset_id=dataset_id,
        path=str(Path(ds.spec.data_path)),
        sha256=minari_sha256(ds, arrays),
        transitions=len(data),
        episodes=count_episodes(arrays["terminals"], arrays["timeouts"]),  # the one counting rule (data.inspect)
        rule="next_observations",
        extra={"env_spec": str(ds.spec.env_spec.id) if ds.spec.env_spec else None},
    )
    return Dataset(data, spec, provenance)


def minari_sha256(ds: Any, arrays: dict[str, np.ndarray]) -> str:
    """A Minari dataset's identity: its main data file's SHA-256, else its arrays'."""
    main = Path(ds.spec.data_path) / "main_data.hdf5"
    return sha256_file(main) if main.is_file() else sha256_arrays(arrays)


def minari_arrays(dataset_id: str, download: bool = False) -> tuple[Any, dict[str, np.ndarray]]:
    """The Minari dataset and its episodes as flat D4RL-named arrays (refusing a damaged one)."""
    from offrl_zoo.envs.minari_tasks import load_minari_dataset

    checked_id(dataset_id, slashes=True)
    ds = load_minari_dataset(dataset_id, download)
    try:
        return ds, _episode_arrays(ds, dataset_id)
    except DatasetError:
        raise
    except Exception as err:  # a damaged file surfaces as h5py/minari errors of many kinds while reading
        raise DatasetError(f"minari:{dataset_id}: cannot read its episodes from {ds.spec.data_path} ({err})") from err


def _episode_arrays(ds: Any, dataset_id: str) -> dict[str, np.ndarray]:
    from offrl_zoo.envs.minari_tasks import flatten

    obs_space = ds.observation_space
    parts: dict[str, list[np.ndarray]] = {k: [] for k in D4RL_FIELDS}
    for ep in ds.iterate_episodes():
        obs = flatten(obs_space, ep.observations, rows=len(ep.actions) + 1)
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(ep.actions)
        parts["rewards"].append(ep.rewards)
        parts["terminals"].append(ep.terminations)
        parts["timeouts"].append(ep.truncations)
    if not parts["observations"]:
        raise DatasetError(f"minari:{dataset_id}: the dataset has no episodes")
    return {k: np.concatenate(v) for k, v in parts.items()}


def load_toy(distribution: str, reward: str, seed: int = 0) -> Dataset:
    from offrl_zoo.envs.toy import toy_data

    arrays = toy_data(distribution, reward, seed)
    data = transitions_from_arrays(arrays, origin=f"toy:{distribution}/{reward}", rule="next_observations")
    bound = float(np.abs(arrays["actions"]).max())
    spec = spec_from(data, np.full(2, -bound), np.full(2, bound))
    provenance = Provenance(
        source="toy",
        dataset_id=f"{distribution}/{reward}",
        path=None,
        sha256=sha256_arrays(arrays),
        transitions=len(data),
        episodes=len(data),
        rule="next_observations",
        extra={"data_seed": seed},
    )
    return Dataset(data, spec, provenance)
