"""A static HTML report of a folder of runs: ``genlab report RUNS_DIR [--out DIR]`` writes ``DIR/index.html``.

    DIR/index.html              every run (family, model, data, key metrics, training time, status) and
                                every experiment summary found below RUNS_DIR
    DIR/run-<slug>.html         one run: status and message, config as written, eval.json's metrics,
                                training curves, every figure and sample of the run
    DIR/data-<slug>.html        the runs of one dataset side by side: one fixed table for every family
                                (bits/dim with its grey levels, NLL, FID with its real-image floor, PSNR,
                                BLEU, parameters, training and evaluation time), curves overlaid
    DIR/experiment-<slug>.html  an experiment's result card (claim, measured, expected, verdict), its
                                summary.json as tables, its figures; sampler comparisons (``cells`` of
                                ``sampler@steps``) drawn as FID against steps and against seconds
    DIR/files/<slug>/           copies of the runs' figures and the curves drawn here (matplotlib)

The report opens from the file system: no server, no network, CSS and JS inline, links relative.
Runs are read only through :class:`~genlab.training.rundir.RunDir`; a damaged file is shown as such, never
fatal. Every string that comes from a run is escaped by Jinja2's autoescape.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from genlab.errors import GenlabError
from genlab.training.logger import read_jsonl
from genlab.training.rundir import RunDir, read_json

# metrics shown first (when a run has them), in this order; the index shows the first three found
KEY_METRICS = ("bpd", "nll_nats", "elbo_nats", "fid", "perplexity", "bits_per_token", "bleu", "psnr", "ssim",
               "classifier_score", "surface_error", "reconstruction_error", "mse", "rec_loss", "loss")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg"}
TEXT_SUFFIXES = {".txt", ".csv"}
TEXT_LIMIT = 20_000          # characters of a text sample shown inline
SKIP_CURVE_KEYS = {"epoch", "step", "time_s", "examples_per_s", "lr", "split"}
MAX_CURVES = 6
# the dataset page's columns, the same for every family (eval.json metric, column title); a column is
# shown when at least one run of the dataset has it. A note under the value: bits/dim's number of grey
# levels K (bpd = NLL / (D log 2) of the K-level discrete data), FID's floor (real images vs real images)
CROSS_METRICS = (("bpd", "bits/dim"), ("nll_nats", "NLL (nats)"), ("fid", "FID"), ("psnr", "PSNR (dB)"),
                 ("bleu", "BLEU"))
CROSS_NOTES = {"bpd": ("bpd_levels", "{:g} levels"), "fid": ("fid_real_floor", "floor {:.3g}")}
# a result card's key number when summary.json has no ``measured`` (an experiment without a check):
# the first two of these top-level numbers it holds, with their units
HEADLINES = (("fid", "FID {}"), ("fid_local", "FID {}"), ("bpd", "{} bits/dim"), ("test_nll_nats", "{} nats"),
             ("nll_nats", "{} nats"), ("psnr", "PSNR {} dB"), ("bleu", "BLEU {}"),
             ("test_elbo_difference_nats", "ELBO difference {} nats"), ("abs_error_at_max", "error {}"))
# summary.json entries the result card shows, not repeated in the page's results tables
CARD_KEYS = ("experiment", "family", "quick", "claim", "verdict", "measured", "expected", "quick_cannot",
             "quick_note", "wall_time_s", "figures")


def write_html_report(runs_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of every run and experiment below ``runs_dir`` into ``out`` (default
    ``runs_dir/report``); returns the path of ``index.html``."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise GenlabError(f"{runs_dir}: no such folder; pass a folder of runs (the --out of `genlab train` "
                          f"or of `genlab experiment run`)")
    out = Path(out) if out else runs_dir / "report"
    if RunDir(out).is_run():
        raise GenlabError(f"--out {out} is a run folder; choose another folder for the report")
    runs, experiments = discover(runs_dir, skip=out)
    if not runs and not experiments:
        raise GenlabError(f"{runs_dir} holds no genlab runs or experiments (no config.json or experiment "
                          f"summary.json below it)")
    try:
        (out / "files").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GenlabError(f"cannot write the report into {out}: {e.strerror or e}; choose another --out") from None
    for run in runs:
        collect_run_files(run, out)
    groups = group_by_data(runs)
    for group in groups:
        group.curves = draw_overlay(group, out)
    for exp in experiments:
        collect_experiment_files(exp, out)
    render_pages(out, runs_dir, runs, groups, experiments)
    return out / "index.html"


# ------------------------------------------------------------------ what a report shows
@dataclass
class RunView:
    """Everything the pages show about one run folder (read once, through RunDir)."""
    name: str                       # the folder, relative to the runs folder
    slug: str                       # its file-name-safe form, unique in the report
    folder: RunDir
    model: str = "?"
    data: str = "?"
    family: str = ""
    status: str = "unknown"
    message: str = ""
    train_time_s: float | None = None
    steps: int | None = None
    epochs: int | None = None
    created: str = ""
    config_text: str = ""
    metrics: dict = field(default_factory=dict)      # eval.json's scalar metrics
    eval_info: dict = field(default_factory=dict)    # split, examples, seed, options
    problems: list = field(default_factory=list)     # damaged files, one line each
    rows: list = field(default_factory=list)         # metrics.jsonl
    figures: list = field(default_factory=list)      # (caption, href)
    texts: list = field(default_factory=list)        # (caption, text)
    curves: str | None = None                        # href of the drawn training curves
    parameters: int | None = None                    # the model's parameter count (from its config)

    @property
    def key_metrics(self) -> list[tuple[str, float]]:
        """The first three well-known metrics (KEY_METRICS) of eval.json; the others are on the run's page."""
        return [(k, v) for k, v in ordered_metrics(self.metrics) if k in KEY_METRICS][:3]

    @property
    def last_validation(self) -> list[tuple[str, float]]:
        """The last epoch's validation metrics from metrics.jsonl (loss first, at most two): what an
        unevaluated run (an experiment's, trained without a report) is compared by."""
        for row in reversed(self.rows):
            values = {k[4:]: v for k, v in row.items() if k.startswith("val/") and _number(v) is not None}
            if row.get("split") == "epoch" and values:
                return [(k, values[k]) for k in _metric_order(values)[:2]]
        return []

    @property
    def eval_time_s(self) -> float | None:
        return _number(self.eval_info.get("eval_time_s"))

    @property
    def short_name(self) -> str:
        """The run folder's own name; :attr:`parent` is the path above it (muted on the pages)."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str:
        return self.name.rsplit("/", 1)[0] + "/" if "/" in self.name else ""

    @property
    def key_metrics_all(self) -> list[tuple[str, object]]:
        """Every metric of eval.json: the scalars (well-known first), then the others as JSON."""
        scalars = ordered_metrics(self.metrics)
        names = {k for k, _ in scalars}
        return scalars + [(k, json.dumps(v)) for k, v in self.metrics.items() if k not in names]


@dataclass
class DataGroup:
    data: str
    slug: str
    runs: list
    columns: list = field(default_factory=list)      # (metric, title) of CROSS_METRICS some run has
    show_parameters: bool = False
    show_eval_time: bool = False
    curves: str | None = None


@dataclass
class ExperimentView:
    name: str
    slug: str
    path: Path
    summary: dict
    scalars: list = field(default_factory=list)      # (key, value) of top-level numbers / strings
    nested: list = field(default_factory=list)       # (key, pretty JSON) of lists and dicts
    figures: list = field(default_factory=list)
    runs: list = field(default_factory=list)         # RunViews below this experiment's folder
    tables: list = field(default_factory=list)       # (key, columns, rows) of nested records, as tables
    curves: list = field(default_factory=list)       # (caption, href, wide) drawn here (sampler comparisons)
    declared: str = ""                               # the claim (else description) this version declares

    def text(self, key: str) -> str:
        value = self.summary.get(key)
        return str(value) if value not in (None, "") else "—"

    @property
    def claim(self) -> str:
        """summary.json's ``claim``; for a summary written before claims, the experiment's declaration."""
        return self.text("claim") if self.summary.get("claim") or not self.declared else self.declared

    @property
    def verdict(self) -> str:
        return self.text("verdict")

    @property
    def expected(self) -> str:
        """What the claim expects (the course's or paper's reference): ``expected``, else an older
        summary's ``target``."""
        return self.text("expected") if "expected" in self.summary else self.text("target")

    @property
    def measured(self) -> str:
        """The key number with its units: the check's ``measured``, else the first two HEADLINES found."""
        if self.summary.get("measured") not in (None, ""):
            return str(self.summary["measured"])
        found = [form.format(format_number(self.summary[k])) for k, form in HEADLINES
                 if _number(self.summary.get(k)) is not None]
        return ", ".join(found[:2]) or "—"


