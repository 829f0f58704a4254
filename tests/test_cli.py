"""Every command of the CLI, in-process, on the bundled digits; the VAE family's --quick experiments."""
import json

import pytest

from genlab.cli import main

TINY = ["--epochs", "2", "--z-dim", "2", "--hidden", "32", "--no-progress", "--iwae-k", "5"]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vae"
    assert main(["train", "vae", "--data", "digits", "--out", str(out), *TINY]) == 0
    return out


@pytest.mark.unit
def test_train_writes_a_complete_run_folder(vae_run):
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "summary.json", "eval.json", "checkpoints/last.pt",
                 "figures/samples.png", "figures/reconstructions.png", "figures/latent_grid.png",
                 "figures/interpolation.png", "figures/training_curves.png"):
        assert (vae_run / name).exists(), name
    config = json.loads((vae_run / "config.json").read_text())
    assert config["model_config"]["z_dim"] == 2 and config["data_config"]["view"] == "binarized"


@pytest.mark.unit
def test_eval_json_is_deterministic_and_has_the_contract_keys(vae_run, capsys):
    outs = []
    for _ in range(2):
        assert main(["eval", str(vae_run), "--json", "--iwae-k", "20"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0] == {**outs[1], "eval_time_s": outs[0]["eval_time_s"]}
    m = outs[0]["metrics"]
    assert {"nll_nats", "elbo_nats", "bpd"} <= set(m)
    assert m["nll_nats"] <= -m["elbo_nats"] + 0.5   # IWAE is the tighter bound (up to MC noise)
    assert main(["eval", str(vae_run), "--json", "--seed", "3", "--iwae-k", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["nll_nats"] != m["nll_nats"]


@pytest.mark.unit
def test_sample_and_report(vae_run, capsys):
    assert main(["sample", str(vae_run), "-n", "16"]) == 0
    assert (vae_run / "samples" / "samples_16.png").exists()
    assert main(["report", str(vae_run)]) == 0
    assert "latent_grid.png" in capsys.readouterr().out


@pytest.mark.unit
def test_ae_trains_and_draws_its_latent_grid(tmp_path):
    assert main(["train", "ae", "--out", str(tmp_path / "ae"), *TINY[:-2]]) == 0
    assert (tmp_path / "ae" / "figures" / "latent_grid.png").exists()


@pytest.mark.slow
def test_categorical_cnn_vae_trains(tmp_path, capsys):
    out = tmp_path / "cat"
    assert main(["train", "vae", "--arch", "cnn", "--view", "quantized", "--levels", "16", "--channels", "8",
                 "--out", str(out), "--max-steps", "3", "--no-report", *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--json", "--iwae-k", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["bpd"] > 0


@pytest.mark.parametrize("argv,message", [
    (["train", "vae", "--z-dim", "0"], "z_dim must be positive"),
    (["train", "vae", "--data", "nope"], "unknown dataset 'nope'"),
    (["train", "vae", "--view", "quantized", "--likelihood", "bernoulli"], "Bernoulli likelihood needs"),
    (["eval", "no/such/run"], "not a genlab run folder"),
    (["experiment", "run", "nope"], "unknown experiment"),
])
@pytest.mark.unit
def test_bad_input_gets_a_clear_message_and_status_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.unit
def test_unknown_flag_and_model_are_rejected(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "vae", "--no-such-flag", "1"])
    assert e.value.code == 2 and "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    assert main(["train", "nope"]) == 2 and "unknown model 'nope'" in capsys.readouterr().err


@pytest.mark.unit
def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["train", "vae", "--help"])
    out = capsys.readouterr().out
    assert "--z-dim" in out and "--view" in out and "--epochs" in out and "--resume" in out
    assert main([]) == 0 and "experiment" in capsys.readouterr().out


@pytest.mark.unit
def test_experiment_list(capsys):
    assert main(["experiment", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("kl-check", "vae-sgvb-vs-analytic", "ae-mnist", "vae-interpolation", "vae-categorical-cnn",
                 "vae-bernoulli-mlp"):
        assert name in out


@pytest.mark.slow
@pytest.mark.parametrize("name,keys", [
    ("kl-check", {"analytic_kl", "mc_estimates"}),
    ("vae-sgvb-vs-analytic", {"sgvb", "analytic"}),
    ("ae-mnist", {"test"}),
    ("vae-interpolation", {"labels", "alphas", "mean_frame_change"}),
    ("vae-categorical-cnn", {"test_elbo_bpd_z20", "val_elbo_bpd_by_epoch", "test_z2"}),
    ("vae-bernoulli-mlp", {"reconstruction_epochs", "test"}),
])
def test_quick_vae_experiments(name, keys, tmp_path):
    assert main(["experiment", "run", name, "--quick", "--out", str(tmp_path / name)]) == 0
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert keys <= set(summary) and summary["quick"] is True
    assert list((tmp_path / name / "figures").rglob("*.png"))
    assert summary["verdict"] != "not shown", f"{name} --quick: {summary['measured']} ({summary['expected']})"
    if "test" in summary and "kl_nats" in summary["test"]:
        assert summary["test"]["kl_nats"] > 1.0       # the quick run does not collapse its posterior


@pytest.mark.unit
def test_resume_from_the_command_line_extends_a_run(vae_run, tmp_path, capsys):
    import shutil
    run = tmp_path / "more"
    shutil.copytree(vae_run, run)
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-report"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_done"] == 3
    assert json.loads((run / "config.json").read_text())["train_config"]["epochs"] == 3


@pytest.mark.unit
def test_an_interrupted_run_gets_its_curves_so_far(tmp_path, monkeypatch, capsys):
    import signal

    from genlab.training.loop import Trainer
    real = Trainer.train_step

    def step(self, batches):   # Ctrl-C during step 3
        logs = real(self, batches)
        if self.state.global_step == 2:
            signal.raise_signal(signal.SIGINT)
        return logs
    monkeypatch.setattr(Trainer, "train_step", step)
    out = tmp_path / "run"
    assert main(["train", "vae", "--data", "digits", "--out", str(out), "--log-every", "1",
                 *TINY]) == 130
    assert "curves so far" in capsys.readouterr().err
    assert (out / "figures" / "training_curves.png").exists() and not (out / "eval.json").exists()


@pytest.mark.unit
def test_the_translator_hint_is_a_sentence_in_the_runs_source_language():
    from types import SimpleNamespace

    from genlab.data.registry import DataInfo
    from genlab.families.translation.data import Multi30kConfig, SyntheticPairsConfig, synthetic_corpus
    from genlab.families.translation.model import example_sentence
    synthetic = example_sentence(SimpleNamespace(data_config=SyntheticPairsConfig(), data_info=None))
    words = {w.strip(".").lower() for s in synthetic_corpus(SyntheticPairsConfig())["train"][0] for w in s.split()}
    assert {w.strip(".").lower() for w in synthetic.split()} <= words       # the grammar's words only
    german = SimpleNamespace(data_config=Multi30kConfig(direction="de-en"),
                             data_info=DataInfo("pairs", (), extras={"src_lang": "de"}))
    assert example_sentence(german) == "Ein Mann fährt Fahrrad."
