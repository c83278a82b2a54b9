"""load_pretrained: the published-model table, offline behaviour, hash checks and the conversion cache."""

from __future__ import annotations

import hashlib

import pytest
import torch

import netvlad
from netvlad.models import save_model
from netvlad.models.converters import convert
from netvlad.models.pretrained import PUBLISHED, PublishedModel, list_pretrained, load_pretrained
from netvlad.models.weights import WeightsUnavailableError
from tests.models.test_convert_pytorch import make_state, nanne_checkpoint, reference_forward


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NETVLAD_PRETRAINED_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def tiny_entry(tmp_path, monkeypatch):
    """A published-model entry for a tiny AlexNet pytorch-NetVlad file, and its state."""
    state = make_state("alexnet", k=8, vladv2=False, pcs=None)
    source = tmp_path / "tiny.pth.tar"
    torch.save(nanne_checkpoint(state), source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    entry = PublishedModel("tiny", "https://example.invalid/tiny.pth.tar", "pytorch-netvlad", "tiny.pth.tar",
                           "test model", sha256=digest, num_clusters=8)
    monkeypatch.setitem(PUBLISHED.entries, "tiny", entry)
    return entry, source, state


def test_table_lists_the_published_models_with_registered_formats():
    names = list_pretrained()
    assert {"vgg16-netvlad-pitts30k", "vgg16-netvlad-tokyotm", "patchnetvlad-pittsburgh-wpca4096"} <= set(names)
    for name in names:
        entry = PUBLISHED[name]
        assert entry.url.startswith("https://") and entry.source in ("matlab", "patchnetvlad")
        assert entry.sha256 is None or len(entry.sha256) == 64  # None: unknown, checked by structure instead
    assert PUBLISHED["vgg16-netvlad-pitts30k"].whitening_dim == 4096


def test_offline_names_the_url_and_where_to_put_the_file(cache):
    with pytest.raises(WeightsUnavailableError) as error:
        load_pretrained("vgg16-netvlad-pitts30k")
    message = str(error.value)
    assert "NETVLAD_OFFLINE=1" in message and PUBLISHED["vgg16-netvlad-pitts30k"].url in message
    assert str(cache / "Pitts30K_struct.mat") in message


def test_a_failed_download_is_one_line_without_the_network_traceback(cache, tiny_entry):
    """The download really fails (``.invalid`` never resolves): one line naming the URL and where to put the file,
    not chained to the network library's exception."""
    entry, _, _ = tiny_entry
    with pytest.raises(WeightsUnavailableError) as error:
        load_pretrained("tiny", allow_download=True)
    message = str(error.value)
    assert "\n" not in message and "the download failed (" in message
    assert f"download {entry.url} and save it as {cache / 'tiny.pth.tar'}" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="vgg16-netvlad-pitts30k"):
        load_pretrained("no-such-model")


def test_placed_file_is_verified_converted_and_cached(cache, tiny_entry):
    entry, source, state = tiny_entry
    cache.mkdir()
    (cache / entry.filename).write_bytes(source.read_bytes())
    model = netvlad.load_pretrained("tiny")
    images = torch.rand(2, 3, 96, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.double()(images), reference_forward(state, "alexnet", images),
                                   atol=1e-6, rtol=0)
    assert (cache / "tiny.safetensors").is_file()
    (cache / entry.filename).unlink()  # the converted checkpoint is now enough
    again = load_pretrained("tiny")
    assert again.fingerprint() == model.float().fingerprint()


def test_wrong_hash_is_refused(cache, tiny_entry, monkeypatch):
    entry, source, _ = tiny_entry
    cache.mkdir()
    (cache / entry.filename).write_bytes(source.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="differs from the published"):
        load_pretrained("tiny")


def test_wrong_structure_for_the_name_is_refused(cache, tiny_entry, monkeypatch):
    entry, source, _ = tiny_entry
    changed = PublishedModel(**{**entry.__dict__, "sha256": None, "num_clusters": 64})
    monkeypatch.setitem(PUBLISHED.entries, "tiny", changed)
    cache.mkdir()
    (cache / entry.filename).write_bytes(source.read_bytes())
    with pytest.raises(ValueError, match="K=8.*published with K=64"):
        load_pretrained("tiny")


def test_paths_load_checkpoints_and_convertible_files(tmp_path, tiny_entry):
    _, source, _ = tiny_entry
    converted = load_pretrained(source)
    assert converted.config.backbone == "alexnet"
    conversion = convert(source)
    save_model(conversion.model, tmp_path / "c.safetensors", extra=conversion.provenance)
    assert load_pretrained(tmp_path / "c.safetensors").fingerprint() == converted.fingerprint()