def ordered_metrics(metrics: dict) -> list[tuple[str, float]]:
    """Scalar metrics, the well-known ones first (KEY_METRICS order), then the rest by name."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    known = [(k, scalars[k]) for k in KEY_METRICS if k in scalars]
    return known + sorted((k, v) for k, v in scalars.items() if k not in KEY_METRICS)


# ------------------------------------------------------------------ finding and reading runs
def discover(root: Path, skip: Path) -> tuple[list[RunView], list[ExperimentView]]:
    """Every run folder (holding config.json) and experiment folder (summary.json naming an experiment)
    below ``root``, in path order; ``skip`` (the report's own folder) is not searched."""
    runs, experiments, slugs = [], [], set()
    skip = skip.resolve()
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (here / d).resolve() != skip)
        name = here.relative_to(root).as_posix()
        name = root.resolve().name if name == "." else name
        if RunDir(here).is_run():
            runs.append(read_run(here, name, unique_slug(name, slugs)))
            dirnames[:] = []                       # a run's own subfolders hold no runs
        elif (here / "summary.json").is_file():
            exp = read_experiment(here, name, unique_slug(name, slugs))
            if exp is not None:
                experiments.append(exp)
    for exp in experiments:
        exp.runs = [r for r in runs if r.folder.path.resolve().is_relative_to(exp.path.resolve())]
    return runs, experiments


