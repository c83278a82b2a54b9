"""onnxruntime as the extraction engine: the same descriptors as torch on real photos, its export cache and its
refusals."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import torch

from netvlad.data.images import load_image
from netvlad.errors import BadInputError
from netvlad.extract import engine as engine_module
from netvlad.extract.descriptors import extract_descriptors
from netvlad.extract.engine import EngineConfig, OrtRunner, TorchRunner, make_runner
from netvlad.models import POOLS, ModelConfig, PlaceModel, Preprocessing, list_backbones

pytest.importorskip("onnxruntime")

POLICIES = {"fixed": Preprocessing("fixed", (96, 128)), "variable": Preprocessing("longest", (112,))}


@pytest.fixture
def photos(gardens_point, tokyo_pair):
    """Real photos of three shapes: Gardens Point 960×540, Tokyo 640×480 and 3264×2448."""
    return [gardens_point / "day_left" / "Image000.jpg", gardens_point / "day_right" / "Image001.jpg",
            tokyo_pair / "tokyo_db.png", tokyo_pair / "tokyo_query.jpg"]


@pytest.fixture(autouse=True)
def _fresh_sessions(one_thread):
    engine_module._SESSIONS.clear()
    engine_module._UNSAVED.clear()
    yield
    engine_module._SESSIONS.clear()
    engine_module._UNSAVED.clear()


def model_of(backbone: str, pool: str, policy: str) -> PlaceModel:
    """A small model: MobileNetV2's ImageNet weights (the one set available offline), random weights otherwise."""
    config = ModelConfig(backbone=backbone, pool=pool, num_clusters=8, preprocessing=POLICIES[policy])
    return PlaceModel(config, pretrained=backbone == "mobilenet_v2").eval()


def both(model, photos, tmp_path, batch_size=2):
    expected = extract_descriptors(model, photos, batch_size=batch_size, engine="torch")
    got = extract_descriptors(model, photos, batch_size=batch_size,
                              engine=EngineConfig("onnxruntime", cache=tmp_path))
    return expected, got


CASES = [(b, "netvlad") for b in list_backbones()] + [("mobilenet_v2", p) for p in sorted(POOLS) if p != "netvlad"]


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize(("backbone", "pool"), CASES)
def test_onnxruntime_gives_torch_descriptors_on_real_photos(backbone, pool, policy, photos, tmp_path):
    model = model_of(backbone, pool, policy)
    expected, got = both(model, photos, tmp_path)
    assert got.shape == (len(photos), model.output_dim)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


def test_variable_sizes_share_one_dynamic_export(photos, tmp_path):
    model = model_of("mobilenet_v2", "gem", "variable")
    runner = make_runner(model, EngineConfig("onnxruntime", cache=tmp_path))
    assert isinstance(runner, OrtRunner) and runner.dynamic
    both(model, photos, tmp_path)
    assert len(list(tmp_path.glob("*.onnx"))) == 1 and len(list(tmp_path.glob("*.json"))) == 1


def test_export_is_reused_then_rebuilt_when_stale_or_foreign(photos, tmp_path, caplog):
    model = model_of("mobilenet_v2", "gem", "fixed")
    expected = extract_descriptors(model, photos[:2], engine="torch")
    make_runner(model, EngineConfig("onnxruntime", cache=tmp_path))
    (onnx,) = tmp_path.glob("*.onnx")
    stamp = onnx.stat().st_mtime_ns
    engine_module._SESSIONS.clear()
    make_runner(model, EngineConfig("onnxruntime", cache=tmp_path))
    assert onnx.stat().st_mtime_ns == stamp  # reused, not exported again
    other = model_of("mobilenet_v2", "avg", "fixed")  # a foreign export under this model's name
    make_runner(other, EngineConfig("onnxruntime", cache=tmp_path / "other"))
    (foreign,) = (tmp_path / "other").glob("*.onnx")
    onnx.write_bytes(foreign.read_bytes())
    engine_module._SESSIONS.clear()
    with caplog.at_level(logging.INFO, logger="netvlad.extract.onnx_cache"):
        got = extract_descriptors(model, photos[:2], engine=EngineConfig("onnxruntime", cache=tmp_path))
    assert "stale or foreign" in caplog.text
    assert np.abs(got - expected).max() <= 1e-5
    record = json.loads(onnx.with_suffix(".json").read_text())
    assert record["fingerprint"] == model.fingerprint() and record["shape"] == [96, 128]


