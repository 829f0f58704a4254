"""The training loop: exact resume, Ctrl-C, NaN stops, atomic checkpoints, two-process DDP."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genlab
from genlab.errors import TrainingDiverged
from genlab.training import checkpoint, load_run, resume_run
from genlab.training.logger import read_jsonl

TINY = dict(epochs=4, z_dim=4, hidden=(32,), batch_size=128, log_every=3, progress=False, view="dynamic", report=False)


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def losses(run_dir):
    return [(r["step"], r["loss"]) for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if r.get("split") == "train"]


@pytest.mark.unit
def test_resume_after_an_epoch_equals_an_unbroken_run(tmp_path):
    full = genlab.train("vae", "digits", tmp_path / "full", **TINY)
    part = genlab.train("vae", "digits", tmp_path / "part", **TINY | {"epochs": 2})
    assert part.state.epoch == 2
    resumed = resume_run(tmp_path / "part", epochs=4)
    assert torch.equal(params(full.model), params(resumed.model))
    assert losses(tmp_path / "full") == losses(tmp_path / "part")


@pytest.mark.unit
def test_ctrl_c_mid_epoch_saves_and_resume_continues_exactly(tmp_path):
    full = genlab.train("vae", "digits", tmp_path / "full", **TINY)

    def interrupt(trainer, event):
        if event == "epoch" and trainer.state.epoch == 1:
            signal.raise_signal(signal.SIGINT)   # as if the user pressed Ctrl-C

    cut = genlab.train("vae", "digits", tmp_path / "cut", callbacks=[interrupt], **TINY)
    assert cut.state.interrupted and cut.state.epoch == 1 and cut.state.step_in_epoch == 1
    assert checkpoint.load(tmp_path / "cut" / "checkpoints" / "last.pt")["step_in_epoch"] == 1
    resumed = resume_run(tmp_path / "cut")
    assert torch.equal(params(full.model), params(resumed.model))
    assert losses(tmp_path / "full") == losses(tmp_path / "cut")


@pytest.mark.unit
def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    def poison(trainer, event):
        if event == "epoch" and trainer.state.epoch == 2:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="not finite.*last good checkpoint"):
        genlab.train("vae", "digits", tmp_path / "run", callbacks=[poison], **TINY)
    ckpt = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


@pytest.mark.unit
def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    checkpoint.save_atomic({"a": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        checkpoint.save_atomic({"a": torch.zeros(3)}, path)
    assert torch.equal(checkpoint.load(path)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


@pytest.mark.unit
def test_checkpoint_loading_refuses_pickled_code(tmp_path):
    import pickle
    bad = tmp_path / "evil.pt"

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    bad.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(genlab.errors.GenlabError, match="cannot read checkpoint"):
        checkpoint.load(bad)


@pytest.mark.unit
def test_two_optimizer_phases_are_stepped_in_order(tmp_path):
    """A model with two phases gets one optimizer each, with its own settings."""
    from genlab.families.vae.model import VAE

    class TwoPhase(VAE):
        def phases(self):
            return {"enc": list(self.encoder.parameters()),
                    "dec": {"params": list(self.decoder_net.parameters()), "lr": 0.0}}

        def loss(self, batch, phase="main"):
            return super().loss(batch)

    from genlab.data import load_dataset
    from genlab.families.vae.model import VAEConfig
    from genlab.training import TrainConfig, Trainer
    data = load_dataset("digits", "train", view="binarized")
    model = TwoPhase(VAEConfig(z_dim=2, hidden=(16,)), data.info)
    before = [p.clone() for p in model.decoder_net.parameters()]
    enc_before = params(model.encoder)
    trainer = Trainer(model, data, TrainConfig(epochs=1, progress=False))
    trainer.fit()
    assert set(trainer.optimizers) == {"enc", "dec"}
    assert all(torch.equal(a, b) for a, b in zip(before, model.decoder_net.parameters()))   # lr 0
    assert not torch.equal(enc_before, params(model.encoder))


def _torchrun(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "genlab", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_process_ddp_run(tmp_path):
    args = ["train", "vae", "--data", "digits", "--epochs", "2", "--z-dim", "4", "--hidden", "32",
            "--batch-size", "64", "--no-progress", "--out", str(tmp_path / "ddp")]
    proc = _torchrun(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = load_run(tmp_path / "ddp")
    assert run.state["epoch"] == 2
    # each of the 2 ranks takes 1257 // 2 = 628 examples per epoch in batches of 64: 10 steps
    assert run.state["global_step"] == 20
    assert json.loads((tmp_path / "ddp" / "eval.json").read_text())["metrics"]["nll_nats"] > 0


@pytest.mark.unit
def test_resume_applies_a_changed_learning_rate(tmp_path):
    genlab.train("vae", "digits", tmp_path / "run", **TINY | {"epochs": 1})
    seen = {}

    def spy(trainer, event):
        seen["lr"] = [g["lr"] for o in trainer.optimizers.values() for g in o.param_groups]
    resume_run(tmp_path / "run", callbacks=[spy], epochs=2, lr=1e-4)
    assert seen["lr"] == [1e-4]


# ----------------------------------------------------------------- epochs of different lengths (issue 25)
BUDGET = dict(data_options=dict(n_train=210, n_val=8, n_test=8, vocab_size=120, max_len=32, max_tokens=120),
              model_options=dict(d_model=16, heads=2, layers=1, mlp_ratio=2.0),
              train_options=dict(epochs=2, batch_size=2, schedule="warmup-cosine", warmup_steps=10,
                                 eval_every=0, log_every=40, progress=False))


def _budget_source():
    from types import SimpleNamespace

    from genlab.data import load_dataset
    data = load_dataset("synthetic-pairs", "train", **BUDGET["data_options"])
    return data.train_batches(2, 0, SimpleNamespace(rank=0, world_size=1))


@pytest.mark.unit
def test_a_token_budget_gives_epochs_of_different_lengths_and_each_is_trained_to_its_end(tmp_path):
    """Under a token budget each epoch's shuffle groups the lengths differently, so epochs differ in
    length (here 126 and 125 batches); the loop walks each epoch to its own end. It once took epoch
    0's length for every epoch and ran past the end of a shorter one (IndexError)."""
    source = _budget_source()
    lengths = [source.steps_in(e) for e in range(2)]
    assert lengths[0] != lengths[1], "the data no longer makes epochs of different lengths; pick others"
    seen = []
    trainer_seen = {}

    def spy(trainer):
        trainer_seen["total"] = trainer.total_steps
        seen.append((trainer.state.epoch, trainer.state.step_in_epoch))
    run = genlab.train("translator", "synthetic-pairs", tmp_path / "run", step_hooks=[spy], report=False, **BUDGET)
    assert run.state.epoch == 2 and run.state.global_step == sum(lengths) == trainer_seen["total"]
    assert [s for e, s in seen if e == 0] == list(range(1, lengths[0] + 1))
    assert [s for e, s in seen if e == 1] == list(range(1, lengths[1] + 1))


