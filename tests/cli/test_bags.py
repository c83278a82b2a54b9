"""Every command on ROS bags of Gardens Point frames gives exactly what it gives on the same frames as an image
folder with a CSV manifest (or a frames.csv stream folder): descriptors, Recall@N, index matches, training, stream
lines; plus `data inspect BAG`, `stream --out closures.bag|.mcap`, and bad input as one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netvlad.cli.main import main
from netvlad.data.bags.bag import Bag
from netvlad.extract.store import DescriptorStore
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
from tests.conftest import shared_dataset
from tests.data.bags.helpers import FORMATS, T0, expected_utm, image_stamp, write_folder, write_run

PLACES = list(range(0, 160, 20))  # 8 places of Gardens Point, day_left (database) and day_right (queries)
QUERY_START = T0 + 3600 * 1_000_000_000  # the query run an hour later, along the same route
QUIET = ["--device", "cpu", "--workers", "0", "--no-progress", "--threads", "1"]
TOPICS = ["--image-topic", "/camera/compressed", "--gps-topic", "/gps/fix"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs as bags in each format, the same frames as folders with a CSV manifest, and a small model
    (ImageNet MobileNetV2 + GeM at 64×96: random weights would give every image the same descriptor)."""
    root = tmp_path_factory.mktemp("bags")
    gp = shared_dataset("gardens_point")
    frames = {side: [gp / side / f"Image{i:03d}.jpg" for i in PLACES] for side in ("day_left", "day_right")}
    for kind, name in FORMATS.items():
        (root / kind).mkdir()
        write_run(root / kind / name.replace("run", "run1"), frames["day_left"], odometry=False)
        write_run(root / kind / name.replace("run", "run2"), frames["day_right"], start=QUERY_START,
                  odometry=False)
    rows = ["path,split,easting,northing,zone"]
    for side, split in (("day_left", "database"), ("day_right", "query")):
        names = write_folder(root / "folder" / side, frames[side])
        rows += [f"{side}/{n},{split},{e!r},{nn!r},56J" for n, (e, nn) in
                 zip(names, (expected_utm(i) for i in range(len(PLACES))), strict=True)]
    (root / "folder" / "manifest.csv").write_text("\n".join(rows) + "\n")
    model = PlaceModel(ModelConfig(pool="gem", preprocessing=Preprocessing("fixed", (64, 96))))  # ImageNet weights
    save_model(model, root / "model.safetensors")
    return root


def _pair(runs, kind):
    name = FORMATS[kind]
    return [str(runs / kind), "--database", name.replace("run", "run1"), "--queries", name.replace("run", "run2")]


def _model(runs):
    return ["--model", str(runs / "model.safetensors")]


@pytest.mark.parametrize("kind", list(FORMATS))
def test_extract_gives_the_descriptors_of_the_image_files(runs, kind, tmp_path):
    assert main(["-q", "extract", *_pair(runs, kind), *TOPICS, *_model(runs), *QUIET, "--store",
                 str(tmp_path / "bag")]) == 0
    assert main(["-q", "extract", str(runs / "folder" / "manifest.csv"), *_model(runs), *QUIET, "--store",
                 str(tmp_path / "csv")]) == 0
    for side in ("database", "queries"):
        bag, csv = (DescriptorStore.open(tmp_path / where / side) for where in ("bag", "csv"))
        start = T0 if side == "database" else QUERY_START
        assert bag.names == tuple(f"camera/compressed@{image_stamp(i, start)}" for i in range(len(PLACES)))
        descriptors = bag.load()
        assert np.array_equal(descriptors, csv.load())
        assert np.linalg.norm(descriptors[0] - descriptors[1]) > 0.1  # real, distinct descriptors


def test_extract_in_worker_processes_gives_the_same_descriptors(runs, tmp_path):
    for workers in ("0", "2"):
        assert main(["-q", "extract", *_pair(runs, "sqlite"), *TOPICS, *_model(runs), "--device", "cpu",
                     "--workers", workers, "--batch-size", "3", "--no-progress", "--threads", "1", "--store",
                     str(tmp_path / workers)]) == 0
    for side in ("database", "queries"):
        one, two = (DescriptorStore.open(tmp_path / workers / side).load() for workers in ("0", "2"))
        assert np.array_equal(one, two)


