"""The ``genlab`` command. Every command reads or writes a run folder; see ``genlab --help``.

User mistakes end with one line on stderr and exit status 2; Ctrl-C with 130, SIGTERM with 143.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import signal
import sys

from genlab import __version__
from genlab.errors import GenlabError

EPILOG = """examples:
  genlab train vae --data digits --epochs 30 --out runs/vae     train (figures + test metrics at the end)
  genlab train vae --help                                       every flag of a model, its data and training
  genlab eval runs/vae --json                                   test metrics as one JSON object
  genlab sample runs/vae -n 64                                  samples (images, points, text, ...)
  genlab report runs/vae                                        redraw a run's figures
  genlab report runs --out report                               HTML report of every run in runs/
  genlab experiment list                                        the classic experiments
  genlab experiment run kl-check --quick                        one of them, in under a minute
  torchrun --nproc_per_node 2 -m genlab train vae ...           the same run on 2 processes (DDP)
"""


class _Parser(argparse.ArgumentParser):
    """argparse that exits with 2 and one line (not the usage block) on a bad flag."""

    def error(self, message):
        _fail(f"{self.prog}: error: {message} (see `{self.prog} --help`)")
        raise SystemExit(2)


def _fail(line: str) -> None:
    """Print a user error. Under ``torchrun`` every worker checks the same command line, so only rank 0
    prints it; every rank also leaves it in the launcher's error file, so the launcher's closing
    "Root Cause" block shows this line instead of a pointer to its traceback docs."""
    line = line.replace("\r", "\\r").replace("\n", "\\n")   # a value with a newline in it stays on the line
    if _is_main():
        print(line, file=sys.stderr)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE") if "WORLD_SIZE" in os.environ else None
    if error_file:
        import json
        import time
        try:
            with open(error_file, "w") as f:
                json.dump({"message": {"message": line, "extraInfo": {"py_callstack": line,
                                                                       "timestamp": str(int(time.time()))}}}, f)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except BrokenPipeError:   # `genlab eval RUN --json | head -1`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("genlab: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    parser = _Parser(prog="genlab", description="Deep generative models: train, evaluate, sample and show "
                     "them; reproduce classic experiments.", epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"genlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("train", help="train a model (genlab train MODEL --help)", add_help=False)
    sub.add_parser("eval", help="evaluate a run on its test split (genlab eval RUN --help)", add_help=False)
    sub.add_parser("sample", help="draw from a run (genlab sample RUN --help)", add_help=False)
    p = sub.add_parser("report", help="HTML report of a folder of runs (DIR/index.html), or redraw one run's figures",
                       description="On a folder of runs (or with --out): write a static HTML report, DIR/index.html "
                       "(default RUNS_DIR/report/). On a single run folder: redraw its figures into RUN/figures.")
    p.add_argument("run_dir", metavar="RUNS_DIR", help="a folder of runs and experiments, or one run folder")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write the HTML report into DIR (default RUNS_DIR/report)")
    p = sub.add_parser("experiment", help="list or run the classic experiments")
    esub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    esub.add_parser("list", help="list experiments")
    er = esub.add_parser("run", help="run one experiment",
                         epilog="Some experiments take flags of their own: `genlab experiment run NAME --help`.")
    er.add_argument("name")
    er.add_argument("--quick", action="store_true", help="a small version that finishes in under a minute")
    er.add_argument("--out", default=None, help="output folder, new or empty (default runs/experiments/NAME, "
                                                "numbered if taken)")
    er.add_argument("--overwrite", action="store_true",
                    help="replace this experiment's own earlier output in --out (never other files)")
    er.add_argument("--data-dir", default=None, help="local folder with dataset files (else $GENLAB_DATA / download)")
    exp = _named_experiment(argv)
    if exp is not None and exp.options is not None:   # the experiment's own flags
        from genlab.config import add_config_flags
        er.description = f"{exp.name}: {exp.description}"
        add_config_flags(er, exp.options, f"options of {exp.name}", {a for x in er._actions for a in x.option_strings})
    p = sub.add_parser("data", help="list datasets, describe one, or prepare the FID classifier")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    dsub.add_parser("list", help="list datasets")
    di = dsub.add_parser("info", help="describe a dataset")
    di.add_argument("name")
    di.add_argument("--data-dir", default=None)
    di.add_argument("--load", action="store_true", help="also load every split and report sizes")
    dp = dsub.add_parser("prepare-fid", help="train and cache the local classifier that FID uses for a dataset")
    dp.add_argument("name")
    dp.add_argument("--data-dir", default=None)

    commands = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample}
    if argv and argv[0] in commands:
        return _guard(lambda: commands[argv[0]](argv[1:]))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handler = {"report": cmd_report, "experiment": cmd_experiment, "data": cmd_data}[args.command]
    return _guard(lambda: handler(args))


# a file system that refuses a write: the user can fix it, so one line, not a traceback
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _guard(fn) -> int:
    try:
        return fn() or 0
    except GenlabError as e:
        _fail(f"genlab: error: {e}")
        return 2
    except OSError as e:
        if e.errno not in _DISK_ERRORS:
            raise
        where = f"{e.filename}: " if e.filename else ""
        _fail(f"genlab: error: {where}{e.strerror or e}; free some space or fix the permissions (a run's last "
              f"checkpoint is kept; continue it with `genlab train --resume RUN_DIR`)")
        return 2


def _named_experiment(argv: list[str]):
    """The declaration of the experiment named by ``genlab experiment run NAME ...``, if it exists."""
    from genlab import catalog
    if len(argv) > 2 and argv[:2] == ["experiment", "run"] and argv[2] in catalog.names("experiment"):
        return catalog.get("experiment", argv[2])
    return None


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _run_model(run_dir: str) -> str:
    from genlab.training.rundir import RunDir
    return RunDir(run_dir).read_config()["model"]


def _first(argv: list[str]) -> str | None:
    """The leading positional argument (a model or a run folder), if any."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def _pre(argv: list[str], *names: str, positional: str | None = None) -> argparse.Namespace:
    pre = _Parser(prog="genlab", add_help=False)
    if positional:
        pre.add_argument(positional, nargs="?")
    for n in names:
        pre.add_argument(n)
    return pre.parse_known_args(argv)[0]


