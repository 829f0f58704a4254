"""Property-based fuzzing of every command and every loader (hypothesis).

* Argument vectors are generated from each command's own argparse parser (the flags of ``genlab train
  MODEL`` for every model, of ``eval`` / ``sample`` on tiny runs, of ``report``, ``experiment`` and
  ``data``): values of the wrong type, out of range, NaN/inf, huge, empty, unknown names and flags.
  Each must end with exit 2 and one line on stderr, or pass validation; the expensive stage behind
  validation (training, evaluating, sampling, experiments, the FID classifier, figures, downloads) is replaced by
  a stub that stops the command there, so a case takes milliseconds.
* Files are damaged for every loader: idx images (truncated, bit-flipped, wrong header), text,
  a run's config.json (with its tokenizer), checkpoints (truncated, bit-flipped, NaN or wrong-shaped
  weights, damaged counters), and scene files (transforms JSON fields, .npz arrays). A loader returns or
  raises a ``GenlabError``; a command exits 0 or 2 with one line.

Every case also checks that no traceback is printed and that nothing pre-existing changed. The fast
profile (few examples, derandomized) is in the fast subset (marker ``unit``); the deep one is ``slow``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genlab import catalog, cli
from genlab.errors import GenlabError

COMMON = dict(derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
FAST = settings(max_examples=12, **COMMON)
DEEP = settings(max_examples=250, **COMMON)


def profiles(fn):
    """The test ``fn(data, ...)`` twice: a fast profile (marked unit) and a deep one (marked slow)."""
    fast = pytest.mark.unit(FAST(given(data=st.data())(fn)))
    deep = pytest.mark.slow(DEEP(given(data=st.data())(fn)))
    return fast, deep


class Reached(Exception):
    """The command passed validation and reached the (stubbed) expensive stage."""


def _reached(*args, **kwargs):
    raise Reached


# ------------------------------------------------------------------ tokens and argument vectors
HOSTILE = ["", " ", "abc", "nan", "-nan", "NaN", "inf", "-inf", "1e309", "-1e309", "0", "-0", "-1", "1", "2",
           "0.5", "-3.5", "1e-320", "99999999999999999999", "-99999999999999999999", "4294967297", "0x10", "1_000",
           "None", "null", "true", "False", "[]", "{}", "--", "-", "nosuch", "unknown-name", "\u00e9\u00e8\u2603",
           "a\nb", "../../etc", "/nonexistent/dir", "x" * 300]


def _tokens_for(action: argparse.Action) -> st.SearchStrategy[str]:
    """A value for one flag: a hostile token, or one of its choices, or a number of its type."""
    options = [st.sampled_from(HOSTILE)]
    if action.choices:
        options.append(st.sampled_from([str(c) for c in action.choices]))
    if action.type is int or isinstance(action.default, int) and not isinstance(action.default, bool):
        options.append(st.integers(-10, 10 ** 12).map(str))
    if action.type is float or isinstance(action.default, float):
        options.append(st.floats(allow_nan=True, allow_infinity=True).map(repr))
    if action.default is not None and not isinstance(action.default, bool):
        options.append(st.just(str(action.default[0] if isinstance(action.default, (list, tuple)) and action.default
                                   else action.default)))
    return st.one_of(options)


def _flag_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    skip = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    return [a for a in parser._actions if a.option_strings and not isinstance(a, skip)]


@st.composite
def flags(draw, parser: argparse.ArgumentParser, most: int = 3, avoid=()) -> list[str]:
    """Up to ``most`` flags of ``parser`` with generated values (sometimes too few or too many), and
    now and then an unknown flag or a stray positional."""
    actions = [a for a in _flag_actions(parser) if not set(a.option_strings) & set(avoid)]
    argv: list[str] = []
    for action in draw(st.lists(st.sampled_from(actions), max_size=most)) if actions else []:
        argv.append(draw(st.sampled_from(action.option_strings)))
        if action.nargs == 0:
            continue
        want = {None: 1, "?": draw(st.integers(0, 1)), "*": draw(st.integers(0, 3)),
                "+": draw(st.integers(0, 3))}.get(action.nargs, action.nargs)
        want = want if isinstance(want, int) else 1
        want = max(0, want + draw(st.sampled_from([0, 0, 0, 0, -1, 1])))   # sometimes a value short or over
        argv += [draw(_tokens_for(action)) for _ in range(want)]
    extra = draw(st.sampled_from([None, None, None, None, "--nosuch-flag", "stray", "--nosuch=1"]))
    if extra:
        argv.insert(draw(st.integers(0, len(argv))), extra)
    return argv


# ------------------------------------------------------------------ running one case
def _snapshot(root: Path) -> dict[str, str]:
    """Content hash of every file under ``root`` except the regenerated figures and reports."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not {"figures", "report", "samples", "scratch"} & set(rel.parts):
            out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(argv: list[str], sandbox: Path) -> tuple[int | str, str]:
    """``genlab ARGV`` in-process in ``sandbox/scratch``: (exit code or "reached", stderr). Asserts the
    CLI's promises: exit 2 with exactly one stderr line and no traceback, or validation passed;
    nothing that existed before changed."""
    before = _snapshot(sandbox)
    err, out = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(sandbox / "scratch")
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code: int | str = cli.main(argv)
            except Reached:
                code = "reached"
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 2
    finally:
        os.chdir(cwd)
    text = err.getvalue()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert "Traceback" not in text, (argv, text)
    assert code in (0, 2, "reached"), (argv, code, text)
    if code == 2:
        assert len(lines) == 1, (argv, text)
    assert _snapshot(sandbox) == before, (argv, "a pre-existing file changed")
    return code, text


