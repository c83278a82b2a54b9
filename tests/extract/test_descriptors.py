import numpy as np
import pytest
import torch

from netvlad.data.images import ImageDecodeError, load_image
from netvlad.extract.descriptors import extract_descriptors, extract_to_store
from netvlad.extract.store import DescriptorStore
from tests.extract.conftest import write_images


class Stop(Exception):
    pass


def _reference(model, paths):
    """Each image through the model on its own, as an independent reference."""
    pre = model.config.preprocessing
    with torch.no_grad():
        return np.concatenate([model(load_image(p, pre.resize, pre.size)[None]).numpy() for p in paths])


def test_extract_matches_one_by_one_forward_with_mixed_sizes(tmp_path, tiny_model):
    names = write_images(tmp_path, 3, size=(48, 36)) + write_images(tmp_path / "b", 2, size=(30, 40), seed=1)
    paths = [tmp_path / n for n in names[:3]] + [tmp_path / "b" / n for n in names[3:]]
    got = extract_descriptors(tiny_model, paths, batch_size=4)
    np.testing.assert_allclose(got, _reference(tiny_model, paths), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_interrupted_extraction_continues_where_it_stopped(tmp_path, tiny_model):
    names = write_images(tmp_path / "img", 7)
    done = []

    def die_after_two_batches(n):
        done.append(n)
        if len(done) == 2:
            raise Stop

    with pytest.raises(Stop):
        extract_to_store(tiny_model, tmp_path / "img", names, tmp_path / "store", batch_size=2,
                         on_batch=die_after_two_batches)
    assert DescriptorStore.open(tmp_path / "store").num_done == 4
    later = []
    store = extract_to_store(tiny_model, tmp_path / "img", names, tmp_path / "store", batch_size=2,
                             on_batch=later.append)
    assert sum(later) == 3 and store.complete  # only the 3 missing images were run
    np.testing.assert_allclose(store.load(), _reference(tiny_model, [tmp_path / "img" / n for n in names]),
                               atol=1e-5)


def test_bad_image_stops_keeping_work_or_is_skipped(tmp_path, tiny_model):
    names = write_images(tmp_path, 4)
    (tmp_path / names[2]).write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError, match=rf"{names[2]}.*skip_bad=True.*2 of 4 descriptors kept"):
        extract_to_store(tiny_model, tmp_path, names, tmp_path / "s", batch_size=1)
    store = extract_to_store(tiny_model, tmp_path, names, tmp_path / "s", batch_size=1, skip_bad=True)
    assert store.bad() == [names[2]] and store.num_done == 3 and store.complete


def test_store_of_another_model_is_refused(tmp_path, tiny_model):
    names = write_images(tmp_path, 2)
    extract_to_store(tiny_model, tmp_path, names, tmp_path / "s")
    with torch.no_grad():
        tiny_model.pool.p.fill_(4.0)
    with pytest.raises(ValueError, match="model"):
        extract_to_store(tiny_model, tmp_path, names, tmp_path / "s")


def test_float16_store(tmp_path, tiny_model):
    names = write_images(tmp_path, 3)
    store = extract_to_store(tiny_model, tmp_path, names, tmp_path / "s", dtype="float16")
    assert store.descriptors.dtype == np.float16
    np.testing.assert_allclose(store.load(), _reference(tiny_model, [tmp_path / n for n in names]), atol=2e-3)


