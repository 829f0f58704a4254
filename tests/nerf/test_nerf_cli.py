"""The NeRF family through the command line: train, eval, sample --orbit, report, bad scene folders, and the
--quick experiments."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from genlab.cli import main
from genlab.training.run import load_run

TINY_DATA = ["--data", "synthetic-scene", "--size", "16", "--views", "4", "--supersample", "1"]
TINY_GRID = ["--resolution", "16", "--init-resolution", "8", "--grow-every", "10", "--density-rank", "2",
             "--color-rank", "4", "--occupancy-resolution", "8", "--occupancy-start", "5", "--occupancy-every", "5"]
TRAIN = ["--max-steps", "20", "--batch-size", "256", "--no-progress", "--eval-every", "0"]


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "grid"
    assert main(["train", "nerf-grid", *TINY_DATA, *TINY_GRID, *TRAIN, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_train_eval_sample_report(grid_run, capsys, tmp_path):
    assert (grid_run / "figures" / "test_views.png").exists()
    capsys.readouterr()
    assert main(["eval", str(grid_run), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)["metrics"]
    assert {"psnr", "ssim", "render_s_per_view", "mse"} <= set(m)
    assert len(m["psnr_per_view"]) == 8 and 0 < m["ssim"] <= 1 and m["render_s_per_view"] > 0
    gif = tmp_path / "orbit.gif"
    assert main(["sample", str(grid_run), "--orbit", "3", "--size", "12", "--out", str(gif)]) == 0
    with Image.open(gif) as im:     # (Pillow merges identical consecutive frames, so count them in the model)
        assert im.format == "GIF" and im.size == (12, 12)
    frames = load_run(grid_run).model.orbit(3, size=12)
    assert frames.shape == (3, 12, 12, 3) and 0 <= frames.min() and frames.max() <= 1
    assert main(["sample", str(grid_run), "--orbit", "2"]) == 0
    assert (grid_run / "samples" / "orbit_2.gif").exists()


@pytest.mark.slow
def test_vanilla_nerf_trains_from_the_cli(tmp_path, capsys):
    out = tmp_path / "vanilla"
    assert main(["train", "nerf", *TINY_DATA, "--width", "16", "--depth", "2", "--n-coarse", "4", "--n-fine", "4",
                 *TRAIN, "--out", str(out)]) == 0
    assert json.loads((out / "eval.json").read_text())["metrics"]["psnr"] > 0


@pytest.mark.unit
def test_bad_scene_folders_stop_with_one_line(tmp_path, capsys):
    assert main(["train", "nerf-grid", "--data", "blender", "--scene-dir", str(tmp_path / "missing"),
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "scene folder not found" in err and "Traceback" not in err and len(err.splitlines()) == 1
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "transforms_train.json").write_text("{not json")
    assert main(["train", "nerf", "--data", "blender", "--scene-dir", str(tmp_path / "s"),
                 "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "malformed JSON" in err and len(err.splitlines()) == 1
    assert main(["train", "nerf", "--data", "tiny-nerf", "--out", str(tmp_path / "r3")]) == 2
    assert "--file" in capsys.readouterr().err


@pytest.mark.unit
def test_render_gradient_experiment_quick(tmp_path):
    assert main(["experiment", "run", "nerf-render-gradient", "--quick", "--out", str(tmp_path / "g")]) == 0
    s = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert s["agree"] and s["max_abs_error_dL_dsigma"] < 1e-10
    c = s["custom_function_vs_autograd"]
    assert c["analytic"]["saved_mb"] < c["autograd"]["saved_mb"]
    assert (tmp_path / "g" / "figures" / "dL_dsigma_along_a_ray.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nerf-offline", "nerf-lego"])
def test_quick_experiments(tmp_path, name):
    assert main(["experiment", "run", name, "--quick", "--out", str(tmp_path / name)]) == 0
    s = json.loads((tmp_path / name / "summary.json").read_text())
    if name == "nerf-offline":
        assert s["psnr"] > 15 and s["silhouette_agreement"] > 0.9
    else:
        assert set(s["final"]) == {"fast grid field", "vanilla NeRF"}
        assert (tmp_path / name / "figures" / "psnr_vs_minutes.png").exists()
