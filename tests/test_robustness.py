"""Issue 9, "Nothing lost, no traceback": every ordinary mistake, interruption and damaged file ends
with one line and exit status 2 (Ctrl-C 130, SIGTERM 143), and nothing a user made is overwritten.

Most cases run the CLI in-process (``genlab.cli.main``) on a tiny VAE on the bundled digits; cases that
need real signals, pipes or ``torchrun`` run it in a subprocess and are marked slow.
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import genlab
from genlab.cli import main
from genlab.errors import DataError
from genlab.training import checkpoint
from genlab.training.logger import read_jsonl
from genlab.training.rundir import RunDir, dumps, write_json_atomic

TINY = ["--hidden", "32", "--z-dim", "2", "--batch-size", "256", "--no-progress"]
ONE_EPOCH = ["--epochs", "1", *TINY]


# ----------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 1-epoch VAE run (5 steps), trained by `genlab train` without the report."""
    out = tmp_path_factory.mktemp("runs") / "vae"
    assert main(["train", "vae", "--out", str(out), "--no-report", *ONE_EPOCH]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    """A private copy of the trained run."""
    dest = tmp_path / "run"
    shutil.copytree(trained, dest)
    return dest


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(capsys, *needles: str) -> str:
    """The command's stderr is one line (no traceback) holding every needle."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def strict(text: str):
    return json.loads(text, parse_constant=_reject_constant)


def _cli(*args, **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "genlab", *args], env=env, text=True, **kw)


# ----------------------------------------------------------------- run folders are never lost
@pytest.mark.unit
def test_a_folder_that_holds_a_run_is_refused_and_left_untouched(run, capsys):
    before = snapshot(run)
    assert main(["train", "vae", "--out", str(run), *ONE_EPOCH]) == 2
    one_line(capsys, "already holds a genlab run", f"genlab train --resume {run}", "--overwrite")
    assert main(["train", "gan", "--out", str(run), "--max-steps", "1", "--no-progress"]) == 2   # another family
    one_line(capsys, "already holds a genlab run")
    assert snapshot(run) == before


@pytest.mark.unit
def test_overwrite_starts_a_clean_run(run):
    assert main(["train", "vae", "--out", str(run), "--overwrite", "--max-steps", "2", "--no-report", *TINY]) == 0
    rows = read_jsonl(run / "metrics.jsonl")
    assert rows and max(r["step"] for r in rows) == 2          # no rows of the old run
    assert json.loads((run / "summary.json").read_text())["steps"] == 2
    assert json.loads((run / "config.json").read_text())["train_config"]["max_steps"] == 2


@pytest.mark.unit
def test_overwrite_never_replaces_a_folder_that_is_not_a_run(tmp_path, capsys):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    assert main(["train", "vae", "--out", str(mine), "--overwrite", *ONE_EPOCH]) == 2
    one_line(capsys, "not a genlab run", "Choose another --out")
    assert [p.name for p in mine.iterdir()] == ["chapter1.tex"]


@pytest.mark.unit
def test_default_run_folders_are_numbered_and_never_collide(tmp_path):
    args = ["train", "vae", "--max-steps", "1", "--no-report", *TINY]
    assert main(args) == 0
    first = snapshot(tmp_path / "runs" / "vae-digits")
    assert main(args) == 0
    assert (tmp_path / "runs" / "vae-digits-2" / "config.json").exists()
    assert snapshot(tmp_path / "runs" / "vae-digits") == first


@pytest.mark.unit
def test_rejected_settings_write_nothing(tmp_path, run, capsys):
    out = tmp_path / "new"
    assert main(["train", "vae", "--z-dim", "0", "--out", str(out), *TINY[:2]]) == 2
    one_line(capsys, "z_dim must be positive")
    assert not out.exists()
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--lr", "-1"]) == 2
    one_line(capsys, "lr must be positive")
    assert main(["train", "--resume", str(run), "--z-dim", "3"]) == 2   # model settings are the run's own
    one_line(capsys, "only training flags")
    assert snapshot(run) == before


@pytest.mark.unit
def test_a_corrupt_test_file_stops_the_run_before_the_first_step(fake_mnist, tmp_path, capsys):
    bad = fake_mnist / "mnist" / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-4])
    out = tmp_path / "new"
    assert main(["train", "vae", "--data", "mnist", "--data-dir", str(fake_mnist), "--out", str(out),
                 *ONE_EPOCH]) == 2
    one_line(capsys, "t10k-labels-idx1-ubyte.gz")
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints" / "last.pt").exists()


@pytest.mark.unit
def test_a_start_that_failed_leaves_the_folder_usable(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["train", "vae", "--data", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out", str(out),
                 *ONE_EPOCH]) == 2
    one_line(capsys, "does not exist")
    assert main(["train", "vae", "--out", str(out), "--max-steps", "1", "--no-report", *TINY]) == 0


@pytest.mark.unit
def test_resume_with_nothing_to_do_says_so_and_changes_nothing(run, capsys):
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--max-steps", "2"]) == 0
    assert "is already at step 5 of 2: nothing to do" in capsys.readouterr().out
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 0
    assert "already at epoch 1 of 1: nothing to do" in capsys.readouterr().out
    assert snapshot(run) == before


def _poison(monkeypatch, after: int = 0):
    """Make every training step after ``after`` report a NaN loss."""
    from genlab.training.loop import Trainer
    real = Trainer.train_step

    def step(self, batches):
        logs = real(self, batches)
        if self.state.global_step >= after:
            logs["loss"] = torch.tensor(float("nan"))
        return logs
    monkeypatch.setattr(Trainer, "train_step", step)


@pytest.mark.unit
def test_a_resume_that_diverges_keeps_config_and_checkpoint_and_says_where_it_is(run, monkeypatch, capsys):
    config, ckpt = (run / "config.json").read_bytes(), (run / "checkpoints" / "last.pt").read_bytes()
    _poison(monkeypatch)
    assert main(["train", "--resume", str(run), "--epochs", "3", "--lr", "1e6"]) == 2
    one_line(capsys, "not finite", f"the last good checkpoint is {run / 'checkpoints' / 'last.pt'}")
    assert (run / "config.json").read_bytes() == config                 # the rejected --lr was not written
    assert (run / "checkpoints" / "last.pt").read_bytes() == ckpt
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"


@pytest.mark.unit
def test_nan_before_any_checkpoint_says_there_is_none(tmp_path, monkeypatch, capsys):
    _poison(monkeypatch)
    out = tmp_path / "new"
    assert main(["train", "vae", "--out", str(out), *ONE_EPOCH]) == 2
    line = one_line(capsys, "not finite", "no checkpoint had been written yet")
    assert "last good checkpoint" not in line and not (out / "checkpoints" / "last.pt").exists()


@pytest.mark.unit
def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path, monkeypatch, capsys):
    from genlab.training.loop import Trainer
    real = Trainer.train_step

    def step(self, batches):   # as if a scheduler (or `timeout`) sent SIGTERM during step 3
        logs = real(self, batches)
        if self.state.global_step == 2:
            signal.raise_signal(signal.SIGTERM)
        return logs
    monkeypatch.setattr(Trainer, "train_step", step)
    out = tmp_path / "new"
    assert main(["train", "vae", "--out", str(out), "--epochs", "2", *TINY]) == 143
    assert "genlab train --resume" in capsys.readouterr().err
    assert checkpoint.load(out / "checkpoints" / "last.pt")["global_step"] == 3
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    assert not (out / "eval.json").exists()
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--no-report"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 10


@pytest.mark.slow
def test_a_real_sigterm_from_outside_saves_and_exits_143(tmp_path):
    out = tmp_path / "run"
    proc = _cli("train", "vae", "--epochs", "500", "--out", str(out), "--no-report", *TINY,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "genlab train --resume" in err
    assert checkpoint.load(out / "checkpoints" / "last.pt")["global_step"] >= 1
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"


# ----------------------------------------------------------------- where a run goes
@pytest.mark.unit
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_out_under_proc_is_one_line(tmp_path, capsys):
    assert main(["train", "vae", "--out", "/proc/genlab-run", *ONE_EPOCH]) == 2
    one_line(capsys, "cannot write to /proc/genlab-run", "choose another --out")


@pytest.mark.unit
def test_out_on_an_existing_file_is_refused_and_the_file_kept(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert main(["train", "vae", "--out", str(f), *ONE_EPOCH]) == 2
    one_line(capsys, "is a file, not a folder")
    assert f.read_text() == "mine"


@pytest.mark.unit
def test_out_in_a_read_only_folder_is_one_line(tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):   # root ignores permissions: make the file system refuse instead
        real = Path.mkdir

        def mkdir(self, *a, **kw):
            if str(self).startswith(str(ro)):
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real(self, *a, **kw)
        monkeypatch.setattr(Path, "mkdir", mkdir)
    try:
        assert main(["train", "vae", "--out", str(ro / "run"), *ONE_EPOCH]) == 2
        one_line(capsys, f"cannot write to {ro / 'run'}", "Permission denied", "choose another --out")
    finally:
        ro.chmod(0o755)


def _full_disk(monkeypatch):
    def save(obj, f, *a, **kw):
        f.write(b"the first few bytes")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", save)


@pytest.mark.unit
def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(run, monkeypatch, capsys):
    before = (run / "checkpoints" / "last.pt").read_bytes()
    config = (run / "config.json").read_bytes()
    _full_disk(monkeypatch)
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    one_line(capsys, "cannot write checkpoint", "No space left on device",
             f"the previous checkpoint {run / 'checkpoints' / 'last.pt'} is kept", f"genlab train --resume {run}")
    monkeypatch.undo()
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert checkpoint.load(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.pt"]   # no half-written temp file
    assert (run / "config.json").read_bytes() == config


@pytest.mark.unit
def test_a_full_disk_on_a_new_run_says_no_checkpoint_was_written(tmp_path, monkeypatch, capsys):
    _full_disk(monkeypatch)
    assert main(["train", "vae", "--out", str(tmp_path / "new"), *ONE_EPOCH]) == 2
    one_line(capsys, "No space left on device", "no checkpoint had been written yet")


@pytest.mark.unit
def test_a_full_disk_anywhere_else_is_one_line(run, monkeypatch, capsys):
    from genlab.training.logger import MetricsLogger

    def log(self, row):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.jsonl))
    monkeypatch.setattr(MetricsLogger, "log", log)
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    one_line(capsys, "metrics.jsonl: No space left on device", "free some space")
    assert checkpoint.load(run / "checkpoints" / "last.pt")["epoch"] == 1


# ----------------------------------------------------------------- devices and values that mean nothing
@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("device,message", [("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                                            ("mps", "MPS is not available"), ("gpu", "unknown device 'gpu'")])
@pytest.mark.unit
def test_an_unavailable_device_is_one_line_naming_what_is_available(device, message, run, tmp_path,
                                                                    no_accelerator, capsys):
    out = tmp_path / "new"
    assert main(["train", "vae", "--device", device, "--out", str(out), *ONE_EPOCH]) == 2
    one_line(capsys, message, "available here: cpu")
    assert not out.exists()
    for command in (["eval", str(run)], ["sample", str(run)]):
        assert main([*command, "--device", device]) == 2
        one_line(capsys, message, "available here: cpu")


@pytest.mark.parametrize("argv,message", [
    (["sample", "RUN", "-n", "0"], "-n must be a positive number of samples, got 0"),
    (["sample", "RUN", "-n", "-5"], "-n must be a positive number of samples, got -5"),
    (["eval", "RUN", "--limit", "0"], "--limit must be a positive number of examples, got 0"),
    (["eval", "RUN", "--limit", "-3"], "--limit must be a positive number of examples, got -3"),
    (["train", "gan", "--resume", "RUN"], "is a vae run, not gan; resume it with `genlab train --resume"),
    (["eval", "RUN", "--split", "dev"], "invalid choice: 'dev'"),
])
@pytest.mark.unit
def test_values_that_mean_nothing_are_refused(argv, message, run, capsys):
    before = snapshot(run)
    argv = [str(run) if a == "RUN" else a for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:   # argparse's own refusals
        code = e.code
    assert code == 2
    one_line(capsys, message)
    assert snapshot(run) == before


@pytest.mark.parametrize("model,flag", [
    ("vae", "--hidden"), ("vae", "--channels"), ("ae", "--hidden"), ("ae", "--channels"),
    ("aae", "--hidden"), ("aae", "--disc-hidden"), ("aae", "--channels"), ("gan", "--hidden"),
    ("gan", "--channels"), ("vae", "--z-dim"), ("realnvp", "--channels"), ("cnf", "--hidden")])
@pytest.mark.unit
@pytest.mark.parametrize("value", ["0", "-4"])
def test_non_positive_sizes_are_refused(model, flag, value, tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["train", model, flag, value, "--out", str(out), "--max-steps", "1", "--no-progress"]) == 2
    one_line(capsys, "must be positive")
    assert not out.exists()


# ----------------------------------------------------------------- hand-edited or damaged run files
def _edit(run: Path, how: str) -> None:
    cfg = json.loads((run / "config.json").read_text())
    if how == "shapes":
        cfg["model_config"]["z_dim"] = 5
    elif how == "hidden":
        cfg["model_config"]["hidden"] = [64]
    elif how == "no_model":
        del cfg["model"]
    elif how == "null_train_config":
        cfg["train_config"] = None
    elif how == "config_as_text":
        cfg["model_config"] = "z_dim=2"
    elif how == "unknown_model":
        cfg["model"] = "vea"
    elif how == "not_json":
        (run / "config.json").write_text('{"model": "vae",')
        return
    (run / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("how,message", [
    ("shapes", "does not match the model that"), ("hidden", "does not match the model that"),
    ("no_model", "'model' entry is missing"), ("null_train_config", "'train_config' entry is missing"),
    ("config_as_text", "'model_config' entry is missing"), ("unknown_model", "unknown model 'vea'"),
    ("not_json", "not valid JSON")])
@pytest.mark.unit
@pytest.mark.parametrize("command", ["eval", "sample", "report", "resume"])
def test_a_hand_edited_config_is_one_line_for_every_command(how, message, command, run, capsys):
    _edit(run, how)
    before = snapshot(run)
    argv = {"eval": ["eval", str(run), "--no-fid"], "sample": ["sample", str(run)], "report": ["report", str(run)],
            "resume": ["train", "--resume", str(run), "--epochs", "2", "--no-report"]}[command]
    assert main(argv) == 2
    one_line(capsys, message)
    assert snapshot(run) == before


def _evil_pickle(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    return pickle.dumps({"model": Evil()})


@pytest.mark.parametrize("content,message", [
    ("empty", "damaged or not a genlab checkpoint"), ("text", "damaged or not a genlab checkpoint"),
    ("cut", "damaged or not a genlab checkpoint"), ("zip_junk", "damaged or not a genlab checkpoint"),
    ("pickle_with_code", "not a genlab checkpoint"), ("other_torch_file", "not a genlab checkpoint"),
    ("folder", "is a folder, not a checkpoint file")])
@pytest.mark.unit
def test_checkpoint_errors_never_echo_torch_or_suggest_unpickling(content, message, run, tmp_path, capsys):
    path = run / "checkpoints" / "last.pt"
    marker = tmp_path / "pwned"
    good = path.read_bytes()
    path.unlink()
    if content == "folder":
        path.mkdir()
    elif content == "other_torch_file":
        torch.save({"weights": torch.ones(3)}, path)
    else:
        path.write_bytes({"empty": b"", "text": b"hello, not a checkpoint\n", "cut": good[: len(good) // 2],
                          "zip_junk": b"PK\x03\x04" + b"junk" * 100, "pickle_with_code": _evil_pickle(marker)}[content])
    for argv in (["eval", str(run), "--no-fid"], ["sample", str(run)],
                 ["train", "--resume", str(run), "--epochs", "2", "--no-report"]):
        assert main(argv) == 2
        line = one_line(capsys, message, str(path))
        assert "weights_only" not in line and "torch.load" not in line and "UnpicklingError" not in line
    assert not marker.exists()     # the pickled code never ran


@pytest.mark.unit
def test_a_metrics_line_cut_short_by_a_kill_or_full_disk_is_dropped_on_resume(run, capsys):
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"split": "train", "ep')            # no newline: the write was cut short
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-report"]) == 0
    rows = [strict(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["split"] == "epoch"] == [1, 2]


@pytest.mark.unit
def test_a_hand_damaged_metrics_line_is_one_line(run, capsys):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0][:-3], *lines[1:]]) + "\n")
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-report"]) == 2
    one_line(capsys, "metrics.jsonl: line 1 is not valid JSON")


@pytest.mark.parametrize("out,message", [("RUN", "is a folder; name a file"),
                                         ("/nonexistent-dir/s.png", "does not exist"),
                                         ("RUN/samples/s.xyz", "name a .png file")])
@pytest.mark.unit
def test_sample_out_that_cannot_be_written_is_one_line(out, message, run, capsys):
    before = snapshot(run)
    assert main(["sample", str(run), "-n", "4", "--out", out.replace("RUN", str(run))]) == 2
    one_line(capsys, message)
    assert snapshot(run) == before


# ----------------------------------------------------------------- interruptions, pipes, eval options
@pytest.mark.unit
def test_ctrl_c_during_eval_is_one_line_and_130(run, monkeypatch, capsys):
    ev = sys.modules["genlab.eval.evaluate"]   # (the package's `evaluate` is the function)

    def interrupted(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(ev, "evaluate_model", interrupted)
    before = snapshot(run)
    assert main(["eval", str(run), "--no-fid"]) == 130
    one_line(capsys, "interrupted")
    assert snapshot(run) == before


@pytest.mark.slow
def test_a_closed_pipe_is_not_an_error(trained, tmp_path):
    """`genlab eval RUN --json | head -c 1`: the reader is gone before genlab writes."""
    proc = _cli("eval", str(trained), "--json", "--no-fid", "--iwae-k", "2",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err


@pytest.mark.unit
def test_no_fid_skips_fid(run, capsys):
    assert main(["eval", str(run), "--json", "--no-fid", "--iwae-k", "2"]) == 0
    metrics = strict(capsys.readouterr().out)["metrics"]
    assert "nll_nats" in metrics and not any(k.startswith("fid") for k in metrics)


@pytest.mark.unit
def test_eval_and_sample_find_data_that_moved(fake_mnist, tmp_path, monkeypatch, capsys):
    out = tmp_path / "mnist-run"
    assert main(["train", "vae", "--data", "mnist", "--data-dir", str(fake_mnist), "--out", str(out),
                 "--max-steps", "1", "--no-report", *TINY]) == 0
    moved = tmp_path / "moved"
    shutil.move(str(fake_mnist), moved)
    eval_args = ["eval", str(out), "--json", "--no-fid", "--iwae-k", "2"]
    assert main(eval_args) == 2
    one_line(capsys, "does not exist", "--data-dir or GENLAB_DATA")
    assert main([*eval_args, "--data-dir", str(moved)]) == 0
    assert strict(capsys.readouterr().out)["examples"] == 40
    monkeypatch.setenv("GENLAB_DATA", str(moved))
    assert main(eval_args) == 0
    assert strict(capsys.readouterr().out)["examples"] == 40
    assert main(["sample", str(out), "-n", "4", "--data-dir", str(moved)]) == 0


# ----------------------------------------------------------------- torchrun
@pytest.mark.unit
def test_under_torchrun_only_rank_0_prints_and_every_rank_tells_the_launcher(tmp_path, monkeypatch, capsys):
    error_file = tmp_path / "error.json"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    for rank, printed in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) as e:   # a bad flag
            main(["train", "vae", "--hidden", "0x"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert ("invalid int value: '0x'" in err) is printed and "Traceback" not in err
        assert "invalid int value: '0x'" in strict(error_file.read_text())["message"]["message"]
        error_file.unlink()
        assert main(["train", "vae", "--z-dim", "0"]) == 2   # a bad value
        assert ("z_dim must be positive" in capsys.readouterr().err) is printed
        assert "z_dim must be positive" in strict(error_file.read_text())["message"]["extraInfo"]["py_callstack"]


@pytest.mark.unit
def test_under_torchrun_every_rank_refuses_a_taken_folder_by_itself(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    before = snapshot(run)
    assert main(["train", "vae", "--out", str(run), *ONE_EPOCH]) == 2   # returns before joining the group
    assert capsys.readouterr().err == ""
    assert snapshot(run) == before
    fresh = tmp_path / "fresh"   # what rank 0 may already have made does not count
    RunDir(fresh).ensure_layout()
    RunDir(fresh).check_new()


@pytest.mark.slow
def test_torchrun_with_a_taken_folder_shows_genlabs_line_first_and_as_the_root_cause(run, tmp_path):
    before = snapshot(run)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "genlab", "train", "vae", "--out", str(run), *ONE_EPOCH],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("genlab: error:") and "already holds a genlab run" in lines[0], proc.stderr
    assert sum(ln.startswith("genlab: error:") for ln in lines) == 1    # rank 0 alone printed it
    root = proc.stderr[proc.stderr.index("Root Cause"):]
    assert "exitcode  : 2" in root and "already holds a genlab run" in root
    assert "To enable traceback" not in root
    assert snapshot(run) == before


# ----------------------------------------------------------------- output a machine can read
@pytest.mark.unit
def test_strict_json_writers_turn_non_finite_numbers_into_null(tmp_path):
    obj = {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": torch.tensor(float("nan")), "d": 2}
    assert strict(dumps(obj)) == {"a": None, "b": [None, None, 1.5], "c": None, "d": 2}
    write_json_atomic(tmp_path / "x.json", obj)
    assert strict((tmp_path / "x.json").read_text())["b"] == [None, None, 1.5]


def _json_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file())


def _check_strict(files: list[Path]) -> None:
    assert files
    for p in files:
        text = p.read_text()
        docs = [ln for ln in text.splitlines() if ln.strip()] if p.suffix == ".jsonl" else [text]
        for doc in docs:
            try:
                strict(doc)
            except ValueError as e:
                raise AssertionError(f"{p} is not strict JSON: {e}") from None


@pytest.mark.slow
def test_every_json_file_genlab_writes_is_strict_json(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "vae", "--out", str(out), "--iwae-k", "2", "--no-fid", *ONE_EPOCH]) == 0
    printed = capsys.readouterr().out
    assert not any(k.startswith("fid") for k in strict((out / "eval.json").read_text())["metrics"])   # --no-fid
    next_lines = printed[printed.index("next:"):].splitlines()[1:4]        # one command a line, no pipes
    assert [ln.split()[:2] for ln in next_lines] == [["genlab", "eval"], ["genlab", "sample"], ["genlab", "report"]]
    assert not any("|" in ln for ln in next_lines)
    assert main(["eval", str(out), "--json", "--no-fid", "--iwae-k", "2"]) == 0
    strict(capsys.readouterr().out)
    assert main(["experiment", "run", "kl-check", "--quick", "--out", str(tmp_path / "kl")]) == 0
    strict(capsys.readouterr().out)
    files = _json_files(tmp_path)
    assert {"config.json", "summary.json", "eval.json", "metrics.jsonl"} <= {p.name for p in files}
    assert any(p.is_relative_to(tmp_path / "kl") for p in files)
    _check_strict(files)


# ----------------------------------------------------------------- API, help, quickstart
@pytest.mark.unit
def test_the_cli_trains_through_the_python_api(monkeypatch, tmp_path):
    import genlab.api
    calls = []
    real = genlab.api.train

    def spy(*a, **kw):
        calls.append((a, kw))
        return real(*a, **kw)
    monkeypatch.setattr(genlab.api, "train", spy)
    assert main(["train", "vae", "--out", str(tmp_path / "r"), "--max-steps", "1", "--no-report", *TINY]) == 0
    assert len(calls) == 1 and calls[0][0][:2] == ("vae", "digits")
    assert genlab.train is genlab.api.train   # `genlab.train(...)` is the API's function (loaded on first use)


@pytest.mark.slow
def test_the_python_api_writes_the_same_run_folder_as_the_cli(tmp_path):
    run = genlab.train("vae", "digits", tmp_path / "api", epochs=1, hidden=(32,), z_dim=2, batch_size=256,
                       progress=False, eval_options={"iwae_k": 2}, extras={"fid"})
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "summary.json", "eval.json", "checkpoints/last.pt",
                 "figures/samples.png", "figures/training_curves.png"):
        assert (tmp_path / "api" / name).exists(), name
    assert strict((tmp_path / "api" / "eval.json").read_text())["metrics"]["nll_nats"] > 0
    with pytest.raises(genlab.errors.GenlabError, match="already holds a genlab run"):
        genlab.train("vae", "digits", tmp_path / "api", epochs=1)
    assert run.state.epoch == 1


@pytest.mark.unit
@pytest.mark.parametrize("model,view", [("vae", "binarized"), ("ae", "continuous")])
def test_help_shows_the_effective_default(model, view, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", model, "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"(default: {view})" in out[out.rindex("--view {"):][:400]


@pytest.mark.unit
def test_quickstart_never_reuses_a_folder_and_says_how_to_put_genlab_on_the_path(tmp_path):
    """scripts/quickstart.sh with its setup, the genlab command and python stubbed out: the likelihood table
    into a new folder each time, its report, the table, the figure and the page printed; no browser without
    a display."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    (root / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(Path(__file__).parents[1] / "scripts" / "quickstart.sh", root / "scripts")
    (root / "scripts" / "setup.sh").write_text("true\n")
    stub = root / ".venv" / "bin" / "genlab"
    stub.write_text('#!/usr/bin/env bash\nout="${@: -1}"\nmkdir -p "$out/report"\necho "$@" >> "$out/args"\n'
                    'printf "caption\\n\\n| family | model | bits/dim | estimate | parameters | time | ref |\\n'
                    '|---|\\n| vae | vae | 1.981 | IWAE | 9 | 3.6 | none |\\n" > "$out/table.md"\n'
                    '[ -n "${PAGE:-}" ] && touch "$out/report/experiment-$(basename "$out").html"\n'
                    '[ "$1" = report ] && echo "$out/report/index.html"\ntrue\n')
    browser = root / ".venv" / "bin" / "python"
    browser.write_text('#!/usr/bin/env bash\necho "$@" >> "$(dirname "$0")/browser"\n')
    for exe in (stub, browser):
        exe.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    outputs = [subprocess.run(["bash", "scripts/quickstart.sh"], cwd=root, capture_output=True, text=True,
                              timeout=60, env=env) for _ in range(2)]
    assert all(p.returncode == 0 for p in outputs), outputs[0].stderr
    for out in ("runs/quickstart", "runs/quickstart-2"):
        assert (root / out / "args").read_text().splitlines() == \
            [f"experiment run likelihood-table --quick --out {out}", f"report {out}"]
    assert "source .venv/bin/activate" in outputs[0].stdout
    assert "| vae | vae | 1.981 | 9 | 3.6 |" in outputs[0].stdout            # the table without its long columns
    assert "runs/quickstart-2/figures/samples_side_by_side.png" in outputs[1].stdout
    assert f"file://{root.resolve()}/runs/quickstart-2/report/index.html" in outputs[1].stdout
    assert not (root / ".venv" / "bin" / "browser").exists()
    (root / "runs" / "quickstart-3").mkdir()          # any taken name is skipped
    with_display = subprocess.run(["bash", "scripts/quickstart.sh"], cwd=root, capture_output=True, text=True,
                                  timeout=60, env=env | {"DISPLAY": ":0", "PAGE": "1"})
    page = "runs/quickstart-4/report/experiment-quickstart-4.html"     # the experiment's page, when there is one
    assert with_display.returncode == 0 and page in with_display.stdout
    assert (root / ".venv" / "bin" / "browser").read_text().startswith("-m webbrowser -t file://")


# ----------------------------------------------------------------- issue 25: values no config may take
@pytest.mark.unit
@pytest.mark.parametrize("argv,message", [
    (["--betas", "1.5", "0.9"], "betas must each be in [0, 1)"),
    (["--betas", "0.9", "0.99", "0.5"], "betas: expected 2 values, got 3"),
    (["--betas", "nan", "0.9"], "betas: expected a finite number, got nan"),
    (["--lr", "inf"], "lr: expected a finite number, got inf"),
    (["--lr", "nan"], "lr: expected a finite number, got nan"),
    (["--grad-clip", "inf"], "grad_clip: expected a finite number, got inf"),
])
def test_betas_and_non_finite_training_values_are_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["train", "vae", "--out", str(out), *ONE_EPOCH, *argv]) == 2
    one_line(capsys, message)
    assert not out.exists()


