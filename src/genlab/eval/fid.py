"""Sample quality with a local classifier: Frechet distance of its features, and a classifier score.

torchvision's Inception network is not available here, so genlab trains a small CNN on the run's
own dataset (once; cached under ``cache_dir()/classifiers/<dataset>.pt``) and uses its penultimate
layer as the feature space. The numbers are therefore "FID (local classifier features)": comparable
between models of the same dataset in genlab, not with published Inception FIDs.

  FD(N(mu1, C1), N(mu2, C2)) = ||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^{1/2})     (Frechet / 2-Wasserstein)
  score = exp(E_x KL(p(y|x) || p(y)))   with p(y) = E_x p(y|x)       (the Inception-Score formula)

Samples and reference images are compared in the data's own space (``fid_space`` in eval.json): on binary
views (binarized, dynamic) the reference and real-floor images are the binary pixels the model was trained on,
and a model whose ``sample(n)`` gives decoder means (``MeanSamples``: a Bernoulli VAE's sigmoid outputs)
is scored on its draws ``sample(n, draw=True)``, binary pixels like the data ("binary samples"); on
continuous views both are grey images in [0, 1] ("continuous samples").
"""
from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genlab.abilities import MeanSamples, Samples, can
from genlab.data.idx import cache_dir
from genlab.data.images import apply_view
from genlab.data.registry import TensorData, load_dataset
from genlab.errors import GenlabError
from genlab.eval.evaluate import register_metric
from genlab.progress import progress as progress_bar
from genlab.training import checkpoint
from genlab.training.config import TrainConfig
from genlab.training.loop import Trainer

FID_SAMPLES = 2000          # samples vs reference images (fewer when the split is smaller)
REFERENCE_SEED = 0          # draws the reference images: the same subset for every model and eval seed
CLASSIFIER_VERSION = 1      # bump when the architecture or its training recipe changes


# ----------------------------------------------------------------- the Frechet distance
def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^{1/2}).

    tr (C1 C2)^{1/2} = sum_i sqrt(lambda_i(C1^{1/2} C2 C1^{1/2})): the eigenvalues of C1 C2 equal those of
    the symmetric PSD matrix C1^{1/2} C2 C1^{1/2}, so symmetric eigen-decompositions suffice and singular
    covariances (dead feature units, fewer samples than features) need no regularisation.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    sqrt_cov1 = psd_sqrt(cov1)
    eig = np.linalg.eigvalsh(sqrt_cov1 @ cov2 @ sqrt_cov1)
    trace_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_covmean)


def psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root of a positive semi-definite matrix (negative round-off clipped)."""
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def gaussian_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of features [N, D]."""
    f = features.double().cpu().numpy()
    return f.mean(0), np.cov(f, rowvar=False)


def classifier_score(probs: torch.Tensor) -> float:
    """exp(mean_x KL(p(y|x) || p(y))), p(y) the mean of p(y|x); between 1 and the number of classes."""
    probs = probs.double().clamp_min(1e-12)
    marginal = probs.mean(0, keepdim=True)
    kl = (probs * (probs.log() - marginal.log())).sum(1)
    return float(torch.exp(kl.mean()))


