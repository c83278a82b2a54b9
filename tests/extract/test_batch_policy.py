"""The torch engine's CPU batch policy: the decision from measurements, its cache (atomic, checksummed, measured
again when damaged), and what bulk extraction gives with it on real photographs: descriptors within 1e-5 of one
image a call, the same bits run to run, and one image a call under deterministic kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from netvlad.data.images import load_image
from netvlad.extract import engine as engine_module
from netvlad.extract.batch_policy import (
    PolicyKey,
    choose_chunk,
    chunk_for,
    measure,
    policy_folder,
    policy_key,
    read_decision,
    write_decision,
)
from netvlad.extract.descriptors import extract_descriptors
from netvlad.extract.engine import POLICY_MIN_IMAGES, EngineConfig, TorchRunner, make_runner
from netvlad.models import ModelConfig, PlaceModel, Preprocessing

SIZE = (120, 160)
KEY = PolicyKey("a CPU", "avx2", "2.0", '{"config": {}}', (3, 120, 160), 2)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NETVLAD_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def model() -> PlaceModel:
    """MobileNetV2 with its ImageNet weights and NetVLAD (K = 8) at 120 × 160 pixels."""
    config = ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=8,
                         preprocessing=Preprocessing("fixed", SIZE))
    return PlaceModel(config, pretrained=True).eval()


def seed_decision(model: PlaceModel, chunk: int, threads: int = 2) -> None:
    """Cache ``chunk`` as this machine's decision for ``model`` at :data:`SIZE` (the measurement it stands for is
    not run, so the test does not depend on the machine's speed)."""
    key = policy_key(model.config, {"fold": True, "channels_last": True}, (3, *SIZE), threads)
    write_decision(policy_folder(), key, {1: 10.0, 8: 8.0 if chunk == 8 else 10.0}, chunk)


@pytest.mark.parametrize(("ms", "chunk"), [
    ({1: 16.33, 8: 13.07}, 8),  # MobileNetV2 240 px, two threads: 20 % cheaper a batch
    ({1: 12.85, 8: 12.19}, 1),  # one thread: 5 %, within the margin
    ({1: 10.0, 8: 9.0}, 8),  # exactly the margin
    ({1: 10.0, 8: 9.01}, 1),
    ({1: 10.0, 8: 11.0}, 1),  # batches slower
    ({1: 10.0, 4: 8.0, 8: 8.0}, 4),  # a tie: the smaller chunk
    ({1: 10.0}, 1),  # one a call only (a slow image is not measured further)
])
def test_the_policy_batches_only_where_a_batch_is_at_least_the_margin_cheaper(ms, chunk):
    assert choose_chunk(ms) == chunk


def test_a_decision_is_written_atomically_with_its_checksum_and_read_back(tmp_path):
    path = write_decision(tmp_path, KEY, {1: 10.0, 8: 8.0}, 8)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left beside it
    data = json.loads(path.read_text())
    assert data["chunk"] == 8 and data["ms_per_image"] == {"1": 10.0, "8": 8.0} and len(data["sha256"]) == 64
    assert read_decision(tmp_path, KEY) == 8
    other = PolicyKey(*[*KEY.record().values()][:4], (3, 120, 160), 3)  # another thread count: another file
    assert other.stem != KEY.stem and read_decision(tmp_path, other) is None


@pytest.mark.parametrize("damage", ["truncated", "edited", "foreign", "not json"])
def test_a_damaged_decision_is_measured_again_with_a_warning(tmp_path, caplog, damage):
    path = write_decision(tmp_path, KEY, {1: 10.0, 8: 8.0}, 8)
    data = json.loads(path.read_text())
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "edited":  # the chunk changed, the checksum not
        path.write_text(json.dumps(data | {"chunk": 1}))
    elif damage == "foreign":  # a valid file of another key under this key's name
        body = {"key": KEY.record() | {"threads": 4}, "ms_per_image": data["ms_per_image"], "chunk": 8}
        import hashlib

        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        path.write_text(json.dumps(body | {"sha256": digest}))
    else:
        path.write_bytes(b"\x00\xff" * 8)
    measured = []

    def timings():
        measured.append(1)
        return {1: 10.0, 8: 10.0}

    assert chunk_for(KEY, timings, tmp_path) == 1  # measured again: batches no cheaper now
    assert measured == [1]
    assert "damaged or foreign" in caplog.text and str(path) in caplog.text
    assert read_decision(tmp_path, KEY) == 1  # rewritten whole
    assert chunk_for(KEY, timings, tmp_path) == 1 and measured == [1]  # and read from the cache after


def test_one_thread_and_large_inputs_run_one_image_a_call_unmeasured(tmp_path):
    one = PolicyKey(*[*KEY.record().values()][:4], (3, 120, 160), 1)
    assert chunk_for(one, lambda: pytest.fail("measured at one thread"), tmp_path) == 1
    large = PolicyKey(*[*KEY.record().values()][:4], (3, 480, 640), 2)
    assert chunk_for(large, lambda: pytest.fail("measured a large input"), tmp_path) == 1
    assert list(tmp_path.iterdir()) == []


def test_the_measurement_times_one_and_eight_a_call_and_stops_at_a_slow_model():
    calls = []

    def call(batch):
        calls.append(len(batch))
        return batch.sum((1, 2, 3)).numpy()

    ms = measure(call, torch.rand(8, 3, 4, 4), rounds=2)
    assert set(ms) == {1, 8} and all(value > 0 for value in ms.values())
    assert calls.count(8) == 1 + 2 and calls.count(1) == 2 + 2 * 8  # warm-ups, then every round both ways
    slow = []

    def slow_call(batch):
        slow.append(len(batch))
        time.sleep(0.3)

    assert set(measure(slow_call, torch.rand(8, 3, 4, 4))) == {1} and slow == [1, 1, 1, 1]  # trace + 3 tries
    key = PolicyKey(*[*KEY.record().values()][:4], (3, 4, 4), 2)
    assert chunk_for(key, lambda: {1: 300.0}, policy_folder()) == 1
    assert read_decision(policy_folder(), key) is None  # not cached: the next process tries again


