"""The shared registry: names once, sorted listing, one-line errors (its docstring example runs here)."""

import doctest

import pytest

from netvlad import registry
from netvlad.models import list_backbones
from netvlad.models.converters import list_converters


def test_docstring_example_runs():
    result = doctest.testmod(registry, raise_on_error=False, verbose=False)
    assert result.attempted >= 3 and result.failed == 0


def test_duplicates_refused_and_unknown_names_listed():
    things = registry.Registry("thing", known="known")
    things.add("b", 2)
    things.add("a", 1)
    assert things.names() == ["a", "b"] and "a" in things and "c" not in things
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        things.add("a", 3)
    assert things.get("a") == 1
    with pytest.raises(ValueError, match="unknown thing 'c'; known: a, b"):
        things.get("c")


def test_the_library_registries_use_it():
    assert "vgg16" in list_backbones() and list_backbones() == sorted(list_backbones())
    assert list_converters() == sorted(list_converters()) and len(list_converters()) >= 2