# ----------------------------------------------------------------- the local classifier
class Classifier(nn.Module):
    """A LeNet-style CNN: two 5x5 conv + max-pool stages, a 128-d feature layer, 10 logits."""

    def __init__(self, shape, num_classes: int = 10, feature_dim: int = 128):
        super().__init__()
        c, h, w = shape
        width = 32 if h * w >= 256 else 16            # narrower for 8x8 digits: a few seconds to train
        self.convs = nn.Sequential(
            nn.Conv2d(c, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(2 * width * (h // 4) * (w // 4), feature_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    # the genlab model protocol, so the one training loop trains it
    def phases(self):
        return {"main": list(self.parameters())}

    def loss(self, batch, phase="main"):
        x, y = batch[0], batch[1]
        loss = F.cross_entropy(self(x), y)
        return loss, {}


def classifier_recipe(n_train: int, progress: bool = True) -> dict:
    """Training settings: more epochs for small sets, so the budget stays a few seconds on digits.
    ``progress``: the training's progress (``genlab.progress``: a bar on a terminal, step lines off it)."""
    epochs = 3 if n_train > 20000 else 15
    return {"epochs": epochs, "batch_size": 64, "lr": 1e-3, "seed": 0, "progress": progress,
            "eval_every": 0, "log_every": 200, "device": "cpu"}


def unit_view(data_name: str, data_config, split: str) -> TensorData:
    """The dataset's split with continuous pixels in [0, 1] and no example limit."""
    fields = {f.name for f in dataclasses.fields(data_config)}
    changes = {k: v for k, v in (("view", "continuous"), ("limit", None)) if k in fields}
    return load_dataset(data_name, split, config=dataclasses.replace(data_config, **changes))


@torch.no_grad()
def accuracy(model: Classifier, data: TensorData, batch: int = 1000) -> float:
    model.eval()
    x, y = data.tensors[0], data.tensors[1]
    correct = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / len(x)


def classifier_path(data_name: str):
    return cache_dir() / "classifiers" / f"{data_name}.pt"


def get_classifier(data_name: str, data_config, progress: bool = True) -> tuple[Classifier, float]:
    """The dataset's local classifier and its test accuracy: loaded from the cache, else trained
    with genlab's trainer (deterministic, seed 0) and saved atomically."""
    train_data = unit_view(data_name, data_config, "train")
    info = train_data.info
    if len(train_data.tensors) < 2 or not info.num_classes:
        raise GenlabError(f"dataset {data_name} has no labels; the local FID classifier needs them")
    model = Classifier(info.shape, info.num_classes)
    path = classifier_path(data_name)
    if path.exists():
        ckpt = checkpoint.load(path)
        if ckpt.get("version") == CLASSIFIER_VERSION and list(ckpt.get("shape", [])) == list(info.shape):
            model.load_state_dict(ckpt["model"])
            return model.eval(), float(ckpt["test_accuracy"])
    threads = torch.get_num_threads()
    try:
        if math.prod(info.shape) < 256:     # tiny convolutions: one thread avoids costly thread contention
            torch.set_num_threads(1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = Classifier(info.shape, info.num_classes)
            cfg = TrainConfig(**classifier_recipe(len(train_data), progress))
            print(f"training the local {data_name} classifier for FID ({cfg.epochs} epochs, once; cached in {path})",
                  file=sys.stderr)
            Trainer(model, train_data, cfg, distributed=False).fit()
    finally:
        torch.set_num_threads(threads)
    acc = accuracy(model, unit_view(data_name, data_config, "test"))
    checkpoint.save_atomic({"model": model.state_dict(), "test_accuracy": acc, "shape": list(info.shape),
                            "version": CLASSIFIER_VERSION}, path)
    return model.eval(), acc


@torch.no_grad()
def features_and_probs(model: Classifier, x: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    feats, probs = [], []
    for i in range(0, len(x), batch):
        f = model.features(x[i:i + batch].float().cpu())
        feats.append(f)
        probs.append(torch.softmax(model.head(f), 1))
    return torch.cat(feats), torch.cat(probs)


BINARY_VIEWS = ("binarized", "dynamic")
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}      # the fixed Bernoulli draws of genlab.data.images


def fid_space(data_config) -> str:
    """Where samples and reference images meet: "binary samples" on binary views, else "continuous samples"."""
    return "binary samples" if getattr(data_config, "view", "continuous") in BINARY_VIEWS else "continuous samples"


def data_space_images(data_name: str, data_config, split: str) -> torch.Tensor:
    """The split's images (no example limit) in the data's own space: binary pixels on binary views (the
    fixed-seed Bernoulli draws of the dynamic view, the same as its val/test splits), else grey in [0, 1]."""
    images = unit_view(data_name, data_config, split).tensors[0]
    if fid_space(data_config) == "binary samples":
        return apply_view(images, data_config, seed=SPLIT_SEEDS[split])
    return images


@torch.no_grad()
def draw_samples(model, n: int, binary: bool = False, batch: int = 500, progress: bool = False) -> torch.Tensor:
    """``n`` samples in [0, 1]; with ``binary``, draws in data space from a model whose ``sample(n)`` gives
    means (``MeanSamples``), so that binary data meets binary samples. ``progress``: per batch drawn."""
    was_training = model.training
    model.eval()
    draw = binary and can(model, MeanSamples)
    sizes = [min(batch, n - i) for i in range(0, n, batch)]
    out = torch.cat([(model.sample(k, draw=True) if draw else model.sample(k)).cpu()
                     for k in progress_bar(sizes, "FID samples", enabled=progress, unit="batch")])
    model.train(was_training)
    return out.clamp(0, 1)


def reference_subset(images: torch.Tensor, n: int, seed: int = REFERENCE_SEED) -> torch.Tensor:
    """``n`` images drawn at random without replacement with a fixed seed (the same for every model and
    every eval seed), in their original order: a fair reference set (the first n need not be typical)."""
    if n >= len(images):
        return images
    index = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return images[index.sort().values]


def sample_quality(run, split: str = "test", n: int = FID_SAMPLES, seed: int = 0, limit: int | None = None,
                   real_floor: bool = True, data_dir: str | None = None, progress: bool = True) -> dict:
    """FID (local classifier features) and classifier scores of ``n`` samples vs ``n`` split images drawn
    at random with the fixed ``REFERENCE_SEED``, both in the data's own space (``fid_space``); with
    ``real_floor``, ``fid_real_floor``: the FID of ``n`` real images of another split against the same
    reference set, the value a perfect sampler would get at this size (FID is biased upwards for finite n);
    the real images come from the train split (from the test split when ``split`` is train). Every model
    gets the same columns: fid, fid_real_floor (when computed), fid_samples, fid_space, classifier_score,
    classifier_score_data (of the reference images) and classifier_test_acc."""
    config = _with_data_dir(run.data_config, data_dir)
    classifier, acc = get_classifier(run.data_name, config, progress=progress)
    space = fid_space(config)
    images = data_space_images(run.data_name, config, split)
    n = min(n, len(images), limit or len(images))
    reference = reference_subset(images, n)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples = draw_samples(run.model, n, binary=space == "binary samples", progress=progress)
    if tuple(samples.shape[1:]) != tuple(reference.shape[1:]):
        raise GenlabError(f"samples have shape {tuple(samples.shape[1:])} but the data {tuple(reference.shape[1:])}")
    f_gen, p_gen = features_and_probs(classifier, samples)
    f_ref, p_ref = features_and_probs(classifier, reference)
    ref_stats = gaussian_stats(f_ref)
    out = {"fid": frechet_distance(*gaussian_stats(f_gen), *ref_stats), "fid_samples": n, "fid_space": space}
    if real_floor:
        other = "test" if split == "train" else "train"
        real = reference_subset(data_space_images(run.data_name, config, other), n, REFERENCE_SEED + 1)
        out["fid_real_floor"] = frechet_distance(*gaussian_stats(features_and_probs(classifier, real)[0]), *ref_stats)
    return out | {"classifier_score": classifier_score(p_gen), "classifier_score_data": classifier_score(p_ref),
                  "classifier_test_acc": acc}


def _with_data_dir(data_config, data_dir: str | None):
    if data_dir and "data_dir" in {f.name for f in dataclasses.fields(data_config)}:
        return dataclasses.replace(data_config, data_dir=data_dir)
    return data_config


@register_metric("fid", needs=(Samples,), kinds=("image",))
def fid_metric(run, data: TensorData, options: dict) -> dict | None:
    """``genlab eval`` hook: for image models that can sample; None for anything else, or when
    ``options["fid"]`` is False (the user skipped FID)."""
    if options.get("fid") is False:
        return None
    if not data.info.num_classes:
        return None
    split = options.get("split", "test")
    return sample_quality(run, split, options.get("fid_samples", FID_SAMPLES), options.get("seed", 0),
                          limit=len(data), real_floor=options.get("fid_real_floor", True),
                          data_dir=options.get("data_dir"), progress=options.get("progress", True))


def prepare_fid(dataset_name: str, data_dir: str | None = None, progress: bool = True) -> dict:
    """Train (once) and cache the local FID classifier of ``dataset_name`` (``genlab data prepare-fid``),
    so that a later ``genlab eval`` does not pause to train it. Returns its cache path and test accuracy."""
    from genlab.data.registry import data_config
    config = data_config(dataset_name, {"data_dir": data_dir} if data_dir else {})
    _, acc = get_classifier(dataset_name, config, progress=progress)
    return {"dataset": dataset_name, "classifier": str(classifier_path(dataset_name)), "test_accuracy": acc}


__all__ = ["Classifier", "classifier_score", "frechet_distance", "gaussian_stats", "get_classifier",
           "prepare_fid", "reference_subset", "sample_quality", "FID_SAMPLES", "REFERENCE_SEED"]