def _float_fields():
    """(config class, field name, is a tuple) for every float field of every registered config."""
    import dataclasses
    import typing

    from genlab import catalog
    from genlab.config import _unwrap_optional
    from genlab.data.registry import list_datasets
    from genlab.model import get_model_spec
    from genlab.training.config import TrainConfig
    classes = {TrainConfig}
    for name in catalog.names("model"):
        spec = get_model_spec(name)
        classes |= {c for c in (spec.config, spec.eval_config, spec.sample_config) if c is not None}
    classes |= {spec.config for spec in list_datasets()}
    out = []
    for cls in sorted(classes, key=lambda c: c.__qualname__):
        for f in dataclasses.fields(cls):
            tp, _ = _unwrap_optional(typing.get_type_hints(cls)[f.name])
            if tp is float or float in typing.get_args(tp):
                out.append((cls, f.name, tp is not float))
    return out


@pytest.mark.unit
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_no_float_setting_of_any_config_takes_nan_or_infinity(value):
    """One rule for every config (model, data, training, eval, sample): floats are finite numbers,
    e.g. --length-penalty of translator eval and sample, --elevation of nerf sample."""
    from genlab.config import from_dict
    from genlab.errors import ConfigError
    fields = _float_fields()
    assert {"lr", "betas", "length_penalty", "elevation"} <= {n for _, n, _ in fields} and len(fields) > 20
    for cls, name, is_tuple in fields:
        if not cls.__dataclass_fields__[name].metadata.get("finite", True):
            continue
        default = getattr(cls(), name)
        bad = tuple(value for _ in default) if is_tuple and default else ((value,) if is_tuple else value)
        with pytest.raises(ConfigError, match=f"{name}: expected a finite number"):
            from_dict(cls, {name: bad})