@pytest.mark.slow  # extractions at two threads (a subprocess for the pinned kernels)
def test_bulk_extraction_batches_by_the_decision_within_1e5_of_one_a_call_on_real_photos(model, gardens_point,
                                                                                            two_threads):
    paths = sorted((gardens_point / "day_left").glob("*.jpg"))[:POLICY_MIN_IMAGES + 3]  # 8 chunks of 8, 3 single
    one = extract_descriptors(model, paths, engine=EngineConfig("torch", chunk=1))
    seed_decision(model, 8)
    batched = extract_descriptors(model, paths, engine="torch")
    assert np.abs(batched - one).max() <= 1e-5
    engine_module._PREPARED.clear()  # a second run folds and traces again
    assert np.array_equal(extract_descriptors(model, paths, engine="torch"), batched)  # the same bits run to run
    runner = make_runner(model, "torch", images=POLICY_MIN_IMAGES).padded()
    assert runner.step_for((3, *SIZE)) == 8
    images = torch.stack([load_image(path, "fixed", SIZE) for path in paths[:11]])
    got = runner(images)  # 8 a call, then the 3 left one a call each
    assert np.array_equal(got[:8], batched[:8])  # a full chunk: the bits of the chunk it ran in
    assert np.array_equal(got[8:], TorchRunner(model, torch.device("cpu")).padded()(images[8:]))
    assert np.abs(got - one[:11]).max() <= 1e-5


def test_one_thread_and_small_extractions_keep_one_image_a_call_bit_for_bit(model, gardens_point, one_thread):
    paths = sorted((gardens_point / "day_left").glob("*.jpg"))[:POLICY_MIN_IMAGES]
    seed_decision(model, 8, threads=1)  # even a cached batch decision is not read at one thread
    one = extract_descriptors(model, paths, engine=EngineConfig("torch", chunk=1))
    assert np.array_equal(extract_descriptors(model, paths, engine="torch"), one)
    assert make_runner(model, "torch", images=POLICY_MIN_IMAGES - 1).padded().step_for((3, *SIZE)) == 1


@pytest.mark.slow  # extractions at two threads (a subprocess for the pinned kernels)
def test_deterministic_kernels_run_one_image_a_call_whatever_the_decision(model, gardens_point, tmp_path):
    """In a fresh process with the pinned kernels (they are chosen when torch loads) and a cached decision of 8 a
    call: one image a call, the same bits as a forced ``chunk=1`` and from run to run."""
    seed_decision(model, 8)
    script = textwrap.dedent(f"""
        import numpy as np, torch
        from netvlad.numerics import deterministic
        from netvlad.extract.descriptors import extract_descriptors
        from netvlad.extract.engine import EngineConfig, make_runner
        from netvlad.models import ModelConfig, PlaceModel, Preprocessing
        assert deterministic()
        torch.set_num_threads(2)
        model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=8,
                                       preprocessing=Preprocessing("fixed", {SIZE})), pretrained=True).eval()
        paths = sorted(__import__("pathlib").Path({str(gardens_point)!r}, "day_left").glob("*.jpg"))[:66]
        assert make_runner(model, "torch", images=66).padded().step_for((3, *{SIZE})) == 1
        first = extract_descriptors(model, paths, engine="torch")
        assert np.array_equal(first, extract_descriptors(model, paths, engine=EngineConfig("torch", chunk=1)))
        runner = make_runner(model, "torch", images=66).padded()
        from netvlad.data.images import load_image
        images = torch.stack([load_image(path, "fixed", {SIZE}) for path in paths[:9]])
        assert np.array_equal(runner(images), first[:9]) and np.array_equal(runner(images), runner(images))
        print("ok")
    """)
    from netvlad.numerics import PINNED

    environment = os.environ | PINNED | {"NETVLAD_CACHE": str(policy_folder().parent)}
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.slow  # two extractions of 64 photos at two threads
def test_a_row_repaired_alone_after_a_batched_extraction_is_within_1e5_of_the_undamaged_one(model, gardens_point,
                                                                                              tmp_path, two_threads):
    """The bound the policy leaves on store repair: a row extracted in a chunk of 8, damaged and extracted again
    alone (one a call), differs from the undamaged one by at most 1e-5; every other row keeps its bytes."""
    from netvlad.extract.descriptors import extract_to_store
    from netvlad.extract.store import DescriptorStore
    from netvlad.extract.store_check import write_rows

    root = gardens_point / "day_left"
    names = [path.name for path in sorted(root.glob("*.jpg"))[:POLICY_MIN_IMAGES]]
    seed_decision(model, 8)
    whole = extract_to_store(model, root, names, tmp_path / "store").load()
    damaged = DescriptorStore.open(tmp_path / "store")
    write_rows(tmp_path / "store" / "descriptors.npy", damaged.descriptors.offset, np.array([1]),
               np.asarray(damaged.descriptors[1:2]) + np.float32(1e-3))
    assert list(DescriptorStore.open(tmp_path / "store", mode="r+").verify()) == [1]
    repaired = extract_to_store(model, root, names, tmp_path / "store").load()
    assert np.abs(repaired[1] - whole[1]).max() <= 1e-5
    assert np.array_equal(np.delete(repaired, 1, 0), np.delete(whole, 1, 0))
