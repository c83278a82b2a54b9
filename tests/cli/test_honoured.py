"""Every flag is honoured or refused: --database/--queries pairs, model flags a command would ignore, --skip-bad
in k-means sampling, counts of images used, and off-the-shelf NetVLAD clustered by the library as by the CLI."""

import json
import shutil

import numpy as np
import pytest

from netvlad.cli.main import build_parser, leaf_parsers, main
from netvlad.cli.options import ARCHITECTURE, INPUT, add_model_args
from tests.conftest import shared_dataset

PAIR_ERROR = "--database day_left without --queries: name both sub-folders"


def _leaves_with(flag):
    return [pytest.param(leaf, id=" ".join(leaf.prog.split()[1:])) for leaf in leaf_parsers(build_parser())
            if flag in leaf._option_string_actions]


def _required(leaf, dataset, tmp_path):
    words = []
    for action in leaf._actions:
        if not action.option_strings and action.dest not in ("help",):
            words.append(__file__ if action.dest == "images" else str(dataset))
        elif action.required:
            words += [action.option_strings[0], str(tmp_path if action.dest == "index" else tmp_path / "out")]
    return words


@pytest.mark.parametrize("leaf", _leaves_with("--database"))
def test_database_without_queries_is_the_same_error_everywhere(leaf, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("NETVLAD_OFFLINE", "1")
    command = leaf.prog.split()[1:]
    dataset = shared_dataset("gardens_point")
    data = ["--data", str(dataset)] if command == ["demo"] else []
    argv = [*command, *_required(leaf, dataset, tmp_path), *data, "--database", "day_left"]
    if command != ["demo"]:
        argv += ["--frame-tolerance", "2"]
    assert main(argv) == 1, argv
    assert PAIR_ERROR in caplog.text
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing was built


def test_model_flag_defaults_are_the_parsers():
    import argparse

    parser = argparse.ArgumentParser()
    add_model_args(parser)
    defaults = vars(parser.parse_args([]))
    assert {k: defaults[k] for k in ARCHITECTURE | INPUT} == ARCHITECTURE | INPUT


@pytest.mark.parametrize("leaf", _leaves_with("--model"))
@pytest.mark.parametrize("flag", [["--pool", "gem"], ["--backbone", "vgg16"], ["--clusters", "8"],
                                  ["--parametrization", "paper"], ["--no-pretrained"]])
def test_architecture_flags_with_a_checkpoint_are_refused(leaf, flag, tmp_path, caplog):
    from netvlad.cli.options import model_from_args

    argv = [*leaf.prog.split()[1:], *_required(leaf, tmp_path, tmp_path), "--model", __file__, *flag]
    args = build_parser().parse_args(argv)
    with pytest.raises(ValueError, match=f"{flag[0]}.* would be ignored: the checkpoint"):
        model_from_args(args)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """A Gardens Point index (frames) of 12 database images with a tiny GeM model."""
    from tests.conftest import gardens_point_with_model

    root = gardens_point_with_model(tmp_path_factory.mktemp("gp"), 16, (64, 96))
    out = root / "index"
    assert main(["index", "build", str(root), "--database", "day_left", "--queries", "day_right",
                 "--frame-tolerance", "2", "--model", str(root / "model.safetensors"), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    return root, out


@pytest.mark.parametrize("flags", [["--pool", "gem"], ["--size", "320"], ["--resize", "longest", "--size", "320"],
                                   ["--clusters", "8"]])
def test_model_flags_with_an_index_are_refused(index, flags, caplog, capsys):
    root, out = index
    query = root / "day_right" / "Image048.jpg"
    assert main(["query", str(query), "--index", str(out), *flags]) == 1
    line = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"][-1]
    assert f"{flags[0]}" in line and "would be ignored: the index" in line and "model.safetensors" in line


def test_sequence_index_prints_frames_not_metres(index, capsys):
    root, out = index
    query = root / "day_right" / "Image048.jpg"
    assert main(["query", str(query), "--index", str(out), "-k", "2"]) == 0
    printed = capsys.readouterr().out
    assert "frame " in printed and " E " not in printed and "nan" not in printed
    assert json.loads((out / "index.json").read_text())["positions"] == "frames"


def test_folder_index_prints_no_nan(index, tmp_path, capsys):
    root, _ = index
    folder = tmp_path / "photos"
    shutil.copytree(root / "day_left", folder)
    assert main(["index", "build", str(folder), "--model", str(root / "model.safetensors"), "--out",
                 str(tmp_path / "idx"), "--device", "cpu", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["query", str(root / "day_right" / "Image048.jpg"), "--index", str(tmp_path / "idx")]) == 0
    printed = capsys.readouterr().out
    assert "nan" not in printed and "no position estimate" in printed


def test_kmeans_sampling_skips_bad_images_and_retrieve_counts_used(tmp_path, caplog, monkeypatch):
    from netvlad.extract.clusters import ClusterConfig, initialize_clusters
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing

    source = shared_dataset("gardens_point") / "day_left"
    db, q = tmp_path / "db", tmp_path / "q"
    db.mkdir(), q.mkdir()
    for i in range(5):
        shutil.copy(source / f"Image{i * 10:03d}.jpg", db / f"Image{i * 10:03d}.jpg")
        shutil.copy(source / f"Image{i * 10 + 5:03d}.jpg", q / f"Image{i * 10 + 5:03d}.jpg")
    (db / "broken.jpg").write_bytes(b"not a jpeg")
    model = PlaceModel(ModelConfig(num_clusters=4, preprocessing=Preprocessing("fixed", (64, 96))), pretrained=False)
    paths = sorted(db.iterdir())
    with pytest.raises(ValueError, match="broken.jpg: cannot decode"):
        initialize_clusters(model, paths, ClusterConfig(num_images=6, per_image=10, niter=2))
    assert not model.pool.clustered
    initialize_clusters(model, paths, ClusterConfig(num_images=6, per_image=10, niter=2), skip_bad=True)
    assert model.pool.clustered and "skipping undecodable image" in caplog.text

    monkeypatch.setenv("NETVLAD_OFFLINE", "1")
    argv = ["retrieve", str(db), str(q), "--out", str(tmp_path / "r"), "--clusters", "4", "--no-pretrained",
            "--size", "64", "96", "--resize", "fixed", "--cluster-images", "6", "--no-pictures", "--device", "cpu",
            "--no-progress"]
    assert main(argv) == 1  # the broken photo, in the k-means sampling
    assert main([*argv, "--skip-bad"]) == 0
    assert "5 queries against 5 database images" in caplog.text
    data = json.loads((tmp_path / "r" / "retrieval.json").read_text())
    assert data["skipped_images"] == ["db/broken.jpg"]


def test_library_evaluate_clusters_an_off_the_shelf_netvlad(tmp_path, caplog):
    import logging

    from netvlad.data import open_dataset
    from netvlad.eval.recall import evaluate
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing
    from tests.conftest import copy_sequence

    root = copy_sequence(shared_dataset("gardens_point"), tmp_path, ("day_left", "day_right"),
                         [f"Image{i:03d}.jpg" for i in range(0, 192, 16)])
    data = open_dataset(root, database="day_left", queries="day_right", frame_tolerance=2)
    model = PlaceModel(ModelConfig(num_clusters=4, preprocessing=Preprocessing("fixed", (64, 96))), pretrained=False)
    before = model.pool.centroids.detach().clone()
    with caplog.at_level(logging.INFO, logger="netvlad.extract.clusters"):
        evaluate(model, data)
    assert model.pool.clustered and "off-the-shelf NetVLAD (random centroids)" in caplog.text
    assert not np.allclose(before.numpy(), model.pool.centroids.detach().numpy())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="netvlad.extract.clusters"):
        evaluate(model, data)  # clustered now: left as it is
    assert "random centroids" not in caplog.text
