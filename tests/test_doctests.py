"""Every runnable docstring example in the package is a doctest (the API reference shows the same text)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import netvlad
from netvlad.models import backbones


def _modules_with_examples() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(netvlad.__path__, "netvlad.")]
    out = []
    for name in ["netvlad", *names]:
        spec = importlib.util.find_spec(name)
        if spec and spec.origin and ">>>" in open(spec.origin, encoding="utf-8").read():
            out.append(name)
    return sorted(out)


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples_run(name, monkeypatch):
    # examples that register a toy backbone keep it local to the test
    monkeypatch.setattr(backbones._REGISTRY, "entries", dict(backbones._REGISTRY.entries))
    module = importlib.import_module(name)
    result = doctest.testmod(module, raise_on_error=False, verbose=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"


def test_the_examples_are_found():
    found = _modules_with_examples()
    assert {"netvlad.registry", "netvlad.nn.netvlad", "netvlad.models.place_model"} <= set(found)