@pytest.mark.slow
def test_mid_epoch_resume_of_a_token_budget_run_is_exact(tmp_path):
    """Ctrl-C in the second (shorter) epoch, then resume: the same parameters, bit for bit, and the
    same losses as an unbroken run (the cosine schedule's length is the sum of the epochs' lengths)."""
    full = genlab.train("translator", "synthetic-pairs", tmp_path / "full", report=False, **BUDGET)
    cut_at = _budget_source().steps_in(0) + 60

    def interrupt(trainer):
        if trainer.state.global_step == cut_at:
            signal.raise_signal(signal.SIGINT)
    cut = genlab.train("translator", "synthetic-pairs", tmp_path / "cut", step_hooks=[interrupt], report=False,
                       **BUDGET)
    assert cut.state.interrupted and cut.state.epoch == 1 and cut.state.step_in_epoch == 60
    resumed = resume_run(tmp_path / "cut")
    assert resumed.state.global_step == full.state.global_step
    assert torch.equal(params(full.model), params(resumed.model))
    assert losses(tmp_path / "full") == losses(tmp_path / "cut")


# ----------------------------------------------------------------- two-process resume (issue 25)
DRIVER = '''
import os, signal, sys
from pathlib import Path
from genlab.cli import main
from genlab.training import loop

CUT_AT = int(os.environ.get("CUT_AT", "0"))
step = loop.Trainer.train_step


def train_step(self, batches):
    logs = step(self, batches)
    if CUT_AT and self.dist.rank == 0 and self.state.global_step + 1 == CUT_AT:
        os.kill(os.getppid(), signal.SIGINT)   # Ctrl-C reaches the launcher (workers run in their own sessions)
    return logs


loop.Trainer.train_step = train_step
code = main(sys.argv[1:])
Path(os.environ["EXIT_DIR"], "rank" + os.environ["RANK"]).write_text(str(code))
sys.exit(code)
'''
TWO_RANKS = {
    "gpt": ["gpt", "--dropout", "0.1", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
            "--words", "1000"],
    "ddpm": ["ddpm", "--channels", "8", "--mults", "1", "2", "--timesteps", "20", "--sample-steps", "3"],
}


