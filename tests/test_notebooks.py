"""Every notebook in notebooks/ runs from top to bottom: each jupytext percent script is converted to a
notebook and executed by nbclient in a ``python3`` kernel (the ipykernel of the environment running the
tests, so in CI the .venv's), on its quick settings (``GENLAB_NOTEBOOK_QUICK=1``), one thread, writing
its runs under the test's temporary folder (``GENLAB_NOTEBOOK_OUT``). A cell that raises fails the test;
a notebook that shows no figure inline fails too."""
from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
FAMILIES = sorted(p.name for p in (ROOT / "src" / "genlab" / "families").iterdir()
                  if (p / "__init__.py").exists())
COURSES = ("course_pang_hw2", "course_uva_practical3", "course_mva_2025", "course_midterm_2025", "course_mit_6s978_ps1")


@pytest.mark.unit
def test_every_family_and_course_has_a_notebook():
    names = {p.stem for p in NOTEBOOKS}
    missing = [n for n in (*FAMILIES, *COURSES) if n not in names]
    assert not missing, f"no notebook notebooks/<name>.py for {missing}"


def _images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_NOTEBOOK_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("GENLAB_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")     # tiny tensors: one thread is faster and leaves a core free
    nb = jupytext.read(path)
    client = NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()   # raises CellExecutionError naming the cell and its traceback
    assert _images(nb) > 0, f"{path.name} shows no figure inline"
    assert any((tmp_path / "runs").glob("*/config.json")), f"{path.name} wrote no run under GENLAB_NOTEBOOK_OUT"


@pytest.mark.unit
def test_the_kernel_is_this_environments_python():
    """nbclient's ``python3`` kernel resolves to the interpreter running the tests (the .venv in CI): the
    kernelspec's ``python`` is replaced by ``sys.executable`` when the kernel starts."""
    from jupyter_client.manager import KernelManager
    km = KernelManager(kernel_name="python3")
    cmd = km.format_kernel_cmd()
    assert Path(cmd[0]).resolve() == Path(sys.executable).resolve(), cmd


@pytest.mark.unit
def test_drawing_a_figure_keeps_the_sessions_matplotlib_backend():
    """A notebook imports pyplot on its inline backend before genlab draws a run's figures; genlab must not
    switch it to Agg, or every later plt.show() of the notebook shows nothing. (Run in a subprocess: the
    test session's own pyplot is already imported.)"""
    import subprocess
    code = ("import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt; import torch\n"
            "from genlab.viz.figures import labelled_grid\n"
            "import tempfile, pathlib\n"
            "labelled_grid(torch.rand(4, 1, 8, 8), pathlib.Path(tempfile.mkdtemp()) / 'g.png', title='grid')\n"
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
