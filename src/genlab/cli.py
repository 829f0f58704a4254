"""The ``genlab`` command. Every command reads or writes a run folder; see ``genlab --help``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import GenlabError

EPILOG = """examples:
  genlab train vae --data digits --epochs 30 --out runs/vae     train (figures + test metrics at the end)
  genlab train vae --help                                       every flag of a model, its data and training
  genlab eval runs/vae --json                                   test metrics as one JSON object
  genlab sample runs/vae -n 64                                  a grid of samples
  genlab experiment list                                        the classic experiments
  genlab experiment run kl-check --quick                        one of them, in under a minute
  torchrun --nproc_per_node 2 -m genlab train vae ...           the same run on 2 processes (DDP)
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="genlab", description="Deep generative models: train, evaluate, "
                                     "sample and show them; reproduce classic experiments.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"genlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train a model (genlab train MODEL --help)", add_help=False)
    p = sub.add_parser("eval", help="evaluate a run on its test split")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--seed", type=int, default=0, help="seed for the Monte-Carlo estimates (default 0)")
    p.add_argument("--iwae-k", type=int, default=100, help="importance samples for nll_nats (default 100)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("sample", help="draw samples from a run")
    p.add_argument("run_dir")
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output PNG (default RUN_DIR/samples/samples_N.png)")
    p = sub.add_parser("report", help="draw every figure of a run into RUN_DIR/figures")
    p.add_argument("run_dir")
    p = sub.add_parser("experiment", help="list or run the classic experiments")
    esub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    esub.add_parser("list", help="list experiments")
    er = esub.add_parser("run", help="run one experiment")
    er.add_argument("name")
    er.add_argument("--quick", action="store_true", help="a small version that finishes in under a minute")
    er.add_argument("--out", default=None, help="output folder (default runs/experiments/NAME)")
    er.add_argument("--data-dir", default=None, help="local folder with dataset files (else $GENLAB_DATA / download)")
    p = sub.add_parser("data", help="list datasets or describe one")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    dsub.add_parser("list", help="list datasets")
    di = dsub.add_parser("info", help="describe a dataset")
    di.add_argument("name")
    di.add_argument("--data-dir", default=None)
    di.add_argument("--load", action="store_true", help="also load every split and report sizes")

    if argv and argv[0] == "train":
        return _guard(lambda: cmd_train(argv[1:]))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handler = {"eval": cmd_eval, "sample": cmd_sample, "report": cmd_report, "experiment": cmd_experiment,
               "data": cmd_data}[args.command]
    return _guard(lambda: handler(args))


def _guard(fn) -> int:
    try:
        return fn() or 0
    except GenlabError as e:
        print(f"genlab: error: {e}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------ train
def train_parser(model: str | None, data: str | None) -> tuple[argparse.ArgumentParser, dict]:
    from .config import add_config_flags
    from .data.registry import get_spec, list_datasets
    from .models.base import MODELS, get_model_spec
    from .train.config import TrainConfig
    get_model_spec("vae")  # registers the built-in models
    models = "\n".join(f"  {n:<16} {s.description}" for n, s in sorted(MODELS.items()))
    datasets = ", ".join(s.name for s in list_datasets())
    p = argparse.ArgumentParser(
        prog="genlab train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a model. After training it writes figures and test metrics into the run folder.",
        epilog=f"models:\n{models}\n\ndatasets: {datasets}\n\n"
               "Any config field is a flag: `genlab train MODEL --data NAME --help` lists them.\n"
               "Resume an interrupted run with `genlab train --resume RUN_DIR`.")
    p.add_argument("model", nargs="?", choices=sorted(MODELS), metavar="MODEL", help="model to train")
    p.add_argument("--data", default=None, help="dataset (default: the model's default, usually digits)")
    p.add_argument("--out", default=None, help="run folder (default runs/MODEL-DATA)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    p.add_argument("--no-report", action="store_true", help="skip figures and test metrics after training")
    p.add_argument("--iwae-k", type=int, default=100, help="importance samples for the final test nll (default 100)")
    groups = {}
    taken = {a for action in p._actions for a in action.option_strings}
    if model:
        spec = get_model_spec(model)
        data = data or spec.default_data
        groups["model"] = (spec.config, add_config_flags(p, spec.config, f"model: {model}", taken, "model-"))
        groups["data"] = (get_spec(data).config, add_config_flags(p, get_spec(data).config, f"data: {data}", taken, "data-"))
    groups["train"] = (TrainConfig, add_config_flags(p, TrainConfig, "training", taken, "train-"))
    return p, groups


def cmd_train(argv: list[str]) -> int:
    from .config import overrides_from_args
    from .train.run import resume_run, train
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("model", nargs="?")
    pre.add_argument("--data")
    pre.add_argument("--resume")
    known, _ = pre.parse_known_args(argv)
    model, data = known.model, known.data
    if known.resume:   # the run's own model and dataset decide which flags exist
        from .train.run import read_config
        config = read_config(known.resume)
        model, data = config["model"], config["data"]
    parser, groups = train_parser(model, data)
    args = parser.parse_args(argv)
    ov = {k: overrides_from_args(args, cls) for k, (cls, _) in groups.items()}
    if args.resume:
        if ov.get("model") or ov.get("data"):
            raise GenlabError("--resume continues a run with its own model and data settings; "
                              "only training flags (e.g. --epochs) may change")
        run = resume_run(args.resume, **ov["train"])
    else:
        if not args.model:
            parser.error("name a MODEL to train, or --resume RUN_DIR")
        from .models.base import get_model_spec
        data = args.data or get_model_spec(args.model).default_data
        out = Path(args.out or Path("runs") / f"{args.model}-{data}")
        run = train(args.model, data, out, model_options=ov.get("model"), data_options=ov.get("data"),
                    train_options=ov["train"])
    if run.state.interrupted:
        return 130
    if not args.no_report and _is_main():
        _report(run, iwae_k=args.iwae_k)
    return 0


def _is_main() -> bool:
    import os
    return int(os.environ.get("RANK", "0")) == 0


def _report(run, iwae_k: int) -> None:
    from .eval import evaluate
    from .viz import make_figures
    result = evaluate(run, iwae_k=iwae_k, progress=True)
    (run.dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    figures = make_figures(run)
    print(f"\nrun folder: {run.dir}")
    print("test metrics:", ", ".join(f"{k}={v:.4g}" for k, v in result["metrics"].items()))
    print("figures:", ", ".join(str(p.relative_to(run.dir)) for p in figures))
    print(f"next: genlab eval {run.dir} --json | genlab sample {run.dir} -n 64")


# ------------------------------------------------------------------ other commands
def cmd_eval(args) -> int:
    from .eval import evaluate
    result = evaluate(args.run_dir, split=args.split, seed=args.seed, iwae_k=args.iwae_k, limit=args.limit,
                      device=args.device, progress=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']} on {result['data']} ({result['split']}, {result['examples']} examples, "
              f"seed {result['seed']}):")
        for k, v in result["metrics"].items():
            print(f"  {k:<14} {v:.5g}")
    return 0


def cmd_sample(args) -> int:
    import torch
    from .train.run import load_run
    from .viz import save_image_grid
    run = load_run(args.run_dir)
    if not hasattr(run.model, "sample"):
        raise GenlabError(f"model {run.model_name} cannot sample")
    torch.manual_seed(args.seed)
    x = run.model.sample(args.n)
    out = Path(args.out or run.dir / "samples" / f"samples_{args.n}.png")
    if run.data_info.kind == "image":
        save_image_grid(x, out, nrow=int(max(1, round(args.n ** 0.5))))
    else:
        out = out.with_suffix(".csv")
        out.parent.mkdir(parents=True, exist_ok=True)
        import numpy as np
        np.savetxt(out, x.reshape(len(x), -1).cpu().numpy(), delimiter=",")
    print(out)
    return 0


def cmd_report(args) -> int:
    from .train.run import load_run
    from .viz import make_figures
    run = load_run(args.run_dir)
    for path in make_figures(run):
        print(path)
    return 0


def cmd_experiment(args) -> int:
    from .experiments import list_experiments, run_experiment
    if args.action == "list":
        for e in list_experiments():
            print(f"{e.name:<26} [{e.family}] {e.description}")
        return 0
    summary = run_experiment(args.name, args.out, args.quick, args.data_dir)
    print(json.dumps(summary, indent=2, default=float))
    return 0


def cmd_data(args) -> int:
    from .data.registry import data_config, get_spec, list_datasets, load_dataset
    if args.action == "list":
        for s in list_datasets():
            print(f"{s.name:<16} [{s.group}] {s.description}")
        return 0
    spec = get_spec(args.name)
    cfg = data_config(args.name, {"data_dir": args.data_dir} if args.data_dir else {}) \
        if args.data_dir else data_config(args.name)
    print(f"{spec.name}: {spec.description}")
    for k, v in (spec.details(cfg) if spec.details else {}).items():
        if isinstance(v, dict):
            print(f"  {k}:")
            for kk, vv in v.items():
                print(f"    {kk}  {vv}")
        else:
            print(f"  {k}: {v}")
    from .config import to_dict
    print("  options: " + ", ".join(f"--{k.replace('_', '-')} (default {v})" for k, v in to_dict(cfg).items()))
    if args.load:
        for split in ("train", "val", "test"):
            d = load_dataset(args.name, split, config=cfg)
            print(f"  {split}: {len(d)} examples of shape {tuple(d.info.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