def test_record_of_another_model_is_refused(tmp_path):
    model = model_of("mobilenet_v2", "gem", "fixed")
    make_runner(model, EngineConfig("onnxruntime", cache=tmp_path))
    (meta,) = tmp_path.glob("*.json")
    meta.write_text(json.dumps(json.loads(meta.read_text()) | {"fingerprint": "0" * 16}))
    engine_module._SESSIONS.clear()
    from netvlad.extract.onnx_cache import cached_file

    assert cached_file(tmp_path, make_runner(model, EngineConfig("onnxruntime", cache=tmp_path / "b"))._key(
        (96, 128))) is None


def test_in_memory_export_writes_nothing(photos, tmp_path):
    model = model_of("mobilenet_v2", "gem", "fixed")
    expected, _ = both(model, photos[:2], tmp_path / "unused")
    got = extract_descriptors(model, photos[:2], engine=EngineConfig("onnxruntime", cache=tmp_path / "no",
                                                                     persist=False))
    assert np.abs(got - expected).max() <= 1e-5 and not (tmp_path / "no").exists()


def test_onnxruntime_is_bit_identical_across_runs_at_fixed_threads(photos, tmp_path):
    model = model_of("mobilenet_v2", "netvlad", "variable")
    runs = []
    for _ in range(2):
        engine_module._SESSIONS.clear()  # a new session each time, as a new process would
        runs.append(extract_descriptors(model, photos, engine=EngineConfig("onnxruntime", threads=1, cache=tmp_path)))
    assert np.array_equal(runs[0], runs[1])


def test_two_thread_sessions_schedule_work_dynamically_with_the_bits_of_a_plain_session(photos, tmp_path):
    """Dynamic blocks and sleeping workers change which thread computes what, not the descriptors."""
    import onnxruntime

    model = model_of("mobilenet_v2", "gem", "fixed")
    runner = make_runner(model, EngineConfig("onnxruntime", threads=2, cache=tmp_path))
    session = runner._session(runner.fixed)
    entries = session.get_session_options().get_session_config_entry
    assert entries("session.dynamic_block_base") == "4" and entries("session.intra_op.allow_spinning") == "0"
    plain = onnxruntime.SessionOptions()
    plain.intra_op_num_threads = 2
    plain = onnxruntime.InferenceSession(str(next(tmp_path.glob("*.onnx"))), plain,
                                         providers=["CPUExecutionProvider"])
    images = torch.stack([load_image(path, "fixed", (96, 128)) for path in photos]).numpy()
    for image in images:
        assert np.array_equal(session.run(None, {"images": image[None]})[0],
                              plain.run(None, {"images": image[None]})[0])


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_uint8_into_the_graph_gives_the_float_path_s_descriptors_from_a_separate_export(photos, tmp_path, policy):
    """The graph taking the decoded bytes: within 1e-5 of torch and of the float export on real photos (fixed and
    dynamic sizes), cached under its own name beside the float export, whose record it does not share."""
    model = model_of("mobilenet_v2", "gem", policy)
    expected, floats = both(model, photos, tmp_path)
    runner = make_runner(model, EngineConfig("onnxruntime", cache=tmp_path, uint8=True))
    calls = []
    session_of = runner._session

    def spy(shape, uint8=False):
        calls.append(uint8)
        return session_of(shape, uint8)

    runner._session = spy
    got = extract_descriptors(model, photos, batch_size=2, engine=runner)
    assert calls and all(calls)  # extraction decoded to bytes: every call went to the uint8 graph
    assert np.abs(got - expected).max() <= 1e-5 and np.abs(got - floats).max() <= 1e-5
    records = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("*.json"))]
    assert sorted(record.get("input", "float") for record in records) == ["float", "uint8"]
    assert len({path.stem for path in tmp_path.glob("*.onnx")}) == 2
    image = load_image(photos[0], POLICIES[policy].resize, POLICIES[policy].size)[None]  # floats: the float export
    plain = make_runner(model, EngineConfig("onnxruntime", cache=tmp_path))
    assert np.array_equal(runner(image), plain(image)) and calls[-1] is False


