"""Hostile inputs of issue 25 (scene files, datasets that do not fit a model, unbounded requests, a
damaged metrics log, built-in text): each gives one line and exit 2, or just works."""
from __future__ import annotations

import pytest

from genlab.cli import main

pytestmark = pytest.mark.unit


def one_line_error(capsys, argv, *needles) -> str:
    """Run the CLI in-process; assert exit 2, exactly one stderr line, no traceback, and the needles in it."""
    try:
        code = main(argv)
    except SystemExit as e:   # argparse's own exit (genlab's parser prints one line first)
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# ------------------------------------------------------------------ built-in text: every split encodes
@pytest.mark.parametrize("words", [100, 300, 1000])
def test_small_synthetic_text_encodes_every_split(words):
    from genlab.data.registry import load_dataset
    for split in ("train", "val", "test"):
        data = load_dataset("synthetic-text", split, words=words)
        assert data.tokenizer.decode(data.tokens.tolist()) == data.tokenizer.decode(
            data.tokenizer.encode(data.tokenizer.decode(data.tokens.tolist())))
    train = load_dataset("synthetic-text", "train", words=words)
    val = load_dataset("synthetic-text", "val", words=words)
    assert train.tokenizer.chars == val.tokenizer.chars
    assert set(val.tokenizer.decode(val.tokens.tolist())) <= set(train.tokenizer.chars)


# ------------------------------------------------------------------ NeRF scene files
def _blender(root, **meta):
    """A 4-view NeRF-synthetic folder whose transforms_train.json holds ``meta`` (None: the field is absent)."""
    import json

    import numpy as np
    from PIL import Image
    root.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(4):
        Image.fromarray(np.full((4, 4, 4), 200, np.uint8), "RGBA").save(root / f"r_{i}.png")
        pose = np.eye(4)
        pose[2, 3] = 4.0 + i
        frames.append({"file_path": f"./r_{i}", "transform_matrix": pose.tolist()})
    fields = {"camera_angle_x": 0.69} | meta
    text = json.dumps({"frames": frames, **fields}).replace('"__nan__"', "NaN")
    (root / "transforms_train.json").write_text(text)
    return root


@pytest.mark.parametrize("meta, needle", [
    ({"camera_angle_x": 0}, "'camera_angle_x' is 0"),
    ({"camera_angle_x": "wide"}, "'camera_angle_x' is 'wide'"),
    ({"camera_angle_x": None}, "'camera_angle_x' is null"),
    ({"camera_angle_x": "__nan__"}, "'camera_angle_x' is NaN"),
    ({"camera_angle_x": 4.0}, "'camera_angle_x' is 4"),
    ({"fl_x": "abc"}, "'fl_x' is 'abc'"),
    ({"fl_x": 50, "cy": None}, "'cy' is null"),
    ({"fl_x": -3}, "'fl_x' is -3"),
])
def test_blender_camera_fields_are_finite_numbers(tmp_path, capsys, meta, needle):
    root = _blender(tmp_path / "scene", **meta)
    out = tmp_path / "run"
    one_line_error(capsys, ["train", "nerf-grid", "--data", "blender", "--scene-dir", str(root), "--out", str(out)],
                   "transforms_train.json", needle, "expected a finite number")
    assert not out.exists()   # the data is read before the folder is made


def _npz(path, n=3, **override):
    import numpy as np
    arrays = {"images": np.full((n, 4, 4, 3), 0.5, np.float32), "poses": np.tile(np.eye(4), (n, 1, 1)),
              "focal": np.float64(5.0)} | override
    np.savez(path, **arrays)
    return path


def _nan_pixel():
    import numpy as np
    images = np.full((3, 4, 4, 3), 0.5, np.float32)
    images[2, 1, 1, 0] = np.nan
    return images


@pytest.mark.parametrize("override, needle", [
    ({"n": 2}, "2 view(s); a scene needs at least 3"),
    ({"n": 0}, "0 view(s)"),
    ({"focal": 0.0}, "'focal' is 0"),
    ({"focal": float("nan")}, "'focal' is NaN"),
    ({"focal": [1.0, 2.0]}, "'focal' is '[1.0, 2.0]'"),
    ({"images": "IMAGES"}, "images"),
    ({"images": _nan_pixel()}, "'images' has non-finite values (NaN or inf) in view 2"),
    ({"poses": __import__("numpy").full((3, 4, 4), float("inf"))}, "'poses' has non-finite values"),
])
def test_tiny_nerf_files_are_checked(tmp_path, capsys, override, needle):
    n = override.pop("n", 3)
    path = _npz(tmp_path / "scene.npz", n, **override)
    out = tmp_path / "run"
    one_line_error(capsys, ["train", "nerf-grid", "--data", "tiny-nerf", "--file", str(path), "--out", str(out)],
                   "scene.npz", needle)
    assert not (out / "config.json").exists()


