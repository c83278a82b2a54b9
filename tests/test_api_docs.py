"""The API reference documents exactly the public API (each package's ``__all__``), and public functions and classes
carry runnable examples.

``python -m tests.test_api_docs`` prints, per package, how many public functions and classes have an example that
runs (a ``>>>`` example in their own docstring not marked ``+SKIP``); tests/test_doctests.py runs them.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import re

import pytest

from tests.conftest import REPO

# package -> the API page documenting it, in pipeline order
PAGES = {"nn": "nn", "models": "models", "data": "data", "extract": "extract", "search": "search", "match": "match",
         "match.verify": "match", "eval": "eval", "places": "places", "train": "train", "pipeline": "pipeline"}
DIRECTIVE = re.compile(r"^::: (\S+)\n((?:    .*\n)*)", re.M)
# every public function and class has a runnable example
MIN_SHARE = 1.0


def public_api() -> dict[str, dict[str, object]]:
    """``{package: {name: object}}`` from each package's ``__all__``; a module exported whole (``nn.functional``)
    counts as its own ``__all__``."""
    api = {}
    for package in PAGES:
        module = importlib.import_module(f"netvlad.{package}")
        names = {}
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.ismodule(value):
                names.update({f"{name}.{inner}": getattr(value, inner) for inner in value.__all__})
            else:
                names[name] = value
        api[package] = names
    return api


def documented(page: str) -> list[object]:
    """The objects the ``::: path`` directives of ``docs/api/<page>.md`` render (a module with a ``members`` option:
    those members)."""
    objects = []
    for path, options in DIRECTIVE.findall((REPO / "docs" / "api" / f"{page}.md").read_text(encoding="utf-8")):
        module_name, _, name = path.rpartition(".")
        try:
            value = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            value = importlib.import_module(path)
        members = re.search(r"members: \[(.*)\]", options)
        if inspect.ismodule(value) and members:
            objects += [getattr(value, m.strip()) for m in members.group(1).split(",")]
        else:
            objects.append(value)
    return objects


def has_runnable_example(value: object) -> bool:
    """Whether the docstring of ``value`` (a class: or of its ``__init__``) holds an example doctest runs."""
    docs = [inspect.getdoc(value) or ""]
    if inspect.isclass(value) and "__init__" in vars(value):
        docs.append(inspect.getdoc(vars(value)["__init__"]) or "")
    parser = doctest.DocTestParser()
    return any(not example.options.get(doctest.SKIP) for doc in docs for example in parser.get_examples(doc))


def example_share() -> dict[str, tuple[int, int]]:
    """``{package: (functions and classes with a runnable example, functions and classes)}``."""
    share = {}
    for package, names in public_api().items():
        callables = [value for value in names.values() if inspect.isclass(value) or inspect.isfunction(value)]
        share[package] = (sum(map(has_runnable_example, callables)), len(callables))
    return share


def overall(share: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """(with a runnable example, public functions and classes) over all packages."""
    return sum(done for done, _ in share.values()), sum(total for _, total in share.values())


@pytest.mark.parametrize("page", sorted(set(PAGES.values())))
def test_each_api_page_documents_its_packages_public_names_exactly(page):
    expected = [value for package, names in public_api().items() if PAGES[package] == page for value in names.values()]
    shown = documented(page)
    name = {id(value): getattr(value, "__qualname__", repr(value)[:40]) for value in [*expected, *shown]}
    missing = sorted(name[id(value)] for value in expected if all(value is not other for other in shown))
    extra = sorted(name[id(value)] for value in shown if all(value is not other for other in expected))
    assert not missing and not extra, f"docs/api/{page}.md misses {missing}, documents non-public {extra}"
    assert len(shown) == len({id(value) for value in shown}), f"docs/api/{page}.md documents a name twice"


def test_every_api_page_is_in_the_navigation():
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    assert all(f"api/{page}.md" in nav for page in [*PAGES.values(), "index"])


def test_the_share_of_public_names_with_a_runnable_example_does_not_shrink():
    share = example_share()
    with_example, total = overall(share)
    assert total > 80  # the public API is read, not an empty list
    assert with_example / total >= MIN_SHARE, f"{with_example} of {total} public functions and classes have examples"


def test_the_example_counter_sees_runnable_and_skipped_examples():
    def runnable():
        """Examples:
        >>> 1 + 1
        2
        """

    def skipped():
        """>>> download()  # doctest: +SKIP"""

    assert has_runnable_example(runnable) and not has_runnable_example(skipped)


if __name__ == "__main__":
    rows = example_share()
    for package, (with_example, total) in rows.items():
        print(f"{package:13s} {with_example:3d} / {total:3d}")
    with_example, total = overall(rows)
    print(f"{'all':13s} {with_example:3d} / {total:3d} = {100 * with_example / total:.1f} %")
