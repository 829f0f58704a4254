"""The layers of DESIGN.md, read from the source (ast):

- the core (everything outside ``genlab/families``) never imports a family: it reaches families only
  through the names in ``genlab.catalog``, loaded lazily;
- no family imports another family;
- the shared layers (``maths``, ``nn``, ``data``) import neither families nor the layers above them.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import genlab

PACKAGE = Path(genlab.__file__).parent
FAMILIES = PACKAGE / "families"
SHARED = ("maths", "nn", "data")
UPPER = ("genlab.training", "genlab.cli", "genlab.viz", "genlab.experiments", "genlab.eval", "genlab.api",
         "genlab.report", "genlab.model", "genlab.families")

pytestmark = pytest.mark.unit


def module_name(path: Path) -> str:
    """genlab.families.flows.model for .../genlab/families/flows/model.py; a package's name for __init__.py."""
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
    """The family a ``genlab.families.<family>...`` module belongs to, or None for the core and shared layers."""
    parts = module.split(".")
    if parts[:2] != ["genlab", "families"] or len(parts) < 3:
        return None
    return parts[2]


def sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_reader_resolves_relative_imports():
    """The checker itself: relative, absolute and lazy imports resolve to absolute module names."""
    source = ("from ..vae.model import VAE\nfrom . import unet\nimport genlab.families.flows.model\n"
              "def f():\n    from ...training import loop\n")
    path = FAMILIES / "diffusion" / "samplers.py"
    names = imported_modules(path, source, "genlab.families.diffusion.samplers")
    assert {"genlab.families.vae.model", "genlab.families.diffusion.unet", "genlab.families.flows.model",
            "genlab.training.loop"} <= names
    assert {family_of(n) for n in names} >= {"vae", "diffusion", "flows"}
    assert family_of("genlab.families.vae.model") == "vae"
    assert family_of("genlab.maths.densities") is None and family_of("genlab.nn.blocks") is None


def test_every_family_is_a_folder_listed_in_the_catalog():
    from genlab import catalog
    folders = {p.name for p in FAMILIES.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(catalog.FAMILIES)
    assert all(package == f"genlab.families.{name}" for name, package in catalog.FAMILIES.items())


def test_no_family_imports_another_family():
    offenders = []
    for path in sources(FAMILIES):
        own = family_of(module_name(path))
        for name in imported_modules(path):
            other = family_of(name)
            if other is not None and other != own:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not offenders, ("a family imports another family; move the shared part to genlab.maths, "
                           "genlab.nn or genlab.data:\n" + "\n".join(offenders))


def test_the_core_never_imports_a_family():
    offenders = []
    for path in sources(PACKAGE):
        if FAMILIES in path.parents:
            continue
        offenders += [f"{path.relative_to(PACKAGE)} imports {name}" for name in imported_modules(path)
                      if family_of(name) is not None or name == "genlab.families"]
    assert not offenders, "the core reaches families only through genlab.catalog:\n" + "\n".join(offenders)


def test_shared_layers_do_not_import_the_layers_above():
    offenders = []
    for layer in SHARED:
        for path in sources(PACKAGE / layer):
            offenders += [f"{path.relative_to(PACKAGE)} imports {name}" for name in imported_modules(path)
                          if name.startswith(UPPER)]
    assert not offenders, "maths/, nn/ and data/ must not import upward:\n" + "\n".join(offenders)