def test_valid_scene_files_still_load(tmp_path):
    from genlab.data.registry import load_dataset
    root = _blender(tmp_path / "scene", camera_angle_x=0.69)
    assert len(load_dataset("blender", "train", scene_dir=str(root))) == 2
    root = _blender(tmp_path / "ngp", fl_x=5, cx=2.0, cy=2.0)
    assert float(load_dataset("blender", "val", scene_dir=str(root)).scene.K[0, 0]) == 5.0
    assert len(load_dataset("tiny-nerf", "train", file=str(_npz(tmp_path / "s.npz", 3)))) == 1


# ------------------------------------------------------------------ datasets that fit a model
def test_a_dataset_of_another_kind_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    one_line_error(capsys, ["train", "vae", "--data", "tinyshakespeare", "--out", str(out)],
                   "model vae models image or points data", "tinyshakespeare is text data", "digits")
    assert not out.exists()
    one_line_error(capsys, ["train", "gpt", "--data", "digits", "--help"], "pass --data with one of synthetic-text")
    import genlab
    with pytest.raises(genlab.errors.ConfigError, match="rays data"):
        genlab.train("nerf", "moons", tmp_path / "api")
    assert not (tmp_path / "api").exists()


def test_train_help_lists_only_the_datasets_that_fit(capsys):
    with pytest.raises(SystemExit):
        main(["train", "gpt", "--help"])
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("datasets"))
    assert line == "datasets that fit gpt: synthetic-text, tinyshakespeare"


def test_every_model_declares_kinds_its_default_data_has():
    from genlab import catalog
    from genlab.data.registry import DATA_KINDS, get_spec
    from genlab.model import fitting_datasets, get_model_spec
    for name in catalog.names("model"):
        spec = get_model_spec(name)
        assert spec.data_kinds and set(spec.data_kinds) <= set(DATA_KINDS), name
        assert spec.default_data in fitting_datasets(name), name
    for name in catalog.names("dataset"):
        assert get_spec(name).kind in DATA_KINDS, name


@pytest.mark.parametrize("name, options", [
    ("digits", {}), ("moons", {}), ("gmm1d", {}), ("torus", {}), ("synthetic-text", {"words": 100}),
    ("synthetic-pairs", {}), ("synthetic-scene", {"size": 8, "views": 1, "supersample": 1}),
])
def test_a_dataset_declares_the_kind_its_splits_have(name, options):
    from genlab.data.registry import get_spec, load_dataset
    assert load_dataset(name, "val", **options).info.kind == get_spec(name).kind


def test_register_model_needs_its_data_kinds():
    from genlab.model import register_model
    with pytest.raises(TypeError, match="data_kinds"):
        register_model("not-a-model", object, "")
    with pytest.raises(TypeError, match="data_kinds"):
        register_model("not-a-model", object, "", data_kinds=("sound",))


# ------------------------------------------------------------------ report: one damaged run does not sink the rest
def _fake_run(root, name, rows: list[str]):
    from genlab.training.rundir import RunDir
    folder = RunDir(root / name)
    folder.ensure_layout()
    folder.write_config({"model": "vae", "data": "digits", "model_config": {}, "data_config": {},
                         "train_config": {}, "data_info": {"kind": "image", "shape": [1, 8, 8]}})
    folder.write_summary({"model": "vae", "data": "digits", "status": "finished", "steps": 2, "epochs_done": 1})
    folder.metrics_jsonl.write_text("".join(r + "\n" for r in rows))
    return folder


GOOD = ['{"split": "train", "epoch": 0, "step": 1, "loss": 2.0}', '{"split": "train", "epoch": 0, "step": 2, "loss": 1.0}']


