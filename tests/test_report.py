"""The HTML report (``genlab report RUNS_DIR``): a folder of finished, interrupted and failed runs, every
string from a run escaped, and the pages opened in a real headless Chromium (no console errors, no failed
loads, no network, a working sortable table), with screenshots saved."""
from __future__ import annotations

import base64
import html
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from genlab.cli import main
from genlab.errors import GenlabError
from genlab.report import write_html_report
from genlab.training.logger import MetricsLogger
from genlab.training.rundir import RunDir, eval_record
from genlab.viz.figures import save_image_grid

XSS_NAME = "<script>alert(1)</script>"          # a run folder of this name: nested folders "<script>alert(1)<" / "script>"
XSS_MODEL = "<img src=x onerror=alert(2)>"


DIGITS_INFO = {"kind": "image", "shape": [1, 8, 8], "view": "binarized", "levels": None, "num_classes": 10,
               "extras": {"dataset": "digits", "grey_levels": 17}}     # as `genlab train vae --data digits` writes it


def fake_run(root: Path, name: str, status: str, *, data="digits", model="vae", message=None, metrics=None,
             steps=30, figure=True, model_config=None, eval_time=0.5) -> RunDir:
    """A run folder written through RunDir and the metrics logger, as training would leave it."""
    folder = RunDir(root / name)
    folder.ensure_layout()
    folder.write_config({"model": model, "data": data, "model_config": {"z_dim": 2} if model_config is None
                         else model_config, "data_config": {}, "train_config": {"epochs": 3},
                         "data_info": DIGITS_INFO, "created": "2025-01-01 12:00:00"})
    logger = MetricsLogger(folder.path)
    for step in range(10, steps + 1, 10):
        logger.log({"split": "train", "epoch": step // 10 - 1, "step": step, "loss": 100.0 / step, "bpd": 4.0 / step})
        logger.log({"split": "epoch", "epoch": step // 10, "step": step, "time_s": 0.1, "val/bpd": 5.0 / step})
    logger.close()
    folder.write_summary({"model": model, "data": data, "status": status, "message": message,
                          "epochs_done": steps // 10, "steps": steps, "interrupted": status == "interrupted",
                          "train_time_s": 12.5})
    if metrics is not None:
        folder.write_eval(eval_record(model, data, "test", 360, 0, {"iwae_k": 100}, metrics, eval_time))
    if figure:
        save_image_grid(torch.rand(16, 1, 8, 8), folder.figures / "samples.png", nrow=4)
        save_image_grid(torch.rand(4, 1, 8, 8), folder.samples / "grid #1.png", nrow=2)   # a name to URL-encode
    return folder


def make_runs(root: Path) -> Path:
    fake_run(root, "vae-finished", "finished", metrics={"bpd": 1.25, "nll_nats": 55.4, "fid": 3.2})
    fake_run(root, "flow-finished", "finished", model="realnvp", metrics={"bpd": 0.95, "nll_nats": 42.0})
    fake_run(root, "vae-interrupted", "interrupted", steps=20)
    fake_run(root, "vae-failed", "failed", message='loss became NaN at step 7 <b>boom</b> & "quotes"', steps=10)
    fake_run(root, XSS_NAME, "finished", model=XSS_MODEL, data="toy <i>set</i>", metrics={"bpd": 2.0},
             figure=False)
    # an experiment folder: its summary.json and figures, with runs below it
    exp = root / "experiments" / "flow-mnist"
    fake_run(exp / "runs", "realnvp-digits", "finished", model="realnvp", metrics={"bpd": 1.1})
    (exp / "figures").mkdir(parents=True)
    save_image_grid(torch.rand(4, 1, 8, 8), exp / "figures" / "density.png", nrow=2)
    (exp / "summary.json").write_text(json.dumps({"experiment": "flow-mnist", "family": "flows", "quick": True,
                                                  "bpd": 1.1, "results": [{"bpd": 1.1}], "wall_time_s": 9.5}))
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The report of :func:`make_runs`, written once for the tests that only read it."""
    root = make_runs(tmp_path_factory.mktemp("report") / "runs")
    write_html_report(root)
    return root


@pytest.mark.unit
def test_report_indexes_finished_interrupted_and_failed_runs(report):
    runs, index = report, report / "report" / "index.html"
    text = index.read_text()
    for name in ("vae-finished", "flow-finished", "vae-interrupted", "vae-failed", "flow-mnist"):
        assert name in text
    assert '<span class="status finished">finished</span>' in text
    assert '<span class="status interrupted">interrupted</span>' in text
    assert '<span class="status failed">failed</span>' in text
    assert "loss became NaN at step 7" in text and "1.25" in text and "12.5 s" in text
    out = runs / "report"
    pages = {p.name for p in out.glob("*.html")}
    assert {"index.html", "run-vae-finished.html", "run-vae-failed.html", "data-digits.html",
            "experiment-experiments-flow-mnist.html"} <= pages
    # every relative link and image of every page points at a file of the report
    for page in out.glob("*.html"):
        for ref in re.findall(r'(?:href|src)="([^"#]+)"', page.read_text()):
            if not ref.startswith("data:"):
                from urllib.parse import unquote
                assert (out / unquote(html.unescape(ref))).is_file(), f"{page.name} links to missing {ref}"
    run_page = (out / "run-vae-finished.html").read_text()
    assert "files/vae-finished/figures__samples.png" in run_page and "curves.png" in run_page
    assert html.escape('"z_dim": 2', quote=True).replace('&quot;', '&#34;') in run_page   # the config as written
    compare = (out / "data-digits.html").read_text()
    assert compare.count('href="run-') == 5                                  # the 5 digits runs side by side
    assert (out / "files" / "data-digits" / "curves.png").is_file()


@pytest.mark.unit
def test_every_string_from_a_run_is_escaped(report):
    out = report / "report"
    every = "".join(p.read_text() for p in out.glob("*.html"))
    assert "<script>alert" not in every and "<img src=x" not in every and "<b>boom" not in every
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in every
    assert "&lt;img src=x onerror=alert(2)&gt;" in every
    assert "&lt;b&gt;boom&lt;/b&gt; &amp; &#34;quotes&#34;" in every
    assert "toy &lt;i&gt;set&lt;/i&gt;" in every
    # the only scripts are the report's own (one inline sorter per page)
    for page in out.glob("*.html"):
        assert page.read_text().count("<script>") == 1, page.name


@pytest.mark.unit
def test_report_errors_are_one_clear_line(tmp_path):
    with pytest.raises(GenlabError, match="no such folder"):
        write_html_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenlabError, match="holds no genlab runs"):
        write_html_report(tmp_path / "empty")


@pytest.mark.unit
def test_damaged_files_are_shown_not_fatal(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "vae-interrupted", "interrupted", steps=0, figure=False).summary.write_text("{not json")
    fake_run(runs, "vae-finished", "finished", steps=0, figure=False).eval_json.write_text("[1, 2]")
    write_html_report(runs)
    page = (runs / "report" / "run-vae-interrupted.html").read_text()
    assert "not valid JSON" in page
    assert "expected a JSON object" in (runs / "report" / "run-vae-finished.html").read_text()


@pytest.mark.unit
def test_cli_report_writes_html_for_a_folder(tmp_path, capsys):
    fake_run(tmp_path / "runs", "one", "finished", figure=False)
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "rep" / "index.html")
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


@pytest.mark.unit
def test_cli_report_on_one_run_redraws_its_figures(tmp_path, capsys):
    import genlab
    from genlab.experiments.common import single_thread
    with single_thread():
        genlab.train("pixelcnn", "digits", tmp_path / "one", report=False, channels=4, layers=1, max_steps=2,
                     batch_size=16, limit=32, progress=False)
        assert main(["report", str(tmp_path / "one")]) == 0
    out = capsys.readouterr().out
    assert "samples.png" in out and (tmp_path / "one" / "figures" / "samples.png").is_file()
    assert not (tmp_path / "one" / "report").exists()


SAMPLER_CELLS = {"ddpm@10": {"fid": 20.0, "seconds_per_64": 0.07, "model_calls": 10},
                 "ddpm@100": {"fid": 13.0, "seconds_per_64": 0.9, "model_calls": 100},
                 "dpm++2m@10": {"fid": 14.0, "seconds_per_64": 0.1, "model_calls": 10},
                 "dpm++2m@100": {"fid": 12.9, "seconds_per_64": 1.0, "model_calls": 100}}


def write_experiment(root: Path, name: str, summary: dict, grid_px: int = 0) -> Path:
    """An experiment folder as the runner leaves it: summary.json and (``grid_px`` > 0) a figure that wide."""
    folder = root / name
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps({"experiment": name, **summary}))
    if grid_px:
        save_image_grid(torch.rand(16, 1, grid_px // 4, grid_px // 4), folder / "figures" / "sampler_grid.png", nrow=4)
    return folder


@pytest.mark.unit
def test_result_card_shows_claim_measured_expected_and_verdict(tmp_path):
    root = tmp_path / "runs"
    write_experiment(root, "sampler-compare", {
        "family": "diffusion", "quick": False, "claim": "DPM-Solver++ at 10 steps matches DDPM at 100",
        "verdict": "shown", "measured": "FID 14.0 at 10 steps vs 13.0", "expected": "within 10% of DDPM's FID",
        "cells": SAMPLER_CELLS, "fid_samples": 128, "wall_time_s": 3.0}, grid_px=640)
    write_experiment(root, "old-style", {"family": "vae", "quick": True, "fid_local": 28.383, "bpd": 1.5,
                                        "arch": "mlp", "wall_time_s": 1.0})
    out = write_html_report(root).parent
    index = (out / "index.html").read_text()
    for text in ("DPM-Solver++ at 10 steps matches DDPM at 100", "FID 14.0 at 10 steps vs 13.0",
                 "within 10% of DDPM&#39;s FID", '<span class="verdict shown">shown</span>'):
        assert text in index
    # a summary without a check: the card's key number from the declared headlines (with units), "—" else
    assert "FID 28.38, 1.5 bits/dim" in index and "arch" not in index
    assert '<span class="verdict none">—</span>' in index and "<p class=\"claim\">—</p>" in index
    page = (out / "experiment-sampler-compare.html").read_text()
    assert "DPM-Solver++ at 10 steps matches DDPM at 100" in page
    # the cells are a table (rows ddpm@10 ...), never a JSON dump or JSON paths; curves drawn; figures link full size
    assert '<th scope="row">ddpm@10</th>' in page and "<pre>" not in page and "cells.ddpm" not in page
    assert (out / "files" / "experiment-sampler-compare" / "sampler_curves.png").is_file()
    assert re.search(r'<figure class="wide"><a href="([^"]+sampler_grid.png)" title="open full size"><img src="\1"',
                     page)


@pytest.mark.unit
def test_sampler_series_reads_cells_and_refuses_other_tables():
    from genlab.report.html import sampler_series
    series = sampler_series({"dpm++2m-sde@100": {"fid": 1}, "dpm++2m-sde@10": {"fid": 2}, "ddim@10": {"fid": 3}})
    assert list(series) == ["dpm++2m-sde", "ddim"]
    assert [k for k, _ in series["dpm++2m-sde"]] == [10, 100]                    # ordered by steps
    assert sampler_series({"ddpm@10": {"fid": 1}, "total": {"fid": 2}}) == {}    # not every key is sampler@steps
    assert sampler_series([1, 2]) == {} and sampler_series({}) == {}


@pytest.mark.unit
def test_dataset_page_is_one_fixed_table_for_every_family(tmp_path):
    """The same columns for every family: bits/dim with its levels, NLL, FID with its floor, parameters,
    training and eval time; a column no run has is left out; the parameter count is the model's own."""
    from genlab.config import from_dict
    from genlab.data.registry import DataInfo
    from genlab.model import get_model_spec
    from genlab.report.html import group_by_data, read_run
    root = tmp_path / "runs"
    fake_run(root, "vae", "finished", metrics={"bpd": 0.5, "bpd_levels": 17, "nll_nats": 22.1, "fid": 8.0,
                                               "fid_real_floor": 2.3, "elbo_nats": -23.0})
    fake_run(root, "gan", "finished", model="gan", model_config={}, metrics={"fid": 15.9, "fid_real_floor": 2.3})
    fake_run(root, "unevaluated", "finished", model="pixelcnn", model_config={})
    out = write_html_report(root).parent
    page = (out / "data-digits.html").read_text()
    heads = re.findall(r"<th[^>]*>([^<]+)</th>", page)
    assert heads == ["run", "model", "status", "bits/dim", "NLL (nats)", "FID", "parameters", "training time",
                     "eval time", "steps"]                                   # no PSNR/BLEU column: no run has one
    assert "17 levels" in page and page.count("floor 2.3") == 2 and "elbo_nats" not in page
    spec = get_model_spec("vae")
    net = spec.cls(from_dict(spec.config, {"z_dim": 2}), DataInfo.from_dict(DIGITS_INFO))
    expected = sum(p.numel() for p in net.parameters())                      # the built model, counted
    run = read_run(root / "vae", "vae", "vae")
    assert run.parameters == expected
    assert group_by_data([run])[0].columns == [("bpd", "bits/dim"), ("nll_nats", "NLL (nats)"), ("fid", "FID")]


@pytest.mark.unit
def test_an_unevaluated_run_is_compared_by_its_last_validation(tmp_path):
    fake_run(tmp_path / "runs", "exp-run", "finished", figure=False)          # logs val/bpd = 5/step per epoch
    index = (write_html_report(tmp_path / "runs")).read_text()
    assert "val bpd</span> 0.1667" in index and "no eval.json" in index    # 5 / 30, the last epoch's


# ------------------------------------------------------------------ the browser
class Browser:
    """Headless Chromium driven through the DevTools protocol over a pipe (--remote-debugging-pipe:
    JSON messages separated by NUL bytes on file descriptors 3 and 4), so no extra dependency."""

    def __init__(self, binary: str, profile: Path, timeout: float = 60.0):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child_fds():                         # chromium reads commands on fd 3, writes replies on fd 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.timeout, self._buffer, self._next, self.events = timeout, b"", 0, []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=True)
        self.set_width(1280)

    def set_width(self, width: int) -> None:
        """The window's width in CSS pixels (900 high)."""
        self.width = width
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=True)

    def _read(self, deadline: float) -> dict | None:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                return None
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _handle(self, message: dict) -> None:
        self.events.append(message)
        if message.get("method") == "Page.javascriptDialogOpening":   # an alert() would block the page
            self.send("Page.handleJavaScriptDialog", {"accept": True}, session=True)

    def send(self, method: str, params: dict | None = None, session: bool = False) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply is None:
                raise TimeoutError(f"chromium did not answer {method}")
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._handle(reply)

    def wait_for(self, method: str, quiet: float = 0.5) -> None:
        """Until event ``method`` has arrived, then until no event came for ``quiet`` seconds."""
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == method for e in self.events):
            message = self._read(deadline)
            if message is None:
                raise TimeoutError(f"no {method} from chromium")
            self._handle(message)
        while (message := self._read(time.monotonic() + quiet)) is not None:
            self._handle(message)

    def visit(self, url: str) -> list[str]:
        """Load ``url``; returns the problems seen: exceptions, console errors, failed or remote loads, dialogs."""
        self.events.clear()
        self.send("Page.navigate", {"url": url}, session=True)
        self.wait_for("Page.loadEventFired")
        return self.problems()

    def problems(self) -> list[str]:
        found, urls = [], {}
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Network.requestWillBeSent":
                urls[p["requestId"]] = p["request"]["url"]
                if not p["request"]["url"].startswith(("file:", "data:")):
                    found.append(f"network request: {p['request']['url']}")
            elif method == "Network.loadingFailed":
                found.append(f"failed load: {urls.get(p['requestId'], '?')} ({p.get('errorText')})")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {p['exceptionDetails'].get('text')} "
                             f"{p['exceptionDetails'].get('exception', {}).get('description', '')}")
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append(f"console {p['type']}: {[a.get('value') for a in p.get('args', [])]}")
            elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
                found.append(f"log error: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif method == "Page.javascriptDialogOpening":
                found.append(f"a dialog opened: {p.get('message')!r}")
        return found

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        height = self.send("Page.getLayoutMetrics", session=True)["cssContentSize"]["height"]
        self.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": int(min(max(height, 600), 4000)),
                                                         "deviceScaleFactor": 1, "mobile": False}, session=True)
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        self.set_width(self.width)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture
def browser(tmp_path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("no Chromium installed (Debian: apt-get install -y chromium); the browser test needs one")
    b = Browser(binary, tmp_path / "chromium-profile")
    yield b
    b.close()


@pytest.mark.slow
def test_report_in_a_real_browser(report, browser, tmp_path):
    """Every page loads with no console error, no failed or remote load and no dialog (the XSS run's
    alert never fires); the sortable table sorts; screenshots are saved (GENLAB_SCREENSHOTS=DIR keeps them)."""
    out = report / "report"
    shots = Path(os.environ.get("GENLAB_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    for page in sorted(out.glob("*.html")):
        assert browser.visit(page.resolve().as_uri()) == [], page.name
        broken = browser.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                                  ".map(i => i.src)")
        assert broken == [], f"{page.name}: images not shown: {broken}"
        if page.name in ("index.html", "data-digits.html", "run-vae-finished.html"):
            assert browser.screenshot(shots / page.with_suffix(".png").name).stat().st_size > 10_000
    # the XSS run renders as text
    browser.visit((out / "index.html").resolve().as_uri())
    parent, short = XSS_NAME.rsplit("/", 1)                     # the name as shown: its folder, the path above
    assert f"{short}\n{parent}/" in browser.evaluate("document.body.innerText")
    # sorting the comparison table by bpd: click once ascending, twice descending; missing values last
    browser.visit((out / "data-digits.html").resolve().as_uri())
    column = browser.evaluate("Array.from(document.querySelectorAll('thead th')).findIndex(t => t.textContent === 'bits/dim')")
    read = (f"Array.from(document.querySelectorAll('tbody tr')).map(r => r.cells[{column}].textContent.trim())")
    browser.evaluate(f"document.querySelectorAll('thead th')[{column}].click()")
    assert browser.evaluate(read) == ["0.95", "1.1", "1.25", "–", "–"]
    browser.evaluate(f"document.querySelectorAll('thead th')[{column}].click()")
    assert browser.evaluate(read) == ["1.25", "1.1", "0.95", "–", "–"]
    browser.visit((out / "index.html").resolve().as_uri())
    first_col = browser.evaluate("Array.from(document.querySelectorAll('thead th')).findIndex(t => t.textContent === 'run')")
    browser.evaluate(f"document.querySelectorAll('thead th')[{first_col}].click()")
    names = browser.evaluate(f"Array.from(document.querySelectorAll('table.sortable')[0].tBodies[0].rows)"
                             f".map(r => r.cells[{first_col}].getAttribute('data-sort'))")
    assert names == sorted(names, key=str.lower) and len(names) == 6               # by the run's whole path
    assert browser.problems() == []


# what breaks a page's layout, measured in the browser: a table cell narrower than its longest word (the
# text's own font, measured on a canvas), a table wider than the page's column, horizontal scroll, an
# image that did not load or that does not open full size (a link to its own file)
LAYOUT_PROBLEMS = r"""(() => {
  const bad = [], ctx = document.createElement("canvas").getContext("2d");
  const main = document.querySelector("main"), ms = getComputedStyle(main);
  const right = main.getBoundingClientRect().right - parseFloat(ms.paddingRight);
  document.querySelectorAll("table").forEach((table, t) => {
    const box = table.closest(".scroll") || table;         // a records table may scroll in its own box
    if (box.getBoundingClientRect().right > right + 1) { bad.push(`table ${t} is wider than the page`); }
    table.querySelectorAll("th, td").forEach(cell => {
      const cs = getComputedStyle(cell);
      const room = cell.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
      const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        ctx.font = getComputedStyle(node.parentElement).font;
        for (const word of node.textContent.split(/\s+/)) {
          const need = ctx.measureText(word).width;
          if (word && need > room + 1) {
            bad.push(`table ${t}: "${word}" needs ${Math.ceil(need)} px, its column has ${Math.floor(room)}`);
          }
        }
      }
    });
  });
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) { bad.push(`horizontal scroll: ${root.scrollWidth} > ${root.clientWidth} px`); }
  for (const img of document.images) {
    if (!img.complete || img.naturalWidth === 0) { bad.push(`image not shown: ${img.src}`); }
    const link = img.closest("a");
    if (!link || link.href !== img.src) { bad.push(`image does not open full size: ${img.src}`); }
  }
  return bad;
})()"""

FAMILY_RUNS = (   # (model, model_config, eval.json metrics): every family's columns on one dataset
    ("vae", {"z_dim": 2}, {"bpd": 0.61, "bpd_levels": 17, "nll_nats": 26.9, "fid": 8.1, "fid_real_floor": 2.34}),
    ("realnvp", {}, {"bpd": 2.64, "bpd_levels": 17, "nll_nats": 117.1}),
    ("pixelcnn", {}, {"bpd": 2.1, "bpd_levels": 17, "nll_nats": 93.2, "fid": 12.5, "fid_real_floor": 2.34}),
    ("gan", {}, {"fid": 15.98, "fid_real_floor": 2.34, "classifier_score": 5.3}),
    ("aae", {}, None),                                  # an experiment's run: trained without eval.json
)


def make_twenty_runs(root: Path) -> Path:
    """20 runs of 5 families on one dataset (names as experiments write them: nested, long) and two
    experiments, one with a check and a sampler comparison, one written before claims."""
    for i in range(20):
        model, config, metrics = FAMILY_RUNS[i % len(FAMILY_RUNS)]
        fake_run(root / "experiments" / f"likelihood-table-{i // 5}" / "runs", f"{model}-categorical-z20-run{i}",
                 "finished" if i % 7 else "interrupted", model=model, model_config=config, metrics=metrics,
                 figure=i < 2, steps=10 * (1 + i % 4), eval_time=95.0 + i)
    write_experiment(root, "sampler-compare", {
        "family": "diffusion", "quick": True, "claim": "a higher-order solver reaches DDPM's sample quality in "
        "far fewer steps: DPM-Solver++(2M) at 10 steps within 10% of DDPM's FID at the most steps",
        "verdict": "cannot show in quick mode", "measured": "FID 14.0 at 10 steps, DDPM 13.0 at 100",
        "expected": "FID(dpm++2m@10) <= 1.1 x FID(ddpm@100)", "quick_cannot": "a 200-step model on 8x8 digits; "
        "run it without --quick", "cells": SAMPLER_CELLS, "fid_samples": 128, "wall_time_s": 27.5,
        "results": [{"model": "ddpm", "nll_nats_per_dimension_of_the_test_images": 1.0}],
        "table": [{"model": m, "data": "digits", "bpd": 2.1 + i, "estimate": "exact flow density of dequantized "
                   "pixels: an upper bound on the discrete NLL " * 2, "reference": "RealNVP 1.06, Glow 1.05 "
                   "bits/dim on dequantized 8-bit MNIST (as tabulated by Grathwohl et al. 2019, Table 2)",
                   **{f"column_{j}": j for j in range(8)}} for i, m in enumerate(("vae", "realnvp", "pixelcnn"))]},
        grid_px=640)
    write_experiment(root, "aae-mnist", {"family": "adversarial", "quick": True, "fid_local": 28.383,
                                         "test_rec_mse": 0.0788, "target": "test reconstruction loss below 0.05",
                                         "wall_time_s": 18.9})
    return root


@pytest.mark.slow
def test_report_layout_in_a_real_browser(tmp_path, browser):
    """A 20-run report on a 1400-px window: no column narrower than its longest word, no horizontal
    scroll, every image loaded and opening full size; screenshots of the index, the dataset page and an
    experiment page (GENLAB_SCREENSHOTS=DIR keeps them, to look at)."""
    root = make_twenty_runs(tmp_path / "runs")
    out = write_html_report(root).parent
    shots = Path(os.environ.get("GENLAB_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    browser.set_width(1400)
    pages = ["index.html", "data-digits.html", "experiment-sampler-compare.html", "experiment-aae-mnist.html",
             next(p.name for p in sorted(out.glob("run-*.html")))]
    for name in pages:
        assert browser.visit((out / name).resolve().as_uri()) == [], name
        assert browser.evaluate(LAYOUT_PROBLEMS) == [], name
        browser.screenshot(shots / f"twenty-{Path(name).stem}.png")
    browser.visit((out / "data-digits.html").resolve().as_uri())
    rows = browser.evaluate("Array.from(document.querySelectorAll('tbody tr')).map(r => r.cells.length)")
    assert len(rows) == 20
    columns = browser.evaluate("Array.from(document.querySelectorAll('thead th')).map(t => t.textContent)")
    empty = browser.evaluate("Array.from(document.querySelectorAll('thead th')).map((t, c) => "
                             "Array.from(document.querySelectorAll('tbody tr')).every(r => "
                             "r.cells[c].textContent.trim() === '–'))")
    assert not any(empty), [c for c, e in zip(columns, empty) if e]          # no column of only "–"


@pytest.mark.slow
def test_layout_check_catches_collapsed_columns(tmp_path, browser):
    """The check above fails on the layout the report had before: cells that may break anywhere
    collapse a 20-run table's name column to a few characters."""
    root = make_twenty_runs(tmp_path / "runs")
    page = write_html_report(root).parent / "data-digits.html"
    page.write_text(page.read_text().replace("</style>", "td { overflow-wrap: anywhere; } "
                                             "table { table-layout: fixed; }</style>"))
    browser.set_width(1400)
    assert browser.visit(page.resolve().as_uri()) == []
    assert any("its column has" in p for p in browser.evaluate(LAYOUT_PROBLEMS))
