"""Resumable steps: when a step is done, started or new; digests that follow content; results read back exactly."""

import json

import numpy as np
import pytest
import torch

from netvlad.data import GeoDataset, ImageList
from netvlad.eval import evaluate_descriptors
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
from netvlad.pipeline.compare import Localisation
from netvlad.pipeline.results import load_localisations, load_results, save_localisations, save_results
from netvlad.pipeline.steps import Step, checkpoint_digest, dataset_digest


def test_step_states(tmp_path, caplog):
    output = tmp_path / "out.txt"
    step = Step(tmp_path / "steps", "clusters", {"seed": 0, "size": (120, 160), "path": tmp_path})
    assert step.state([output]) == "new"  # no record
    step.begin()
    assert step.state([output]) == "started"  # recorded, not finished: continue
    output.write_text("x")
    step.end()
    assert step.state([output]) == "done"  # tuples and paths compare as JSON reads them back
    assert step.state([output], force=True) == "new"
    output.unlink()
    assert step.state([output]) == "started"  # complete but an output is missing
    output.write_text("x")
    changed = Step(tmp_path / "steps", "clusters", {"seed": 1, "size": (120, 160), "path": tmp_path})
    caplog.set_level("INFO")
    assert changed.state([output]) == "new"
    assert "step clusters: inputs changed (seed)" in caplog.text
    assert json.loads((tmp_path / "steps" / "clusters.json").read_text())["inputs"]["seed"] == 0


def test_digests_follow_content_not_bytes(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(num_clusters=2, preprocessing=Preprocessing("fixed", (32, 32)))
    model = PlaceModel(config, pretrained=False)
    a, b = save_model(model, tmp_path / "a.safetensors"), save_model(model, tmp_path / "b.safetensors")
    assert checkpoint_digest(a) == checkpoint_digest(b)
    with torch.no_grad():
        model.pool.centroids[0, 0] += 1e-6
    assert checkpoint_digest(save_model(model, tmp_path / "c.safetensors")) != checkpoint_digest(a)
    images = ImageList(tmp_path, ("a.jpg", "b.jpg"), np.array([[0.0, 0.0], [30.0, 0.0]]))
    dataset = GeoDataset("d", images, images)
    moved = GeoDataset("d", images, ImageList(tmp_path, ("a.jpg", "b.jpg"), np.array([[0.0, 0.0], [31.0, 0.0]])))
    assert dataset_digest(dataset) == dataset_digest(GeoDataset("d", images, images))
    assert dataset_digest(dataset) != dataset_digest(moved) and dataset_digest(None) is None


def test_results_and_localisations_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    db, q = rng.standard_normal((12, 8)).astype(np.float32), rng.standard_normal((5, 8)).astype(np.float32)
    positives = [np.array([0, 3]), np.array([], dtype=np.int64), np.array([7]), np.array([1, 2, 11]), np.array([5])]
    results = {"b": evaluate_descriptors(db, q, positives, (1, 5)), "a": evaluate_descriptors(db[:, :4], q[:, :4],
                                                                                               positives, (1, 5))}
    save_results(results, tmp_path)
    back = load_results(tmp_path)
    assert list(back) == ["b", "a"]
    for label, r in results.items():
        got = back[label]
        assert got.recall == r.recall and got.descriptor_dim == r.descriptor_dim
        assert np.array_equal(got.ranked, r.ranked) and np.array_equal(got.correct, r.correct)
        assert np.array_equal(got.distances, r.distances) and got.distances.dtype == r.distances.dtype
        assert [p.tolist() for p in got.positives] == [np.asarray(p).tolist() for p in r.positives]
    localised = [Localisation("q.jpg", (1.5, 2.0), (1.0, 2.0), 0.5, True)]
    assert load_localisations(save_localisations(localised, tmp_path / "l.json")) == localised


def test_unknown_record_is_new(tmp_path):
    (tmp_path / "x.json").write_text("not json")
    assert Step(tmp_path, "x", {}).state([]) == "new"


@pytest.mark.parametrize("inputs", [{"a": 1}, {}])
def test_records_are_plain_json(tmp_path, inputs):
    step = Step(tmp_path, "s", inputs)
    step.end()
    assert json.loads(step.record.read_text()) == {"inputs": inputs, "complete": True}
