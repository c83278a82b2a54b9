"""The CLI's choices and help lists come from the library's registries: a toy registration appears in them, and
every name the CLI lists without importing torch resolves to a real entry."""

from __future__ import annotations

import importlib

import pytest

from netvlad.cli.main import build_parser, leaf_parsers
from netvlad.data.readers.registry import READERS
from netvlad.eval.protocols import PROTOCOLS
from netvlad.models.backbone_specs import BACKBONES
from netvlad.models.converters import CONVERTERS
from netvlad.models.export import EXPORTERS
from netvlad.models.pools import POOLS
from netvlad.models.published import PUBLISHED
from netvlad.places.positions import POSITION_ESTIMATORS
from netvlad.search.index import INDEX_KINDS, register_index_kind
from netvlad.train.optim import OPTIMIZERS, SCHEDULERS

REGISTRIES = {"backbone": BACKBONES, "pooling": POOLS, "format": READERS, "converter": CONVERTERS,
              "index kind": INDEX_KINDS, "protocol": PROTOCOLS, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
              "exporter": EXPORTERS, "position": POSITION_ESTIMATORS, "published": PUBLISHED}


def _choices(parser, dest: str) -> set:
    found = set()
    for leaf in leaf_parsers(parser):
        for action in leaf._actions:
            if action.dest == dest and action.choices is not None:
                found |= set(action.choices)
    return found


@pytest.fixture
def toy_index_kind(monkeypatch):
    monkeypatch.setattr(INDEX_KINDS, "entries", dict(INDEX_KINDS.entries))
    monkeypatch.setattr(INDEX_KINDS, "helps", dict(INDEX_KINDS.helps))

    @register_index_kind("toy-flat", help="a toy exact index", builds=("IndexFlatIP",))
    def _toy(dim, n, config, trained_on=None):
        import faiss

        return faiss.IndexFlatIP(dim)

    return "toy-flat"


def test_a_toy_index_kind_is_one_registration_the_cli_offers(toy_index_kind, capsys):
    parser = build_parser()
    assert toy_index_kind in _choices(parser, "index_kind")
    args = parser.parse_args(["evaluate", ".", "--index-type", toy_index_kind])
    assert args.index_kind == toy_index_kind
    with pytest.raises(SystemExit):
        parser.parse_args(["index", "build", "--help"])
    assert "toy-flat: a toy exact index" in " ".join(capsys.readouterr().out.split())

    import numpy as np

    from netvlad.search.index import IndexConfig, build_index, index_kind

    index = build_index(np.eye(4, 8, dtype=np.float32), IndexConfig(kind=toy_index_kind))
    assert index_kind(index) == toy_index_kind and index.ntotal == 4


def test_a_toy_pooling_appears_in_the_cli(monkeypatch):
    monkeypatch.setattr(POOLS, "entries", dict(POOLS.entries))
    monkeypatch.setattr(POOLS, "helps", dict(POOLS.helps))
    POOLS.add("toy", lambda config, channels: None, help="a toy pooling")
    assert "toy" in _choices(build_parser(), "pool")


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_listed_name_resolves_and_has_help(kind):
    registry = REGISTRIES[kind]
    assert len(registry) >= 1
    for name in registry.names():
        assert registry.get(name) is not None and registry.help(name), f"{kind} {name!r}"
    assert registry.declared() == {}, "a declared name that its module does not define"


def test_the_cli_lists_every_registered_name():
    parser = build_parser()
    for dest, registry in (("backbone", BACKBONES), ("pool", POOLS), ("format", READERS), ("source", CONVERTERS),
                           ("index_kind", INDEX_KINDS), ("protocol", PROTOCOLS), ("method", POSITION_ESTIMATORS),
                           ("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS)):
        assert _choices(parser, dest) == set(registry.names()), dest
    assert {f"netvlad export {name}" for name in EXPORTERS.names()} <= {leaf.prog for leaf in leaf_parsers(parser)}


def test_the_registries_import_no_torch():
    import subprocess
    import sys

    modules = ["netvlad.cli.main", "netvlad.data.readers.registry", "netvlad.models.export", "netvlad.search.index",
               "netvlad.places.positions", "netvlad.models.backbone_specs", "netvlad.models.converters",
               "netvlad.models.pools", "netvlad.models.published", "netvlad.eval.protocols", "netvlad.train.optim"]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + (
        "print(','.join(m for m in ('torch', 'faiss', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
    assert all(importlib.util.find_spec(m) for m in modules)
