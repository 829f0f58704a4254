"""The likelihood table's units (a uniform model lands at exactly log2 L bits/dim), its rows and notes, and
``experiment run all``: every experiment in its own folder, failures recorded, a summary table, a report."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import genlab
from genlab import catalog
from genlab.abilities import Samples
from genlab.errors import GenlabError
from genlab.experiments import report as xreport
from genlab.experiments.registry import Context, Experiment
from genlab.maths.densities import grey_levels
from genlab.model import GenerativeModel, ModelSpec


@dataclass
class UniformConfig:
    own_bpd: float | None = None     # a (wrong) bits/dim the model may claim beside its NLL


class Uniform(GenerativeModel):
    """P(x) = L^-D for every discrete image: NLL = D ln L nats, log2 L bits/dim, whatever x is."""

    def __init__(self, config: UniformConfig, data_info):
        super().__init__(config, data_info)
        self.anchor = nn.Parameter(torch.zeros(()))      # the trainer needs something to optimise
        self.levels = grey_levels(data_info)
        self.dims = math.prod(data_info.shape)

    def loss(self, batch, phase="main"):
        return self.anchor ** 2, {}

    def eval_metrics(self, batch, **options):
        nll = torch.full((len(batch[0]),), self.dims * math.log(self.levels), dtype=torch.float64)
        out = {"nll_nats": nll}
        if self.config.own_bpd is not None:
            out["bpd"] = torch.full_like(nll, self.config.own_bpd)
        return out


UNIFORM_ROW = xreport.Row("uniform", "uniform-test", "exact (uniform)", {}, {}, {}, {}, "none for this data")


@pytest.fixture
def uniform_model(monkeypatch):
    """Declare the uniform model for this test only (catalog entry and declaration both restored)."""
    monkeypatch.setitem(catalog.MODELS, "uniform-test", __name__)
    monkeypatch.setitem(catalog._REGISTRY["model"], "uniform-test",
                        ModelSpec("uniform-test", Uniform, UniformConfig, "uniform over grey levels", family="test",
                                  data_kinds=("image",)))


def train_uniform(tmp_path, data, **options):
    return genlab.train("uniform-test", data, tmp_path / f"uniform-{data}", report=False, max_steps=1,
                        batch_size=16, progress=False, view="continuous", **options)


@pytest.mark.unit
def test_uniform_model_is_8_bits_per_dim_on_8_bit_mnist(uniform_model, fake_mnist, tmp_path):
    run = train_uniform(tmp_path, "mnist", data_dir=str(fake_mnist))
    ctx = Context(tmp_path / "table", quick=False, data_dir=None, runs={"uniform": run})
    ctx.out.mkdir()
    summary = xreport.analyze_table(ctx, rows=[UNIFORM_ROW])
    row = summary["table"][0]
    assert (summary["data"], summary["grey_levels"], summary["uniform_bpd"]) == ("mnist", 256, 8.0)
    assert row["bpd"] == 8.0
    assert row["nll_nats"] == pytest.approx(784 * math.log(256), abs=1e-3)
    assert row["parameters"] == 1 and row["test_examples"] == 40 and "warning" not in row
    assert "| uniform | uniform-test | 8.000 |" in (ctx.out / "table.md").read_text()
    assert (ctx.out / "figures" / "likelihood_table.png").is_file()


@pytest.mark.unit
def test_uniform_model_is_log2_17_bits_per_dim_on_digits(uniform_model, tmp_path):
    run = train_uniform(tmp_path, "digits")
    ctx = Context(tmp_path / "table", quick=True, data_dir=None, runs={"uniform": run})
    ctx.out.mkdir()
    row = xreport.analyze_table(ctx, rows=[UNIFORM_ROW])["table"][0]
    assert row["bpd"] == pytest.approx(math.log2(17), abs=1e-4) and row["grey_levels"] == 17


class SamplingUniform(Uniform):
    """The uniform model that declares ``Samples``: draws every pixel uniformly from the 17 grey levels."""
    ABILITIES = frozenset({Samples})

    def sample(self, n: int) -> torch.Tensor:
        return torch.randint(0, self.levels, (n, *self.data_info.shape)).float() / (self.levels - 1)


@pytest.mark.unit
def test_the_samples_figure_has_a_labelled_row_per_family_that_samples(uniform_model, tmp_path, monkeypatch):
    """Only a model declaring ``Samples`` gets a row (its bits/dim and short estimate in the label), above
    a row of real test images; a table with no such model writes no figure."""
    run = train_uniform(tmp_path, "digits")
    ctx = Context(tmp_path / "plain", quick=True, data_dir=None, runs={"uniform": run})
    ctx.out.mkdir()
    assert "samples_figure" not in xreport.analyze_table(ctx, rows=[UNIFORM_ROW])
    labels = []
    monkeypatch.setattr("genlab.viz.figures.labelled_grid",
                        lambda images, path, **kw: labels.append((images.shape, kw["row_labels"])) or path)
    run.model.__class__ = SamplingUniform
    row = xreport.Row(*[getattr(UNIFORM_ROW, f) for f in ("name", "model", "estimate", "options", "quick",
                                                          "eval_options", "quick_eval_options", "reference")],
                      short="exact")
    ctx = Context(tmp_path / "sampling", quick=True, data_dir=None, runs={"uniform": run})
    ctx.out.mkdir()
    summary = xreport.analyze_table(ctx, rows=[row])
    assert summary["samples_figure"] == "figures/samples_side_by_side.png"
    [(shape, row_labels)] = labels
    assert tuple(shape) == (2 * xreport.SAMPLES_PER_ROW, 1, 8, 8)
    assert row_labels == ["uniform (uniform-test)\n4.09 bits/dim, exact", "test images\n(real data)"]


@pytest.mark.unit
def test_a_models_own_bpd_is_checked_and_a_missing_model_is_noted(uniform_model, tmp_path, monkeypatch):
    run = train_uniform(tmp_path, "digits", own_bpd=1.0)
    monkeypatch.delitem(catalog.MODELS, "ddpm", raising=False)
    missing = xreport.Row("diffusion", "ddpm", "variational bound", {}, {}, {}, {}, "none for this data")
    ctx = Context(tmp_path / "table", quick=True, data_dir=None, runs={"uniform": run})
    ctx.out.mkdir()
    first, second = xreport.analyze_table(ctx, rows=[UNIFORM_ROW, missing])["table"]
    assert first["bpd"] == pytest.approx(math.log2(17), abs=1e-4) and "disagrees" in first["warning"]
    assert second["bpd"] is None and second["note"].startswith("not available")
    assert [s.name for s in xreport.table_settings([UNIFORM_ROW, missing], quick=True)] == ["uniform"]


@pytest.mark.unit
def test_rows_on_different_grey_levels_are_refused(uniform_model, tmp_path):
    """Bits/dim of binary pixels (uniform: 1) and of the 17-level digits (uniform: 4.09) in one table are
    refused, in one line naming each row's levels; eval.json says the levels beside every bits/dim."""
    grey = train_uniform(tmp_path, "digits", own_bpd=math.log2(17))
    binary = genlab.train("uniform-test", "digits", tmp_path / "uniform-binary", report=False, max_steps=1,
                          batch_size=16, progress=False, view="binarized", own_bpd=1.0)
    assert genlab.evaluate(grey, extras=False)["metrics"].items() >= {"bpd_levels": 17, "uniform_bpd": 4.0875}.items()
    assert genlab.evaluate(binary, extras=False)["metrics"].items() >= {"bpd_levels": 2, "uniform_bpd": 1.0}.items()
    rows = [UNIFORM_ROW, xreport.Row("binary", "uniform-test", "exact (uniform)", {}, {}, {}, {}, "none")]
    ctx = Context(tmp_path / "table", quick=True, data_dir=None, runs={"uniform": grey, "binary": binary})
    ctx.out.mkdir()
    with pytest.raises(GenlabError, match=r"different grey levels \(uniform 17, binary 2\)"):
        xreport.analyze_table(ctx, rows=rows)
    ctx.runs["binary"] = grey                                   # the same levels: the table is made
    assert {t["grey_levels"] for t in xreport.analyze_table(ctx, rows=rows)["table"]} == {17}


