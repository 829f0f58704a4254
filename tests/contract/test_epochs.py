"""Training crosses epoch boundaries with every batch source and every model's default data.

For each model, on its default dataset (made tiny: a few batches per epoch), two epochs through the
training loop: each epoch's batches are exactly steps ``0 .. steps_in(epoch) - 1`` of that epoch, none
empty, and the run ends at ``epoch_steps(0) + epoch_steps(1)`` optimizer steps. Every source also keeps
the same epoch lengths on every rank of two (a rank with one step more would hang DDP). A crash at an
epoch's end (a token budget's shorter second epoch, issue 25) once hid behind two-step tests.
"""
from __future__ import annotations

import pytest
import torch

from genlab import catalog
from genlab.data import batches as batch_sources
from genlab.data.registry import TokenStream, load_dataset
from genlab.model import get_model_spec
from genlab.training.loop import Trainer
from genlab.training.run import prepare

pytestmark = pytest.mark.contract

BATCH = 16
STEPS = 3            # about this many batches per epoch
TRAIN = {"epochs": 2, "batch_size": BATCH, "eval_every": 0, "progress": False, "log_every": 1}
# tiny settings (model options, data options) for each model's default data
TINY: dict[str, tuple[dict, dict]] = {
    "vae": ({"hidden": (16,), "z_dim": 2}, {}),
    "ae": ({"hidden": (16,), "z_dim": 2}, {}),
    "torus-vae": ({"hidden": (16,)}, {"n_train": 64, "n_val": 16, "n_test": 16}),
    "aae": ({"hidden": (16,), "disc_hidden": (16,), "z_dim": 2}, {}),
    "gan": ({"hidden": (16, 16), "z_dim": 4}, {}),
    "invertible-mlp": ({"layers": 2}, {"n": 256}),
    "realnvp": ({"couplings": 2, "hidden": (16,)}, {"n": 256}),
    "cnf": ({"hidden": (16,), "steps": 2}, {"n": 256}),
    "ddpm": ({"channels": 8, "mults": (1, 2), "timesteps": 20, "sample_steps": 3}, {}),
    "gpt": ({"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16}, {"words": 1000}),
    "rnnlm": ({"n_layer": 1, "n_embd": 8, "hidden": 16, "block_size": 16}, {"words": 1000}),
    "translator": ({"d_model": 16, "heads": 2, "layers": 1, "mlp_ratio": 2.0},
                   {"n_train": 64, "n_val": 16, "n_test": 16, "vocab_size": 80}),
    "nerf": ({"width": 16, "depth": 2, "n_coarse": 4, "n_fine": 4}, {"size": 8, "views": 2, "supersample": 1}),
    "nerf-grid": ({"resolution": 16, "init_resolution": 8, "density_rank": 2, "color_rank": 2,
                   "occupancy_resolution": 8}, {"size": 8, "views": 2, "supersample": 1}),
}


def _declared() -> dict[str, tuple[dict, dict]]:
    """TINY, and the models that declare ``CONTRACT`` (see tests/contract/test_models.py): their model
    options, and their data options where the contract runs on the model's default data."""
    out = dict(TINY)
    for name in catalog.names("model"):
        c = getattr(catalog.get("model", name).cls, "CONTRACT", None)
        if c is not None:
            same = c["data"] == get_model_spec(name).default_data
            out[name] = (c.get("model_options", {}), c.get("data_options", {}) if same else {})
    return out


MODELS = _declared()


def _shrink(train, hints: dict):
    """About STEPS batches per epoch, the last one partial."""
    if isinstance(train, TokenStream):
        return train.subset(slice(0, STEPS * BATCH * hints.get("block_size", 64) + 1))
    if hasattr(train, "tensors") or hasattr(train, "src"):   # in-memory examples, sentence pairs
        return train.subset(slice(0, min(len(train), STEPS * BATCH - BATCH // 2)))
    return train                                              # rays: a tiny scene already


def _setup(name: str):
    model_options, data_options = MODELS[name]
    spec = get_model_spec(name)
    spec, data, mcfg, dcfg, tcfg = prepare(name, spec.default_data, model_options, data_options, TRAIN)
    torch.manual_seed(0)
    train = load_dataset(data, "train", config=dcfg)
    model = spec.cls(mcfg, train.info)
    hints = model.batch_hints() if hasattr(model, "batch_hints") else {}
    return model, _shrink(train, hints), tcfg, hints


def test_every_model_has_tiny_settings_here():
    missing = set(catalog.names("model")) - set(MODELS)
    assert not missing, f"declare CONTRACT on {sorted(missing)} or add them to TINY in tests/contract/test_epochs.py"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_two_epochs_walk_each_epoch_to_its_own_end(name):
    model, train, tcfg, _ = _setup(name)
    trainer = Trainer(model, train, tcfg, distributed=False)
    source, calls = trainer.source, []
    get = source.get

    def recording_get(epoch, step):
        batch = get(epoch, step)
        calls.append((epoch, step, len(batch[0])))
        return batch
    source.get = recording_get
    state = trainer.fit()
    assert state.epoch == 2 and not state.interrupted
    for epoch in (0, 1):
        assert [s for e, s, _ in calls if e == epoch] == list(range(source.steps_in(epoch))), epoch
    assert all(n > 0 for *_, n in calls), "an empty batch"
    assert state.global_step == trainer.epoch_steps(0) + trainer.epoch_steps(1)
    assert 2 <= source.steps_in(0) <= 4 * STEPS, "the data should make a few batches per epoch here"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_rank_of_two_has_the_same_epoch_lengths(name):
    from types import SimpleNamespace
    model, train, tcfg, hints = _setup(name)
    ranks = [train.train_batches(BATCH, 0, SimpleNamespace(rank=r, world_size=2), **hints) for r in (0, 1)]
    for epoch in range(3):
        lengths = [s.steps_in(epoch) for s in ranks]
        assert lengths[0] == lengths[1] >= 1, (epoch, lengths)
        for s in ranks:
            assert len(s.get(epoch, lengths[0] - 1)[0]) > 0


def test_the_default_data_covers_every_batch_source():
    kinds = {name for name, obj in vars(batch_sources).items()
             if isinstance(obj, type) and name.endswith("Batches") and hasattr(obj, "steps_in")}
    seen = set()
    for name in MODELS:
        model, train, tcfg, hints = _setup(name)
        seen.add(type(train.train_batches(BATCH, 0, _One(), **hints)).__name__)
    assert seen == kinds, f"no model's default data uses {sorted(kinds - seen)}"


class _One:
    rank, world_size = 0, 1
