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
from genlab.train.logger import MetricsLogger
from genlab.train.rundir import RunDir, eval_record
from genlab.viz.figures import save_image_grid

XSS_NAME = "<script>alert(1)</script>"          # a run folder of this name: nested folders "<script>alert(1)<" / "script>"
XSS_MODEL = "<img src=x onerror=alert(2)>"


def fake_run(root: Path, name: str, status: str, *, data="digits", model="vae", message=None, metrics=None,
             steps=30, figure=True) -> RunDir:
    """A run folder written through RunDir and the metrics logger, as training would leave it."""
    folder = RunDir(root / name)
    folder.ensure_layout()
    folder.write_config({"model": model, "data": data, "model_config": {"z_dim": 2}, "data_config": {},
                         "train_config": {"epochs": 3}, "data_info": {"kind": "image", "shape": [1, 8, 8]},
                         "created": "2025-01-01 12:00:00"})
    logger = MetricsLogger(folder.path)
    for step in range(10, steps + 1, 10):
        logger.log({"split": "train", "epoch": step // 10 - 1, "step": step, "loss": 100.0 / step, "bpd": 4.0 / step})
        logger.log({"split": "epoch", "epoch": step // 10, "step": step, "time_s": 0.1, "val/bpd": 5.0 / step})
    logger.close()
    folder.write_summary({"model": model, "data": data, "status": status, "message": message,
                          "epochs_done": steps // 10, "steps": steps, "interrupted": status == "interrupted",
                          "train_time_s": 12.5})
    if metrics is not None:
        folder.write_eval(eval_record(model, data, "test", 360, 0, {"iwae_k": 100}, metrics, 0.5))
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


def test_report_errors_are_one_clear_line(tmp_path):
    with pytest.raises(GenlabError, match="no such folder"):
        write_html_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenlabError, match="holds no genlab runs"):
        write_html_report(tmp_path / "empty")


def test_damaged_files_are_shown_not_fatal(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "vae-interrupted", "interrupted", steps=0, figure=False).summary.write_text("{not json")
    fake_run(runs, "vae-finished", "finished", steps=0, figure=False).eval_json.write_text("[1, 2]")
    write_html_report(runs)
    page = (runs / "report" / "run-vae-interrupted.html").read_text()
    assert "not valid JSON" in page
    assert "expected a JSON object" in (runs / "report" / "run-vae-finished.html").read_text()


def test_cli_report_writes_html_for_a_folder(tmp_path, capsys):
    fake_run(tmp_path / "runs", "one", "finished", figure=False)
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "rep" / "index.html")
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


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
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=True)

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
        self.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": int(min(max(height, 600), 4000)),
                                                         "deviceScaleFactor": 1, "mobile": False}, session=True)
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=True)
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
    assert XSS_NAME in browser.evaluate("document.body.innerText")
    # sorting the comparison table by bpd: click once ascending, twice descending; missing values last
    browser.visit((out / "data-digits.html").resolve().as_uri())
    column = browser.evaluate("Array.from(document.querySelectorAll('thead th')).findIndex(t => t.textContent === 'bpd')")
    read = (f"Array.from(document.querySelectorAll('tbody tr')).map(r => r.cells[{column}].textContent.trim())")
    browser.evaluate(f"document.querySelectorAll('thead th')[{column}].click()")
    assert browser.evaluate(read) == ["0.95", "1.1", "1.25", "–", "–"]
    browser.evaluate(f"document.querySelectorAll('thead th')[{column}].click()")
    assert browser.evaluate(read) == ["1.25", "1.1", "0.95", "–", "–"]
    browser.visit((out / "index.html").resolve().as_uri())
    first_col = browser.evaluate("Array.from(document.querySelectorAll('thead th')).findIndex(t => t.textContent === 'run')")
    browser.evaluate(f"document.querySelectorAll('thead th')[{first_col}].click()")
    names = browser.evaluate(f"Array.from(document.querySelectorAll('table.sortable')[0].tBodies[0].rows)"
                             f".map(r => r.cells[{first_col}].textContent.trim())")
    assert names == sorted(names, key=str.lower)
    assert browser.problems() == []
