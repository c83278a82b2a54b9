"""Spatial re-ranking end to end on a tiny NetVLAD model: patch store, refusals, re-ranked shortlists."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
import torch

from netvlad.errors import BadInputError
from netvlad.match.verify.patch_store import extract_patch_store, whitening_digest
from netvlad.match.verify.patches import (
    Patches,
    PatchExtractor,
    fit_patch_whitening,
    iter_images,
    require_netvlad,
)
from netvlad.match.verify.presets import VERIFY_PRESETS, VerifyPreset
from netvlad.match.verify.rerank import verify_shortlist
from netvlad.match.verify.run import (
    clamp_top,
    extract_with_patches,
    patch_extractor,
    rescore_ranking,
    verify_folders,
    verify_ranking,
)
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.nn import PCAWhitening
from netvlad.nn.patch import integral_image, patch_netvlad, window_sums
from tests.extract.conftest import write_images

RAPID = VerifyPreset("tiny-rapid", "test", sizes=(2, 3), dim=16, scorer="rapid")
RANSAC = VerifyPreset("tiny-ransac", "test", sizes=(2,), dim=16, scorer="ransac", thresholds=(0.5,))


@pytest.fixture
def netvlad_model() -> PlaceModel:
    config = ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=4,
                         preprocessing=Preprocessing("fixed", (128, 160)))
    return PlaceModel(config, pretrained=False).eval()


def test_presets_are_the_papers_configurations():
    assert VERIFY_PRESETS.names() == ["performance", "speed", "storage"]
    perf, speed = VERIFY_PRESETS.get("performance"), VERIFY_PRESETS.get("speed")
    assert (perf.sizes, perf.dim, perf.scorer) == ((2, 5, 8), 4096, "ransac")
    assert (speed.sizes, speed.dim, speed.scorer) == ((5,), 512, "rapid")
    assert VERIFY_PRESETS.get("storage").dim == 128
    with pytest.raises(BadInputError, match="registered: performance, speed, storage"):
        VERIFY_PRESETS.get("fast")
    # Patch-NetVLAD's patch_matcher: ransacReprojThreshold = 16 px · stride · 1.5 for every size, at 16-px cells
    assert perf.weights == (0.45, 0.15, 0.4) and perf.thresholds == (16 * 1 * 1.5 / 16,) * 3
    assert perf.with_thresholds((1.0, 1.5, 2.0)).thresholds == (1.0, 1.5, 2.0)
    assert perf.with_thresholds((2.0,)).thresholds == (2.0, 2.0, 2.0)


def test_ransac_thresholds_on_the_command_line():
    from argparse import Namespace

    from netvlad.cli.options import preset_from_args

    args = Namespace(verify="performance", verify_global_weight=None, verify_ransac_threshold=[1.0, 1.5, 2.0])
    assert preset_from_args(args).thresholds == (1.0, 1.5, 2.0)
    with pytest.raises(BadInputError, match="one value or one per patch size"):
        preset_from_args(Namespace(verify="performance", verify_global_weight=None, verify_ransac_threshold=[1, 2]))
    with pytest.raises(BadInputError, match="would be ignored: preset speed scores by rapid"):
        preset_from_args(Namespace(verify="speed", verify_global_weight=None, verify_ransac_threshold=[1.0]))


def test_non_netvlad_model_is_refused_in_one_line(tiny_model):
    with pytest.raises(BadInputError, match="pools with 'gem'; spatial re-ranking needs a NetVLAD model") as err:
        require_netvlad(tiny_model)
    assert "\n" not in str(err.value)


def test_store_resumes_and_refuses_another_preset(netvlad_model, tmp_path):
    names = write_images(tmp_path / "db", 5, size=(160, 128))
    whitening = fit_patch_whitening(netvlad_model, [tmp_path / "db" / n for n in names], 16, size=2)
    extractor = PatchExtractor(netvlad_model, RAPID, whitening)
    store = extract_patch_store(extractor, tmp_path / "db", names, tmp_path / "patches")
    assert store.capacity == [12, 6]  # 4×5 map: 3×4 windows of 2, 2×3 of 3
    assert store.bytes_per_image() == 2 * ((2 + 12 * 16) + (2 + 6 * 16))
    descriptors, grids = store.read(0, np.array([3, 1]))
    again = extractor.from_images(next(iter_images(netvlad_model, [tmp_path / "db" / names[3]]))[1])[0]
    np.testing.assert_allclose(descriptors[0].numpy(), again.descriptors[0].numpy(), atol=2e-3)
    assert grids.tolist() == [[3, 4], [3, 4]]
    other = PatchExtractor(netvlad_model, VerifyPreset("other", "x", sizes=(2, 3), dim=8, scorer="rapid"),
                           whitening)
    with pytest.raises(BadInputError, match=r"written by model \w+ with preset tiny-rapid \(16-D\), whitening \w+, "
                                            r"not by model \w+ with preset other \(8-D\)"):
        extract_patch_store(other, tmp_path / "db", names, tmp_path / "patches")
    description = tmp_path / "patches" / "patches.json"
    meta = json.loads(description.read_text())
    for edited, words in (({k: v for k, v in meta.items() if k != "config"}, r"keys disagree \(missing config\)"),
                          (meta | {"colour": 1}, r"keys disagree \(unexpected colour\)"),
                          (meta | {"config": meta["config"] | {"sizes": []}}, "config is not a re-ranking preset"),
                          (meta | {"config": "speed"}, "config is not a re-ranking preset"),
                          (meta | {"dim": 17}, r"disagrees with preset 'tiny-rapid', dim 17"),
                          (meta | {"version": 7}, "patch store version 7")):
        description.write_text(json.dumps(edited))
        with pytest.raises(BadInputError, match=words) as error:
            extract_patch_store(extractor, tmp_path / "db", names, tmp_path / "patches")
        assert str(description) in str(error.value) and "\n" not in str(error.value)


def test_an_image_whose_smaller_size_lost_its_mark_in_a_crash_is_extracted_again(netvlad_model, tmp_path):
    names = write_images(tmp_path / "db", 3, size=(160, 128))
    whitening = fit_patch_whitening(netvlad_model, [tmp_path / "db" / n for n in names], 16, size=2)
    extractor = PatchExtractor(netvlad_model, RAPID, whitening)
    extract_patch_store(extractor, tmp_path / "db", names, tmp_path / "patches")
    first = tmp_path / "patches" / "size_2"
    original = {str(p.relative_to(tmp_path)): p.read_bytes() for p in (tmp_path / "patches").rglob("*.npy")}
    status = np.load(first / "status.npy", mmap_mode="r+")
    status[1] = 0  # the last size's mark reached the disk, this one's did not
    status.flush()
    del status
    store = extract_patch_store(extractor, tmp_path / "db", names, tmp_path / "patches")
    assert [s.num_done for s in store.stores] == [3, 3]
    assert {str(p.relative_to(tmp_path)): p.read_bytes() for p in (tmp_path / "patches").rglob("*.npy")} == original


def test_whitening_digest_hashed_once_while_the_whitening_is_unchanged(netvlad_model, monkeypatch):
    """The digest is the SHA-256 of the weight's then the bias's float32 bytes; an extractor and its twin hash it
    once between them, and again after an in-place change or a replaced tensor, which change the digest."""
    extractor = PatchExtractor(netvlad_model, RAPID, PCAWhitening(require_netvlad(netvlad_model).output_dim, 16))
    linear = extractor.whitening.linear

    def reference() -> str:
        return hashlib.sha256(linear.weight.detach().numpy().tobytes() + linear.bias.detach().numpy().tobytes()
                              ).hexdigest()[:16]

    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    first = whitening_digest(extractor)
    assert len(calls) == 1 and whitening_digest(extractor.twin()) == whitening_digest(extractor) == first
    assert len(calls) == 1  # the twin shares it
    monkeypatch.setattr(hashlib, "sha256", real)
    assert first == reference()
    with torch.no_grad():
        linear.bias.add_(1.0)  # in place: bumps the tensor's version
    assert whitening_digest(extractor) == reference() != first
    linear.weight.data = linear.weight.data * 2  # another buffer under the same parameter
    assert whitening_digest(extractor.twin()) == reference()
    before = reference()
    extractor.whitening = PCAWhitening(require_netvlad(netvlad_model).output_dim, 16)  # another whitening object
    linear = extractor.whitening.linear
    assert whitening_digest(extractor) == reference() != before


def test_store_refuses_patches_projected_by_another_whitening(netvlad_model, tmp_path):
    """Same model and preset, another whitening (e.g. refitted with another ε): refused, naming both digests;
    a store written before the whitening was recorded (version 1) is refused too."""
    names = write_images(tmp_path / "db", 3, size=(160, 128))
    paths = [tmp_path / "db" / n for n in names]
    first = PatchExtractor(netvlad_model, RAPID, fit_patch_whitening(netvlad_model, paths, 16, size=2, shrink=0.0))
    extract_patch_store(first, tmp_path / "db", names, tmp_path / "patches")
    refit = PatchExtractor(netvlad_model, RAPID, fit_patch_whitening(netvlad_model, paths, 16, size=2, shrink=10.0))
    old, new = whitening_digest(first), whitening_digest(refit)
    assert old != new
    with pytest.raises(BadInputError, match=f"whitening {old}, not by model \\w+ with preset tiny-rapid \\(16-D\\), "
                                            f"whitening {new}"):
        extract_patch_store(refit, tmp_path / "db", names, tmp_path / "patches")
    meta = json.loads((tmp_path / "patches" / "patches.json").read_text())
    del meta["whitening"]  # as a version-1 store records it
    (tmp_path / "patches" / "patches.json").write_text(json.dumps(meta | {"version": 1}))
    with pytest.raises(BadInputError, match="whitening unrecorded"):
        extract_patch_store(first, tmp_path / "db", names, tmp_path / "patches")


@pytest.mark.parametrize("preset", [RAPID, RANSAC])
def test_a_copy_of_a_database_image_wins_the_shortlist(netvlad_model, tmp_path, preset, monkeypatch):
    # random weights: the windows differ only in the small-variance directions, which the default regularisation
    # damps (chosen on real features: the whitening sweep in docs/reranking.md), so this fit whitens exactly
    monkeypatch.setattr("netvlad.match.verify.patches.SHRINK", 0.0)
    names = write_images(tmp_path / "db", 6, size=(160, 128), seed=3)
    query = tmp_path / "db" / names[4]
    ranked = np.array([[0, 1, 2, 3, 4, 5]])  # the global ranking put the true match fifth
    distances = np.linspace(0.5, 1.0, 6)[None]
    extractor = patch_extractor(netvlad_model, preset, [tmp_path / "db" / n for n in names], tmp_path / "cache")
    result = verify_folders(extractor, tmp_path / "db", names, [query], ranked, distances, top=6,
                            store_dir=tmp_path / "store")
    assert result.ranked[0, 0] == 4 and sorted(result.ranked[0].tolist()) == list(range(6))
    assert result.skipped == 0 and result.bytes_per_image > 0
    assert len(list((tmp_path / "cache").glob("patch-whitening-*.safetensors"))) == 1  # reused next time


def test_raw_scores_fused_with_another_weight_and_top_equal_a_fresh_run(netvlad_model, tmp_path):
    # one pass over a top 6 keeps the raw patch scores; every other λ and shorter top fused from them must give
    # the ranking and scores of a run made with those settings (rapid scoring: no random draws)
    names = write_images(tmp_path / "db", 6, size=(160, 128), seed=5)
    paths = [tmp_path / "db" / n for n in names]
    whitening = fit_patch_whitening(netvlad_model, paths, 16, size=2)
    ranked = np.array([[0, 1, 2, 3, 4, 5], [5, 3, 1, -1, -1, -1]])  # the second query: three candidates only
    distances = np.array([np.linspace(0.5, 1.0, 6), [0.2, 0.3, 0.7, 0, 0, 0]])
    queries = [paths[4], paths[2]]

    def run(preset, top):
        extractor = PatchExtractor(netvlad_model, preset, whitening)
        store = extract_patch_store(extractor, tmp_path / "db", names, tmp_path / "p")
        return verify_ranking(extractor, store, queries, ranked, distances, top)

    full = run(RAPID, 6)
    assert full.raw.shape == (2, 6, 2) and np.all(full.raw[1, 3:] == 0)
    for weight in (0.0, 0.3, 0.75, 1.0):
        for top in (2, 4, 6):
            preset = RAPID.with_global_weight(weight)
            want = run(preset, top)
            got_ranked, got_scores = rescore_ranking(full.raw, ranked, distances, preset, top)
            np.testing.assert_array_equal(got_ranked, want.ranked)
            np.testing.assert_allclose(got_scores, want.scores, atol=1e-12)
    at_one = rescore_ranking(full.raw, ranked, distances, RAPID.with_global_weight(1.0), 6)[0]
    np.testing.assert_array_equal(at_one, ranked)  # λ = 1: the global order back


def test_small_images_skip_the_largest_size_and_top_is_clamped(netvlad_model, tmp_path, caplog):
    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=4,
                                   preprocessing=Preprocessing("fixed", (64, 96))), pretrained=False).eval()
    names = write_images(tmp_path / "db", 4, size=(96, 64))  # 2×3 map: no window of size 3
    whitening = fit_patch_whitening(model, [tmp_path / "db" / n for n in names], 4, size=2)
    extractor = PatchExtractor(model, VerifyPreset("small", "x", sizes=(2, 3), dim=4, scorer="rapid"), whitening)
    store = extract_patch_store(extractor, tmp_path / "db", names, tmp_path / "p")
    with caplog.at_level(logging.WARNING):
        result = verify_ranking(extractor, store, [tmp_path / "db" / names[1]], np.array([[0, 1, 2, 3]]),
                                np.zeros((1, 4)), top=10)
    assert "larger than the database" in caplog.text
    assert result.ranked.shape == (1, 4) and result.skipped == 1  # the query's size-3 patches: none
    assert clamp_top(3, 10) == 3


def test_a_model_with_whitening_projects_patches_with_its_own(tmp_path):
    import torch

    from netvlad.match.verify.run import patch_whitening
    from netvlad.nn.patch import patch_netvlad

    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=2, whitening_dim=12,
                                   preprocessing=Preprocessing("fixed", (96, 128))), pretrained=False).eval()
    torch.manual_seed(0)
    model.whitening.fit(torch.randn(40, model.pool.output_dim))
    preset = VerifyPreset("own", "x", sizes=(2,), dim=8, scorer="rapid")
    assert patch_whitening(model, preset, [], False) is model.whitening  # nothing fitted, no images needed
    extractor = PatchExtractor(model, preset, patch_whitening(model, preset, [], False))
    feats = torch.rand(1, model.pool.dim, 3, 4)
    with torch.no_grad():
        got = extractor.from_features(feats)[0].descriptors[0]
        layer = model.pool
        raw = patch_netvlad(feats, layer.conv.weight.view(2, -1), layer.conv.bias, layer.centroids, 2)[0]
        expected = model.whitening.crop(8)(raw)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_the_patch_whitening_is_fitted_once_and_its_cache_checked_and_rebuilt_when_damaged(
        netvlad_model, tmp_path, monkeypatch, caplog):
    import errno

    from netvlad.match.verify import run

    paths = [tmp_path / "db" / n for n in write_images(tmp_path / "db", 3, size=(160, 128))]
    preset = VerifyPreset("cache", "test", sizes=(2,), dim=8, scorer="rapid")
    cache = tmp_path / "cache"
    fits = []
    real_fit = run.fit_patch_whitening
    monkeypatch.setattr(run, "fit_patch_whitening", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    fitted = run.patch_whitening(netvlad_model, preset, paths, cache)
    [path] = list(cache.iterdir())
    assert path.name.startswith("patch-whitening-") and len(fits) == 1

    def same(whitening):
        return all(torch.equal(a, b) for a, b in zip(whitening.state_dict().values(),
                                                     fitted.state_dict().values(), strict=True))

    assert same(run.patch_whitening(netvlad_model, preset, paths, cache)) and len(fits) == 1  # read, not fitted
    good = path.read_bytes()
    data = bytearray(good)
    data[len(data) // 2] ^= 0x40  # a flipped byte inside the weights: safetensors alone does not notice
    for damaged in (bytes(data), good[:len(good) // 2], b""):
        path.write_bytes(damaged)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert same(run.patch_whitening(netvlad_model, preset, paths, cache))
        assert "cached patch whitening" in caplog.text and "fitting it again" in caplog.text
        fitted_so_far = len(fits)
        assert same(run.patch_whitening(netvlad_model, preset, paths, cache)) and len(fits) == fitted_so_far
    assert len(fits) == 4  # once, then once per damaged entry, each rebuilt and read back
    write_images(tmp_path / "db", 1, size=(160, 128), seed=7)  # another first image: another key, fitted again
    run.patch_whitening(netvlad_model, preset, paths, cache)
    assert len(fits) == 5 and len(list(cache.iterdir())) == 2
    for entry in cache.iterdir():
        entry.unlink()

    def disk_full(tensors, target, metadata):
        with open(target, "wb") as handle:
            handle.write(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", disk_full)
    with caplog.at_level(logging.WARNING):
        run.patch_whitening(netvlad_model, preset, paths, cache)  # the run goes on
    assert "No space left" in caplog.text and list(cache.iterdir()) == []  # nothing left to poison the next run


def _integral_patches(maps, layer, size: int, whitening) -> torch.Tensor:
    """Projected patch descriptors ``(B, windows, dim)`` the float64 integral-image way: V(k) = Σ a·x − (Σ a)·c_k
    from summed-area tables, intra- and L2-normalised, whitened, L2-normalised."""
    x = torch.nn.functional.normalize(maps.double(), dim=1)
    logits = torch.einsum("kd,bdhw->bkhw", layer.conv.weight.double().flatten(1), x)
    assign = torch.softmax(logits if layer.conv.bias is None else logits + layer.conv.bias.double()[:, None, None], 1)
    mass = window_sums(integral_image(assign), size, 1)
    sums = window_sums(integral_image(assign[:, :, None] * x[:, None]), size, 1)
    vlad = (sums - mass[:, :, None] * layer.centroids.double()[None, :, :, None, None]).flatten(3).permute(0, 3, 1, 2)
    vlad = torch.nn.functional.normalize(torch.nn.functional.normalize(vlad, dim=3).flatten(2), dim=2)
    return torch.nn.functional.normalize(vlad @ whitening.linear.weight.double().T + whitening.linear.bias.double(),
                                         dim=2)


def _extractor_on_real_maps(gardens_point_maps, sizes: tuple[int, ...], seed: int, monkeypatch):
    """(real feature maps, a ``rapid`` PatchExtractor of ``sizes`` over their NetVLAD layer with a random 32-D
    whitening, the list each shared-product check it makes appends its (windows, images) to)."""
    from netvlad.match.verify import patches

    maps, layer = gardens_point_maps
    model = PlaceModel(ModelConfig(num_clusters=8), pretrained=False).eval()
    model.pool = layer
    torch.manual_seed(seed)
    whitening = PCAWhitening(layer.output_dim, 32)
    whitening.linear.weight.normal_(0, 0.01)
    extractor = PatchExtractor(model, VerifyPreset("real-maps", "test", sizes=sizes, dim=32, scorer="rapid"),
                               whitening)
    checks, real = [], patches.shared_products_keep_bits
    monkeypatch.setattr(patches, "shared_products_keep_bits", lambda *a: checks.append(a[1:]) or real(*a))
    return maps, extractor, checks


@pytest.mark.parametrize("threads", [1, 2])
@torch.no_grad()
def test_a_batch_s_patches_are_each_image_s_alone_bit_for_bit_with_the_check_made_once(gardens_point_maps, threads,
                                                                                        monkeypatch):
    from netvlad.threads import torch_threads

    maps, extractor, checks = _extractor_on_real_maps(gardens_point_maps, (2, 3), 11, monkeypatch)
    with torch_threads(threads):
        batch = extractor.from_features(maps)  # 24 and 15 windows an image: the 4 images may share each product
        twin = extractor.twin()  # another thread's: its own buffer, the same checks
        alone = [twin.from_features(maps[b:b + 1])[0] for b in range(len(maps))]
        again = twin.from_features(maps)
    assert checks == [(24, 4), (15, 4)]  # once per window count, for the extractor and its twin
    assert twin._work is not extractor._work
    for b in range(len(maps)):
        for i in range(2):
            assert torch.equal(alone[b].descriptors[i], batch[b].descriptors[i])
            assert torch.equal(again[b].descriptors[i], batch[b].descriptors[i])


@pytest.mark.parametrize("preset", [RAPID, RANSAC])
@torch.no_grad()
def test_real_shortlist_is_ranked_as_by_integral_image_patches(gardens_point_maps, preset):
    maps, layer = gardens_point_maps
    model = PlaceModel(ModelConfig(num_clusters=8)).eval()
    model.pool = layer
    with torch.no_grad():
        whitening = PCAWhitening(layer.output_dim, 16).fit(
            patch_netvlad(maps, layer.conv.weight.flatten(1), layer.conv.bias, layer.centroids, 2).flatten(0, 1))
    extractor = PatchExtractor(model, preset, whitening)
    ours = extractor.from_features(maps)
    sizes = [_integral_patches(maps, layer, s, extractor.whitening) for s in preset.sizes]
    for i in range(len(preset.sizes)):
        for b in range(len(maps)):
            torch.testing.assert_close(ours[b].descriptors[i].double(), sizes[i][b], atol=1e-5, rtol=0)

    def reader(descriptors):
        def read(i, rows):
            return (torch.stack([descriptors[r].descriptors[i].float() for r in rows]),
                    torch.tensor([descriptors[r].grids[i] for r in rows]))
        return read

    reference = [Patches([s[b].float() for s in sizes], ours[b].grids) for b in range(len(maps))]
    rows, distances = np.array([1, 2, 3]), np.array([0.9, 1.0, 1.1])
    got = verify_shortlist(ours[0], rows, distances, reader(ours), preset, torch.Generator().manual_seed(0))
    want = verify_shortlist(reference[0], rows, distances, reader(reference), preset,
                            torch.Generator().manual_seed(0))
    assert got.order.tolist() == want.order.tolist()
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-6)


@pytest.mark.parametrize("preset", [RAPID, RANSAC])
def test_patches_through_the_folded_copy_rank_real_photos_as_the_eager_model(preset):
    from netvlad.data.images import load_image
    from tests.conftest import shared_dataset

    root = shared_dataset("gardens_point")
    paths = [root / "day_right" / "Image050.jpg"] + [root / "day_left" / f"Image{i:03d}.jpg" for i in (46, 50, 120)]
    torch.manual_seed(0)
    model = PlaceModel(ModelConfig(num_clusters=8)).eval()  # ImageNet MobileNetV2: batch norms to fold
    images = torch.stack([load_image(p, "fixed", (160, 224)) for p in paths])
    with torch.no_grad():
        whitening = PCAWhitening(model.pool.output_dim, 16).fit(patch_netvlad(
            model.features(images), model.pool.conv.weight.flatten(1), model.pool.conv.bias, model.pool.centroids,
            2).flatten(0, 1))
        extractor = PatchExtractor(model, preset, whitening)
        folded, eager = extractor.from_images(images), extractor.from_features(model.features(images))
    for a, b in zip(folded, eager, strict=True):
        for x, y in zip(a.descriptors, b.descriptors, strict=True):
            torch.testing.assert_close(x, y, atol=1e-4, rtol=0)

    def reader(patches):
        def read(i, rows):
            return (torch.stack([patches[r].descriptors[i] for r in rows]),
                    torch.tensor([patches[r].grids[i] for r in rows]))
        return read

    rows, distances = np.array([1, 2, 3]), np.array([0.9, 1.0, 1.1])
    got, want = (verify_shortlist(p[0], rows, distances, reader(p), preset, torch.Generator().manual_seed(0))
                 for p in (folded, eager))
    assert got.order.tolist() == want.order.tolist()
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)


def test_one_backbone_pass_gives_the_descriptors_and_patches_of_two_on_real_photos(tmp_path):
    from netvlad.data.images import load_image
    from netvlad.extract import extract_descriptors
    from netvlad.extract.store import DescriptorStore
    from tests.conftest import shared_dataset

    root = shared_dataset("gardens_point")
    names = [f"day_left/Image{i:03d}.jpg" for i in (46, 50, 120)] + ["day_right/Image050.jpg"]
    paths = [root / n for n in names]
    torch.manual_seed(0)
    model = PlaceModel(ModelConfig(num_clusters=8, preprocessing=Preprocessing("fixed", (160, 224)))).eval()
    images = torch.stack([load_image(p, "fixed", (160, 224)) for p in paths])
    with torch.no_grad():
        whitening = PCAWhitening(model.pool.output_dim, 16).fit(patch_netvlad(
            model.features(images), model.pool.conv.weight.flatten(1), model.pool.conv.bias, model.pool.centroids,
            2).flatten(0, 1))
    preset = RAPID  # two patch sizes
    extractor = PatchExtractor(model, preset, whitening)
    database, queries = names[:3], names[3:]
    DescriptorStore.create(tmp_path / "database", database, model.output_dim, "float32", model.fingerprint(),
                           str(root.resolve())).write(np.array([1]), np.full((1, model.output_dim), 7, np.float32))
    store = extract_with_patches(extractor, root, database, tmp_path / "database", tmp_path / "patches",
                                 batch_size=2)
    query_store = extract_with_patches(extractor, root, queries, tmp_path / "queries", tmp_path / "queries-patches",
                                       patch_dtype="float32")
    rows = DescriptorStore.open(tmp_path / "database").load()
    two_passes = extract_descriptors(model, paths[:3], engine="torch")
    np.testing.assert_array_equal(rows[1], 7)  # a row already in the store is kept
    np.testing.assert_allclose(rows[[0, 2]], two_passes[[0, 2]], atol=1e-5, rtol=0)
    eager = extractor.from_features(model.features(images).detach())
    for i, (s, image) in enumerate([(store, j) for j in range(3)] + [(query_store, 0)]):
        for size in range(len(preset.sizes)):
            values, grids = s.read(size, np.array([image]))
            assert tuple(grids[0].tolist()) == eager[i].grids[size]
            torch.testing.assert_close(values[0, :len(eager[i].descriptors[size])], eager[i].descriptors[size],
                                       atol=2e-3 if i < 3 else 1e-4, rtol=0)  # database rows float16, queries' 32
    assert extract_with_patches(extractor, root, database, tmp_path / "database", tmp_path / "patches") is not None

    rows, distances = np.array([[0, 1, 2]]), np.array([[0.9, 1.0, 1.1]])
    read, extracted = (verify_ranking(extractor, store, [paths[3]], rows, distances, top=3, query_patches=q)
                       for q in (query_store, None))
    assert read.ranked.tolist() == extracted.ranked.tolist()
    np.testing.assert_allclose(read.scores, extracted.scores, atol=1e-4)
    other = PatchExtractor(model, preset, PCAWhitening(model.pool.output_dim, 16))
    with pytest.raises(BadInputError, match="queries' patch store"):
        verify_ranking(extractor, extract_patch_store(other, root, database, tmp_path / "other"), [paths[3]], rows,
                       distances, top=3, query_patches=query_store)


def test_queries_matched_in_lanes_rank_real_photos_as_in_one(tmp_path):
    from tests.conftest import shared_dataset

    root = shared_dataset("gardens_point")
    database = [f"day_left/Image{i:03d}.jpg" for i in (40, 46, 50, 54, 120, 160)]
    queries = [root / f"day_right/Image{i:03d}.jpg" for i in (46, 50, 120, 161)]
    torch.manual_seed(0)
    model = PlaceModel(ModelConfig(num_clusters=8, preprocessing=Preprocessing("fixed", (160, 224)))).eval()
    whitening = fit_patch_whitening(model, [root / n for n in database], 16, size=2)
    extractor = PatchExtractor(model, RAPID, whitening)
    store = extract_patch_store(extractor, root, database, tmp_path / "patches")
    ranked = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [-1] * 6, [4, 5, 0, -1, -1, -1]])
    distances = np.tile(np.linspace(0.5, 1.0, 6), (4, 1))
    one, lanes = (verify_ranking(extractor, store, queries, ranked, distances, top=6, lanes=n) for n in (1, 3))
    np.testing.assert_array_equal(lanes.ranked, one.ranked)
    np.testing.assert_array_equal(lanes.scores, one.scores)
    np.testing.assert_array_equal(lanes.raw, one.raw)
    assert lanes.skipped == one.skipped == 0
    assert one.ranked[0, 0] == 1 and one.ranked[1, 0] == 2  # Image046's and Image050's own places first
    assert np.all(lanes.ranked[2] == -1) and lanes.seconds[2] == 0  # no shortlist: nothing matched
    assert np.all(lanes.seconds[[0, 1, 3]] > 0) and np.all(lanes.extract_seconds > 0)  # each query's own times
    with pytest.raises(ValueError, match="one lane"):  # RANSAC's draws come from one generator, query after query
        verify_ranking(PatchExtractor(model, RANSAC, whitening), store, queries, ranked, distances, top=6, lanes=2)
    with pytest.raises(ValueError, match="at least 1, got 0"):
        verify_ranking(extractor, store, queries, ranked, distances, top=6, lanes=0)


def test_match_lanes_are_the_cores_beside_torch_s_threads_with_rapid_scoring():
    from netvlad.match.verify.run import match_lanes
    from netvlad.threads import torch_threads, usable_cores

    cores = usable_cores()
    with torch_threads(1):
        assert match_lanes(RAPID) == cores and match_lanes(RANSAC) == 1
    with torch_threads(cores):
        assert match_lanes(RAPID) == 1


@torch.no_grad()
def test_a_twin_projects_each_image_alone_while_another_thread_checks_the_shared_product(gardens_point_maps,
                                                                                        monkeypatch):
    import threading

    maps, extractor, checks = _extractor_on_real_maps(gardens_point_maps, (2,), 12, monkeypatch)
    checking, release = threading.Event(), threading.Event()

    def slow() -> str:
        checking.set()
        release.wait(30)
        return "made"

    other = threading.Thread(target=extractor.whitening_fact, args=("slow", slow))
    other.start()
    assert checking.wait(30)
    twin = extractor.twin()
    assert twin.whitening_fact("another", lambda: "never made", busy=None) is None  # busy: no waiting
    meanwhile = twin.from_features(maps)  # its check not made: each image's windows in products of their own
    assert checks == []
    release.set()
    other.join(30)
    assert twin.whitening_fact("slow", lambda: "made again", busy=None) == "made"  # made once, for both
    after = twin.from_features(maps)  # checked now: the images may share products, the bits the same
    assert checks == [(24, 4)]
    alone = [extractor.from_features(maps[b:b + 1])[0] for b in range(len(maps))]
    for b in range(len(maps)):
        assert torch.equal(meanwhile[b].descriptors[0], alone[b].descriptors[0])
        assert torch.equal(after[b].descriptors[0], alone[b].descriptors[0])
