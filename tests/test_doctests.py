"""Every runnable docstring example in the package is a doctest (the API reference shows the same text)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import netvlad
from netvlad.models import backbones

# extras a module may need (pyproject's optional dependencies): without them its examples are skipped, with a reason
OPTIONAL = {"onnx", "onnxruntime", "onnxscript", "av"}


def _modules() -> list[str]:
    return ["netvlad", *(info.name for info in pkgutil.walk_packages(netvlad.__path__, "netvlad."))]


def _modules_with_examples() -> list[str]:
    out = []
    for name in _modules():
        spec = importlib.util.find_spec(name)
        if spec and spec.origin and ">>>" in open(spec.origin, encoding="utf-8").read():
            out.append(name)
    return sorted(out)


def _import(name: str):
    """The module ``name``; a skip naming the missing extra when it needs one that is not installed."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {error.name} (pip install 'netvlad[export,stream]')")
        raise


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples_run(name, monkeypatch, tmp_path, one_thread):
    # examples that register a toy backbone keep it local to the test; files an example leaves go to tmp_path;
    # one torch thread: at two, a shared CPU's idle-spinning threads cost netvlad.places.localise's examples 7x the CPU
    monkeypatch.setattr(backbones._REGISTRY, "entries", dict(backbones._REGISTRY.entries))
    monkeypatch.chdir(tmp_path)
    module = _import(name)
    result = doctest.testmod(module, raise_on_error=False, verbose=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see stdout)"


def test_every_module_imports():
    """What doctest collection (and the API reference) imports: every module, the CLI's included."""
    failed = []
    for name in _modules():
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if not (error.name and error.name.split(".")[0] in OPTIONAL):
                failed.append(f"{name}: {error}")
        except Exception as error:  # noqa: BLE001 - report every module that fails, not the first
            failed.append(f"{name}: {type(error).__name__}: {error}")
    assert not failed, "\n".join(failed)


def test_the_examples_are_found():
    found = _modules_with_examples()
    assert {"netvlad.registry", "netvlad.nn.netvlad", "netvlad.models.place_model", "netvlad.eval.recall",
            "netvlad.match.seqslam", "netvlad.places.database", "netvlad.train.mining"} <= set(found)