@pytest.mark.parametrize("chunk", [1, 2])
@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_images_run_as_decoded_give_the_dataloader_batches_descriptors(tmp_path, tiny_model, batch_size, chunk):
    """Each image run once decoded: per batch, the same groups, indices, undecodable images and descriptor bytes as
    the DataLoader's size-grouped batches given whole to the runner (mixed sizes, chunks of 1 or 2 padded)."""
    from netvlad.data.images import ImageDataset, ImageLoader, collate_by_size
    from netvlad.extract.descriptors import _streamed
    from netvlad.extract.engine import TorchRunner

    names = write_images(tmp_path, 3, size=(48, 36)) + write_images(tmp_path / "b", 3, size=(30, 40), seed=1)
    paths = [tmp_path / n for n in names[:3]] + [tmp_path / "b" / n for n in names[3:]]
    paths = [paths[0], paths[3], paths[1], paths[4], paths[2], paths[5]]  # sizes interleaved
    paths[2].write_bytes(b"not an image")
    dataset = ImageDataset(paths, "none", skip_bad=True)
    run = TorchRunner(tiny_model, torch.device("cpu"), trace=False, chunk=chunk, pad=True)
    streamed = list(_streamed(run, (dataset[i] for i in range(len(dataset))), batch_size))
    loaded = list(ImageLoader(dataset, batch_size=batch_size, num_workers=0, collate_fn=collate_by_size))
    assert len(streamed) == len(loaded) == -(-len(paths) // batch_size)
    for (groups, bad), (expected_groups, expected_bad) in zip(streamed, loaded, strict=True):
        assert bad == expected_bad and len(groups) == len(expected_groups)
        for (indices, descriptors), (expected_indices, images) in zip(groups, expected_groups, strict=True):
            assert indices.tolist() == expected_indices.tolist()
            assert np.array_equal(descriptors, run(images))


def test_a_batch_s_first_image_runs_before_its_last_is_decoded(tiny_model):
    """Decoding and the model interleave image by image within a batch of 3, not batch by batch."""
    from netvlad.extract.descriptors import _streamed
    from netvlad.extract.engine import TorchRunner

    events = []

    class Logged(TorchRunner):
        def __call__(self, images):
            events.append(f"run {len(images)}")
            return super().__call__(images)

    def decoded():
        for index in range(3):
            events.append(f"decode {index}")
            yield index, torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(index))

    (groups, bad), = _streamed(Logged(tiny_model, torch.device("cpu"), trace=False), decoded(), 3)
    assert events == ["decode 0", "run 1", "decode 1", "run 1", "decode 2", "run 1"]
    assert bad == [] and groups[0][0].tolist() == [0, 1, 2] and groups[0][1].shape == (3, tiny_model.output_dim)


def test_extraction_puts_a_training_model_in_eval_mode_on_its_device(tiny_model):
    from netvlad.extract.descriptors import _on_device

    tiny_model.train()
    assert _on_device(tiny_model, torch.device("cpu")) is tiny_model
    assert not any(module.training for module in tiny_model.modules())
    on_meta = _on_device(tiny_model, torch.device("meta"))  # a model elsewhere is moved (here: to shapes only)
    assert {t.device.type for t in on_meta.parameters()} == {"meta"}