@pytest.mark.unit
def test_table_rows_name_their_estimate_and_references():
    by_name = {r.name: r for r in xreport.ROWS}
    assert set(by_name) == {"vae", "flows", "diffusion", "pixelcnn"}
    assert "IWAE" in by_name["vae"].estimate and "exact" in by_name["pixelcnn"].estimate
    assert "variational bound" in by_name["diffusion"].estimate
    assert "1.06" in by_name["flows"].reference and "1.05" in by_name["flows"].reference
    for name in ("vae", "pixelcnn", "diffusion"):
        assert by_name[name].reference.startswith("none for this data")


@pytest.mark.slow
def test_quick_likelihood_table_beats_uniform(tmp_path):
    """The quick table on digits: VAE, flow and PixelCNN well below the uniform 4.09 bits/dim; the
    diffusion bound (when the model exists) a finite positive number (a quick run is too short to beat
    uniform, as the experiment's note says)."""
    summary = genlab.experiments.run_experiment("likelihood-table", tmp_path / "lt", quick=True)
    measured = [t for t in summary["table"] if t["bpd"] is not None]
    assert {t["model"] for t in measured} >= {"vae", "realnvp", "pixelcnn"}
    for t in measured:
        upper = 0.85 * math.log2(17) if t["model"] != "ddpm" else 16
        assert 0.5 < t["bpd"] < upper, t
        assert t["parameters"] > 0 and t["train_time_s"] > 0
        assert (tmp_path / "lt" / t["row"] / "eval.json").is_file()
    assert (tmp_path / "lt" / summary["samples_figure"]).is_file()
    assert summary["wall_time_s"] > 0   # quick runs are bounded by steps; time targets live in benchmarks