# ------------------------------------------------------------------ train
def train_parser(model: str | None, data: str | None) -> tuple[argparse.ArgumentParser, dict]:
    from genlab import catalog
    from genlab.config import add_config_flags
    from genlab.data.registry import get_spec
    from genlab.model import check_data_fits, fitting_datasets, get_model_spec
    from genlab.training.config import TrainConfig
    models = "\n".join(f"  {n:<16} {get_model_spec(n).description}" for n in catalog.names("model")) \
        if model is None else ""
    p = _Parser(
        prog="genlab train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a model into a run folder; then write its test metrics (eval.json) and figures.",
        epilog=(f"models:\n{models}\n\n" if models else "") +
               (f"datasets that fit {model}: {', '.join(fitting_datasets(model))}\n\n" if model else
                f"datasets: {', '.join(catalog.names('dataset'))}\n\n") +
               "Any config field is a flag: `genlab train MODEL --data NAME --help` lists them.\n"
               "A run folder that holds a run is never overwritten: continue it with\n"
               "`genlab train --resume RUN_DIR`, or start again with --overwrite.")
    p.add_argument("model", nargs="?", metavar="MODEL", help="model to train (see the list below)")
    p.add_argument("--data", default=None, help="dataset (default: the model's default)")
    p.add_argument("--out", default=None, help="run folder (default runs/MODEL-DATA, numbered if taken)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--no-report", action="store_true", help="skip test metrics and figures after training")
    p.add_argument("--no-fid", action="store_true", help="skip FID in the final test metrics")
    groups = {}
    taken = {a for action in p._actions for a in action.option_strings}
    if model:
        spec = get_model_spec(model)
        data = data or spec.default_data
        dspec = get_spec(data)
        check_data_fits(model, data)   # before --help lists the flags of data the model cannot take
        groups["model"] = (spec.config, add_config_flags(p, spec.config, f"model: {model}", taken, "model-"))
        groups["data"] = (dspec.config, add_config_flags(p, dspec.config, f"data: {data}", taken, "data-",
                                                         defaults=spec.data_defaults))
        groups["eval"] = (spec.eval_config, add_config_flags(p, spec.eval_config, "final test metrics", taken, "eval-"))
    groups["train"] = (TrainConfig, add_config_flags(p, TrainConfig, "training", taken, "train-",
                                                     defaults=get_model_spec(model).train_defaults if model else None))
    return p, groups


