"""The contract every model in the catalog keeps: build, one training step, a finite loss, metrics that
average to finite numbers, a save/load round trip that changes nothing, and samples of the data's shape
where the model ``Samples``.

A new model adds one line to ``TINY`` (the data it runs on here, and the model and data options that make
it tiny), or declares the same as a class attribute ``CONTRACT = {"data": ..., "model_options": {...},
"data_options": {...}}`` on the model.
"""
from __future__ import annotations

import math

import pytest
import torch

from genlab import catalog
from genlab.abilities import Samples
from genlab.train.loop import evaluate_model
from genlab.train.run import load_run, prepare
from genlab.train.run import train as train_run

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


@pytest.mark.parametrize("name", sorted(MODELS))
def test_samples_have_the_data_shape(name, trained):
    run = trained(name)
    if not isinstance(run.model, Samples):
        pytest.skip(f"{name} does not sample")
    with torch.no_grad():
        x = run.model.sample(3)
    assert tuple(x.shape) == (3, *run.data_info.shape)
    assert torch.isfinite(x).all()


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
    if run.spec.sample is None and not isinstance(run.model, Samples):
        pytest.skip(f"{name} does not sample")
    lines = sample(run, 2, seed=0, out=None, options=SAMPLE_OPTIONS.get(name, {}))
    assert lines and all(isinstance(line, str) for line in lines)
