"""`netvlad retrieve`: two folders of real photos, no positions -> top-k CSV/JSON, hloc pairs, picture."""

from __future__ import annotations

import csv
import json
import logging
import shutil

import numpy as np
import pytest

from netvlad.cli.main import main
from netvlad.data.dataset import ImageList
from netvlad.eval.recall import describe
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from tests.conftest import shared_dataset

FRAMES = range(0, 60, 10)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Gardens Point: six places of day_left as ``scene/db``, the same six of day_right as ``scene/query``."""
    gardens = shared_dataset("gardens_point")
    root = tmp_path_factory.mktemp("scene")
    for side, folder in (("day_left", "db"), ("day_right", "query")):
        (root / folder).mkdir()
        for i in FRAMES:
            shutil.copy(gardens / side / f"Image{i:03d}.jpg", root / folder)
    return root


ARGS = ["--pool", "gem", "--resize", "longest", "--size", "240", "--workers", "0", "--no-progress"]


def test_top_k_files_and_hloc_pairs(scene, tmp_path, one_thread):
    out = tmp_path / "out"
    assert main(["retrieve", str(scene / "db"), str(scene / "query"), "--out", str(out), "-k", "3", *ARGS]) == 0
    pairs = [line.split() for line in (out / "pairs-netvlad-top3.txt").read_text().splitlines()]
    assert len(pairs) == 18 and all(q.startswith("query/") and d.startswith("db/") for q, d in pairs)
    assert all((scene / q).is_file() and (scene / d).is_file() for q, d in pairs)  # hloc names: relative to the parent
    rows = list(csv.DictReader(open(out / "retrieval.csv")))
    report = json.loads((out / "retrieval.json").read_text())
    assert [[r["query"], r["database"]] for r in rows] == pairs
    assert [e["database"] for e in report["queries"][0]["retrieved"]] == [d for q, d in pairs[:3]]
    # the same ranking as a brute-force L2 search over the model's own descriptors
    model = PlaceModel(ModelConfig(pool="gem", preprocessing=Preprocessing("longest", (240,)))).eval()
    names = [f"Image{i:03d}.jpg" for i in FRAMES]
    db, _, _ = describe(model, ImageList(scene / "db", names, np.zeros((6, 2))), None)
    q, _, _ = describe(model, ImageList(scene / "query", names, np.zeros((6, 2))), None)
    expected = np.argsort(np.linalg.norm(q[:, None] - db[None], axis=2), axis=1, kind="stable")[:, :3]
    assert [d for _, d in pairs] == [f"db/{names[i]}" for i in expected.ravel()]
    assert sum(pairs[3 * i][1][3:] == names[i] for i in range(6)) >= 5  # day_right finds its day_left place
    assert (out / "retrievals.png").stat().st_size > 0


def test_same_folder_leaves_out_each_images_own_match(scene, tmp_path, one_thread):
    out = tmp_path / "sfm"
    assert main(["retrieve", str(scene / "db"), str(scene / "db"), "--out", str(out), "-k", "2", "--no-pictures",
                 *ARGS]) == 0
    pairs = [line.split() for line in (out / "pairs-netvlad-top2.txt").read_text().splitlines()]
    assert len(pairs) == 12 and all(q != d for q, d in pairs) and pairs[0][0] == "Image000.jpg"


def test_folders_without_images_fail_in_one_line(tmp_path, caplog):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("no photos")
    with caplog.at_level(logging.ERROR):
        assert main(["retrieve", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "o")]) == 1
    line = caplog.records[-1].getMessage()
    assert "\n" not in line and f"{tmp_path / 'a'}: folder holds no images" in line
    assert not (tmp_path / "o").exists()
