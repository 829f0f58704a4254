"""Experiments as declarations (fast): every declared experiment is well-formed and its settings build
valid configs for their models, full and quick, without training; no experiment trains by hand; the
runner's per-run mechanisms (callbacks, step hooks, time budget, divergence) on tiny runs; output folders
are never taken from a user or a training run; the helpers the experiments share; the figure kit's
labelling and the training-curves key choice."""
import ast
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from genlab import catalog
from genlab.errors import ConfigError, GenlabError
from genlab.experiments.common import Both, Budget, budget_rows, snapshots, training_budget
from genlab.experiments.registry import Context, Experiment, Setting, list_experiments, run_experiment
from genlab.training.run import prepare
from genlab.training.rundir import RunDir
from genlab.viz.figures import integer_ticks, labelled_grid, line_panels, pyplot
from genlab.viz.report import curve_keys, training_curves

EXPERIMENTS = list_experiments()


SRC = Path(__file__).resolve().parents[1] / "src" / "genlab"
EXPERIMENT_MODULES = sorted(SRC.glob("families/*/experiments.py")) + [SRC / "experiments" / "report.py"]


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
            data, options = Context(Path("."), quick, None, experiment=exp).plan(s)
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
    plt = pyplot()
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


# ------------------------------------------------------------------ one dialect
@pytest.mark.unit
@pytest.mark.parametrize("path", EXPERIMENT_MODULES, ids=lambda p: p.parent.name)
def test_no_experiment_trains_by_hand_or_imports_private_helpers(path):
    """Runs are declared as settings; only the runner trains (no Trainer, no train(...) call), and no
    experiment imports a private name."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            assert not any(n.startswith("_") for n in names), f"{path}: imports private {names} from {node.module}"
            assert not (node.module or "").startswith("genlab.training.loop"), f"{path}: builds a Trainer"
            assert not (node.module == "genlab.api" and "train" in names), f"{path}: calls train by hand"
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            owner = (getattr(fn.value, "id", "<expr>") if isinstance(fn, ast.Attribute) else "")   # genlab.train
            assert name != "Trainer", f"{path}:{node.lineno}: builds a Trainer"
            assert not (name == "train" and owner in ("genlab", "api", "")), f"{path}:{node.lineno}: trains by hand"
        if isinstance(node, ast.IfExp):   # `a if ctx.quick else b`: declare Both(full=..., quick=...) instead
            test = node.test
            assert not (isinstance(test, ast.Attribute) and test.attr == "quick"), \
                f"{path}:{node.lineno}: an inline `if ctx.quick else`; declare a Both"


# ------------------------------------------------------------------ the runner's mechanisms, on tiny runs
TINY_VAE = {"hidden": (16,), "z_dim": 2, "batch_size": 64, "eval_every": 0, "log_every": 1, "progress": False}


@pytest.fixture
def declare_for_test(monkeypatch):
    """Declare experiments for one test only."""
    def add(exp: Experiment) -> Experiment:
        monkeypatch.setitem(catalog.EXPERIMENTS, exp.name, "genlab.experiments.report")
        monkeypatch.setitem(catalog._REGISTRY["experiment"], exp.name, exp)
        return exp
    return add


@pytest.mark.unit
def test_setting_callbacks_and_step_hooks_reach_only_their_run(declare_for_test, tmp_path):
    seen = {"a": [], "b": []}

    def analyze(ctx):
        return {"steps": {name: run.state.global_step for name, run in ctx.runs.items()}}
    declare_for_test(Experiment("test-hooks", "test", "per-setting callbacks and step hooks", analyze, runs=[
        Setting("a", "vae", TINY_VAE | {"max_steps": 3}, data="digits",
                callbacks=lambda ctx, s: [lambda t, event: seen[s.name].append(event)],
                step_hooks=lambda ctx, s: [lambda t: seen[s.name].append(t.state.global_step)]),
        Setting("b", "vae", TINY_VAE | {"max_steps": 2}, data="digits")]))
    summary = run_experiment("test-hooks", tmp_path / "out", quick=True)
    assert summary["steps"] == {"a": 3, "b": 2}
    assert seen == {"a": ["start", 1, 2, 3], "b": []}


@pytest.mark.unit
def test_a_diverged_setting_is_recorded_when_declared_and_fails_otherwise(declare_for_test, tmp_path):
    def poison(trainer):                      # NaN weights after step 2: the loss of step 3 is not finite
        if trainer.state.global_step == 2:
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.fill_(float("nan"))

    def analyze(ctx):
        return {"runs": sorted(ctx.runs), "diverged": sorted(ctx.diverged),
                "logged": RunDir(ctx.folder("bad")).metrics_jsonl.is_file()}
    settings = lambda may: [Setting("bad", "vae", TINY_VAE | {"max_steps": 6}, data="digits",  # noqa: E731
                                    step_hooks=lambda ctx, s: [poison], may_diverge=may),
                            Setting("good", "vae", TINY_VAE | {"max_steps": 2}, data="digits")]
    declare_for_test(Experiment("test-diverge", "test", "a diverging setting", analyze, runs=settings(True)))
    summary = run_experiment("test-diverge", tmp_path / "a", quick=True)
    assert summary["runs"] == ["good"] and summary["diverged"] == ["bad"] and summary["logged"]
    declare_for_test(Experiment("test-diverge-fatal", "test", "a diverging setting", analyze, runs=settings(False)))
    with pytest.raises(GenlabError, match="not finite"):
        run_experiment("test-diverge-fatal", tmp_path / "b", quick=True)


@pytest.mark.unit
def test_a_step_budget_stops_training_at_its_steps_and_logs_every_few(declare_for_test, tmp_path):
    measured = []

    def measure(trainer, data):
        measured.append(len(data))
        return {"examples": len(data)}
    budget = training_budget(Both(full=Budget(minutes=1.0, every=60.0), quick=Budget(steps=7, every=3)), measure)
    declare_for_test(Experiment(
        "test-steps", "test", "a step budget", lambda ctx: {"rows": budget_rows(ctx.runs["a"]),
                                                            "steps": ctx.runs["a"].state.global_step},
        runs=[Setting("a", "vae", TINY_VAE | {"max_steps": 100_000}, data="digits", step_hooks=budget)]))
    summary = run_experiment("test-steps", tmp_path / "out", quick=True)
    assert summary["steps"] == 7                                        # the same on a busy or an idle machine
    assert [r["step"] for r in summary["rows"]] == [3, 6, 7]
    assert all(n == measured[0] > 0 for n in measured)                  # the test split, each time


@pytest.mark.unit
def test_a_budget_is_steps_or_minutes():
    with pytest.raises(ValueError):
        Budget(every=1)
    with pytest.raises(ValueError):
        Budget(every=1, steps=3, minutes=1.0)


@pytest.mark.unit
def test_a_time_budget_stops_training_and_logs_its_measurements(declare_for_test, tmp_path):
    measured = []

    def measure(trainer, data):
        measured.append(len(data))
        return {"examples": len(data)}
    budget = training_budget(Both(full=Budget(minutes=1.0, every=60.0), quick=Budget(minutes=0.4 / 60, every=0.1)),
                             measure)
    declare_for_test(Experiment(
        "test-budget", "test", "a training-time budget", lambda ctx: {"rows": budget_rows(ctx.runs["a"]),
                                                                        "steps": ctx.runs["a"].state.global_step},
        runs=[Setting("a", "vae", TINY_VAE | {"max_steps": 100_000}, data="digits", step_hooks=budget)]))
    summary = run_experiment("test-budget", tmp_path / "out", quick=True)
    rows = summary["rows"]
    assert summary["steps"] < 100_000                                  # stopped by the budget
    assert len(rows) >= 2 and rows[-1]["train_wall_s"] >= 0.4 and rows[-1]["step"] == summary["steps"]
    assert [r["train_wall_s"] for r in rows] == sorted(r["train_wall_s"] for r in rows)
    assert all(r["examples"] == measured[0] for r in rows) and measured[0] > 0     # the test split, each time


# ------------------------------------------------------------------ output folders: nothing is lost
@pytest.mark.unit
def test_an_experiment_refuses_a_folder_with_a_users_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.json").write_text('{"my": "numbers"}\n')
    (out / "README.md").write_text("my notes\n")
    for overwrite in (False, True):
        with pytest.raises(GenlabError, match=f"{out}.*not this experiment's"):
            run_experiment("kl-check", out, quick=True, overwrite=overwrite)
    assert (out / "summary.json").read_text() == '{"my": "numbers"}\n' and (out / "README.md").read_text() == "my notes\n"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "summary.json"]


@pytest.mark.unit
def test_an_experiment_never_writes_into_a_training_run(tmp_path):
    import genlab
    run = tmp_path / "run"
    genlab.train("vae", "digits", run, report=False, **TINY_VAE | {"max_steps": 2})
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for overwrite in (False, True):
        with pytest.raises(GenlabError, match="a genlab training run"):
            run_experiment("kl-check", run, quick=True, overwrite=overwrite)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.unit
def test_an_experiment_replaces_its_own_output_only_with_overwrite(tmp_path):
    out = tmp_path / "kl"
    first = run_experiment("kl-check", out, quick=True)
    with pytest.raises(GenlabError, match="earlier output of kl-check; replace it with --overwrite"):
        run_experiment("kl-check", out, quick=True)
    with pytest.raises(GenlabError, match="the output of experiment kl-check"):
        run_experiment("diffusion-forward", out, quick=True, overwrite=True)
    (out / "stale.txt").write_text("from the first run")
    second = run_experiment("kl-check", out, quick=True, overwrite=True)
    assert not (out / "stale.txt").exists()                           # cleared first, then written anew
    assert second["experiment"] == first["experiment"] == "kl-check"
    assert json.loads((out / "experiment.json").read_text()) == {"experiment": "kl-check"}


@pytest.mark.unit
def test_default_experiment_folders_are_numbered(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_experiment("kl-check", quick=True)
    run_experiment("kl-check", quick=True)
    root = tmp_path / "runs" / "experiments"
    assert sorted(p.name for p in root.iterdir()) == ["kl-check", "kl-check-2"]
    assert all((root / n / "summary.json").is_file() for n in ("kl-check", "kl-check-2"))


@pytest.mark.unit
def test_the_cli_refuses_a_taken_folder_in_one_line(tmp_path, capsys):
    from genlab.cli import main
    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.json").write_text("{}\n")
    assert main(["experiment", "run", "kl-check", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "choose another --out" in err[0]
    assert (out / "summary.json").read_text() == "{}\n"
    own = tmp_path / "own"
    assert main(["experiment", "run", "kl-check", "--quick", "--out", str(own)]) == 0
    assert main(["experiment", "run", "kl-check", "--quick", "--out", str(own)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["experiment", "run", "kl-check", "--quick", "--out", str(own), "--overwrite"]) == 0


@pytest.mark.unit
def test_a_start_that_wrote_nothing_leaves_a_folder_it_may_use_again(declare_for_test, tmp_path):
    def fails(ctx):
        raise GenlabError("no data here")
    declare_for_test(Experiment("test-fails", "test", "fails before writing anything", fails))
    out = tmp_path / "out"
    for _ in range(2):     # the second start is not refused: the folder holds only the first one's marker
        with pytest.raises(GenlabError, match="no data here"):
            run_experiment("test-fails", out, quick=True)
    assert sorted(p.name for p in out.iterdir()) == ["experiment.json", "figures"]
    with pytest.raises(GenlabError, match="the output of experiment test-fails"):
        run_experiment("kl-check", out, quick=True)