def _torchrun_driver(tmp_path, args, cut_at=0):
    exits = tmp_path / f"exits-{cut_at}-{len(list(tmp_path.iterdir()))}"
    exits.mkdir()
    (tmp_path / "driver.py").write_text(DRIVER)
    env = dict(os.environ, OMP_NUM_THREADS="1", CUT_AT=str(cut_at), EXIT_DIR=str(exits))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(tmp_path / "driver.py"), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, start_new_session=True)   # the Ctrl-C stays in its group
    return proc, {p.name: int(p.read_text()) for p in exits.iterdir()}


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(TWO_RANKS))
def test_two_process_ctrl_c_and_resume_equal_an_unbroken_run(model, tmp_path):
    """Dropout (gpt) and diffusion noise (ddpm) draw from each rank's own generator: the checkpoint
    keeps every rank's, so a resume after Ctrl-C under torchrun gives the same weights, bit for bit."""
    train = ["train", *TWO_RANKS[model], "--batch-size", "8", "--max-steps", "20", "--eval-every", "0",
             "--log-every", "1", "--no-progress", "--no-report"]
    proc, exits = _torchrun_driver(tmp_path, [*train, "--out", str(tmp_path / "full")])
    assert proc.returncode == 0 and exits == {"rank0": 0, "rank1": 0}, proc.stderr[-3000:]
    proc, exits = _torchrun_driver(tmp_path, [*train, "--out", str(tmp_path / "cut")], cut_at=8)
    assert exits == {"rank0": 130, "rank1": 130}, proc.stderr[-3000:]   # saved, then 130
    assert proc.returncode != 0 and proc.stderr.count("interrupted at epoch") == 1   # torch's launcher: 1
    ckpt = checkpoint.load(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert 8 <= ckpt["global_step"] < 20 and len(ckpt["rng"]) == 2
    assert not torch.equal(ckpt["rng"][0]["cpu"], ckpt["rng"][1]["cpu"])   # each rank its own stream
    proc, exits = _torchrun_driver(tmp_path, ["train", "--resume", str(tmp_path / "cut"), "--no-report"])
    assert proc.returncode == 0 and exits == {"rank0": 0, "rank1": 0}, proc.stderr[-3000:]
    full = checkpoint.load(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    resumed = checkpoint.load(tmp_path / "cut" / "checkpoints" / "last.pt")["model"]
    assert full.keys() == resumed.keys()
    assert [k for k in full if not torch.equal(full[k], resumed[k])] == []
    assert losses(tmp_path / "full") == losses(tmp_path / "cut")