def test_lanes_describe_images_side_by_side_with_the_same_batches_groups_and_bits(photos, tmp_path):
    """Two lanes (each image decoded and run by its own thread on one onnxruntime thread): the batches, size
    groups, undecodable images and descriptor bytes of one image at a time through the one-thread session."""
    from netvlad.extract.descriptors import iter_descriptors

    model = model_of("mobilenet_v2", "gem", "variable")  # photos of three shapes: groups per size
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:300])
    paths = [photos[0], broken, photos[2], photos[1], photos[3], photos[0]]
    alone = make_runner(model, EngineConfig("onnxruntime", threads=1, cache=tmp_path))
    lanes = make_runner(model, EngineConfig("onnxruntime", threads=2, cache=tmp_path))  # a lane per thread
    assert lanes.lanes == 2 and alone.lanes == 1
    assert make_runner(model, EngineConfig("onnxruntime", threads=2, cache=tmp_path, lanes=1)).lanes == 1
    for batch in (1, 4):
        runs = [list(iter_descriptors(model, paths, batch_size=batch, engine=run)) for run in (alone, lanes)]
        assert [(list(i), b) for i, _, b in runs[0]] == [(list(i), b) for i, _, b in runs[1]]
        assert all(np.array_equal(a, b) for (_, a, _), (_, b, _) in zip(*runs, strict=True))
    assert any(b == [1] for _, _, b in runs[1])


@pytest.mark.parametrize("option", [{"uint8": True}, {"lanes": 2}, {"lanes": 1}])
def test_onnxruntime_options_are_refused_for_torch(option):
    with pytest.raises(ValueError, match="onnxruntime's options"):
        EngineConfig("torch", **option)
    EngineConfig("auto", **option)  # they apply when auto picks onnxruntime


@pytest.mark.parametrize("name", ["onnxruntime", "auto"])
def test_lanes_with_chunks_of_several_images_are_refused(name):
    """Lanes run one image a call: lanes=2 with chunk=8 would run without lanes, so it is refused in one line."""
    with pytest.raises(ValueError, match=r"^lanes > 1 and chunk > 1 cannot be combined[^\n]*lanes=1$"):
        EngineConfig(name, lanes=2, chunk=8)
    EngineConfig(name, lanes=2, chunk=1)  # lanes, one image a call
    EngineConfig(name, lanes=1, chunk=8)  # eight a call, no lanes


def test_an_ort_runner_refuses_lanes_with_chunks_of_several_images(tmp_path):
    model = model_of("mobilenet_v2", "gem", "fixed")
    with pytest.raises(ValueError, match="lanes > 1 and chunk > 1 cannot be combined"):
        OrtRunner(model, EngineConfig("onnxruntime", cache=tmp_path, lanes=2), ["CPUExecutionProvider"], chunk=8)


def _counted_calls(runner) -> list[int]:
    """The images of each session call ``runner`` makes from now on (its fixed-size session, counted)."""
    session = runner._session(runner.fixed)
    calls = []

    class Counting:
        def run(self, names, feeds):
            calls.append(len(feeds["images"]))
            return session.run(names, feeds)

    runner._session = lambda shape, uint8=False: Counting()
    return calls


@pytest.mark.parametrize("lanes", [1, None])
def test_chunks_of_eight_run_without_lanes_and_describe_as_one_a_call(photos, tmp_path, lanes):
    """chunk=8 with lanes=1 or None (no lanes asked for) on two threads: eight images a session call, no lanes, the
    descriptors of one image a call within 1e-5."""
    model = model_of("mobilenet_v2", "gem", "fixed")
    runner = make_runner(model, EngineConfig("onnxruntime", threads=2, cache=tmp_path, lanes=lanes, chunk=8))
    assert runner.lanes == 1 and runner.step == 8
    calls = _counted_calls(runner)
    got = extract_descriptors(model, photos, batch_size=4, engine=runner)
    assert calls == [8]  # one call: the batch of four padded to the chunk's eight
    one = extract_descriptors(model, photos, batch_size=4, engine=EngineConfig("onnxruntime", threads=1,
                                                                               cache=tmp_path))
    assert np.abs(got - one).max() <= 1e-5


