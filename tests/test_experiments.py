"""Experiments as declarations (fast): every declared experiment is well-formed and its settings build
valid configs for their models, full and quick, without training; the helpers the experiments share;
the figure kit's labelling and the training-curves key choice."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from genlab import catalog
from genlab.errors import ConfigError
from genlab.experiments.common import Both, snapshots
from genlab.experiments.registry import Context, Experiment, Setting, list_experiments
from genlab.train.run import prepare
from genlab.train.rundir import RunDir
from genlab.viz.figures import _plt, integer_ticks, labelled_grid, line_panels
from genlab.viz.report import curve_keys, training_curves

EXPERIMENTS = list_experiments()


def data_of(exp: Experiment, s: Setting, quick: bool) -> str:
    """The dataset ``train_setting`` picks (the same rule)."""
    return (s.quick_data or s.data or exp.quick_data) if quick else (s.data or exp.data)


@pytest.mark.unit
def test_the_catalog_lists_exactly_the_declared_experiments():
    assert sorted(e.name for e in EXPERIMENTS) == catalog.names("experiment")


@pytest.mark.unit
@pytest.mark.parametrize("exp", EXPERIMENTS, ids=lambda e: e.name)
def test_every_experiment_is_described_and_its_settings_build_valid_configs(exp):
    assert exp.description.strip() and len(exp.description) > 20
    assert exp.family.strip()
    assert callable(exp.analyze)
    for quick in (False, True):
        settings = exp.settings(quick)
        names = [s.name for s in settings]
        assert len(names) == len(set(names)), f"{exp.name}: two settings share a folder"
        for s in settings:
            assert s.name and "/" not in s.name
            options = dict(s.options) | (dict(s.quick) if quick else {})
            data = data_of(exp, s, quick)
            spec, _, mcfg, dcfg, tcfg = prepare(s.model, data, **options)   # raises ConfigError when invalid
            assert spec.name == s.model and mcfg is not None and dcfg is not None
            if quick:   # quick runs use built-in data only: nothing to download
                assert data not in ("mnist", "fashion-mnist"), f"{exp.name}/{s.name} --quick needs a download"


@pytest.mark.unit
def test_an_invalid_setting_is_caught_without_training():
    with pytest.raises(ConfigError, match="z_dim"):
        prepare("vae", "digits", z_dim=0)
    with pytest.raises(ConfigError, match="unknown option"):
        prepare("vae", "digits", no_such_option=1)


@pytest.mark.unit
def test_both_picks_the_value_of_the_mode():
    both = Both(full=[0, 10, 80], quick=[0, 2, 6])
    assert both(Context(Path("."), quick=False, data_dir=None)) == [0, 10, 80]
    assert both(Context(Path("."), quick=True, data_dir=None)) == [0, 2, 6]
    assert both(True) == [0, 2, 6] and both(False) == [0, 10, 80]


@pytest.mark.unit
def test_snapshots_draw_before_training_and_after_the_listed_epochs_only():
    drawn = []
    model = torch.nn.Linear(2, 2)
    trainer = SimpleNamespace(model=model, state=SimpleNamespace(epoch=0))
    cb = snapshots([0, 2, 5], lambda t, epoch: drawn.append((epoch, t.model.training)))
    cb(trainer, "start")
    for epoch in range(1, 7):
        trainer.state.epoch = epoch
        cb(trainer, "epoch")
    assert drawn == [(0, False), (2, False), (5, False)]     # drawn in eval mode
    assert model.training                                     # and handed back in train mode


# ------------------------------------------------------------------ the figure kit
@pytest.mark.unit
def test_labelled_grid_writes_a_figure_and_checks_its_labels(tmp_path):
    from PIL import Image
    images = torch.rand(22, 1, 8, 8)
    path = labelled_grid(images, tmp_path / "g.png", nrow=11, title="t", row_labels=["input", "reconstruction"],
                         col_labels=[f"a={a / 10:.1f}" for a in range(11)], note="a note")
    w, h = Image.open(path).size
    assert w >= 11 * 48 and h >= 2 * 48          # each image at least cell_px wide, plus margins
    with pytest.raises(ValueError, match="row labels"):
        labelled_grid(images, tmp_path / "bad.png", nrow=11, row_labels=["only one"])
    with pytest.raises(ValueError, match="column labels"):
        labelled_grid(images, tmp_path / "bad.png", nrow=11, col_labels=["a", "b"])


@pytest.mark.unit
def test_an_epoch_axis_has_integer_ticks():
    plt = _plt()
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3.0, 2.0])
    integer_ticks(ax.xaxis)
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 2]
    plt.close(fig)
    assert ticks and all(float(t).is_integer() for t in ticks)      # no 1.5 on a 2-epoch curve


@pytest.mark.unit
def test_line_panels_draws_one_panel_per_quantity(tmp_path):
    path = line_panels({"loss": {"series": {"train loss": ([1, 2], [2.0, 1.0])}, "hlines": {"test": 1.1}},
                        "perplexity": {"series": {"val perplexity": ([1, 2], [7.0, 3.0])}}},
                       tmp_path / "c.png", title="t", xlabel="epoch")
    assert path.exists()


@pytest.mark.unit
def test_curve_keys_follow_what_was_logged_or_what_the_model_prefers():
    class Plain:
        pass

    class Declares:
        curve_keys = ("loss", "val/loss", "val/perplexity")

    vae_logged = {"loss", "rec", "kl", "bpd", "val/elbo_bpd", "val/bpd", "val/nll_nats"}
    assert curve_keys(Plain(), vae_logged) == ["bpd", "val/elbo_bpd"]
    lm_logged = {"loss", "lr", "val/loss", "val/perplexity", "val/bits_per_token"}
    assert curve_keys(Plain(), lm_logged) == ["loss", "val/loss", "val/perplexity", "val/bits_per_token"]
    gan_logged = {"loss/discriminator", "loss/generator", "val/bound"}
    assert curve_keys(Plain(), gan_logged) == ["loss/discriminator", "loss/generator"]
    assert curve_keys(Declares(), {"loss", "val/perplexity"}) == ["loss", "val/perplexity"]


def fake_run(tmp_path, rows, max_steps=None, eval_metrics=None, model=None):
    folder = RunDir(tmp_path / "run")
    folder.ensure_layout()
    folder.metrics_jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if eval_metrics:
        folder.write_eval({"metrics": eval_metrics})
    return SimpleNamespace(dir=folder.path, folder=folder, model=model or object(), model_name="m", data_name="d",
                           train_config=SimpleNamespace(max_steps=max_steps))


@pytest.mark.unit
def test_training_curves_of_a_step_based_run_with_val_rows(tmp_path, monkeypatch):
    rows = [{"split": "train", "epoch": 0, "step": s, "loss": 3.0 - s / 100} for s in (10, 20, 30)]
    rows += [{"split": "val", "epoch": 0, "step": s, "val/loss": 3.1 - s / 100, "val/perplexity": 20.0 - s / 10}
             for s in (15, 30)]
    seen = {}
    import genlab.viz.report as report
    monkeypatch.setattr(report, "line_panels", lambda panels, path, title, xlabel: seen.update(
        panels=panels, xlabel=xlabel) or path)
    run = fake_run(tmp_path, rows, max_steps=30, eval_metrics={"loss": 2.5, "perplexity": 12.2})
    training_curves(run, tmp_path)
    assert seen["xlabel"] == "step"
    assert set(seen["panels"]) == {"loss", "perplexity"}
    steps, values = seen["panels"]["loss"]["series"]["train loss"]
    assert steps == [10, 20, 30] and values == pytest.approx([2.9, 2.8, 2.7])
    steps, values = seen["panels"]["loss"]["series"]["val loss"]
    assert steps == [15, 30] and values == pytest.approx([2.95, 2.8])
    assert seen["panels"]["perplexity"]["hlines"] == {"test perplexity 12.200": 12.2}


@pytest.mark.unit
def test_training_curves_of_an_epoch_run_average_each_epoch(tmp_path, monkeypatch):
    rows = [{"split": "train", "epoch": e, "step": s, "bpd": b} for e, s, b in
            ((0, 5, 4.0), (0, 10, 3.0), (1, 15, 2.0), (1, 20, 1.0))]
    rows += [{"split": "epoch", "epoch": e, "step": 10 * e, "val/elbo_bpd": v} for e, v in ((1, 3.1), (2, 1.6))]
    seen = {}
    import genlab.viz.report as report
    monkeypatch.setattr(report, "line_panels", lambda panels, path, title, xlabel: seen.update(
        panels=panels, xlabel=xlabel) or path)
    training_curves(fake_run(tmp_path, rows, eval_metrics={"elbo_bpd": 1.5}), tmp_path)
    assert seen["xlabel"] == "epoch"
    panel = seen["panels"]["bpd"]
    assert panel["series"]["train bpd"] == ([1, 2], [3.5, 1.5])          # epoch means, at the epoch's end
    assert panel["series"]["val elbo_bpd"] == ([1, 2], [3.1, 1.6])
    assert panel["hlines"] == {"test elbo_bpd 1.500": 1.5}
