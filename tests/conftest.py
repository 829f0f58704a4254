"""Shared fixtures: an isolated cache, and a small MNIST-format folder the tests generate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.data import idx, images


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """One cache for the whole session, so cached helpers (e.g. the FID classifier) train once."""
    return tmp_path_factory.mktemp("genlab-cache")


@pytest.fixture
def one_thread():
    """One intra-op thread for modules of tiny tensors (idle-spinning workers slow tiny ops down on a busy
    machine); a module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch, session_cache):
    monkeypatch.setenv("GENLAB_CACHE", str(session_cache))
    monkeypatch.delenv("GENLAB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)


def write_fake_mnist(root, n_train=120, n_test=40, seed=0):
    """Random digit-like idx.gz files laid out as ``root/mnist/*.gz``."""
    rng = np.random.default_rng(seed)
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        idx.write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        idx.write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    return folder


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A generated MNIST folder; checksums are those of the generated files, val split shrunk to 20."""
    folder = write_fake_mnist(tmp_path / "data")
    sums = {p.name: idx.sha256(p) for p in folder.iterdir()}
    monkeypatch.setitem(images._MNIST_FILES, "mnist", dict(images._MNIST_FILES["mnist"], sha256=sums))
    monkeypatch.setattr(images, "MNIST_VAL_SIZE", 20)
    return tmp_path / "data"


KINDS = ("unit", "contract", "slow")


def pytest_collection_modifyitems(config, items):
    """Every test carries exactly one of the markers unit, contract or slow (pyproject.toml says what each
    means); a test without one, or with two, stops the collection with its name."""
    wrong = [f"{item.nodeid}: {', '.join(kinds) or 'no marker'}" for item in items
             if len(kinds := [k for k in KINDS if item.get_closest_marker(k)]) != 1]
    if wrong:
        raise pytest.UsageError("every test carries exactly one of the markers unit, contract, slow:\n  "
                                + "\n  ".join(wrong[:50]) + (f"\n  ... and {len(wrong) - 50} more" if len(wrong) > 50 else ""))