def cmd_train(argv: list[str]) -> int:
    from genlab.api import train, write_report
    from genlab.config import overrides_from_args
    from genlab.training.run import resume_run
    from genlab.training.rundir import RunDir
    known = _pre(argv, "--data", "--resume")
    model = argv[0] if argv and not argv[0].startswith("-") else None
    data = known.data
    if known.resume:   # the run's own model and dataset decide which flags exist
        config = RunDir(known.resume).read_config()
        if model and model != config["model"]:
            raise GenlabError(f"{known.resume} is a {config['model']} run, not {model}; "
                              f"resume it with `genlab train --resume {known.resume}`")
        model, data = config["model"], config["data"]
    parser, groups = train_parser(model, data)
    args = parser.parse_args(argv)
    ov = {k: overrides_from_args(args, cls) for k, (cls, _) in groups.items()}
    extras = {"fid"} if args.no_fid else True
    if args.resume:
        if ov.get("model") or ov.get("data") or args.data:
            raise GenlabError("--resume continues a run with its own model and data settings; "
                              "only training flags (e.g. --epochs) may change")
        run = resume_run(args.resume, **ov["train"])
    else:
        if not args.model:
            parser.error("name a MODEL to train, or --resume RUN_DIR")
        from genlab.model import get_model_spec
        data = args.data or get_model_spec(args.model).default_data
        out = args.out or RunDir.fresh_default("runs", f"{args.model}-{data}").path
        run = train(args.model, data, out, report=False, overwrite=args.overwrite, model_options=ov.get("model"),
                    data_options=ov.get("data"), train_options=ov["train"])
    no_report = args.no_report
    if run.dir is not None and _is_main():   # --no-report is part of the run: a resume keeps it
        folder = RunDir(run.dir)
        config = folder.read_config()
        no_report = no_report or bool(config.get("no_report", False))
        if no_report and not config.get("no_report"):
            folder.write_config(config | {"no_report": True})
    if run.state.interrupted:
        if _is_main() and run.dir is not None and not run.state.idle:   # the curves so far, as a finished run has
            from genlab.viz.report import training_curves
            for path in training_curves(run, run.folder.figures) or []:
                print(f"curves so far: {path}", file=sys.stderr)
        return 143 if run.state.signal == signal.SIGTERM else 130
    if not no_report and _is_main() and run.dir is not None and not run.state.idle:
        record, figures = write_report(run, eval_options=ov.get("eval"), extras=extras)
        print(f"\nrun folder: {run.dir}")
        print("test metrics:", ", ".join(f"{k}={v:.4g}" for k, v in record["metrics"].items()
                                         if isinstance(v, (int, float))))
        print("figures:", ", ".join(str(p.relative_to(run.dir)) for p in figures))
        print(f"time: training {_seconds(run.folder.read_summary().get('train_time_s'))} (summary.json), "
              f"evaluation {_seconds(record.get('eval_time_s'))} (eval.json)")
        print("next:")
        print(f"  genlab eval {run.dir} --json")
        example = run.spec.sample_example
        print(f"  genlab sample {run.dir} {example(run) if callable(example) else example}".rstrip())
        print(f"  genlab report {run.dir}")
    return 0


def _seconds(s) -> str:
    """A duration as progress lines write it ('42 s', '4 m', '1.2 h'), or '?' when unknown."""
    from genlab.progress import duration
    return duration(s) if isinstance(s, (int, float)) else "?"


# ------------------------------------------------------------------ eval and sample
def _run_parser(command: str, description: str, run_dir: str | None, group: str):
    """A parser with the generic flags of `genlab eval|sample RUN` and the run's family flags."""
    from genlab.config import add_config_flags
    p = _Parser(prog=f"genlab {command}", description=description)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `genlab train`")
    p.add_argument("--seed", type=int, default=0, help="seed for every random draw (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps "
                   "(default: auto, as `genlab train`)")
    p.add_argument("--data-dir", default=None, help="where the run's dataset lives now (else the folder it was "
                   "trained from, $GENLAB_DATA, or a download)")
    cls = None
    if run_dir:
        from genlab.model import get_model_spec
        spec = get_model_spec(_run_model(run_dir))
        cls = getattr(spec, group)
        add_config_flags(p, cls, f"{spec.name} options", {a for x in p._actions for a in x.option_strings})
    return p, cls


def _data_dir(args) -> str | None:
    return args.data_dir or None


