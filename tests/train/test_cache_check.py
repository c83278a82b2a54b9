"""The memory-mapped training cache proves its rows: truncated, extended or flipped, it is rebuilt or refused."""

import logging

import numpy as np
import pytest

from netvlad.errors import BadInputError
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.train import cache as cache_module
from netvlad.train import cache_check
from netvlad.train.cache import ExtractOptions, build_cache, extract
from netvlad.train.distributed import DistInfo


def _truncate(path):
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 7)


def _extend(path):
    with open(path, "ab") as handle:
        handle.write(b"\0" * 64)


def _flip(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # one bit of the last row
    path.write_bytes(bytes(data))


DAMAGE = {"truncate": _truncate, "extend": _extend, "flip": _flip}


@pytest.fixture
def setup(tiny_dataset):
    config = ModelConfig(num_clusters=4, preprocessing=Preprocessing(resize="fixed", size=(64, 64)))
    model = PlaceModel(config, pretrained=False).eval()
    paths = tiny_dataset.database.paths()[:5]
    return model, paths, extract(model, paths, ExtractOptions(batch_size=2))


@pytest.mark.parametrize("kind", DAMAGE)
@pytest.mark.parametrize("which", ["cache", "checksums"])
def test_each_damage_is_detected(setup, tmp_path, kind, which):
    model, paths, _ = setup
    cache = build_cache(model, paths, DistInfo(), ExtractOptions(batch_size=2), "float16", tmp_path / "c",
                        memmap_mb=0.0)
    path, shape = tmp_path / "c.npy", cache.shape
    del cache
    assert cache_check.damage(path, shape, "float16") is None
    DAMAGE[kind](path if which == "cache" else cache_check.sums_path(path))
    problem = cache_check.damage(path, shape, "float16")
    assert problem is not None
    expected = {"truncate": "short (truncated)", "extend": "over-long", "flip": "do not match their checksums"}
    assert expected[kind] in problem if which == "cache" or kind != "flip" else "do not match" in problem


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_cache_is_rebuilt_with_a_warning(setup, tmp_path, kind, monkeypatch, caplog):
    model, paths, direct = setup
    fill, calls = cache_module._fill_rows, []

    def damaged_once(*args):
        fill(*args)
        calls.append(1)
        if len(calls) == 1:
            DAMAGE[kind](args[-1])

    monkeypatch.setattr(cache_module, "_fill_rows", damaged_once)
    with caplog.at_level(logging.WARNING):
        cache = build_cache(model, paths, DistInfo(), ExtractOptions(batch_size=2), "float32", tmp_path / "c",
                            memmap_mb=0.0)
    assert len(calls) == 2
    warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warning) == 1 and str(tmp_path / "c.npy") in warning[0] and "rebuilding" in warning[0]
    assert np.allclose(cache, direct, atol=1e-6)  # the rebuilt rows, not the damaged ones


def test_a_cache_damaged_again_is_refused(setup, tmp_path, monkeypatch):
    model, paths, _ = setup
    fill = cache_module._fill_rows

    def always_damaged(*args):
        fill(*args)
        _flip(args[-1])

    monkeypatch.setattr(cache_module, "_fill_rows", always_damaged)
    with pytest.raises(BadInputError, match="c.npy: 1 of 5 rows do not match their checksums.*again after"):
        build_cache(model, paths, DistInfo(), ExtractOptions(batch_size=2), "float32", tmp_path / "c", memmap_mb=0)
