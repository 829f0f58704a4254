"""Long work says what it is doing: a bar on a terminal, plain periodic lines off it (never both), and
TensorBoard event files when the ``tensorboard`` extra is installed."""
import io
import re
import sys

import pytest

import genlab
from genlab.data.registry import load_dataset
from genlab.progress import Lines, duration, human, progress
from genlab.training.loop import evaluate_model
from genlab.training.run import load_run

pytestmark = pytest.mark.unit

TINY = dict(epochs=2, z_dim=2, hidden=(16,), batch_size=128, log_every=3, report=False)
STEP_LINE = re.compile(r"^step (\d+)/(\d+) · loss [-\d.e+]+ · .* · [\d.]+( [kMG])? img/s · (eta \d+ [smh]|done in \d+ s)$")


def test_training_off_a_terminal_prints_step_lines_every_log_every_steps(tmp_path, capsys):
    run = genlab.train("vae", "digits", tmp_path / "run", **TINY)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.startswith("step ")]
    assert lines and all(STEP_LINE.match(ln) for ln in lines), err
    steps = [int(STEP_LINE.match(ln).group(1)) for ln in lines]
    total = run.state.global_step
    assert {int(STEP_LINE.match(ln).group(2)) for ln in lines} == {total}
    per_epoch = total // 2
    expected = sorted({s for s in range(3, total + 1, 3)} | {per_epoch, total})   # log rows and epoch ends
    assert steps == expected
    assert lines[-1].endswith(" s") and "done in" in lines[-1]
    assert "step " not in out                     # progress never on stdout
    assert "\r" not in err                        # no bar


def test_training_on_a_terminal_shows_the_bar_and_no_step_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)    # capsys's stream, as a terminal
    genlab.train("vae", "digits", tmp_path / "run", **TINY)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err                     # the tqdm bar
    assert not [ln for ln in err.splitlines() if STEP_LINE.match(ln)]


def test_progress_off_prints_nothing(tmp_path, capsys):
    genlab.train("vae", "digits", tmp_path / "run", **TINY | {"progress": False})
    assert "step " not in capsys.readouterr().err


def test_step_lines_count_tokens_for_text_models(tmp_path, capsys):
    genlab.train("gpt", "synthetic-text", tmp_path / "run", max_steps=4, batch_size=4, log_every=2,
                 report=False, eval_every=0, n_layer=1, n_embd=16, n_head=2, block_size=8)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("step ")]
    assert [ln.split(" · ")[0] for ln in lines] == ["step 2/4", "step 4/4"]
    assert all(" tok/s · " in ln for ln in lines), lines


def test_evaluation_off_a_terminal_prints_batch_lines_with_the_right_total(tmp_path, capsys):
    genlab.train("vae", "digits", tmp_path / "run", **TINY | {"progress": False})
    run = load_run(tmp_path / "run")
    data = load_dataset("digits", "test")
    capsys.readouterr()
    evaluate_model(run.model, data, 50, "cpu", progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("eval ")]
    total = -(-len(data) // 50)
    assert lines[-1].startswith(f"eval {total}/{total} · ") and "done in" in lines[-1], lines
    assert len(lines) <= 21


def test_lines_print_every_nth_item_then_once_at_the_end():
    stream = io.StringIO()
    bar = Lines(range(10), "render views", 10, every=4, unit="views", stream=stream)
    assert list(bar) == list(range(10))
    lines = stream.getvalue().splitlines()
    assert [ln.split(" · ")[0] for ln in lines] == ["render views 4/10", "render views 8/10", "render views 10/10"]
    assert "eta" in lines[0] and "views/s" in lines[0] and "done in" in lines[-1]


def test_lines_stopped_early_still_report_where_they_stopped():
    stream = io.StringIO()
    for i in Lines(range(10), "eval", 10, every=100, stream=stream):
        if i == 2:
            break
    assert stream.getvalue().splitlines()[0].startswith("eval 2/10")


def test_progress_is_quiet_when_off_and_lines_off_a_terminal(capsys):
    assert list(progress(range(3), "x", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    assert isinstance(progress(range(3), "x"), Lines)      # capsys's stderr is no terminal
    assert progress(range(40), "x").every == 2              # about 20 lines a phase


@pytest.mark.parametrize("x, text", [(3140, "3.14 k"), (2.5e6, "2.5 M"), (12, "12"), (0.5, "0.5")])
def test_human_numbers(x, text):
    assert human(x) == text


@pytest.mark.parametrize("s, text", [(12.2, "12 s"), (240, "4 m"), (5400, "1.5 h")])
def test_durations(s, text):
    assert duration(s) == text


def test_tensorboard_events_hold_the_logged_metrics(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install genlab[tensorboard])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from genlab.training.logger import read_jsonl
    genlab.train("vae", "digits", tmp_path / "run", **TINY | {"progress": False})
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train"]
    events = acc.Scalars("train/loss")
    assert [e.step for e in events] == [r["step"] for r in rows]
    assert [e.value for e in events] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
    assert "epoch/time_s" in acc.Tags()["scalars"]


def test_fid_sampling_reports_each_batch_drawn(tmp_path, capsys):
    from genlab.eval.fid import draw_samples
    genlab.train("vae", "digits", tmp_path / "run", **TINY | {"progress": False})
    model = load_run(tmp_path / "run").model
    capsys.readouterr()
    assert draw_samples(model, 120, batch=50, progress=True).shape[0] == 120
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("FID samples")]
    assert [ln.split(" · ")[0] for ln in lines] == ["FID samples 1/3", "FID samples 2/3", "FID samples 3/3"]


def test_nerf_rendering_reports_each_view(tmp_path, capsys):
    from genlab.cli import main
    from genlab.families.nerf.metrics import render_split
    out = tmp_path / "grid"
    assert main(["train", "nerf-grid", "--data", "synthetic-scene", "--size", "8", "--views", "4", "--supersample",
                 "1", "--resolution", "8", "--init-resolution", "8", "--max-steps", "2", "--batch-size", "64",
                 "--no-progress", "--eval-every", "0", "--no-report", "--out", str(out)]) == 0
    run = load_run(out)
    capsys.readouterr()
    r = render_split(run.model, run.data("test"), max_views=2, progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("render views")]
    assert len(r["seconds"]) == 2
    assert lines[-1].startswith("render views 2/2 · ") and "done in" in lines[-1], lines


def test_diffusion_sampling_reports_its_sampler_steps(tmp_path, capsys):
    """`genlab sample` of a DDPM run counts the sampler's steps (plain lines off a terminal, on stderr)."""
    from genlab.cli import main
    run = tmp_path / "ddpm"
    assert main(["train", "ddpm", "--channels", "8", "--mults", "1", "2", "--timesteps", "20", "--sample-steps", "3",
                 "--max-steps", "2", "--limit", "64", "--out", str(run), "--no-report"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "4", "--steps", "5", "--sampler", "ddim"]) == 0
    err = capsys.readouterr().err
    assert "sampling (ddim)" in err and "5/5" in err