def cmd_eval(argv: list[str]) -> int:
    import json

    from genlab.config import overrides_from_args
    from genlab.eval.evaluate import evaluate
    p, cls = _run_parser("eval", "Evaluate a run: its model's metrics on a split, plus extra metrics "
                         "(FID, true-data NLL, ...) that apply.", _first(argv), "eval_config")
    p.add_argument("--json", action="store_true", help="print one JSON object (the eval.json schema)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples (N > 0)")
    p.add_argument("--no-fid", action="store_true", help="skip FID (its classifier takes minutes to train once)")
    p.add_argument("--hypotheses", metavar="FILE", default=None, help="translators: write the detokenized "
                   "translations BLEU was computed from, one per line (a new file; rescore with `sacrebleu`)")
    p.add_argument("--references", metavar="FILE", default=None,
                   help="translators: write the references they were scored against, one per line (a new file)")
    args = p.parse_args(argv)
    options = overrides_from_args(args, cls) if cls else {}
    write_texts = {k: getattr(args, k) for k in ("hypotheses", "references") if getattr(args, k)}
    result = evaluate(args.run_dir, split=args.split, seed=args.seed, limit=args.limit, device=args.device,
                      progress=not args.json, data_dir=_data_dir(args), options=options,
                      extras={"fid"} if args.no_fid else True, write_texts=write_texts)
    if args.json:
        from genlab.training.rundir import dumps
        print(dumps(result, indent=None))
        return 0
    print(f"{result['model']} on {result['data']} ({result['split']}, {result['examples']} examples, "
          f"seed {result['seed']}):")
    metrics = result["metrics"]
    for k, v in metrics.items():
        if k.endswith("_signature") and k.removesuffix("_signature") in metrics:
            continue   # printed beside its score
        line = f"  {k:<22} {v:.5g}" if isinstance(v, float) else f"  {k:<22} {json.dumps(v)}"
        print(line + (f"  ({metrics[k + '_signature']})" if k + "_signature" in metrics else ""))
    return 0


def cmd_sample(argv: list[str]) -> int:
    from genlab.api import sample
    from genlab.config import overrides_from_args
    p, cls = _run_parser("sample", "Draw from a run: an image grid, points, text, renders -- as its family "
                         "declares.", _first(argv), "sample_config")
    p.add_argument("-n", type=int, default=64, help="how many samples (text models: tokens) (default 64)")
    p.add_argument("--out", default=None, help="output file (default RUN_DIR/samples/...)")
    args = p.parse_args(argv)
    options = overrides_from_args(args, cls) if cls else {}
    for line in sample(args.run_dir, args.n, args.seed, args.out, args.device, options=options):
        print(line)
    return 0


# ------------------------------------------------------------------ other commands
def cmd_report(args) -> int:
    from genlab.training.rundir import RunDir
    if args.out is not None or not RunDir(args.run_dir).is_run():
        from genlab.report import write_html_report
        print(write_html_report(args.run_dir, args.out))
        return 0
    from genlab.training.run import load_run
    from genlab.viz import make_figures
    run = load_run(args.run_dir)
    for path in make_figures(run):
        print(path)
    return 0


def cmd_experiment(args) -> int:
    from genlab.experiments import list_experiments, run_experiment
    from genlab.training.rundir import dumps
    if args.action == "list":
        for e in list_experiments():
            print(f"{e.name:<26} [{e.family}] {e.description}")
        return 0
    from genlab import catalog
    from genlab.config import overrides_from_args
    exp = catalog.get("experiment", args.name)
    options = overrides_from_args(args, exp.options) if exp.options is not None else None
    summary = run_experiment(args.name, args.out, args.quick, args.data_dir, options=options,
                             overwrite=args.overwrite)
    print(dumps(summary))
    return 0


def cmd_data(args) -> int:
    from genlab.config import to_dict
    from genlab.data.registry import data_config, get_spec, list_datasets, load_dataset
    if args.action == "list":
        for s in list_datasets():
            print(f"{s.name:<16} [{s.group}] {s.description}")
        return 0
    if args.action == "prepare-fid":
        from genlab.eval.fid import prepare_fid
        print(prepare_fid(args.name, args.data_dir))
        return 0
    spec = get_spec(args.name)
    fields = {f.name for f in dataclasses.fields(spec.config)}
    cfg = data_config(args.name, {"data_dir": args.data_dir} if args.data_dir and "data_dir" in fields else {})
    print(f"{spec.name}: {spec.description}")
    for k, v in (spec.details(cfg) if spec.details else {}).items():
        if isinstance(v, dict):
            print(f"  {k}:")
            for kk, vv in v.items():
                print(f"    {kk}  {vv}")
        else:
            print(f"  {k}: {v}")
    print("  options: " + ", ".join(f"--{k.replace('_', '-')} (default {v})" for k, v in to_dict(cfg).items()))
    if args.load:
        for split in ("train", "val", "test"):
            d = load_dataset(args.name, split, config=cfg)
            print(f"  {split}: {len(d)} examples of shape {tuple(d.info.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