# ------------------------------------------------------------------ the sandbox: tiny runs, stubs, no network
TINY = {
    "pixelcnn": ["--channels", "4", "--layers", "1"],
    "gpt": ["--words", "100", "--batch-size", "2", "--n-layer", "1", "--n-embd", "8", "--n-head", "1",
            "--block-size", "8"],
    "translator": ["--n-train", "20", "--n-val", "4", "--n-test", "4", "--vocab-size", "120", "--d-model", "8",
                   "--heads", "1", "--layers", "1"],
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "scratch").mkdir()
    saved = {k: os.environ.get(k) for k in ("GENLAB_CACHE", "GENLAB_DATA")}
    os.environ["GENLAB_CACHE"] = str(root / "cache")   # nothing of the user's cache is read or written
    os.environ.pop("GENLAB_DATA", None)
    for name, argv in TINY.items():
        assert cli.main(["train", name, *argv, "--max-steps", "1", "--no-progress", "--no-report",
                         "--out", str(root / "runs" / name)]) == 0
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True)
def stubs(monkeypatch):
    """Stop every command where its real work would begin; nothing is downloaded."""
    from importlib import import_module
    api, idx, evaluate, fid, experiments, model, run, html, viz = (import_module(f"genlab.{m}") for m in (
        "api", "data.idx", "eval.evaluate", "eval.fid", "experiments", "model", "training.run", "report.html", "viz"))

    def train_stub(model, data, out, **kw):   # what genlab.training.run.train checks before it writes
        spec, data, _, _, tcfg = run.prepare(model, data, kw.get("model_options"), kw.get("data_options"),
                                             kw.get("train_options"))
        run.pick_device(tcfg.device)
        raise Reached

    def offline(urls, dest, *a, **k):
        raise GenlabError(f"{dest}: not found (the fuzzer runs offline)")

    monkeypatch.setattr(api, "train_run", train_stub)
    monkeypatch.setattr(run, "resume_run", _reached)
    monkeypatch.setattr(evaluate, "evaluate_model", _reached)
    monkeypatch.setattr(model.ModelSpec, "sample_writer", lambda self: _reached)
    monkeypatch.setattr(experiments, "run_experiment", _reached)
    monkeypatch.setattr(fid, "prepare_fid", _reached)
    monkeypatch.setattr(idx, "download", offline)
    monkeypatch.setattr(viz, "make_figures", _reached)            # a run's figures (matplotlib)
    monkeypatch.setattr(html, "draw_curves", lambda *a: None)     # the HTML report's pages are written, not drawn
    monkeypatch.setattr(html, "draw_overlay", lambda *a: None)