def unique_slug(name: str, taken: set) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"
    slug, i = base, 2
    while slug.lower() in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug.lower())
    return slug


def read_run(path: Path, name: str, slug: str) -> RunView:
    folder = RunDir(path)
    view = RunView(name=name, slug=slug, folder=folder)
    try:
        cfg = folder.read_config()
        view.model, view.data, view.created = str(cfg["model"]), str(cfg["data"]), str(cfg.get("created", ""))
        view.config_text = json.dumps(cfg, indent=2)
        view.family = family_of(view.model)
        view.parameters = count_parameters(cfg)
    except GenlabError as e:
        view.problems.append(str(e))
        view.config_text = _raw_text(folder.config)
    try:
        summary = folder.read_summary()
    except GenlabError as e:
        summary = {}
        view.problems.append(str(e))
    if summary:
        view.status = str(summary.get("status") or "unknown")
        view.message = str(summary.get("message") or "")
        view.train_time_s = _number(summary.get("train_time_s"))
        view.steps, view.epochs = summary.get("steps"), summary.get("epochs_done")
    else:
        view.message = "no summary.json: still training, or stopped before its first summary"
    try:
        record = folder.read_eval()
        view.metrics = dict(record.get("metrics") or {})
        view.eval_info = {k: record[k] for k in ("split", "examples", "seed", "options", "eval_time_s")
                          if k in record}
    except GenlabError as e:
        view.problems.append(str(e))
    try:
        view.rows = read_jsonl(folder.metrics_jsonl)
    except GenlabError as e:   # a damaged line: this run is shown without curves, with the reason
        view.problems.append(f"{e}; the curves are not drawn")
    except (ValueError, OSError) as e:
        view.problems.append(f"{folder.metrics_jsonl}: unreadable ({e})")
    return view


