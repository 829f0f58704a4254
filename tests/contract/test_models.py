"""The contract every model in the catalog keeps: build, one training step, a finite loss, metrics that
average to finite numbers, a save/load round trip that changes nothing, and every ability it declares
(``genlab.abilities``) kept: the methods exist with signatures the protocol can call, and return the
shapes the protocol documents on tiny inputs. A method's name grants nothing.

A new model adds one line to ``TINY`` (the data it runs on here, and the model and data options that make
it tiny), or declares the same as a class attribute ``CONTRACT = {"data": ..., "model_options": {...},
"data_options": {...}}`` on the model.
"""
from __future__ import annotations

import inspect
import math
import types

import pytest
import torch

from genlab import catalog
from genlab.abilities import (
    ABILITIES,
    Decodes,
    Encodes,
    GaussianPrior,
    HasAttentionMaps,
    HasStages,
    HasTrajectory,
    LogProb,
    MeanSamples,
    Reconstructs,
    RendersViews,
    Samples,
    ability_attributes,
    ability_methods,
    can,
)
from genlab.data.registry import DataInfo
from genlab.model import GenerativeModel, register_model
from genlab.training.loop import evaluate_model
from genlab.training.run import load_run, prepare
from genlab.training.run import train as train_run

pytestmark = pytest.mark.contract

TOY = {"n": 256}
TINY: dict[str, tuple[str, dict, dict]] = {
    "vae": ("digits", {"hidden": (16,), "z_dim": 2}, {}),
    "ae": ("digits", {"hidden": (16,), "z_dim": 2}, {}),
    "torus-vae": ("torus", {"hidden": (16,)}, {"n_train": 256, "n_val": 64, "n_test": 64}),
    "aae": ("digits", {"hidden": (16,), "disc_hidden": (16,), "z_dim": 2}, {}),
    "gan": ("digits", {"hidden": (16, 16), "z_dim": 4}, {}),
    "invertible-mlp": ("8gaussians", {"layers": 2}, TOY),
    "realnvp": ("8gaussians", {"couplings": 2, "hidden": (16,)}, TOY),
    "cnf": ("8gaussians", {"hidden": (16,), "steps": 2}, TOY),
    # diffusion
    "ddpm": ("digits", {"channels": 8, "mults": (1, 2), "timesteps": 20, "sample_steps": 3}, {}),
    # language models
    "gpt": ("synthetic-text", {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16}, {"words": 1000}),
    "rnnlm": ("synthetic-text", {"n_layer": 1, "n_embd": 8, "hidden": 16, "block_size": 16}, {"words": 1000}),
    # translation
    "translator": ("synthetic-pairs", {"d_model": 16, "heads": 2, "layers": 1, "mlp_ratio": 2.0},
                   {"n_train": 64, "n_val": 16, "n_test": 16, "vocab_size": 80}),
    # neural radiance fields
    "nerf": ("synthetic-scene", {"width": 16, "depth": 2, "n_coarse": 4, "n_fine": 4}, {"size": 8, "views": 2, "supersample": 1}),
    "nerf-grid": ("synthetic-scene", {"resolution": 16, "init_resolution": 8, "density_rank": 2, "color_rank": 2,
                                      "occupancy_resolution": 8}, {"size": 8, "views": 2, "supersample": 1}),
}
TRAIN = {"max_steps": 2, "batch_size": 16, "eval_batch_size": 32, "progress": False, "log_every": 1,
         "eval_every": 0}


EVAL: dict[str, dict] = {"translator": {"beam": 1}}   # cheaper eval options (or CONTRACT["eval_options"])


def _declared() -> dict[str, tuple[str, dict, dict]]:
    out = dict(TINY)
    for name in catalog.names("model"):
        c = getattr(catalog.get("model", name).cls, "CONTRACT", None)
        if c is not None:
            out[name] = (c["data"], c.get("model_options", {}), c.get("data_options", {}))
            EVAL[name] = c.get("eval_options", {})
    return out


MODELS = _declared()


def test_every_model_has_a_contract_entry():
    missing = set(catalog.names("model")) - set(MODELS)
    assert not missing, f"declare CONTRACT on {sorted(missing)} or add them to TINY in tests/contract/test_models.py"


