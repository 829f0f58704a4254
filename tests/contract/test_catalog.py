"""The catalog and the declarations agree: every listed name is declared by the module it names, and
every declaration in the package is listed (so adding a family touches the catalog and its own files)."""
import importlib
import pkgutil

import pytest

import genlab
from genlab import catalog

pytestmark = pytest.mark.contract


@pytest.mark.parametrize("kind", ["model", "dataset", "experiment", "metric"])
def test_every_catalog_entry_is_declared_by_its_module(kind):
    for name in catalog.names(kind):
        assert catalog.get(kind, name) is not None


def test_every_declaration_is_in_the_catalog():
    for info in pkgutil.walk_packages(genlab.__path__, "genlab."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
    for kind, section in catalog.SECTIONS.items():
        declared = set(catalog._REGISTRY[kind])
        assert declared <= set(section), f"{kind}s declared but not listed in genlab/catalog.py: " \
                                         f"{sorted(declared - set(section))}"
    modules = {spec.fn.__module__ for spec in catalog._REGISTRY["figure"].values()}
    assert modules <= set(catalog.FIGURES), f"figure modules not listed: {sorted(modules - set(catalog.FIGURES))}"


def test_unknown_names_give_one_clear_error():
    from genlab.errors import ConfigError
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        catalog.get("model", "nope")


def test_import_genlab_is_light():
    """``import genlab`` loads the package alone (no torch, no family); the API loads on first use."""
    import subprocess
    import sys
    code = ("import sys, genlab; print(','.join(sorted(m for m in sys.modules if m.startswith('genlab')))); "
            "print('torch' in sys.modules); genlab.train; print('genlab.api' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["genlab", "False", "True"], out


def test_listing_the_catalog_imports_no_family_code():
    """Reading every family's tables imports only the families' small ``__init__`` files."""
    import subprocess
    import sys
    code = ("import sys; from genlab import catalog; catalog.names('model'); catalog.names('experiment'); "
            "print(','.join(m for m in sys.modules if m.startswith('genlab.families.') and m.count('.') > 2)); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "" and out[1] == "False", out