# ------------------------------------------------------------------ all
@pytest.fixture
def two_experiments(monkeypatch):
    """A failing and a passing experiment, declared for this test only."""
    def boom(ctx):
        raise RuntimeError("something broke")

    def tiny(ctx):
        return {"bpd": 1.5}
    for name, fn in (("boom", boom), ("tiny", tiny)):
        monkeypatch.setitem(catalog.EXPERIMENTS, name, "genlab.experiments.report")
        monkeypatch.setitem(catalog._REGISTRY["experiment"], name, Experiment(name, "test", name, analyze=fn))


@pytest.mark.unit
def test_all_records_a_failure_runs_the_rest_and_fails_at_the_end(two_experiments, tmp_path, capsys):
    from genlab.errors import GenlabError
    with pytest.raises(GenlabError, match=r"1 of 2 experiments crashed \(boom\)"):
        xreport.run_all(tmp_path / "all", quick=True, data_dir=None, only=["boom", "tiny"])
    table = (tmp_path / "all" / "summary.txt").read_text()
    assert "boom" in table and "crashed" in table and "bpd=1.5" in table and "1 crashed" in table
    assert table in capsys.readouterr().out
    assert json.loads((tmp_path / "all" / "tiny" / "summary.json").read_text())["bpd"] == 1.5
    index = (tmp_path / "all" / "report" / "index.html").read_text()
    assert "tiny" in index


@pytest.mark.unit
def test_all_rejects_unknown_names(tmp_path):
    with pytest.raises(genlab.errors.GenlabError, match="unknown experiment"):
        xreport.run_all(tmp_path, quick=True, data_dir=None, only=["no-such-experiment"])


@pytest.mark.unit
def test_key_number_prefers_well_known_metrics():
    assert xreport.key_number({"wall_time_s": 3.0, "steps": 10, "fid": 2.0}) == {"key": "fid", "value": 2.0}
    assert xreport.key_number({"results": [{"bpd": 1.2}]}) == {"key": "results.0.bpd", "value": 1.2}
    assert xreport.key_number({"z_dim": 20, "run": {"fid_local": 3.5}}) == {"key": "run.fid_local", "value": 3.5}
    assert xreport.key_number({"wall_time_s": 3.0, "train": {"lr": 0.1}, "pairs": 20}) == {"key": "pairs", "value": 20}
    assert xreport.key_number({"note": "text only", "quick": True}) == {}


@pytest.mark.unit
def test_each_row_is_named_after_its_models_family():
    from genlab import catalog
    assert [r.name for r in xreport.ROWS] == [catalog.family_of("model", r.model) for r in xreport.ROWS]
