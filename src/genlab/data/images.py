"""Image datasets: MNIST and Fashion-MNIST from the original idx files, and scikit-learn's digits.

Pixel views (``--view``):
  continuous  x in [0, 1]
  binarized   1[x > threshold], fixed threshold 0.5
  dynamic     a fresh Bernoulli(x) draw each time a training image is seen; val/test drawn once; evaluating
              the train split scores Bernoulli draws with fixed seeds (``eval_transform``), never grey pixels
  quantized   floor(K x) clipped to K-1 (K = ``levels``; 16 gives the 4-bit view), stored as floats
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from genlab.config import field, require
from genlab.data.idx import locate, read_idx
from genlab.data.registry import DataInfo, TensorData, register_dataset

View = Literal["continuous", "binarized", "dynamic", "quantized"]


@dataclass
class ImageDataConfig:
    view: View = field("continuous", "pixel view: continuous, binarized (x>0.5), dynamic (Bernoulli), quantized")
    levels: int = field(16, "number of levels K for the quantized view (16 = 4-bit)")
    data_dir: str | None = field(None, "local folder with the original files (else $GENLAB_DATA, else download)")
    limit: int | None = field(None, "use at most this many examples per split (quick runs)")

    def validate(self):
        require(2 <= self.levels <= 256, f"levels must be in 2..256, got {self.levels}")
        require(self.limit is None or self.limit > 0, f"limit must be positive, got {self.limit}")


def apply_view(x: torch.Tensor, cfg: ImageDataConfig, seed: int = 0) -> torch.Tensor:
    """Map intensities in [0,1] to the configured view (dynamic: one fixed draw for eval splits)."""
    if cfg.view == "binarized":
        return (x > 0.5).float()
    if cfg.view == "quantized":
        return torch.clamp(torch.floor(cfg.levels * x), max=cfg.levels - 1)
    if cfg.view == "dynamic":
        return torch.bernoulli(x, generator=torch.Generator().manual_seed(seed))
    return x


def dynamic_binarize(batch, generator):
    x, *rest = batch
    return (torch.bernoulli(x, generator=generator), *rest)


def image_data(x: torch.Tensor, y: torch.Tensor, cfg: ImageDataConfig, split: str, num_classes: int,
               name: str, grey_levels: int | None = None) -> TensorData:
    """Wrap intensities ``x`` (N,C,H,W in [0,1]) and labels as a TensorData in the configured view."""
    if cfg.limit:
        x, y = x[: cfg.limit], y[: cfg.limit]
    keep_continuous = cfg.view == "dynamic" and split == "train"
    pixels = x if keep_continuous else apply_view(x, cfg, seed={"train": 0, "val": 1, "test": 2}[split])
    info = DataInfo(kind="image", shape=tuple(x.shape[1:]), view=cfg.view,
                    levels=cfg.levels if cfg.view == "quantized" else None,
                    num_classes=num_classes, extras={"dataset": name, "grey_levels": grey_levels})
    # dynamic train split: fresh draws for training, and fixed-seed draws (never grey pixels) for evaluation
    transform = dynamic_binarize if keep_continuous else None
    return TensorData((pixels.contiguous(), y), info, transform, eval_transform=transform)


def split_train_val(n: int, n_val: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded permutation of ``range(n)`` cut into (train, val) indices."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# ----------------------------------------------------------------- MNIST-format datasets
_MNIST_FILES = {
    "mnist": {
        "urls": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"],
        "sha256": {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        "source": "Yann LeCun and Corinna Cortes, CC BY-SA 3.0",
    },
    "fashion-mnist": {
        "urls": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "sha256": {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        "source": "Zalando Research (Xiao, Rasul, Vollgraf), MIT licence",
    },
}
MNIST_VAL_SIZE = 5000   # 55,000 train / 5,000 validation, the common split of MNIST's 60,000


def read_mnist_format(name: str, prefix: str, data_dir: str | None,
                      files: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read ``{prefix}-images-idx3-ubyte.gz`` and labels, checking counts agree."""
    meta = files or _MNIST_FILES[name]
    paths = {}
    for kind in ("images-idx3", "labels-idx1"):
        fname = f"{prefix}-{kind}-ubyte.gz"
        paths[kind] = locate(name, fname, [u + fname for u in meta["urls"]], meta["sha256"].get(fname), data_dir)
    images = read_idx(paths["images-idx3"], expect_magic=2051)
    labels = read_idx(paths["labels-idx1"], expect_magic=2049)
    if len(images) != len(labels):
        from genlab.errors import DataError
        raise DataError(f"{paths['images-idx3']} holds {len(images)} images but {paths['labels-idx1']} "
                        f"holds {len(labels)} labels; one of them is from another dataset or corrupt.")
    return images, labels


def _mnist_loader(name: str):
    def load(cfg: ImageDataConfig, split: str) -> TensorData:
        images, labels = read_mnist_format(name, "t10k" if split == "test" else "train", cfg.data_dir)
        if split != "test":
            train_idx, val_idx = split_train_val(len(images), MNIST_VAL_SIZE)
            idx = train_idx if split == "train" else val_idx
            images, labels = images[idx], labels[idx]
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        return image_data(x, torch.from_numpy(labels.astype(np.int64)), cfg, split, 10, name, grey_levels=256)
    return load


def _mnist_details(name):
    def details(cfg: ImageDataConfig) -> dict:
        meta = _MNIST_FILES[name]
        return {"splits": "train 55,000 / val 5,000 (a fixed random split) / test 10,000",
                "shape": "1x28x28, 10 classes", "source": meta["source"],
                "download from": ", ".join(meta["urls"]),
                "files (sha256)": {k: v for k, v in meta["sha256"].items()}}
    return details


for _name, _desc in (("mnist", "MNIST handwritten digits, 28x28 grey (original idx files)"),
                     ("fashion-mnist", "Fashion-MNIST clothing images, 28x28 grey (original idx files)")):
    register_dataset(_name, ImageDataConfig, _desc, "images", _mnist_details(_name), kind="image")(_mnist_loader(_name))


# ----------------------------------------------------------------- digits (offline default)
DIGITS_SPLIT = {"test": 360, "val": 180}   # of 1,797 images; the rest (1,257) train


@register_dataset("digits", ImageDataConfig,
                  "scikit-learn's bundled 8x8 handwritten digits (offline, the built-in default)", "images",
                  lambda cfg: {"splits": "train 1,257 / val 180 / test 360 (a fixed random split)",
                               "shape": "1x8x8, 10 classes, 17 grey levels",
                               "source": "UCI optical digits, bundled with scikit-learn (no download)"},
                  kind="image")
def load_digits(cfg: ImageDataConfig, split: str) -> TensorData:
    from sklearn.datasets import load_digits as sk_digits
    d = sk_digits()
    perm = np.random.default_rng(0).permutation(len(d.target))
    n_test, n_val = DIGITS_SPLIT["test"], DIGITS_SPLIT["val"]
    idx = {"test": perm[:n_test], "val": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}[split]
    x = torch.from_numpy(d.images[np.sort(idx)].astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(d.target[np.sort(idx)].astype(np.int64))
    return image_data(x, y, cfg, split, 10, "digits", grey_levels=17)