@pytest.mark.parametrize("damage, reason", [
    ([GOOD[0], "{broken", GOOD[1]], "line 2 is not valid JSON"),
    ([GOOD[0], "\x00\xff\xfe garbage", GOOD[1]], "line 2 is not valid JSON"),
    ([GOOD[0], '{"split": "train", "step": "abc", "loss": [1]}', '[1, 2]', GOOD[1]], None),
    ([GOOD[0], '{"split": "train", "step": 3, "loss": NaN}', '{"split": "train", "step": 4, "loss": 1e308}'], None),
])
def test_report_shows_a_run_with_a_damaged_metrics_log(tmp_path, capsys, damage, reason):
    runs = tmp_path / "runs"
    _fake_run(runs, "good", GOOD)
    _fake_run(runs, "bad", damage)
    assert main(["report", str(runs)]) == 0, capsys.readouterr().err
    assert "Traceback" not in capsys.readouterr().err
    assert "good" in (runs / "report" / "index.html").read_text()
    page = (runs / "report" / "run-bad.html").read_text()
    if reason:
        assert reason in page and "metrics.jsonl" in page


# ------------------------------------------------------------------ unbounded work is refused before it starts
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """One-step runs of an image model, a text model and a translator (no report)."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--max-steps", "1", "--no-progress", "--no-report"]
    assert main(["train", "pixelcnn", "--channels", "4", "--layers", "1", "--out", str(root / "pixelcnn"), *common]) == 0
    assert main(["train", "gpt", "--words", "100", "--batch-size", "2", "--n-layer", "1", "--n-embd", "8",
                 "--n-head", "1", "--block-size", "8", "--out", str(root / "gpt"), *common]) == 0
    assert main(["train", "translator", "--n-train", "20", "--n-val", "4", "--n-test", "4", "--vocab-size", "120",
                 "--d-model", "8", "--heads", "1", "--layers", "1", "--out", str(root / "tr"), *common]) == 0
    return root


@pytest.mark.parametrize("run, argv, needle", [
    ("pixelcnn", ["-n", "999999999999"], "at most 4,096 samples"),
    ("pixelcnn", ["-n", "4097"], "at most 4,096 samples"),
    ("gpt", ["-n", "99999999999"], "at most 100,000"),
    ("tr", ["--text", "a man", "--beam", "100000"], "beam must be in 1..64"),
])
def test_sample_requests_beyond_the_bound_are_refused(tiny_runs, capsys, run, argv, needle):
    before = sorted(p.relative_to(tiny_runs) for p in tiny_runs.rglob("*"))
    one_line_error(capsys, ["sample", str(tiny_runs / run), *argv], needle)
    assert sorted(p.relative_to(tiny_runs) for p in tiny_runs.rglob("*")) == before


def test_sample_within_the_bound_still_works(tiny_runs, capsys):
    assert main(["sample", str(tiny_runs / "gpt"), "-n", "5"]) == 0
    assert main(["sample", str(tiny_runs / "tr"), "--text", "a man", "--beam", "64"]) == 0


@pytest.mark.parametrize("argv, needle", [
    (["gpt", "--n-layer", "99999999999999999999"], "more than 20,000 modules"),
    (["gpt", "--n-embd", "4000000", "--n-head", "1"], "GiB for weights, gradients and Adam moments"),
])
def test_a_model_too_large_is_refused_before_it_is_allocated(tmp_path, capsys, argv, needle):
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    one_line_error(capsys, ["train", *argv, "--out", str(tmp_path / "run")], needle)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 500_000   # KiB: nothing big was allocated
    assert not (tmp_path / "run" / "config.json").exists()


def test_the_size_check_counts_parameters_exactly():
    from genlab.config import from_dict
    from genlab.data.registry import load_dataset
    from genlab.model import check_model_size, get_model_spec
    for name, data in [("vae", "digits"), ("pixelcnn", "digits"), ("realnvp", "moons")]:
        spec, info = get_model_spec(name), load_dataset(data, "val").info
        cfg = from_dict(spec.config, {})
        assert check_model_size(spec, cfg, info) == sum(p.numel() for p in spec.cls(cfg, info).parameters())


# ------------------------------------------------------------------ found by tests/test_fuzz.py
def test_an_error_quoting_a_value_with_a_newline_stays_one_line(capsys):
    one_line_error(capsys, ["data", "info", "no\nsuch"], "unknown dataset", "no\\nsuch")
    one_line_error(capsys, ["report", "/nonexistent", "--bogus", "a\nb"], "unrecognized arguments")


def test_a_frame_that_is_not_an_object_is_named(tmp_path):
    import json

    from genlab.data.registry import load_dataset
    from genlab.errors import DataError
    root = _blender(tmp_path / "scene")
    meta = json.loads((root / "transforms_train.json").read_text())
    meta["frames"][1] = None
    (root / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="frame 1: a frame needs 'file_path' and 'transform_matrix'"):
        load_dataset("blender", "train", scene_dir=str(root))


@pytest.mark.parametrize("dims", [(0, 2 ** 32 - 1, 2 ** 32 - 1), (2 ** 16,) * 4])   # numpy's bound; np.prod wraps to 0
def test_an_idx_header_too_large_for_any_file_is_refused(tmp_path, dims):
    import struct

    from genlab.data.idx import read_idx
    from genlab.errors import DataError
    path = tmp_path / "images-idx"
    path.write_bytes(struct.pack(">BBBB", 0, 0, 8, len(dims)) + struct.pack(f">{len(dims)}I", *dims))
    with pytest.raises(DataError, match=r"describe an array too large for any file; the header is corrupt"):
        read_idx(path)


def test_a_bad_data_file_leaves_no_run_folder_behind(tmp_path, capsys):
    import struct

    import numpy as np

    from genlab.data.idx import write_idx
    root = tmp_path / "data"
    (root / "mnist").mkdir(parents=True)
    for split in ("train", "t10k"):
        write_idx(root / "mnist" / f"{split}-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
        write_idx(root / "mnist" / f"{split}-labels-idx1-ubyte", np.arange(3, dtype=np.uint8))
    (root / "mnist" / "train-images-idx3-ubyte").write_bytes(struct.pack(">BBBBIII", 0, 0, 8, 3, 0, *[2 ** 32 - 1] * 2))
    out = tmp_path / "run"
    one_line_error(capsys, ["train", "vae", "--data", "mnist", "--data-dir", str(root), "--out", str(out)],
                   "train-images-idx3-ubyte: header sizes (0, 4294967295, 4294967295) describe an array too large")
    assert not out.exists()
    out.mkdir()   # a folder that was there before stays, untouched
    one_line_error(capsys, ["train", "vae", "--data", "mnist", "--data-dir", str(root), "--out", str(out)],
                   "train-images-idx3-ubyte")
    assert out.is_dir() and not any(out.iterdir())


def _damaged_copy(tiny_runs, tmp_path, name, damage):
    """A copy of ``tiny_runs/name`` whose config.json's data_info went through ``damage(info)``."""
    import json
    import shutil
    run = tmp_path / name
    shutil.copytree(tiny_runs / name, run)
    cfg = json.loads((run / "config.json").read_text())
    damage(cfg["data_info"])
    (run / "config.json").write_text(json.dumps(cfg))
    return run