@pytest.mark.unit
def test_length_penalty_and_elevation_nan_are_refused_by_the_same_rule():
    from genlab.config import from_dict
    from genlab.errors import ConfigError
    from genlab.model import get_model_spec
    translator, nerf = get_model_spec("translator"), get_model_spec("nerf")
    for cls in (translator.eval_config, translator.sample_config):
        with pytest.raises(ConfigError, match="length_penalty: expected a finite number, got nan"):
            from_dict(cls, {"length_penalty": "nan"})
    with pytest.raises(ConfigError, match="elevation: expected a finite number, got nan"):
        from_dict(nerf.sample_config, {"elevation": "nan"})


@pytest.mark.unit
def test_a_field_may_allow_non_finite_values():
    from dataclasses import dataclass

    from genlab.config import field, from_dict

    @dataclass
    class Bound:
        upper: float = field(1.0, "an upper bound", finite=False)
    assert from_dict(Bound, {"upper": "inf"}).upper == float("inf")


# ----------------------------------------------------------------- issue 25: a full disk, as torch reports it
def _full_disk_as_torch_says(monkeypatch, chained: bool):
    """Torch's zip writer: the OSError of the failed write, then (while it is handled) a RuntimeError."""
    def save(obj, f, *a, **kw):
        f.write(b"the first few bytes")
        if not chained:
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed "
                               "writing file data/0: file write failed")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0") from None
    monkeypatch.setattr(torch, "save", save)


