"""Untrusted files: a checkpoint crafted to run code on load is refused without running it; dataset ids
cannot escape the cache; downloads go over HTTPS, are validated, and cached files are checked by hash."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from offrl_zoo.data import sources
from offrl_zoo.data.generation.datasets import generated_path
from offrl_zoo.data.loading import load_dataset
from offrl_zoo.envs.tasks import Task
from offrl_zoo.errors import DatasetError, UnsafeFileError
from offrl_zoo.io import load_torch
from offrl_zoo.train import RunRequest, load_run, train


class Payload:
    """Unpickling this calls ``Path.touch(marker)``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_checkpoint_with_a_pickle_payload_is_refused_and_not_executed(tmp_path):
    run_dir = train(
        RunRequest(
            "bc", task="toy-25_gaussian-near", steps=10, eval_every=10, eval_episodes=10, overrides=["hidden=[16]"]
        ),
        run_dir=tmp_path / "r",
        progress=False,
    )
    marker = tmp_path / "code-ran"
    state = load_torch(run_dir / "checkpoint.pt")
    state["algorithm"]["extra"] = Payload(marker)
    torch.save(state, run_dir / "checkpoint.pt")  # what a malicious collaborator would send
    with pytest.raises(UnsafeFileError, match=r"checkpoint\.pt: refused: it holds Python objects"):
        load_run(run_dir)
    (run_dir / "done").unlink()  # a resume reads the same checkpoint
    with pytest.raises(UnsafeFileError):
        train(
            RunRequest(
                "bc", task="toy-25_gaussian-near", steps=10, eval_every=10, eval_episodes=10, overrides=["hidden=[16]"]
            ),
            run_dir=run_dir,
            progress=False,
        )
    assert not marker.exists()
    with pytest.raises(UnsafeFileError):  # the same holds for any file loaded as weights (stage cache, policies)
        load_torch(_pickled(tmp_path / "policy.pt", Payload(marker)))
    assert not marker.exists()


def _pickled(path: Path, obj) -> Path:
    torch.save({"weights": torch.zeros(2), "note": obj}, path)
    return path


ESCAPES = ["../../etc/passwd", "/etc/passwd", "hopper/../../x", "..", "a\\..\\b", "~/data", "", "x\x00y"]


@pytest.mark.parametrize("dataset_id", ESCAPES)
def test_dataset_ids_cannot_escape_the_cache(tmp_path, monkeypatch, dataset_id):
    monkeypatch.setenv("OFFRL_ZOO_CACHE", str(tmp_path / "cache"))
    for lookup in (sources.fetch_d4rl, generated_path, sources.d4rl_cache_path):
        with pytest.raises(DatasetError, match=r"dataset id .* refused: expected a name like"):
            lookup(dataset_id)
    with pytest.raises(DatasetError, match="refused"):
        sources.load_minari(dataset_id)
    task = Task(
        id="evil",
        env_id="Hopper-v5",
        horizon=1000,
        ref_min=0,
        ref_max=1,
        eval_episodes=1,
        source="d4rl",
        source_id=dataset_id,
    )
    with pytest.raises(DatasetError, match="refused"):
        load_dataset(task, download=False)
    assert not (tmp_path / "cache").exists() or all(
        p.is_relative_to(tmp_path / "cache") for p in (tmp_path / "cache").rglob("*")
    )


def test_safe_ids_still_resolve_inside_the_cache(tmp_path):
    assert sources.d4rl_cache_path("hopper-medium-v2", tmp_path) == tmp_path / "d4rl" / "hopper-medium-v2.hdf5"
    assert sources.checked_id("mujoco/hopper/medium-v0", slashes=True) == "mujoco/hopper/medium-v0"


def _d4rl_file(path: Path) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as fh:
        fh["observations"] = rng.normal(size=(20, 11)).astype(np.float32)
        fh["actions"] = rng.uniform(-1, 1, (20, 3)).astype(np.float32)
        fh["rewards"] = np.ones(20, np.float32)
        fh["terminals"] = np.zeros(20, bool)
        fh["timeouts"] = np.zeros(20, bool)


def test_downloads_use_https_are_validated_and_pinned(tmp_path, monkeypatch):
    fetched = []

    def fake_download(url, filename, served=_d4rl_file):
        fetched.append(url)
        served(Path(filename))

    monkeypatch.setattr(sources.urllib.request, "urlretrieve", fake_download)
    path = sources.fetch_d4rl("hopper-medium-v2", root=tmp_path)
    assert fetched == ["https://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/hopper_medium-v2.hdf5"]
    assert sources.check_pinned(path)
    path.write_bytes(path.read_bytes()[:-1] + b"\x01")  # altered in the cache after download
    with pytest.raises(DatasetError, match=r"SHA-256 no longer matches"):
        sources.fetch_d4rl("hopper-medium-v2", root=tmp_path, download=False)
    assert sources.fetch_d4rl("hopper-medium-v2", root=tmp_path) == path and sources.check_pinned(path)
    assert len(fetched) == 2  # downloaded again

    def html_error_page(path: Path) -> None:
        path.write_text("<html>503 Service Unavailable</html>")

    monkeypatch.setattr(sources.urllib.request, "urlretrieve", lambda url, filename: html_error_page(Path(filename)))
    with pytest.raises(DatasetError, match="not a readable HDF5 file"):
        sources.fetch_d4rl("walker2d-medium-v2", root=tmp_path)
    assert sorted(p.name for p in (tmp_path / "d4rl").iterdir()) == [
        "hopper-medium-v2.hdf5",
        "hopper-medium-v2.hdf5.sha256.json",
    ]


def test_no_plain_http_download_addresses():
    assert sources.https_url("http://rail.eecs.berkeley.edu/x.hdf5") == "https://rail.eecs.berkeley.edu/x.hdf5"
    for url in ("ftp://host/x", "file:///etc/passwd", "rail.eecs.berkeley.edu/x"):
        with pytest.raises(DatasetError, match="expected an http"):
            sources.https_url(url)
    package = Path(sources.__file__).parents[1]
    openers = [p for p in package.rglob("*.py") if "urlretrieve(" in p.read_text() or "urlopen(" in p.read_text()]
    assert openers == [Path(sources.__file__)]  # every download goes through fetch_d4rl (HTTPS) or Minari