def test_an_unsaved_export_is_made_once_for_the_runner_and_its_lanes(photos, tmp_path, monkeypatch):
    """persist=False (a training run's refresh) with two lanes: the runner's two-thread session and the lanes'
    one-thread session come from one export, not two."""
    from netvlad.extract import onnx_cache

    exports = []
    export_bytes = onnx_cache.export_bytes
    monkeypatch.setattr(onnx_cache, "export_bytes", lambda *a: exports.append(a[1]) or export_bytes(*a))
    model = model_of("mobilenet_v2", "gem", "fixed")
    runner = make_runner(model, EngineConfig("onnxruntime", threads=2, cache=tmp_path, persist=False))
    assert runner.lanes == 2
    got = extract_descriptors(model, photos[:2], batch_size=2, engine=runner)  # through the one-thread lanes
    assert len(exports) == 1 and not list(tmp_path.iterdir())  # one export, written nowhere
    assert np.abs(got - extract_descriptors(model, photos[:2], engine="torch")).max() < 1e-4


def test_onnxruntime_runs_one_image_a_call_on_a_cpu_and_any_batch_gives_the_same_bits(photos, tmp_path):
    """One image per session call (its time per image is flat in the batch): a batch of one is never padded."""
    model = model_of("mobilenet_v2", "gem", "fixed")
    runner = make_runner(model, EngineConfig("onnxruntime", threads=1, cache=tmp_path))
    calls = _counted_calls(runner)
    batched = extract_descriptors(model, photos, batch_size=4, engine=runner)
    assert calls == [1] * len(photos)
    assert np.array_equal(batched, extract_descriptors(model, photos, batch_size=1, engine=runner))
    assert np.array_equal(batched, extract_descriptors(model, photos, batch_size=3, engine=runner))


def test_auto_picks_onnxruntime_on_cpu_and_torch_on_gpu(tmp_path):
    model = model_of("mobilenet_v2", "gem", "fixed")
    assert make_runner(model, EngineConfig("auto", cache=tmp_path)).name == "onnxruntime"
    assert isinstance(make_runner(model, EngineConfig("auto", cache=tmp_path), device="cuda"), TorchRunner)
    few = engine_module.AUTO_MIN_IMAGES - 1  # too few images to repay loading an export: torch
    assert make_runner(model, EngineConfig("auto", cache=tmp_path), images=few).name == "torch"
    assert make_runner(model, EngineConfig("onnxruntime", cache=tmp_path), images=few).name == "onnxruntime"
    vgg = model_of("vgg16", "netvlad", "fixed")  # not measured faster through onnxruntime: auto keeps torch
    assert make_runner(vgg, EngineConfig("auto", cache=tmp_path)).name == "torch"


def test_gpu_with_onnxruntime_needs_the_cuda_provider(monkeypatch, tmp_path):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(BadInputError, match="no CUDA provider.*onnxruntime-gpu"):
        make_runner(model_of("mobilenet_v2", "gem", "fixed"), EngineConfig("onnxruntime", cache=tmp_path), "cuda")