@pytest.mark.unit
@pytest.mark.parametrize("chained,reason", [(True, "No space left on device"),
                                            (False, "the write failed (is the disk full?)")])
def test_a_full_disk_reported_by_torchs_zip_writer_keeps_the_previous_checkpoint(chained, reason, run,
                                                                                  monkeypatch, capsys):
    before = (run / "checkpoints" / "last.pt").read_bytes()
    _full_disk_as_torch_says(monkeypatch, chained)
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    one_line(capsys, "cannot write checkpoint", reason,
             f"the previous checkpoint {run / 'checkpoints' / 'last.pt'} is kept", f"genlab train --resume {run}")
    monkeypatch.undo()
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.pt"]


@pytest.mark.unit
def test_a_runtime_error_that_is_no_write_failure_is_not_called_a_full_disk(tmp_path, monkeypatch):
    def save(obj, f, *a, **kw):
        raise RuntimeError("some other bug")
    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(RuntimeError, match="some other bug"):
        checkpoint.save_atomic({"a": 1}, tmp_path / "ck.pt")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- issue 25: damaged step counters
@pytest.mark.unit
@pytest.mark.parametrize("command", ["resume", "eval", "sample"])
def test_a_checkpoint_with_a_damaged_step_counter_is_one_line(command, run, capsys):
    path = run / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["global_step"] = "abc"
    torch.save(ckpt, path)
    argv = {"resume": ["train", "--resume", str(run), "--epochs", "2"], "eval": ["eval", str(run), "--no-fid"],
            "sample": ["sample", str(run), "-n", "4"]}[command]
    before = snapshot(run)
    assert main(argv) == 2
    one_line(capsys, str(path), "global_step", "'abc'")
    assert snapshot(run) == before


