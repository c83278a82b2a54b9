"""`netvlad evaluate --sequence L --verify PRESET` on real Gardens Point frames: the sequence ranking's top N
re-ranked by patch matching, checked against the sequence ranking and the re-ranking computed independently."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from netvlad.cli.main import main
from netvlad.constants import EVAL_RADIUS_M
from netvlad.data import open_dataset
from netvlad.eval.recall import recall_at_n
from netvlad.extract.store import DescriptorStore
from netvlad.match.seqslam import seqslam_rank
from netvlad.match.sequence import SequenceConfig
from netvlad.match.verify.patch_store import extract_patch_store
from netvlad.match.verify.patches import PatchExtractor
from netvlad.match.verify.presets import get_preset
from netvlad.match.verify.run import verify_ranking
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
from netvlad.models.io import load as load_model
from netvlad.search.exact import exact_search

TOP = 8



@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A NetVLAD model (K = 2) with its own 24-D whitening: a 6×8 map, so the 5×5 patches of ``storage`` exist."""
    torch.manual_seed(0)
    model = PlaceModel(ModelConfig(pool="netvlad", num_clusters=2, whitening_dim=24,
                                   preprocessing=Preprocessing("fixed", (192, 256))), pretrained=False).eval()
    model.whitening.fit(torch.randn(60, model.pool.output_dim))
    return save_model(model, tmp_path_factory.mktemp("m") / "m.safetensors")


def test_verify_reranks_the_sequence_ranking(sequence, checkpoint, tmp_path, capsys):
    out, store = tmp_path / "r.json", tmp_path / "s"
    assert main(["evaluate", str(sequence), "--database", "day_left", "--queries", "day_right", "--frame-tolerance",
                 "2", "--workers", "0", "--no-progress", "--recall", "1,5", "--model", str(checkpoint),
                 "--no-pictures", "--sequence", "4", "--sequence-method", "seqslam", "--store", str(store), "--verify",
                 "storage", "--verify-top",
                 str(TOP), "--output", str(out)]) == 0
    assert "sequence seqslam L=4 causal + storage (top 8)" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["verify"]["ranking"] == "sequence seqslam L=4 causal" and report["verify"]["top"] == TOP

    # the sequence ranking, independently: exact single-frame shortlists, then SeqSLAM over them
    dataset = open_dataset(sequence, database="day_left", queries="day_right", frame_tolerance=2)
    db = DescriptorStore.open(store / "database").load()
    queries = DescriptorStore.open(store / "queries").load()
    _, shortlist = exact_search(db, queries, len(db))
    seq = seqslam_rank(queries, db, dataset.queries.sequence, dataset.database.sequence, shortlist,
                       SequenceConfig(length=4))
    positives = dataset.positives(EVAL_RADIUS_M)
    assert report["sequence_recall"]["recall"]["1"] == pytest.approx(recall_at_n(seq.ranked, positives, [1])[1])
    assert report["verify"]["ranking_recall"] == report["sequence_recall"]["recall"]

    # its top 8 re-ranked by verify_ranking, with fresh database patches and the model's own whitening
    model = load_model(checkpoint)
    extractor = PatchExtractor(model, get_preset("storage"))
    patches = extract_patch_store(extractor, dataset.database.root, dataset.database.names, tmp_path / "p")
    expected = verify_ranking(extractor, patches, dataset.queries.paths(), seq.ranked[:, :TOP], seq.scores[:, :TOP],
                              TOP).ranked
    assert report["verified_recall"] == {str(n): pytest.approx(r, abs=1e-4)
                                         for n, r in recall_at_n(expected, positives, [1, 5]).items()}
    rows = list(csv.DictReader(open(tmp_path / "r_verified.csv")))
    names = dataset.database.names
    assert [r["sequence_top1"] for r in rows] == [names[i] for i in seq.ranked[:, 0]]
    assert [r["verified_top5"].split() for r in rows] == [[names[i] for i in row[:5]] for row in expected]
    assert not np.array_equal(expected, seq.ranked[:, :TOP])  # the re-ranking changed something