def test_evaluate_two_bags_by_path_gives_the_recall_of_the_folder(runs, capsys, monkeypatch):
    monkeypatch.chdir(runs / "mcap")  # DATASET left out: --database / --queries are the bags' paths
    assert main(["evaluate", "--database", "run1.mcap", "--queries", str(runs / "ros1" / "run2.bag"), *TOPICS,
                 *_model(runs), *QUIET]) == 0
    bag = capsys.readouterr().out
    assert main(["evaluate", str(runs / "folder" / "manifest.csv"), *_model(runs), *QUIET]) == 0
    csv = capsys.readouterr().out
    table = bag.split("\n", 1)[1]  # the first line names the dataset
    assert table == csv.split("\n", 1)[1] and "8 queries, 8 database images" in table


def test_index_build_and_query_a_bag_match_the_folder(runs, tmp_path, capsys):
    assert main(["-q", "index", "build", str(runs / "sqlite" / "run1_sqlite"), *TOPICS, *_model(runs), *QUIET,
                 "--out", str(tmp_path / "bag")]) == 0
    assert main(["-q", "index", "build", str(runs / "folder" / "manifest.csv"), *_model(runs), *QUIET, "--out",
                 str(tmp_path / "csv")]) == 0
    capsys.readouterr()
    query = ["-k", "3", "--json", "--device", "cpu", "--no-progress", "--threads", "1"]
    assert main(["query", str(runs / "sqlite" / "run2_sqlite"), "--image-topic", "/camera/compressed", "--index",
                 str(tmp_path / "bag"), *query]) == 0
    bag = json.loads(capsys.readouterr().out)
    images = [str(runs / "folder" / "day_right" / f"Image{i:03d}.jpg") for i in PLACES]
    assert main(["query", *images, "--index", str(tmp_path / "csv"), *query]) == 0
    csv = json.loads(capsys.readouterr().out)
    assert len(bag) == len(csv) == len(PLACES)
    rename = {f"camera/compressed@{image_stamp(i)}": f"day_left/Image{p:03d}.jpg" for i, p in enumerate(PLACES)}
    for b, c in zip(bag, csv, strict=True):
        assert [rename[m["name"]] for m in b["matches"]] == [m["name"] for m in c["matches"]]
        assert [m["distance"] for m in b["matches"]] == [m["distance"] for m in c["matches"]]
        assert b["position"] == pytest.approx(c["position"], abs=1e-6)


def test_train_on_bags_is_training_on_the_folder(runs, tmp_path):
    import torch
    import yaml

    import netvlad
    from tests.train.conftest import TINY

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}
                                     | {"epochs": 1, "cluster_images": 8, "cache_refresh": 8, "batch_size": 8,
                                        "pretrained": True}))
    common = ["--config", str(config), "--no-tensorboard", "--whitening-dim", "none", *QUIET]
    assert main(["-q", "train", *_pair(runs, "ros1"), *TOPICS, *common, "--out", str(tmp_path / "bag")]) == 0
    assert main(["-q", "train", str(runs / "folder" / "manifest.csv"), *common, "--out", str(tmp_path / "csv")]) == 0
    bag, csv = (netvlad.load(tmp_path / where / "model.safetensors").state_dict() for where in ("bag", "csv"))
    assert bag.keys() == csv.keys() and all(torch.equal(bag[k], csv[k]) for k in bag)


def _stream_folder(runs, root):
    """The database run as a stream folder: its frames and a frames.csv of names, stamps and positions."""
    names = write_folder(root, [shared_dataset("gardens_point") / "day_left" / f"Image{i:03d}.jpg" for i in PLACES])
    rows = ["name,time,easting,northing"]
    rows += [f"{n},{image_stamp(i) / 1e9!r},{expected_utm(i)[0]!r},{expected_utm(i)[1]!r}"
             for i, n in enumerate(names)]
    (root / "frames.csv").write_text("\n".join(rows) + "\n")
    return names