@pytest.mark.unit
@pytest.mark.parametrize("chars", [None, [], ["a", "a"], ["ab"], 3, [[1]]])
def test_a_damaged_character_vocabulary_is_one_line(chars):
    from genlab.data.tokenizers import tokenizer_from_dict
    with pytest.raises(DataError, match="chars"):
        tokenizer_from_dict({"kind": "char", "chars": chars})
    assert tokenizer_from_dict({"kind": "char", "chars": ["a", "b"]}).chars == ["a", "b"]


@pytest.mark.unit
def test_sample_out_a_folder_is_one_line_for_a_family_writer(tmp_path, capsys):
    """Families with their own sample writer (text here) check --out as the generic path does."""
    out = tmp_path / "gpt"
    assert main(["train", "gpt", "--max-steps", "2", "--n-layer", "1", "--n-embd", "16", "--n-head", "2",
                 "--block-size", "16", "--out", str(out), "--no-report"]) == 0
    capsys.readouterr()
    before = snapshot(out)
    assert main(["sample", str(out), "-n", "8", "--out", str(tmp_path)]) == 2
    one_line(capsys, "is a folder; name a file")
    assert snapshot(out) == before


@pytest.mark.unit
def test_a_resumed_no_report_run_stays_without_a_report(tmp_path, capsys):
    out = tmp_path / "vae"
    assert main(["train", "vae", "--max-steps", "2", "--out", str(out), "--no-report"]) == 0
    assert main(["train", "--resume", str(out), "--max-steps", "4"]) == 0
    assert not (out / "eval.json").exists()
    assert json.loads((out / "config.json").read_text())["no_report"] is True