def test_extraction_into_a_store_through_onnxruntime_hashes_the_model_once(tmp_path, tiny_model, monkeypatch):
    pytest.importorskip("onnxruntime")
    from netvlad.extract.engine import EngineConfig
    from netvlad.models import PlaceModel

    names = write_images(tmp_path / "img", 2)
    calls = []
    fingerprint = PlaceModel.fingerprint
    monkeypatch.setattr(PlaceModel, "fingerprint", lambda self: calls.append(1) or fingerprint(self))
    store = extract_to_store(tiny_model, tmp_path / "img", names, tmp_path / "s", batch_size=2,
                             engine=EngineConfig("onnxruntime", 1, tmp_path / "cache"))
    assert len(calls) == 1 and store.fingerprint == fingerprint(tiny_model)  # the store's, reused for the export
    assert [p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.onnx")] == [store.fingerprint]
    np.testing.assert_allclose(store.load(), _reference(tiny_model, [tmp_path / "img" / n for n in names]), atol=1e-5)


def test_a_repaired_store_equals_an_undamaged_one_bit_for_bit(tmp_path, two_threads):
    """Real photographs, NetVLAD, two threads (where batched CPU kernels round by batch size): a store extracted in
    one batch of 4, and one extracted in batches of 3 + 1 whose row 1 is then damaged, verified and extracted again
    alone, hold the same bytes."""
    from netvlad.extract.store_check import write_rows
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing
    from tests.conftest import shared_dataset

    root = shared_dataset("gardens_point") / "day_left"
    names = [f"Image{i:03d}.jpg" for i in range(0, 40, 10)]
    torch.manual_seed(0)
    model = PlaceModel(ModelConfig(pool="netvlad", num_clusters=8, preprocessing=Preprocessing("fixed", (64, 80))),
                       pretrained=False).eval()
    extract_to_store(model, root, names, tmp_path / "whole", batch_size=4)
    extract_to_store(model, root, names, tmp_path / "repaired", batch_size=3)
    damaged = DescriptorStore.open(tmp_path / "repaired")
    write_rows(tmp_path / "repaired" / "descriptors.npy", damaged.descriptors.offset, np.array([1]),
               np.asarray(damaged.descriptors[1:2]) + np.float32(1e-3))  # a damaged row, as a disk might
    assert list(DescriptorStore.open(tmp_path / "repaired", mode="r+").verify()) == [1]
    extract_to_store(model, root, names, tmp_path / "repaired", batch_size=4)  # row 1 alone
    for name in ("descriptors.npy", "status.npy", "checksums.npy"):
        assert (tmp_path / "repaired" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


@pytest.fixture
def frames_model():
    """MobileNetV2 (random weights) + GeM at 64 × 80, as the commands build it."""
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing

    torch.manual_seed(0)
    return PlaceModel(ModelConfig(pool="gem", preprocessing=Preprocessing("fixed", (64, 80))), pretrained=False).eval()


def test_the_prefetching_pipeline_gives_the_sequential_descriptors_in_order(gardens_point, frames_model, one_thread):
    from netvlad.extract.descriptors import iter_descriptors

    paths = [gardens_point / "day_left" / f"Image{i:03d}.jpg" for i in range(0, 100, 10)]
    runs = {ahead: list(iter_descriptors(frames_model, paths, batch_size=3, engine="torch", prefetch=ahead))
            for ahead in (0, 2)}
    assert [list(indices) for indices, _, _ in runs[2]] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    for (indices, got, bad), (same_indices, expected, same_bad) in zip(runs[2], runs[0], strict=True):
        assert np.array_equal(indices, same_indices) and bad == same_bad == []
        assert np.array_equal(got, expected)
    assert np.array_equal(extract_descriptors(frames_model, paths, batch_size=3),
                          extract_descriptors(frames_model, paths, batch_size=3, prefetch=0))


def test_a_corrupt_frame_mid_route_names_itself_and_keeps_the_frames_before(tmp_path, gardens_point, frames_model,
                                                                           one_thread):
    names = [f"Image{i:03d}.jpg" for i in range(0, 80, 10)]
    for name in names:
        (tmp_path / name).write_bytes((gardens_point / "day_left" / name).read_bytes())
    (tmp_path / names[5]).write_bytes((tmp_path / names[5]).read_bytes()[:300])  # a truncated copy
    with pytest.raises(ImageDecodeError, match=rf"^{tmp_path / names[5]}: .*skip_bad=True.*4 of 8 descriptors kept"):
        extract_to_store(frames_model, tmp_path, names, tmp_path / "s", batch_size=2)
    kept = DescriptorStore.open(tmp_path / "s")
    assert kept.num_done == 4 and list(kept.valid()) == [True] * 4 + [False] * 4
    store = extract_to_store(frames_model, tmp_path, names, tmp_path / "s", batch_size=2, skip_bad=True)
    assert store.bad() == [names[5]] and store.complete
    good = [tmp_path / name for i, name in enumerate(names) if i != 5]
    assert np.abs(store.load()[store.valid()] - extract_descriptors(frames_model, good, batch_size=3)).max() <= 1e-6