def test_missing_onnxruntime_names_the_extra_and_auto_falls_back(monkeypatch, caplog, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if it were not installed
    model = model_of("mobilenet_v2", "gem", "fixed")
    with pytest.raises(BadInputError, match=r"netvlad\[export\]"):
        make_runner(model, EngineConfig("onnxruntime", cache=tmp_path))
    with caplog.at_level(logging.INFO, logger="netvlad.extract.engine"):
        assert make_runner(model, EngineConfig("auto", cache=tmp_path)).name == "torch"
    assert len([r for r in caplog.records if "not installed" in r.message]) == 1


class _Numpy(torch.nn.Module):
    """Pooling that leaves torch for numpy: it cannot be traced into ONNX."""

    output_dim = 1280

    def forward(self, features):
        pooled = torch.from_numpy(features.detach().numpy().mean(axis=(2, 3)).copy())
        return torch.nn.functional.normalize(pooled + features.mean() * 0, dim=1)


def test_non_exportable_model_auto_falls_back_with_the_reason(caplog, tmp_path, photos):
    model = model_of("mobilenet_v2", "gem", "fixed")
    model.pool = _Numpy()
    with pytest.raises(BadInputError, match="cannot run this model: onnxruntime differs|export failed"):
        make_runner(model, EngineConfig("onnxruntime", cache=tmp_path))
    with caplog.at_level(logging.INFO, logger="netvlad.extract.engine"):
        runner = make_runner(model, EngineConfig("auto", cache=tmp_path))
    assert runner.name == "torch" and "cannot run through onnxruntime (" in caplog.text
    assert not list(tmp_path.glob("*.json"))  # a refused export is never recorded for reuse


def test_size_bound_export_falls_back_to_one_export_per_size(monkeypatch, photos, tmp_path):
    real = OrtRunner._check

    def dynamic_fails(self, session, key):
        if key.dynamic:
            raise engine_module.ExportError("differs on 128×96")
        return real(self, session, key)

    monkeypatch.setattr(OrtRunner, "_check", dynamic_fails)
    model = model_of("mobilenet_v2", "gem", "variable")
    expected, got = both(model, photos, tmp_path)
    assert np.abs(got - expected).max() <= 1e-5
    shapes = [json.loads(p.read_text())["shape"] for p in tmp_path.glob("*.json")]
    assert "dynamic" not in shapes and [63, 112] in shapes and [84, 112] in shapes  # one export per fed size


def test_local_export_gives_the_plain_descriptors_and_torch_s_feature_maps_from_one_graph(photos, tmp_path, caplog):
    """The export with the feature maps as a second output: the plain export's descriptor bits at the same thread
    count, torch's feature maps within 1e-4 of their scale, cached as its own file beside the plain one and read
    back by the next runner."""
    from netvlad.extract.engine import local_runner
    from netvlad.models.global_and_local import GlobalAndLocal

    model = model_of("mobilenet_v2", "netvlad", "variable")
    config = EngineConfig("onnxruntime", threads=1, cache=tmp_path)
    run = local_runner(model, config)
    plain = make_runner(model, config)
    assert run.name == "onnxruntime" and run.cut == len(model.backbone.stages)
    for photo in photos:
        image = load_image(photo, "longest", (112,))[None]
        descriptors, maps = run(image)
        with torch.inference_mode():
            expected = GlobalAndLocal(model, run.cut)(image)
        assert np.array_equal(descriptors, plain(image))  # one graph's descriptors are the plain graph's bits
        assert maps.shape == tuple(expected[1].shape)
        assert np.abs(maps - expected[1].numpy()).max() <= 1e-4 * max(1.0, float(expected[1].abs().max()))
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert sorted(r.get("local") for r in records if "local" in r) == [run.cut] and len(records) == 2
    engine_module._SESSIONS.clear()
    with caplog.at_level(logging.INFO, logger="netvlad.extract.onnx_cache"):
        again = local_runner(model, config)
    assert again.cut == run.cut and "exported the model" not in caplog.text  # read back from the cache


def test_a_refused_local_export_falls_back_to_torch_with_the_reason_unless_onnxruntime_was_named(
        monkeypatch, tmp_path, caplog):
    from netvlad.extract.engine import local_runner

    real = OrtRunner._check

    def local_fails(self, session, key):
        if key.cut is not None:
            raise engine_module.ExportError("onnxruntime's feature maps differ from torch's by 0.1 of their scale")
        return real(self, session, key)

    monkeypatch.setattr(OrtRunner, "_check", local_fails)
    model = model_of("mobilenet_v2", "netvlad", "fixed")
    with pytest.raises(engine_module.ExportError, match="feature maps differ"):  # named: torch is not what was asked
        local_runner(model, EngineConfig("onnxruntime", cache=tmp_path), cut=3)
    with caplog.at_level(logging.INFO, logger="netvlad.extract.engine"):
        run = local_runner(model, EngineConfig("auto", cache=tmp_path), cut=3)
    assert isinstance(run, TorchRunner) and run.cut == 3 and run.pad
    assert "export with its feature maps cannot be used (onnxruntime's feature maps differ" in caplog.text
    assert [json.loads(p.read_text()).get("local") for p in tmp_path.glob("*.json")] == [None]  # never recorded
    assert isinstance(local_runner(model, "torch"), TorchRunner)  # the library's default engine: torch, as before