def _options(name: str) -> dict:
    data, model_options, data_options = MODELS[name]
    return {"data": data, "model_options": model_options, "data_options": data_options, "train_options": TRAIN}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each model trained for two steps into its own folder (built lazily, once per module)."""
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = train_run(name, out=tmp_path_factory.mktemp(name) / "run", **_options(name))
        return cache[name]
    return get


@pytest.mark.parametrize("name", sorted(MODELS))
def test_builds_and_takes_a_finite_step(name, trained):
    run = trained(name)
    assert run.state.global_step == 2
    rows = [r for r in (run.dir / "metrics.jsonl").read_text().splitlines() if '"split": "train"' in r]
    assert rows, "no training row was logged"
    assert "NaN" not in rows[-1] and "Infinity" not in rows[-1]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_metrics_average_to_finite_numbers(name, trained):
    run = trained(name)
    data = run.data("val")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        metrics = evaluate_model(run.model, data, 16, "cpu", max_batches=2, **_eval_defaults(run))
    assert metrics, "eval_metrics returned nothing"
    for k, v in metrics.items():   # numbers are finite; a few may be strings (e.g. a metric's signature)
        assert isinstance(v, str) or (isinstance(v, float) and math.isfinite(v)), f"{k} = {v}"


def _eval_defaults(run) -> dict:
    import dataclasses

    from genlab.config import from_dict
    cfg = from_dict(run.spec.eval_config, EVAL.get(run.model_name, {}))
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_round_trip_changes_nothing(name, trained):
    run = trained(name)
    loaded = load_run(run.dir)
    a, b = run.model.state_dict(), loaded.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k].cpu(), b[k].cpu()), k
    data = run.data("test")
    outs = []
    for model in (run.model, loaded.model):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            outs.append(evaluate_model(model, data, 16, "cpu", max_batches=1, **_eval_defaults(run)))
    assert outs[0] and outs[0].keys() == outs[1].keys()
    for k, v in outs[0].items():
        assert v == outs[1][k] if isinstance(v, str) else v == pytest.approx(outs[1][k], rel=1e-5, abs=1e-6), k


# ------------------------------------------------------------------ declared abilities
def _callable_as(method, protocol_method) -> str | None:
    """Why ``method`` cannot be called as ``protocol_method`` is (positionally, with the same defaulted
    arguments), or None when it can; keyword arguments it adds must have defaults."""
    want = list(inspect.signature(protocol_method).parameters.values())[1:]        # without self
    have = list(inspect.signature(method).parameters.values())[1:]
    positional = [p for p in have if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < len(want) and not any(p.kind == p.VAR_POSITIONAL for p in have):
        return f"takes {len(positional)} positional arguments, the protocol passes {len(want)}"
    for w, h in zip(want, positional):
        if w.default is not w.empty and h.default is h.empty:
            return f"argument {h.name} needs a default (the protocol's {w.name} is optional)"
    extra = [p for p in have if p not in positional[:len(want)]
             and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.default is p.empty]
    if extra:
        return f"arguments {[p.name for p in extra]} have no default"
    return None


@pytest.mark.parametrize("name", sorted(MODELS))
def test_declared_abilities_have_their_methods_with_callable_signatures(name):
    spec = catalog.get("model", name)
    assert spec.abilities == spec.cls.ABILITIES, "register_model stores the declaration on the class"
    assert spec.abilities <= set(ABILITIES)
    for ability in spec.abilities:
        for method_name, proto in ability_methods(ability).items():
            method = getattr(spec.cls, method_name, None)
            assert callable(method), f"{name} declares {ability.__name__} but has no method {method_name}"
            why = _callable_as(method, proto)
            assert why is None, f"{name}.{method_name} ({ability.__name__}): {why}"


def test_the_signature_check_can_fail():
    class Narrow:
        def sample(self):
            ...

        def render_view(self, pose, height, width=None):
            ...

        def stages(self, x, times):
            ...
    assert "positional" in _callable_as(Narrow.sample, ability_methods(Samples)["sample"])
    assert "default" in _callable_as(Narrow.render_view, ability_methods(RendersViews)["render_view"])
    assert "no default" in _callable_as(Narrow.stages, ability_methods(HasStages)["stages"])


def _examples(run, n: int = 3) -> torch.Tensor:
    return run.data("val").tensors[0][:n].to(next(run.model.parameters()).device)


def _check_samples(model, run):
    x = model.sample(3)
    assert isinstance(x, torch.Tensor) and tuple(x.shape) == (3, *run.data_info.shape)
    assert torch.isfinite(x).all()


def _check_mean_samples(model, run):
    """sample(n, draw=True) draws in data space: binary pixels on a binary view, and not the means."""
    x = model.sample(3, draw=True)
    assert isinstance(x, torch.Tensor) and tuple(x.shape) == (3, *run.data_info.shape)
    assert torch.isfinite(x).all()
    if run.data_info.view in ("binarized", "dynamic"):
        assert set(x.unique().tolist()) <= {0.0, 1.0}
        assert not set(model.sample(3).unique().tolist()) <= {0.0, 1.0}, "sample(n) gives the means"


def _check_encodes(model, run):
    z = model.encode(_examples(run))
    assert isinstance(z, torch.Tensor) and tuple(z.shape) == (3, model.latent_dim)
    assert torch.isfinite(z).all()


def _check_decodes(model, run):
    x = model.decode(torch.randn(3, model.latent_dim))
    assert isinstance(x, torch.Tensor) and tuple(x.shape) == (3, *run.data_info.shape)
    assert torch.isfinite(x).all()


def _check_reconstructs(model, run):
    x = _examples(run)
    r = model.reconstruct(x).detach()
    assert isinstance(r, torch.Tensor) and r.shape == x.shape and torch.isfinite(r).all()
    if run.data_info.kind == "image":
        assert 0 <= float(r.min()) and float(r.max()) <= 1


def _check_gaussian_prior(model, run):
    """Samples are decoded draws of N(0, I): with one random state, sample(n) = decode(randn(n, d))."""
    assert can(model, Samples, Decodes), "a GaussianPrior is checked through sample() and decode()"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        drawn = model.sample(3)
        torch.manual_seed(0)
        decoded = model.decode(torch.randn(3, model.latent_dim))
    torch.testing.assert_close(drawn, decoded)


def _check_log_prob(model, run):
    lp = model.log_prob(_examples(run))
    assert isinstance(lp, torch.Tensor) and tuple(lp.shape) == (3,) and torch.isfinite(lp).all()


def _check_stages(model, run):
    x = _examples(run)
    stages = model.stages(x)
    assert isinstance(stages, list) and len(stages) >= 2
    assert all(isinstance(s, torch.Tensor) and len(s) == 3 and torch.isfinite(s).all() for s in stages)
    torch.testing.assert_close(stages[0].reshape(3, -1), x.reshape(3, -1))


def _check_trajectory(model, run):
    z = torch.randn(3, math.prod(run.data_info.shape))
    path = model.trajectory(z, torch.tensor([1.0, 0.5, 0.0]))
    assert isinstance(path, torch.Tensor) and tuple(path.shape) == (3, *z.shape)
    torch.testing.assert_close(path[0], z)


def _check_renders_views(model, run):
    data = run.data("val")
    o, d = data.tensors[0][:5], data.tensors[1][:5]
    out = model.render_chunks(o, d)
    assert {k: tuple(out[k].shape) for k in ("rgb", "depth", "opacity")} == {"rgb": (5, 3), "depth": (5,),
                                                                              "opacity": (5,)}
    pose = torch.eye(4)
    pose[2, 3] = float(run.data_info.extras["camera_radius"])   # on the z axis, looking along -z at the origin
    view = model.render_view(pose, 4, 6)
    assert {k: tuple(view[k].shape) for k in ("rgb", "depth", "opacity")} == {"rgb": (4, 6, 3), "depth": (4, 6),
                                                                               "opacity": (4, 6)}
    assert all(torch.isfinite(v).all() for v in view.values())


def _check_attention_maps(model, run):
    T = min(8, model.config.block_size)
    maps = model.attention_maps(torch.zeros(1, T, dtype=torch.long))
    assert isinstance(maps, torch.Tensor) and maps.dim() == 4 and tuple(maps.shape[2:]) == (T, T)
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:3]))   # softmax rows over the keys


CHECKS = {Samples: _check_samples, MeanSamples: _check_mean_samples, Encodes: _check_encodes, Decodes: _check_decodes,
          Reconstructs: _check_reconstructs, GaussianPrior: _check_gaussian_prior, LogProb: _check_log_prob,
          HasStages: _check_stages, HasTrajectory: _check_trajectory, RendersViews: _check_renders_views,
          HasAttentionMaps: _check_attention_maps}


def test_every_ability_has_a_check():
    assert set(CHECKS) == set(ABILITIES)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_declared_abilities_return_what_their_protocols_document(name, trained):
    run = trained(name)
    model = run.model.eval()
    for ability in sorted(model.ABILITIES, key=lambda a: a.__name__):
        for attr in ability_attributes(ability):
            assert hasattr(model, attr), f"{name} declares {ability.__name__} but has no attribute {attr}"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            CHECKS[ability](model, run)


def test_the_translator_and_the_torus_vae_declare_only_what_fits():
    """The translator's ``encode`` returns a memory and a mask (no latent code); the torus VAE's prior is
    uniform on the torus (no standard normal to invert)."""
    assert not catalog.get("model", "translator").abilities & {Encodes, Decodes}
    torus = catalog.get("model", "torus-vae").abilities
    assert GaussianPrior not in torus and {Samples, Encodes, Decodes, Reconstructs} <= torus
    assert GaussianPrior in catalog.get("model", "vae").abilities


class _Undeclared(GenerativeModel):
    """A model with every method name of the image abilities, declaring none of them."""
    latent_dim = 2

    def sample(self, n: int) -> torch.Tensor:
        return torch.rand(n, *self.data_info.shape)

    def encode(self, x):
        return torch.zeros(len(x), 2)

    def decode(self, z):
        return torch.rand(len(z), *self.data_info.shape)

    def reconstruct(self, x):
        return x


def test_a_method_named_sample_grants_no_figures_and_no_metrics():
    info = DataInfo("image", (1, 8, 8), num_classes=10)
    figures = catalog.load_all("figure")
    metrics = catalog.load_all("metric")

    def applying(cls):
        run = types.SimpleNamespace(model=cls(None, info), data_info=info)
        data = types.SimpleNamespace(info=info)
        return ({k.rpartition(".")[2] for k, f in figures.items() if f.applies(run)},
                {k for k, m in metrics.items() if m.applies(run, data)})

    figs, mets = applying(_Undeclared)
    assert not can(_Undeclared(None, info), Samples)
    assert not figs & {"samples", "reconstructions", "manifold", "interpolation"} and "fid" not in mets
    declared = type("Declared", (_Undeclared,), {"ABILITIES": frozenset({Samples, Encodes, Decodes, Reconstructs})})
    figs, mets = applying(declared)    # the same class, declared: the figures and FID apply
    assert {"samples", "reconstructions", "manifold", "interpolation"} <= figs and "fid" in mets


def test_register_model_takes_only_abilities_and_named_writers():
    with pytest.raises(TypeError, match="unknown abilities"):
        register_model("not-a-model", object, "", abilities={"samples"})
    with pytest.raises(TypeError, match="module:function"):
        register_model("not-a-model", object, "", sample=lambda *a: [])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_configs_validate_and_round_trip(name):
    from genlab.config import from_dict, to_dict
    spec, data, mcfg, dcfg, tcfg = prepare(name, **_options(name))
    assert from_dict(type(mcfg), to_dict(mcfg)) == mcfg
    assert from_dict(type(dcfg), to_dict(dcfg)) == dcfg


SAMPLE_OPTIONS = {"translator": {"text": "the dog sees a cat", "beam": 1}, "nerf": {"orbit": 2, "size": 8},
                  "nerf-grid": {"orbit": 2, "size": 8}}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_genlab_sample_writes_or_prints_something(name, trained, tmp_path):
    """`genlab sample` works for every model: its family's own sample function, or the data kind's writer."""
    from genlab.api import sample
    run = trained(name)
    if run.spec.sample is None and not can(run.model, Samples):
        pytest.skip(f"{name} does not sample")
    lines = sample(run, 2, seed=0, out=None, options=SAMPLE_OPTIONS.get(name, {}))
    assert lines and all(isinstance(line, str) for line in lines)