def _main_parser() -> argparse.ArgumentParser:
    """The top-level parser of ``genlab`` (captured as it parses)."""
    captured = {}

    def capture(self, *a, **k):
        captured["p"] = self
        raise Reached
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli._Parser, "parse_args", capture)
        with contextlib.suppress(Reached):
            cli._main(["report", "x"])
    return captured["p"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


# ------------------------------------------------------------------ the commands
def train_case(data, sandbox):
    model = data.draw(st.sampled_from(catalog.names("model")), label="model")
    dataset = data.draw(st.sampled_from([None, None, None, *catalog.names("dataset"), "nosuch"]), label="data")
    if dataset in ("mnist", "fashion-mnist", "tinyshakespeare", "multi30k", "blender", "tiny-nerf"):
        dataset = None   # files, not flags: the loader fuzzers below damage them
    try:
        parser, _ = cli.train_parser(model, dataset)
    except GenlabError:   # a dataset that does not fit (refused by the command too) or is unknown
        parser, _ = cli.train_parser(model, None)
    argv = ["train", model, *(["--data", dataset] if dataset else []),
            *data.draw(flags(parser, avoid=("--data", "--resume", "--out")), label="flags"),
            "--out", str(sandbox / "scratch" / "run")]
    run_cli(argv, sandbox)


def run_command_case(data, sandbox, command: str):
    name = data.draw(st.sampled_from(sorted(TINY)), label="run")
    run = str(sandbox / "runs" / name)
    captured = {}

    def capture(self, *a, **k):
        captured["p"] = self
        raise Reached
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(io.StringIO()):
        mp.setattr(cli._Parser, "parse_args", capture)
        with contextlib.suppress(Reached):
            cli.main([command, run])
    parser = captured["p"]
    avoid = ("--hypotheses", "--references", "--out", "--device")
    argv = [command, data.draw(st.sampled_from([run, run, run, str(sandbox / "nosuch"), ""])),
            *data.draw(flags(parser, avoid=avoid), label="flags")]
    if data.draw(st.booleans()):
        argv += ["--device", data.draw(st.sampled_from(["cpu", "cuda:99", "tpu", "", "auto"]))]
    run_cli(argv, sandbox)


def other_command_case(data, sandbox):
    top = _main_parser()
    subs = _subparsers(top)
    command = data.draw(st.sampled_from(["report", "experiment", "data", "nosuch", "--version"]), label="command")
    if command not in subs:
        return run_cli([command], sandbox)
    parser, argv = subs[command], [command]
    if command != "report":
        actions = _subparsers(parser)
        action = data.draw(st.sampled_from([*actions, "nosuch"]), label="action")
        argv.append(action)
        parser = actions.get(action, parser)
        positionals = [a for a in parser._actions if not a.option_strings]
        if positionals:
            names = catalog.names("experiment") if command == "experiment" else catalog.names("dataset")
            argv.append(data.draw(st.sampled_from([*names, "nosuch", ""]), label="name"))
        if command == "data" and action == "info" and data.draw(st.booleans()):
            argv += ["--data-dir", str(sandbox / "nosuch")]
    else:
        argv.append(data.draw(st.sampled_from([str(sandbox / "runs"), str(sandbox / "runs" / "gpt"),
                                               str(sandbox / "nosuch"), str(sandbox / "runs" / "gpt" / "config.json"),
                                               ""]), label="dir"))
        if data.draw(st.booleans()):
            argv += ["--out", str(sandbox / "scratch" / "report")]
        return run_cli(argv, sandbox)
    argv += data.draw(flags(parser, avoid=("--out", "--data-dir")), label="flags")
    run_cli(argv, sandbox)


def _train(data, sandbox):
    train_case(data, sandbox)


def _eval(data, sandbox):
    run_command_case(data, sandbox, "eval")


def _sample(data, sandbox):
    run_command_case(data, sandbox, "sample")


def _others(data, sandbox):
    other_command_case(data, sandbox)


test_train_flags, test_train_flags_deep = profiles(_train)
test_eval_flags, test_eval_flags_deep = profiles(_eval)
test_sample_flags, test_sample_flags_deep = profiles(_sample)
test_other_commands, test_other_commands_deep = profiles(_others)


# ------------------------------------------------------------------ damaged files
@st.composite
def damaged_bytes(draw, raw: bytes) -> bytes:
    """``raw`` truncated, bit-flipped, with bytes overwritten or appended, or emptied."""
    how = draw(st.sampled_from(["truncate", "flip", "overwrite", "append", "empty"]))
    if how == "truncate" and raw:
        return raw[:draw(st.integers(0, len(raw) - 1))]
    if how == "flip" and raw:
        b = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if how == "overwrite" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        return raw[:i] + draw(st.binary(min_size=1, max_size=16)) + raw[i + 16:]
    if how == "append":
        return raw + draw(st.binary(min_size=1, max_size=64))
    return b""


def _loads_or_refuses(fn):
    """``fn()`` returns, or raises a GenlabError with a one-line message."""
    try:
        return fn()
    except GenlabError as e:
        assert "\n" not in str(e).strip(), str(e)
        return None


def _idx(data, sandbox):
    from genlab.data.idx import read_idx, write_idx
    root = sandbox / "scratch" / f"idx{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "mnist").mkdir(parents=True)
    images = np.zeros((3, 28, 28), np.uint8)
    files = {"train-images-idx3-ubyte": images, "train-labels-idx1-ubyte": np.arange(3, dtype=np.uint8),
             "t10k-images-idx3-ubyte": images, "t10k-labels-idx1-ubyte": np.arange(3, dtype=np.uint8)}
    for name, a in files.items():
        write_idx(root / "mnist" / name, a)
    victim = data.draw(st.sampled_from(sorted(files)), label="file")
    path = root / "mnist" / victim
    raw = data.draw(st.one_of(damaged_bytes(path.read_bytes()),
                              st.builds(lambda dims: struct.pack(">BBBB", 0, 0, 8, len(dims)) +
                                        struct.pack(f">{len(dims)}I", *dims),
                                        st.lists(st.integers(0, 2 ** 32 - 1), min_size=1, max_size=4))),
                    label="bytes")
    path.write_bytes(raw)
    _loads_or_refuses(lambda: read_idx(path))
    from genlab.data.registry import load_dataset
    _loads_or_refuses(lambda: load_dataset("mnist", data.draw(st.sampled_from(["train", "test"])), data_dir=str(root)))


def _text(data, sandbox):
    from genlab.data.registry import load_dataset
    root = sandbox / "scratch" / "text"
    (root / "tinyshakespeare").mkdir(parents=True, exist_ok=True)
    raw = data.draw(damaged_bytes(b"First Citizen:\nBefore we proceed any further, hear me speak.\n"))
    (root / "tinyshakespeare" / "input.txt").write_bytes(raw)
    _loads_or_refuses(lambda: load_dataset("tinyshakespeare", "train", data_dir=str(root)))


JSON_VALUES = [None, "abc", "", float("nan"), float("inf"), -1, 0, 10 ** 20, -(10 ** 20), 0.5, [], {}, [1, 2], True]


@st.composite
def damaged_json(draw, obj):
    """``obj`` with one value somewhere in it replaced, or a key dropped."""
    paths = []

    def walk(o, path):
        if isinstance(o, dict):
            for k, v in o.items():
                paths.append(path + (k,))
                walk(v, path + (k,))
        elif isinstance(o, list) and len(o) <= 64:
            for i, v in enumerate(o):
                paths.append(path + (i,))
                walk(v, path + (i,))
    walk(obj, ())
    obj = json.loads(json.dumps(obj))
    path = draw(st.sampled_from(paths))
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(st.sampled_from(JSON_VALUES))
    return obj


def _copy_run(sandbox, name: str) -> Path:
    dest = sandbox / "scratch" / f"copy-{name}"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(sandbox / "runs" / name, dest)
    return dest


def _config(data, sandbox):
    name = data.draw(st.sampled_from(sorted(TINY)), label="run")
    run = _copy_run(sandbox, name)
    cfg = json.loads((run / "config.json").read_text())
    if data.draw(st.booleans()):
        text = json.dumps(data.draw(damaged_json(cfg), label="config"))
    else:
        text = data.draw(damaged_bytes(json.dumps(cfg).encode()), label="bytes").decode("utf-8", "replace")
    (run / "config.json").write_text(text)
    command = data.draw(st.sampled_from([["sample", str(run), "-n", "3"], ["eval", str(run)],
                                         ["train", "--resume", str(run)], ["report", str(run)]]))
    run_cli(command, sandbox)


def _checkpoint(data, sandbox):
    name = data.draw(st.sampled_from(sorted(TINY)), label="run")
    run = _copy_run(sandbox, name)
    path = next((run / "checkpoints").glob("*.pt"))
    how = data.draw(st.sampled_from(["bytes", "nan", "shape", "drop", "counter"]), label="how")
    if how == "bytes":
        path.write_bytes(data.draw(damaged_bytes(path.read_bytes())))
    else:
        ckpt = torch.load(path, weights_only=True)
        weights = ckpt["model"]
        key = data.draw(st.sampled_from(sorted(weights)), label="tensor")
        if how == "nan":
            weights[key] = torch.full_like(weights[key], data.draw(st.sampled_from([math.nan, math.inf])))
        elif how == "shape":
            weights[key] = torch.zeros(data.draw(st.lists(st.integers(0, 5), max_size=3)))
        elif how == "drop":
            del weights[key]
        else:
            ckpt[data.draw(st.sampled_from(["global_step", "epoch"]))] = data.draw(st.sampled_from(["abc", -5, 1.5]))
        torch.save(ckpt, path)
    command = data.draw(st.sampled_from([["sample", str(run), "-n", "3"], ["eval", str(run)],
                                         ["train", "--resume", str(run)]]))
    run_cli(command, sandbox)


def _scene(data, sandbox):
    from PIL import Image

    from genlab.data.registry import load_dataset
    root = sandbox / "scratch" / "scene"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if data.draw(st.booleans(), label="blender"):
        frames = []
        for i in range(3):
            Image.fromarray(np.full((4, 4, 4), 128, np.uint8), "RGBA").save(root / f"r_{i}.png")
            pose = np.eye(4)
            pose[2, 3] = 4.0
            frames.append({"file_path": f"./r_{i}", "transform_matrix": pose.tolist()})
        meta = {"camera_angle_x": 0.69, "frames": frames}
        if data.draw(st.booleans()):
            meta |= {"fl_x": 5.0, "fl_y": 5.0, "cx": 2.0, "cy": 2.0}
        text = json.dumps(data.draw(damaged_json(meta), label="transforms"))
        if data.draw(st.integers(0, 4)) == 0:
            text = data.draw(damaged_bytes(text.encode())).decode("utf-8", "replace")
        (root / "transforms_train.json").write_text(text)
        split = data.draw(st.sampled_from(["train", "val", "test"]))
        _loads_or_refuses(lambda: load_dataset("blender", split, scene_dir=str(root)))
        return
    n = data.draw(st.integers(0, 4), label="views")
    arrays = {"images": np.full((n, 4, 4, 3), 0.5, np.float32), "poses": np.tile(np.eye(4), (n, 1, 1)),
              "focal": np.float64(5.0), "alphas": np.ones((n, 4, 4), np.float32)}
    key = data.draw(st.sampled_from(sorted(arrays)), label="array")
    arrays[key] = data.draw(st.sampled_from([
        np.full(arrays[key].shape, np.nan, np.float32), np.zeros((2, 3)), np.zeros(()), np.array("abc"),
        np.zeros((n, 4, 4, 5)), np.array([0.0]), np.array([-1.0]), np.zeros((0,)), arrays[key].astype(np.float16),
        np.full(arrays[key].shape, 1e30)]), label="value")
    np.savez(root / "scene.npz", **arrays)
    path = root / "scene.npz"
    if data.draw(st.integers(0, 3)) == 0:
        path.write_bytes(data.draw(damaged_bytes(path.read_bytes())))
    background = data.draw(st.sampled_from(["auto", "white", "black"]))
    _loads_or_refuses(lambda: load_dataset("tiny-nerf", "train", file=str(path), background=background))


test_idx_files, test_idx_files_deep = profiles(_idx)
test_text_files, test_text_files_deep = profiles(_text)
test_run_configs, test_run_configs_deep = profiles(_config)
test_checkpoints, test_checkpoints_deep = profiles(_checkpoint)
test_scene_files, test_scene_files_deep = profiles(_scene)