@pytest.mark.parametrize("out, decision", [("closures.bag", []), ("closures.mcap", ["--threshold", "2"])],
                         ids=["default decision", "every match"])
def test_stream_over_a_bag_gives_the_lines_of_the_frame_folder_and_writes_the_closures(runs, tmp_path, capsys,
                                                                                         out, decision):
    names = _stream_folder(runs, tmp_path / "frames")
    options = ["--exclude-recent", "1.0", *_model(runs), *QUIET, *decision]
    bag = runs / "ros1" / "run1.bag"
    assert main(["stream", str(bag), *TOPICS, *options, "--out", str(tmp_path / out)]) == 0
    bag_lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["stream", str(tmp_path / "frames"), *options]) == 0
    folder_lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rename = {f"camera/compressed@{image_stamp(i)}": n for i, n in enumerate(names)}
    assert len(bag_lines) == len(folder_lines) == len(PLACES)
    for b, f, i in zip(bag_lines, folder_lines, range(len(PLACES)), strict=True):
        assert b["stamp_ns"] == image_stamp(i)
        assert b["match_stamp_ns"] == (None if b["match"] is None else image_stamp(list(rename).index(b["match"])))
        b = b | {"name": rename[b["name"]], "match": rename.get(b["match"])}
        for key in ("latency_ms", "check_ms", "stamp_ns", "match_stamp_ns"):  # timings, and the bag's own keys
            b.pop(key), f.pop(key, None)
        assert b == f
    closures = [line for line in bag_lines if line["loop_closure"]]
    if decision:  # --threshold 2 accepts every match (L2 distances of unit descriptors are at most 2)
        assert len(closures) == len(PLACES) - 2  # the first two frames have nothing 1 s older to match
        assert len({line["distance"] for line in closures}) == len(closures)  # real, distinct matches
    with Bag(tmp_path / out) as written:
        messages = [written.deserialize(raw, "netvlad_msgs/msg/LoopClosure")
                    for _, raw in written.messages("/netvlad/loop_closure")]
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in messages] == \
        [line["stamp_ns"] for line in closures]
    assert [m.match_stamp.sec * 10**9 + m.match_stamp.nanosec for m in messages] == \
        [line["match_stamp_ns"] for line in closures]
    assert [m.distance for m in messages] == pytest.approx([line["distance"] for line in closures], abs=1e-6)
    assert {m.header.frame_id for m in messages} <= {"/camera/compressed"}


def test_data_inspect_lists_the_topics(runs, capsys):
    assert main(["data", "inspect", str(runs / "mcap" / "run1.mcap")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "ROS 2 bag" in out[0]
    assert out[1].split()[:5] == ["image", "/camera/compressed", "CompressedImage", "8", "messages"]
    assert "2.00 Hz" in out[1] and "gnss" in out[3] and "NavSatFix" in out[3]


@pytest.mark.parametrize("arguments, expected", [
    (["data", "inspect", "{runs}/folder/manifest.csv", "--image-topic", "/x"], "apply to ROS bags only"),
    (["data", "inspect", "{runs}/ros1/run1.bag", "--image-topic", "/x"], "no topic /x; its image topics are: "
                                                                        "/camera/compressed, /camera/raw"),
    (["stream", "{runs}/folder/day_left", "--image-topic", "/x"], "--image-topic apply to ROS bag sources only"),
    (["stream", "{runs}/ros1/run1.bag", "--image-topic", "/camera/raw", "--fps", "5"], "--fps does not apply"),
    (["evaluate", "--database", "nope.bag", "--queries", "nope2.bag"], "DATASET missing"),
    (["data", "convert", "{runs}/ros1/run1.bag", "--image-topic", "/camera/raw", "--out", "{runs}/dvgb"],
     "images inside a ROS bag cannot be linked or copied"),
])
def test_bad_input_is_one_error_line(runs, arguments, expected, caplog):
    assert main([a.format(runs=runs) for a in arguments]) == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and expected in errors[0].getMessage() and "\n" not in errors[0].getMessage()
    assert errors[0].exc_info is None
