"""``run_evaluation`` from Python gives what ``netvlad evaluate`` prints and writes."""

import json

import pytest

from netvlad.cli.main import main
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
