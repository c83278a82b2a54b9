"""``run_evaluation`` from Python gives what ``netvlad evaluate`` prints and writes."""

import json
import logging

import pytest

from netvlad.cli.main import main
from netvlad.errors import BadInputError
from netvlad.match.sequence import SequenceConfig
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, load, save_model
from netvlad.pipeline.evaluate import EvaluationSettings, run_evaluation
from tests.conftest import copy_sequence, shared_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Every 20th Gardens Point frame of day_left and day_right (10 each) and a small max-pooled checkpoint."""
    root = copy_sequence(shared_dataset("gardens_point"), tmp_path_factory.mktemp("gp"), ("day_left", "day_right"),
                         [f"Image{i:03d}.jpg" for i in range(0, 200, 20)])
    checkpoint = root.parent / "m.safetensors"
    save_model(PlaceModel(ModelConfig(pool="max", preprocessing=Preprocessing("fixed", (64, 96)))).eval(), checkpoint)
    return root, checkpoint


@pytest.mark.parametrize("length", [None, 3])
def test_run_evaluation_matches_the_command(pair, tmp_path, capsys, length):
    root, checkpoint = pair
    cli, py = tmp_path / "cli" / "r.json", tmp_path / "py" / "r.json"
    extra = [] if length is None else ["--sequence", str(length)]
    assert main(["evaluate", str(root), "--database", "day_left", "--queries", "day_right", "--frame-tolerance", "2",
                 "--model", str(checkpoint), "--recall", "1,5", "--no-progress", "--no-pictures", "--engine", "torch",
                 "--output", str(cli), *extra]) == 0
    printed = capsys.readouterr().out
    out = run_evaluation(EvaluationSettings(
        model=load(checkpoint), source=root, checkpoint=checkpoint, ns=(1, 5), output=py, pictures=0,
        dataset_options={"database": "day_left", "queries": "day_right", "frame_tolerance": 2},
        sequence=None if length is None else SequenceConfig(length=length)))
    assert out.label in printed and out.result.num_queries == 10 and py in out.written
    ours, theirs = json.loads(py.read_text()), json.loads(cli.read_text())
    for key in ("recall", "num_queries", "num_database", "model", "engine", "sequence_recall"):
        assert ours.get(key) == theirs.get(key), key
    assert (py.parent / "r_queries.csv").read_text() == (cli.parent / "r_queries.csv").read_text()
    assert (length is None) == (out.sequence_result is None) == ("sequence_recall" not in ours)


def test_a_wrong_dataset_is_refused_before_the_model_loads(pair, tmp_path):
    root, checkpoint = pair
    loaded = []

    def load_model():
        loaded.append(checkpoint)
        return load(checkpoint)

    for source, options in ((tmp_path, {}), (root, {"database": "day_left", "queries": "nope"})):
        with pytest.raises(BadInputError, match="empty|no folder 'nope'") as refused:
            run_evaluation(EvaluationSettings(None, source, load_model=load_model, dataset_options=options))
        assert "\n" not in str(refused.value) and str(source) in str(refused.value)
    assert loaded == []
    out = run_evaluation(EvaluationSettings(None, root, load_model=load_model, ns=(1,), dataset_options={
        "database": "day_left", "queries": "day_right", "frame_tolerance": 2}))
    assert loaded == [checkpoint] and out.result.num_queries == 10
    with pytest.raises(ValueError, match="a model or a load_model function"):
        EvaluationSettings(load(checkpoint), root, load_model=load_model)


def test_the_command_reports_a_wrong_dataset_before_any_weights(tmp_path, caplog):
    # vgg16's ImageNet weights are not installed here: loading them first would report that instead
    assert main(["evaluate", str(tmp_path), "--backbone", "vgg16", "--no-progress"]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(tmp_path) in errors[0] and "empty" in errors[0]
    assert not any(r.name.startswith("netvlad.models") for r in caplog.records)


def test_verify_without_a_cache_fits_the_patch_whitening_once_and_ranks_as_fitting_it_twice(pair, tmp_path,
                                                                                             monkeypatch):
    import numpy as np
    import torch

    from netvlad.eval.verified import evaluate_verified
    from netvlad.match.verify import VerifyPreset, run

    root, _ = pair
    fits = []
    real_fit = run.fit_patch_whitening
    monkeypatch.setattr(run, "fit_patch_whitening", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    toy = VerifyPreset("toy", "2 × 2 patches, 16-D", sizes=(2,), dim=16, scorer="rapid")
    torch.manual_seed(0)
    model = PlaceModel(ModelConfig(num_clusters=4, preprocessing=Preprocessing("fixed", (64, 96)))).eval()
    out = run_evaluation(EvaluationSettings(  # on a CPU: descriptors and patches from one backbone pass
        model, root, ns=(1, 5), verify=toy, verify_top=5, store=tmp_path / "s", cluster_cache=False, pictures=0,
        dataset_options={"database": "day_left", "queries": "day_right", "frame_tolerance": 2}))
    assert len(fits) == 1  # the one-pass extraction's whitening is the re-ranking's
    extractor = run.patch_extractor(model, toy, out.dataset.database.paths(), cache=False)  # fitted again
    refitted = evaluate_verified(extractor, out.dataset, out.result.positives, tmp_path / "s", top=5,
                                 ns=(1, 5))  # the re-ranking with its own whitening, as without the one pass
    assert len(fits) == 2 and refitted.recall == out.verified.recall
    np.testing.assert_array_equal(refitted.ranking.ranked, out.verified.ranking.ranked)
    np.testing.assert_array_equal(refitted.ranking.scores, out.verified.ranking.scores)


@pytest.mark.parametrize("refused", [False, True])
def test_a_named_onnxruntime_re_ranks_from_one_pass_or_from_two_where_its_export_with_the_maps_is_refused(
        pair, tmp_path, monkeypatch, caplog, refused):
    import numpy as np
    import torch

    from netvlad.extract import engine as engine_module
    from netvlad.extract.store import DescriptorStore
    from netvlad.match.verify import VerifyPreset

    real = engine_module.OrtRunner._check

    def check(self, session, key):
        if refused and key.cut is not None:
            raise engine_module.ExportError("onnxruntime's feature maps differ from torch's by 0.1 of their scale")
        return real(self, session, key)

    monkeypatch.setattr(engine_module.OrtRunner, "_check", check)
    monkeypatch.setenv("NETVLAD_CACHE", str(tmp_path / "cache"))
    engine_module._SESSIONS.clear()  # every export made and checked here
    root, _ = pair
    toy = VerifyPreset("toy", "2 × 2 patches, 16-D", sizes=(2,), dim=16, scorer="rapid")
    torch.manual_seed(0)
    model = PlaceModel(ModelConfig(num_clusters=4, preprocessing=Preprocessing("fixed", (64, 96)))).eval()
    options = {"database": "day_left", "queries": "day_right", "frame_tolerance": 2}
    with caplog.at_level(logging.INFO, logger="netvlad.pipeline.evaluate"):
        out = run_evaluation(EvaluationSettings(model, root, ns=(1, 5), verify=toy, verify_top=5,
                                                engine="onnxruntime", store=tmp_path / "s", cluster_cache=False,
                                                pictures=0, dataset_options=options))
    plain = run_evaluation(EvaluationSettings(model, root, ns=(1, 5), engine="onnxruntime", store=tmp_path / "p",
                                              cluster_cache=False, pictures=0, dataset_options=options))
    assert out.engine == plain.engine == "onnxruntime" and out.verified is not None
    assert ("patches by torch in a second pass" in caplog.text) == refused
    for label in ("database", "queries"):  # onnxruntime's descriptors either way, the plain evaluation's bits
        np.testing.assert_array_equal(DescriptorStore.open(tmp_path / "s" / label).load(),
                                      DescriptorStore.open(tmp_path / "p" / label).load())
