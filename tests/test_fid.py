"""The Frechet distance and the local-classifier sample-quality metric."""
import types

import numpy as np
import pytest
import scipy.linalg
import torch

from genlab.abilities import MeanSamples, Samples
from genlab.data.registry import data_config, load_dataset
from genlab.eval.fid import (
    REFERENCE_SEED,
    classifier_path,
    classifier_score,
    fid_metric,
    frechet_distance,
    gaussian_stats,
    get_classifier,
    prepare_fid,
    reference_subset,
    sample_quality,
)

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # tiny networks: a second thread only adds contention
    yield
    torch.set_num_threads(threads)


def test_frechet_distance_of_diagonal_gaussians_matches_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    closed = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(closed, rel=1e-10)


def test_frechet_distance_of_full_covariances_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T, b @ b.T
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * np.real(scipy.linalg.sqrtm(c1 @ c2)))
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-8)
    # singular covariances (rank 2 of 5) are handled without NaNs
    low = a[:, :2] @ a[:, :2].T
    assert np.isfinite(frechet_distance(mu1, low, mu2, c2))


def test_gaussian_stats_and_classifier_score_bounds():
    f = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 0.5])
    mu, cov = gaussian_stats(f)
    assert np.allclose(np.diag(cov), [1.0, 4.0, 0.25], rtol=0.1)
    assert classifier_score(torch.eye(10)) == pytest.approx(10.0)             # confident and diverse
    assert classifier_score(torch.full((5, 10), 0.1)) == pytest.approx(1.0)   # uninformative


def test_local_classifier_is_cached_and_accurate(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    model, acc = get_classifier("digits", data_config("digits", {}))
    assert acc > 0.95
    path = classifier_path("digits")
    assert path.exists()
    stamp = path.stat().st_mtime_ns
    again, acc2 = get_classifier("digits", data_config("digits", {}))
    assert acc2 == acc and path.stat().st_mtime_ns == stamp
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_fid_metric_is_deterministic_and_ranks_data_above_noise(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    from genlab.training.run import train
    run = train("gan", "digits", None, epochs=1, progress=False, hidden=[16])
    data = run.data("test")
    first = fid_metric(run, data, {"seed": 0})
    second = fid_metric(run, data, {"seed": 0})
    assert first == second and first["fid_samples"] == len(data)

    class DataSampler:          # "samples" that are the validation images: near-zero FID
        def sample(self, n):
            return run.data("val").tensors[0][:n]

        def parameters(self):
            return iter([torch.zeros(1)])

        training = False

        def eval(self):
            return self

        def train(self, mode=True):
            return self

    run.model = DataSampler()
    real = fid_metric(run, data, {"seed": 0})
    assert real["fid"] < 0.2 * first["fid"]
    # the real-vs-real floor at this size: the same for every model, below the GAN's FID, near the data's
    assert real["fid_real_floor"] == first["fid_real_floor"] and 0 < first["fid_real_floor"] < first["fid"]
    assert real["fid"] < 3 * first["fid_real_floor"]
    assert fid_metric(run, data, {"seed": 0, "fid": False}) is None                 # the user skipped FID
    assert "fid_real_floor" not in fid_metric(run, data, {"seed": 0, "fid_real_floor": False})


def test_reference_subset_is_random_fixed_and_keeps_order():
    images = torch.arange(100).float().view(100, 1, 1, 1)
    a, b = reference_subset(images, 10), reference_subset(images, 10)
    assert torch.equal(a, b) and not torch.equal(a, images[:10])
    assert (a.flatten().diff() > 0).all() and len(a.flatten().unique()) == 10
    assert torch.equal(reference_subset(images, 200), images)


def test_prepare_fid_trains_and_caches_the_classifier(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    info = prepare_fid("digits", progress=False)
    assert info["test_accuracy"] > 0.95 and classifier_path("digits").exists()
    assert info["classifier"] == str(classifier_path("digits"))


def test_data_prepare_fid_command(capsys):
    from genlab.cli import main
    assert main(["data", "prepare-fid", "digits"]) == 0
    assert "test_accuracy" in capsys.readouterr().out and classifier_path("digits").exists()
    assert main(["data", "prepare-fid", "nope"]) == 2


# ----------------------------------------------------------------- FID in the data's own space
class ImageSampler:
    """A stand-in model whose samples are given images; with ``means``, it declares ``MeanSamples``: the
    images are its means and ``sample(n, draw=True)`` draws Bernoulli pixels from them."""
    training = False

    def __init__(self, images: torch.Tensor, means: bool = False):
        self.images = images
        self.ABILITIES = frozenset({Samples, MeanSamples} if means else {Samples})

    def sample(self, n, draw=False):
        return torch.bernoulli(self.images[:n], generator=torch.Generator().manual_seed(5)) if draw else self.images[:n]

    def eval(self):
        return self

    def train(self, mode=True):
        return self


def quality(view: str, model) -> dict:
    run = types.SimpleNamespace(data_name="digits", data_config=data_config("digits", {"view": view}), model=model)
    return sample_quality(run, progress=False)


def floor_images(view: str) -> torch.Tensor:
    """The real train images the floor is computed on (360 of them, drawn with the floor's seed)."""
    return reference_subset(load_dataset("digits", "train", view=view).tensors[0], 360, REFERENCE_SEED + 1)


@pytest.fixture(scope="module")
def classifier_cache(tmp_path_factory):
    """One local digits classifier for the tests below (trained once, in a private cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


COLUMNS = {"fid", "fid_real_floor", "fid_samples", "fid_space", "classifier_score", "classifier_score_data",
           "classifier_test_acc"}


@pytest.mark.parametrize("view", ["binarized", "continuous"])
def test_samples_that_are_real_images_score_the_real_floor(classifier_cache, view):
    """A "model" whose samples are the floor's own real images (in the data's view: binary pixels for the
    binarized digits) gets exactly the real-vs-real floor; the other split's real images land near it."""
    q = quality(view, ImageSampler(floor_images(view)))
    assert q["fid"] == pytest.approx(q["fid_real_floor"], abs=1e-6) and set(q) == COLUMNS
    assert q["fid_space"] == ("binary samples" if view == "binarized" else "continuous samples")
    near = quality(view, ImageSampler(load_dataset("digits", "val", view=view).tensors[0]))
    assert near["fid"] < 1.8 * near["fid_real_floor"]
    if view == "binarized":      # grey images are not the binary data: far above the floor
        assert quality(view, ImageSampler(floor_images("continuous")))["fid"] > 2 * q["fid_real_floor"]


def test_a_bernoulli_model_whose_means_are_the_data_is_scored_on_its_draws(classifier_cache):
    """On the dynamically binarized digits (pixels ~ Bernoulli(grey)), a MeanSamples model whose means are
    grey real images is scored on Bernoulli draws: near the floor; the same grey means compared as they
    are with the binary data would be far above it. Every model gets the same columns."""
    drawn = quality("dynamic", ImageSampler(floor_images("continuous"), means=True))
    means = quality("dynamic", ImageSampler(floor_images("continuous")))
    assert drawn["fid_space"] == "binary samples" and set(drawn) == set(means) == COLUMNS
    assert drawn["fid"] < 1.2 * drawn["fid_real_floor"]
    assert means["fid"] > 1.4 * means["fid_real_floor"]