def test_a_damaged_saved_subword_tokenizer_is_named(tiny_runs, tmp_path, capsys):
    def damage(info):
        info["extras"]["tokenizer"] = info["extras"]["tokenizer"].replace('"id":2', '"hd":2', 1)
    run = _damaged_copy(tiny_runs, tmp_path, "tr", damage)
    for argv in (["sample", str(run), "--text", "a man"], ["eval", str(run)]):
        one_line_error(capsys, argv, f"{run / 'config.json'}: the saved subword tokenizer", "missing field `id`",
                       "config.json was edited or damaged")


@pytest.mark.parametrize("name, damage, needle", [
    ("pixelcnn", lambda info: info.update(extras=None), "data_info field 'extras' is null, expected a JSON object"),
    ("pixelcnn", lambda info: info.update(shape=[None, 8, 8]), "'shape' is [None, 8, 8], expected a list of positive"),
    ("pixelcnn", lambda info: info.update(levels="abc"), "'levels' is 'abc', expected null or a positive whole"),
    ("pixelcnn", lambda info: info.pop("kind"), "data_info lacks the field 'kind'"),
    ("pixelcnn", lambda info: info.update(colour=3), "data_info has unknown field 'colour'"),
    ("gpt", lambda info: info["extras"]["tokenizer"].update(chars=[[1]]),
     "a saved character tokenizer has no valid 'chars'"),
])
def test_a_damaged_data_info_is_one_line_naming_config_json(tiny_runs, tmp_path, capsys, name, damage, needle):
    run = _damaged_copy(tiny_runs, tmp_path, name, damage)
    one_line_error(capsys, ["sample", str(run), "-n", "2"], f"{run / 'config.json'}: ", needle)
