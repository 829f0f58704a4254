"""Every dataset of the catalog with three splits keeps them apart: no example is in two of train, val
and test (issue 21, item 3: a training curve drawn on the validation split is then not drawn on the test
set). Each dataset is loaded through the registry, as the training loop loads it (``_load_splits``), from a
small offline stand-in where the real one is a download. A dataset added to the catalog fails here until it
is listed in ``OPTIONS`` (or, with only two splits, in ``TWO_SPLITS``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from genlab.data import idx, images
from genlab.data.registry import SPLITS, TensorData, TokenStream, list_datasets, load_dataset
from genlab.families.lm import data as lm_data

pytestmark = pytest.mark.contract


def _fake_mnist(root, name, monkeypatch):
    """Random idx.gz files as ``root/name/*.gz`` with their checksums, a validation split of 20."""
    rng = np.random.default_rng(0)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", 80), ("t10k", 30)):
        idx.write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        idx.write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    sums = {p.name: idx.sha256(p) for p in folder.iterdir()}
    monkeypatch.setitem(images._MNIST_FILES, name, dict(images._MNIST_FILES[name], sha256=sums))
    monkeypatch.setattr(images, "MNIST_VAL_SIZE", 20)
    return {"data_dir": str(root)}


def _fake_blender(root, monkeypatch, n=10):
    """A NeRF-synthetic folder with transforms_train.json only: val and test are held-out training views."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    frames = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (4, 4, 4), dtype=np.uint8), "RGBA").save(root / "train" / f"r_{i}.png")
        pose = np.eye(4)
        pose[:3, 3] = [0.0, 0.0, 4.0 + i]
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": pose.tolist()})
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    return {"scene_dir": str(root)}


def _fake_tiny_nerf(root, monkeypatch, n=20):
    rng = np.random.default_rng(0)
    poses = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    poses[:, 2, 3] = 4.0 + np.arange(n)
    root.mkdir(parents=True)
    np.savez(root / "tiny.npz", images=rng.random((n, 4, 4, 3)).astype(np.float32), poses=poses,
             focal=np.float64(5.0))
    return {"file": str(root / "tiny.npz")}


def _fake_multi30k(root, monkeypatch):
    """Local Multi30k files (checksums off): each split's sentences its own."""
    (root / "multi30k").mkdir(parents=True)
    for split, name in (("train", "train"), ("val", "val"), ("test", "test_2016_flickr")):
        for lang in ("en", "de"):
            lines = [f"{lang} {split} sentence number {i} ." for i in range({"train": 40}.get(split, 10))]
            (root / "multi30k" / f"{name}.{lang}").write_text("\n".join(lines) + "\n")
    return {"data_dir": str(root), "verify": False, "vocab_size": 64}


# dataset -> its options here (a callable gets a fresh folder and monkeypatch for an offline stand-in)
OPTIONS = {
    "torus": {"n_train": 50, "n_val": 30, "n_test": 30},
    "digits": {},
    "mnist": lambda root, mp: _fake_mnist(root, "mnist", mp),
    "fashion-mnist": lambda root, mp: _fake_mnist(root, "fashion-mnist", mp),
    "blender": _fake_blender,
    "tiny-nerf": _fake_tiny_nerf,
    "synthetic-scene": {"size": 8, "views": 6, "supersample": 1},
    "synthetic-text": {"words": 1000},
    **{name: {"n": 100} for name in ("2spirals", "8gaussians", "checkerboard", "circles", "gmm1d", "gmm2d",
                                     "moons", "pinwheel")},
    "multi30k": _fake_multi30k,
    "synthetic-pairs": {"n_train": 200, "n_val": 30, "n_test": 30, "vocab_size": 100},
}
# datasets whose source has only a train and a held-out part: "val" and "test" are one text, by declaration
TWO_SPLITS = {"tinyshakespeare": "nanoGPT's split: the first 90% train, the last 10% val = test"}
WINDOW = 200   # text: a run of this many characters of one split found in another counts as shared


def examples(data) -> list:
    """The examples of a split as hashable keys: a view's camera pose, an image or point, a sentence pair."""
    if hasattr(data, "scene"):                     # posed views (RayData)
        return [tuple(np.round(p.numpy().ravel(), 5)) for p in data.scene.poses]
    if isinstance(data, TensorData):
        return [x.numpy().tobytes() for x in data.tensors[0]]
    return list(zip(data.extras["src_text"], data.extras["tgt_text"]))   # PairData


def test_every_dataset_is_listed():
    names = {s.name for s in list_datasets()}
    assert names - set(OPTIONS) - set(TWO_SPLITS) == set(), "list the new dataset in OPTIONS (or TWO_SPLITS)"
    assert set(OPTIONS) | set(TWO_SPLITS) <= names


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_train_val_and_test_share_no_example(name, tmp_path, monkeypatch):
    options = OPTIONS[name]
    options = options(tmp_path / "data", monkeypatch) if callable(options) else options
    splits = {s: load_dataset(name, s, **options) for s in SPLITS}
    if isinstance(splits["train"], TokenStream):
        text = {s: d.tokenizer.decode(d.tokens.tolist()) for s, d in splits.items()}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            assert len(text[a]) > WINDOW and len(text[b]) > WINDOW
            assert text[b][:WINDOW] not in text[a] and text[a][:WINDOW] not in text[b], (name, a, b)
        return
    keys = {s: examples(d) for s, d in splits.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert keys[a] and keys[b], (name, a, b)
        shared = set(keys[a]) & set(keys[b])
        assert not shared, f"{name}: {len(shared)} examples in both {a} and {b}"


def test_two_split_corpora_say_so():
    """The declared exception, checked so the table cannot go stale: tinyshakespeare's val and test are the
    same text (and the registered description says so)."""
    text = "".join(f"line {i}\n" for i in range(100))
    assert lm_data.split_text(text, "val") == lm_data.split_text(text, "test") != lm_data.split_text(text, "train")
    spec = {s.name: s for s in list_datasets()}["tinyshakespeare"]
    assert "val = test" in spec.description


@pytest.mark.parametrize("name", sorted(OPTIONS))
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_eval_batch_count_is_what_eval_batches_yields(name, batch_size, tmp_path, monkeypatch):
    """Every dataset object says how many evaluation batches it yields (the progress bars' totals)."""
    options = OPTIONS[name]
    options = options(tmp_path / "data", monkeypatch) if callable(options) else options
    data = load_dataset(name, "test", **options)
    for hints in ({}, {"block_size": 8}):
        assert data.eval_batch_count(batch_size, **hints) == sum(1 for _ in data.eval_batches(batch_size, **hints))