def family_of(model: str) -> str:
    """The family a model is declared in ('' for a model this version does not know)."""
    from genlab.model import get_model_spec
    try:
        return get_model_spec(model).family
    except (GenlabError, ImportError, RuntimeError):
        return ""


def count_parameters(cfg: dict) -> int | None:
    """The parameter count of the run's model, built from its config on the meta device (shapes only:
    :func:`genlab.model.check_model_size`); None for a model this version cannot build."""
    from genlab.config import from_dict
    from genlab.data.registry import DataInfo
    from genlab.model import check_model_size, get_model_spec
    try:
        spec = get_model_spec(str(cfg["model"]))
        config = from_dict(spec.config, cfg.get("model_config"), where="config.json")
        return check_model_size(spec, config, DataInfo.from_dict(cfg["data_info"]))
    except (GenlabError, ImportError, RuntimeError, KeyError, TypeError, ValueError):
        return None


def read_experiment(path: Path, name: str, slug: str) -> ExperimentView | None:
    try:
        summary = read_json(path / "summary.json", "summary")
    except GenlabError:
        return None
    if "experiment" not in summary:
        return None
    exp = ExperimentView(name=name, slug=slug, path=path, summary=summary,
                         declared=declared_claim(str(summary["experiment"])))
    for key, value in summary.items():
        if key in CARD_KEYS:
            continue
        table = records_table(value)
        if table is not None:
            exp.tables.append((key, *table))
        elif isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
            exp.tables.append((key, ["value"], [(k, [v]) for k, v in value.items()], []))
        elif isinstance(value, (dict, list)):
            exp.nested.append((key, json.dumps(value, indent=2)))
        else:
            exp.scalars.append((key, value))
    return exp


def declared_claim(name: str) -> str:
    """The claim (else the description) of experiment ``name`` as this version declares it; '' when
    this version does not know it."""
    from genlab import catalog
    try:
        exp = catalog.get("experiment", name)
    except (GenlabError, ImportError, RuntimeError):
        return ""
    return str(getattr(exp, "claim", "") or getattr(exp, "description", ""))


def records_table(value) -> tuple[list, list, list] | None:
    """A summary entry that is a set of records -- a dict of dicts (``{"ddpm@10": {"fid": ..}}``) or a
    list of dicts -- as (columns, [(row label, [cells])], [(key, value) the same in every record, shown
    once]); None for anything else. Nested values in a record are shown as compact JSON."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        label = next((k for k in ("name", "model", "family", "setting", "run") if all(k in v for v in value)), None)
        items = [(str(v[label]) if label else str(i + 1), {k: x for k, x in v.items() if k != label})
                 for i, v in enumerate(value)]
    else:
        return None
    columns = list(dict.fromkeys(k for _, record in items for k in record))
    same = [c for c in columns if len(items) > 1 and all(c in r and r[c] == items[0][1][c] for _, r in items)]
    columns = [c for c in columns if c not in same]
    rows = [(label, [_cell(record.get(c)) for c in columns]) for label, record in items]
    return columns, rows, [(c, _cell(items[0][1][c])) for c in same]


def _cell(value):
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def _raw_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[:TEXT_LIMIT]
    except OSError:
        return ""


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# ------------------------------------------------------------------ files: figures copied, curves drawn
def collect_run_files(run: RunView, out: Path) -> None:
    """Copy the run's figures and samples into ``out/files/<slug>/`` and draw its training curves."""
    dest = out / "files" / run.slug
    for source in (run.folder.figures, run.folder.samples):
        for path in sorted(source.rglob("*")) if source.is_dir() else []:
            caption = path.relative_to(run.folder.path).as_posix()
            if path.suffix.lower() in IMAGE_SUFFIXES:
                run.figures.append(_figure(caption, path, dest / caption.replace("/", "__"), out))
            elif path.suffix.lower() in TEXT_SUFFIXES and path.is_file():
                run.texts.append((caption, _raw_text(path)))
    run.curves = draw_curves(run, dest / "curves.png", out)


