"""The layers of DESIGN.md, read from the source (ast): no model family imports another family's module,
and neither models nor nn building blocks import the layers above them (trainer, CLI, figures, experiments).

A *family* is a module or subpackage directly under ``genlab/models`` that is not one of the shared
modules in ``SHARED`` below (shared math and protocols). Modules inside one family's subpackage may
import each other; anything else a family needs must live in a shared module or in ``genlab.nn``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import genlab

PACKAGE = Path(genlab.__file__).parent
MODELS = PACKAGE / "models"
SHARED = {"__init__", "base", "protocols", "densities", "bijections", "exact", "fdiv"}
UPPER = ("genlab.train", "genlab.cli", "genlab.viz", "genlab.experiments", "genlab.eval", "genlab.api")

pytestmark = pytest.mark.unit


def module_name(path: Path) -> str:
    """genlab.models.flows for .../genlab/models/flows.py; the package's name for an __init__.py."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, source: str | None = None, module: str | None = None) -> set[str]:
    """Absolute names of every module ``path`` imports, anywhere in the file (lazy imports included).
    ``from X import y`` yields X and X.y (y may be a submodule). ``source``/``module`` override the
    file's text and dotted name (to check the checker)."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names)
    return found


def family_of(module: str) -> str | None:
    """The family a ``genlab.models.*`` module belongs to, or None for shared modules and others."""
    parts = module.split(".")
    if parts[:2] != ["genlab", "models"] or len(parts) < 3 or parts[2] in SHARED:
        return None
    return parts[2]


def sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_reader_resolves_relative_imports():
    """The checker itself: relative, absolute and lazy imports resolve to absolute module names."""
    names = imported_modules(MODELS / "vae.py")
    assert "genlab.models.densities" in names and "genlab.nn.blocks" in names
    source = ("from ..vae import VAE\nfrom . import unet\nimport genlab.models.flows\n"
              "def f():\n    from ...train import loop\n")
    names = imported_modules(MODELS / "diffusion" / "samplers.py", source, "genlab.models.diffusion.samplers")
    assert {"genlab.models.vae", "genlab.models.diffusion.unet", "genlab.models.flows",
            "genlab.train.loop"} <= names
    assert {family_of(n) for n in names} >= {"vae", "diffusion", "flows"}
    assert family_of("genlab.models.vae") == "vae"
    assert family_of("genlab.models.diffusion.samplers") == "diffusion"
    assert family_of("genlab.models.densities") is None and family_of("genlab.nn.blocks") is None


def test_no_family_imports_another_family():
    offenders = []
    for path in sources(MODELS):
        own = family_of(module_name(path))
        if own is None:
            continue
        for name in imported_modules(path):
            other = family_of(name)
            if other is not None and other != own:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not offenders, ("a model family imports another family; move the shared part to a shared module "
                           "(densities, bijections, exact, ...) or genlab.nn:\n" + "\n".join(offenders))


def test_models_and_nn_do_not_import_the_layers_above():
    offenders = []
    for folder in (MODELS, PACKAGE / "nn"):
        for path in sources(folder):
            for name in imported_modules(path):
                if name.startswith(UPPER) or (folder.name == "nn" and name.startswith("genlab.models")):
                    offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not offenders, "models/ and nn/ must not import upward:\n" + "\n".join(offenders)