def collect_experiment_files(exp: ExperimentView, out: Path) -> None:
    dest = out / "files" / f"experiment-{exp.slug}"
    figures = exp.path / "figures"
    for path in sorted(figures.rglob("*")) if figures.is_dir() else []:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            caption = path.relative_to(exp.path).as_posix()
            exp.figures.append(_figure(caption, path, dest / caption.replace("/", "__"), out))
    exp.curves = draw_sampler_curves(exp.summary, dest, out)


WIDE_PX = 480       # a figure at least this wide spans the page's full width (a grid, a table of panels)


def _figure(caption: str, path: Path, dest: Path, out: Path) -> tuple[str, str, bool]:
    """(caption, href of the copy, wide): the figure copied into the report."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dest)
    try:
        from PIL import Image
        with Image.open(dest) as image:
            wide = image.width >= WIDE_PX
    except (OSError, ValueError, ImportError):   # an SVG, or a damaged file: shown as it is
        wide = False
    return caption, dest.relative_to(out).as_posix(), wide


SAMPLER_CELL = re.compile(r"^(?P<sampler>.+)@(?P<steps>\d+)$")


def sampler_series(cells) -> dict[str, list[tuple[int, dict]]]:
    """``{"ddpm@10": {...}, ...}`` (a sampler comparison's cells) as {sampler: [(steps, cell)]} by steps;
    {} when ``cells`` is not such a table."""
    if not isinstance(cells, dict) or not cells:
        return {}
    series: dict[str, list[tuple[int, dict]]] = {}
    for key, cell in cells.items():
        match = SAMPLER_CELL.match(str(key))
        if match is None or not isinstance(cell, dict):
            return {}
        series.setdefault(match["sampler"], []).append((int(match["steps"]), cell))
    return {name: sorted(points, key=lambda p: p[0]) for name, points in series.items()}


def draw_sampler_curves(summary: dict, dest: Path, out: Path) -> list[tuple[str, str, bool]]:
    """A sampler comparison drawn from summary.json's ``cells``, one line per sampler: FID against the
    number of steps and against the sampling time (log x axes; the real-image floor dashed when the
    summary has one), or the time alone against steps when the cells hold no FID (a pretrained pipeline)."""
    from genlab.viz.figures import add_note, pyplot
    series = sampler_series(summary.get("cells"))
    if not series:
        return []
    cells = [cell for points in series.values() for _, cell in points]
    time_key = next((k for k in ("seconds_per_64", "seconds") if all(_number(c.get(k)) is not None for c in cells)),
                    None)
    time_label = {"seconds_per_64": "seconds per 64 images", "seconds": "seconds per image"}.get(time_key, "")
    has_fid = all(_number(c.get("fid")) is not None for c in cells)
    if not has_fid and not time_key:
        return []
    panels = [("sampling steps", "steps")] + ([(time_label, time_key)] if has_fid and time_key else [])
    y_key, y_label = ("fid", "FID (lower is better)") if has_fid else (time_key, time_label)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 1.8, 4), dpi=110, squeeze=False)
    floor = _number(summary.get("fid_real_floor"))
    for ax, (x_label, x_key) in zip(axes[0], panels):
        for i, (name, points) in enumerate(series.items()):
            xs = [k if x_key == "steps" else c[x_key] for k, c in points]
            ax.plot(xs, [c[y_key] for _, c in points], marker="o", ms=4, color=f"C{i % 10}",
                    ls="-" if i < 10 else "--", label=_label(name))
        if has_fid and floor is not None:
            ax.axhline(floor, ls=":", color="k", label="real-image floor")
        ax.set_xscale("log")
        if x_key == "steps":          # ticks at the steps compared, written as numbers
            steps = sorted({k for points in series.values() for k, _ in points})
            ax.set_xticks(steps, [str(k) for k in steps])
            ax.minorticks_off()
        ax.set(xlabel=x_label, ylabel=y_label, title=f"{'FID' if has_fid else 'time'} against {x_label}")
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, title="sampler", title_fontsize=8)
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / fig.get_size_inches()[0], 1))
    note = f"FID of {summary['fid_samples']} samples per cell" if has_fid and "fid_samples" in summary else ""
    path = dest / "sampler_curves.png"
    dest.mkdir(parents=True, exist_ok=True)
    if note:
        add_note(fig, note)
    fig.savefig(path)
    plt.close(fig)
    caption = " and ".join(ax.get_title() for ax in axes[0])
    return [(caption, path.relative_to(out).as_posix(), True)]


def curve_series(rows: list[dict]) -> dict[str, dict[str, tuple[list, list]]]:
    """{metric: {"train"|"val": (steps, values)}} from metrics.jsonl rows: training rows as logged,
    validation from the epoch rows' ``val/<metric>`` (and any ``split: val`` rows)."""
    series: dict[str, dict[str, tuple[list, list]]] = {}
    for row in rows:
        split, step = row.get("split"), row.get("step")
        if split not in ("train", "val", "epoch") or not isinstance(step, (int, float)):
            continue
        for key, value in row.items():
            if key in SKIP_CURVE_KEYS or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            part = "train" if split == "train" else "val"
            if key.startswith("val/"):
                key = key[4:]
            elif split == "epoch":
                continue
            xs, ys = series.setdefault(key, {}).setdefault(part, ([], []))
            xs.append(step)
            ys.append(value)
    return series


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _label(text: str) -> str:
    """Text safe for a matplotlib label: no mathtext, never hidden by a leading underscore."""
    return (" " + text if text.startswith("_") else text).replace("$", r"\$")


def _metric_order(keys) -> list[str]:
    """The loss first, then the well-known metrics, then the rest by name."""
    first = dict.fromkeys(("loss", *KEY_METRICS))
    return [k for k in first if k in keys] + sorted(k for k in keys if k not in first)


def draw_curves(run: RunView, path: Path, out: Path) -> str | None:
    """One figure of the run's logged metrics against the step (training solid, validation dashed)."""
    series = curve_series(run.rows)
    keys = _metric_order(series)[:MAX_CURVES]
    if not keys:
        return None
    plt = _plt()
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), dpi=100, squeeze=False)
    fig.subplots_adjust(left=0.08 if cols > 1 else 0.16, right=0.98, top=1 - 0.3 / (3.0 * rows),
                        bottom=0.5 / (3.0 * rows),
                        wspace=0.3, hspace=0.55)
    for ax, key in zip(axes.flat, keys):
        for part, style in (("train", "-"), ("val", "--")):
            if part in series[key]:
                xs, ys = series[key][part]
                ax.plot(xs, ys, style, marker="o" if len(xs) < 20 else None, ms=3, label=part)
        ax.set(title=_label(key), xlabel="step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    return _save(fig, path, out)


def draw_overlay(group: DataGroup, out: Path) -> str | None:
    """The runs of one dataset on shared axes, one panel per metric that at least one run logged."""
    per_run = [(run, curve_series(run.rows)) for run in group.runs]
    counts: dict[str, int] = {}
    for _, series in per_run:
        for key in series:
            counts[key] = counts.get(key, 0) + 1
    shared = [k for k in _metric_order(counts) if counts[k] >= min(2, len(per_run))][:4]
    if not shared:
        return None
    plt = _plt()
    short = [run.short_name for run in group.runs]
    names = short if len(set(short)) == len(short) else [run.name for run in group.runs]
    width = max(4.8 * len(shared), 9.6)
    ncol = max(1, min(4, len(names), int(width / (0.075 * max(map(len, names)) + 0.6))))   # legend fits the width
    legend_rows = -(-len(names) // ncol)
    height = 3.6 + 0.22 * legend_rows
    colour = (lambda i: f"C{i}") if len(names) <= 10 else (lambda i: plt.cm.tab20(i % 20))
    fig, axes = plt.subplots(1, len(shared), figsize=(width, height), dpi=100, squeeze=False)
    fig.subplots_adjust(left=0.07 if len(shared) > 1 else 0.14, right=0.98, top=1 - 0.35 / height,
                        bottom=(0.55 + 0.22 * legend_rows) / height, wspace=0.25)
    for ax, key in zip(axes.flat, shared):
        for i, (_, series) in enumerate(per_run):
            for part, style in (("train", "-"), ("val", "--")):
                if part in series.get(key, {}):
                    xs, ys = series[key][part]
                    ax.plot(xs, ys, style, color=colour(i), label=_label(names[i]))
        ax.set(title=_label(key), xlabel="step")
        ax.grid(alpha=0.3)
    legend = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8,
               bbox_to_anchor=(0.5, 0.0))
    return _save(fig, out / "files" / f"data-{group.slug}" / "curves.png", out)


def _save(fig, path: Path, out: Path) -> str:
    """Save with the fixed margins set at creation (a layout engine would draw every figure twice)."""
    plt = _plt()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path.relative_to(out).as_posix()


def group_by_data(runs: list[RunView]) -> list[DataGroup]:
    """Runs of the same dataset, with the CROSS_METRICS columns at least one of them has."""
    by_data: dict[str, list[RunView]] = {}
    for run in runs:
        by_data.setdefault(run.data, []).append(run)
    taken: set = set()
    groups = []
    for data in sorted(by_data):
        group = DataGroup(data, unique_slug(data, taken), by_data[data])
        group.columns = [(k, title) for k, title in CROSS_METRICS
                         if any(_number(run.metrics.get(k)) is not None for run in group.runs)]
        group.show_parameters = any(run.parameters is not None for run in group.runs)
        group.show_eval_time = any(run.eval_time_s is not None for run in group.runs)
        groups.append(group)
    return groups


# ------------------------------------------------------------------ pages
def render_pages(out: Path, runs_dir: Path, runs: list[RunView], groups: list[DataGroup],
                 experiments: list[ExperimentView]) -> None:
    env = _environment()
    common = {"title_root": runs_dir.resolve().name, "generated": time.strftime("%Y-%m-%d %H:%M"),
              "groups": groups, "group_of": {run.slug: g for g in groups for run in g.runs}}
    _write(out / "index.html", env.get_template("index.html").render(
        runs=runs, experiments=experiments, **common))
    for run in runs:
        _write(out / f"run-{run.slug}.html", env.get_template("run.html").render(run=run, **common))
    for group in groups:
        _write(out / f"data-{group.slug}.html", env.get_template("compare.html").render(group=group, **common))
    for exp in experiments:
        _write(out / f"experiment-{exp.slug}.html", env.get_template("experiment.html").render(exp=exp, **common))


def _environment():
    import jinja2
    env = jinja2.Environment(loader=jinja2.PackageLoader("genlab.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = format_number
    env.filters["seconds"] = format_seconds
    env.filters["count"] = format_count
    env.globals["cross_note"] = cross_note
    return env


def format_number(value) -> str:
    """4 significant digits; integers as they are; missing values as an en dash."""
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_count(value) -> str:
    """A parameter count: 1,234 / 56.8 k / 1.23 M."""
    if not isinstance(value, int):
        return "–"
    if value < 10_000:
        return f"{value:,}"
    if value < 1_000_000:
        return f"{value / 1e3:.1f} k"
    return f"{value / 1e6:.3g} M"


def cross_note(metrics: dict, key: str) -> str:
    """The note under a dataset-table value (CROSS_NOTES), '' when the run's eval.json lacks it."""
    if key not in CROSS_NOTES or _number(metrics.get(CROSS_NOTES[key][0])) is None:
        return ""
    note_key, form = CROSS_NOTES[key]
    return form.format(metrics[note_key])


def format_seconds(value) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    if value < 1:
        return f"{value:.2g} s"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.2f} h"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
