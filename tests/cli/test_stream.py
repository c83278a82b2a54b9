"""`netvlad stream` on a generated video and on a route of real frames; `netvlad data route`; bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from netvlad import PlaceDatabase
from netvlad.cli.main import main
from tests.conftest import shared_dataset

av = pytest.importorskip("av")
KEYS = {"frame", "time", "name", "match", "match_time", "distance", "score", "loop_closure", "consistency",
        "distinctiveness", "ratio", "inliers", "null_inliers", "support", "position", "position_distance", "latency_ms",
        "check_ms"}
MODEL = ["--backbone", "mobilenet_v2", "--pool", "gem", "--resize", "none", "--device", "cpu", "--workers", "0",
         "--no-progress", "--threads", "1"]


def _write_video(path, frames, rate=10):
    """A lossless-enough MPEG-4 video of ``frames`` (N, H, W, 3) uint8."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.bit_rate = 8_000_000
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """40 frames at 10 fps: 20 distinct views (smooth random blobs), then the same 20 again (a loop)."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    views = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)  # 64 × 64, blocks survive compression
    path = tmp_path_factory.mktemp("video") / "loop.mp4"
    _write_video(path, np.concatenate([views, views]))
    return path


def test_stream_on_a_generated_video_finds_the_revisits(video, tmp_path, capsys):
    out = tmp_path / "frames.jsonl"
    assert main(["stream", str(video), "--exclude-recent", "1.0", "--out", str(out), "--save",
                 str(tmp_path / "db"), *MODEL]) == 0
    lines = _lines(out)
    assert len(lines) == 40 and all(set(line) == KEYS for line in lines)
    assert [line["time"] for line in lines[:3]] == pytest.approx([0.0, 0.1, 0.2])
    assert all(line["match"] is None and not line["loop_closure"] for line in lines[:10])  # nothing 1 s older
    revisits = lines[20:]
    assert all(line["match"] == f"loop.mp4#{i:06d}" for i, line in enumerate(revisits))
    assert max(line["distance"] for line in revisits) < min(line["distance"] for line in lines[10:20])
    assert "40 frames (loop closure)" in capsys.readouterr().err
    db = PlaceDatabase.load(tmp_path / "db")
    assert len(db) == 40 and db.names[5] == "loop.mp4#000005" and db.times[10] == pytest.approx(1.0)


def test_every_keeps_one_frame_in_n_and_a_threshold_decides(video, tmp_path):
    out = tmp_path / "f.jsonl"
    assert main(["stream", str(video), "--every", "4", "--exclude-recent", "0.5", "--threshold", "1e-9",
                 "--out", str(out), *MODEL]) == 0
    lines = _lines(out)
    assert [line["frame"] for line in lines] == list(range(0, 40, 4))
    assert not any(line["loop_closure"] for line in lines)  # nothing is that close


def test_route_of_real_frames_streams_with_ground_truth_and_sequences(tmp_path, capsys):
    nordland = shared_dataset("nordland")
    assert main(["data", "route", str(nordland / "summer"), str(nordland / "winter"), "--out", str(tmp_path / "r"),
                 "--every", "40", "--limit", "25", "--spacing", "10"]) == 0
    frames = tmp_path / "r" / "frames"
    assert len(list(frames.glob("*.png"))) == 50
    summary = tmp_path / "summary.json"
    out = tmp_path / "f.jsonl"
    assert main(["stream", str(frames), "--exclude-recent", "10", "--radius", "5", "--sequence", "3",
                 "--summary", str(summary), "--out", str(out), "--pr-plot", str(tmp_path / "pr.png"), *MODEL]) == 0
    lines, report = _lines(out), json.loads(summary.read_text())
    assert report["frames"] == 50 and {"pr_auc", "recall_at_100_precision", "recall_at_99_precision"} <= set(report)
    assert all(line["score"] is not None for line in lines[11:])
    # the winter pass (frames 25–49) revisits the summer places: some are matched to their own place
    hits = [int(line["match"][:6]) == line["frame"] - 25 for line in lines[25:]]
    assert sum(hits) >= 3
    err = capsys.readouterr().err
    assert 0 < report["pr_auc"] <= 1 and "\nsequence L=3 (diagonal score): PR AUC" in err  # names its ranking
    assert report["pr_ranking"] == "sequence L=3 (diagonal score)" and "unscored" not in report
    assert Image.open(tmp_path / "pr.png").width > 100


def test_bad_input_is_one_clear_line(video, tmp_path, caplog):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    assert main(["stream", str(broken), *MODEL]) == 1
    assert "broken.mp4" in caplog.text and "frame 0" in caplog.text
    assert main(["stream", str(video), "--exclude-recent", "10", *MODEL]) == 1
    assert "not shorter than the stream" in caplog.text
    caplog.clear()
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        if i == 2:
            (folder / f"{i:03d}.png").write_bytes(b"broken")
        else:
            Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(folder / f"{i:03d}.png")
    out = tmp_path / "f.jsonl"
    assert main(["stream", str(folder), "--exclude-recent", "0", "--out", str(out), *MODEL]) == 1
    assert "002.png" in caplog.text and "frame 2" in caplog.text and "frame counts" in caplog.text
    assert len(_lines(out)) == 2  # the frames before it are kept


def test_stream_localises_against_a_map_and_refuses_another_model(tmp_path, capsys, caplog):
    from netvlad.models import ModelConfig, PlaceModel, save_model
    from tests.conftest import copy_sequence

    names = [f"images-{i:05d}.png" for i in range(2000, 2200, 10)]
    sequence = copy_sequence(shared_dataset("nordland"), tmp_path / "seq", ("summer", "winter"), names)
    assert main(["-q", "index", "build", str(sequence), "--database", "summer", "--queries", "winter",
                 "--out", str(tmp_path / "map"), *MODEL]) == 0
    out = tmp_path / "f.jsonl"
    assert main(["stream", str(sequence / "summer"), "--map", str(tmp_path / "map"), "--out", str(out),
                 "--no-progress", "--threads", "1", "--device", "cpu"]) == 0
    lines = _lines(out)
    assert [line["match"] for line in lines] == names  # the map's own frames find themselves
    assert all(line["position"] is not None and line["distance"] < 1e-3 for line in lines)
    err = capsys.readouterr().err  # a plain folder's frames carry no positions: nothing scored, and it says so
    assert "no positions (frames or map): precision, recall and PR AUC cannot be scored" in err
    assert "PR AUC 0" not in err and "decision:" not in err
    other = tmp_path / "other.safetensors"
    save_model(PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="gem"), pretrained=False), other)
    assert main(["stream", str(sequence / "winter"), "--map", str(tmp_path / "map"), "--model", str(other),
                 "--no-progress", "--threads", "1", "--device", "cpu"]) == 1
    assert "was built with model" in caplog.text and "not" in caplog.text


def test_engines_agree_on_the_stream(video, tmp_path):
    pytest.importorskip("onnxruntime")
    outs = {}
    for engine in ("torch", "onnxruntime"):
        outs[engine] = tmp_path / f"{engine}.jsonl"
        assert main(["stream", str(video), "--exclude-recent", "1.0", "--engine", engine, "--out",
                     str(outs[engine]), "--summary", str(tmp_path / f"{engine}.json"), *MODEL]) == 0
    torch_lines, ort_lines = _lines(outs["torch"]), _lines(outs["onnxruntime"])
    assert [line["match"] for line in torch_lines] == [line["match"] for line in ort_lines]
    assert [line["distance"] for line in ort_lines[10:]] == pytest.approx([line["distance"] for line in
                                                                           torch_lines[10:]], abs=1e-3)
    assert json.loads((tmp_path / "onnxruntime.json").read_text())["engine"] == "onnxruntime"


def test_auto_keeps_torch_for_a_short_stream(video, tmp_path):
    """40 frames are fewer than AUTO_MIN_IMAGES: exporting would cost more than it saves, as for few images."""
    pytest.importorskip("onnxruntime")
    summary = tmp_path / "auto.json"
    assert main(["stream", str(video), "--exclude-recent", "1.0", "--engine", "auto", "--out",
                 str(tmp_path / "auto.jsonl"), "--summary", str(summary), *MODEL]) == 0
    assert json.loads(summary.read_text())["engine"] == "torch"


@pytest.mark.parametrize("fast", [False, True])
def test_stream_describes_the_maps_own_jpegs_as_the_index_did(sequence, tmp_path, caplog, capsys, fast):
    """One decode path: streaming (or querying) the very JPEGs a map was built from, each frame finds itself at
    distance ~0, with the full decode (default) and with the map's --fast-decode alike."""
    model = ["--backbone", "mobilenet_v2", "--pool", "gem", "--resize", "longest", "--size", "240"]
    decode = ["--fast-decode"] if fast else []
    assert main(["-q", "index", "build", str(sequence), "--database", "day_left", "--queries", "day_right",
                 "--out", str(tmp_path / "map"), *model, *decode, *MODEL[6:]]) == 0
    out = tmp_path / "f.jsonl"
    assert main(["stream", str(sequence / "day_left"), "--map", str(tmp_path / "map"), "--out", str(out),
                 "--no-progress", "--threads", "1", "--device", "cpu"]) == 0
    lines = _lines(out)
    assert [line["match"] for line in lines] == sorted(p.name for p in (sequence / "day_left").iterdir())
    # the map's rows and the stream's frames come from the same traced graph (one frame a call, unpadded): equal
    # to 1e-6; a second decode path would put frames ~1e-2 apart
    assert max(line["distance"] for line in lines) <= 1e-6
    names = sorted((sequence / "day_left").iterdir())[:3]
    capsys.readouterr()
    assert main(["query", *map(str, names), "--index", str(tmp_path / "map"), "-k", "1", "--json", "--threads", "1",
                 "--device", "cpu", "--workers", "0"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [r["matches"][0]["name"] for r in found] == [p.name for p in names]
    assert max(r["matches"][0]["distance"] for r in found) <= 1e-6
    for flags in (["--pool", "max"], ["--size", "320"], ["--fast-decode"]):  # the map brings its own model
        assert main(["stream", str(sequence / "day_left"), "--map", str(tmp_path / "map"), *flags,
                     "--no-progress", "--threads", "1", "--device", "cpu"]) == 1
        assert f"{flags[0]}" in caplog.text and "would be ignored: the map" in caplog.text
        caplog.clear()


@pytest.mark.parametrize("clash", [("--out", "F", "--summary", "F"), ("--summary", "F", "--pr-plot", "F"),
                                   ("--out", "SOURCE"), ("--save", "G", "--out", "G")])
def test_outputs_that_would_overwrite_each_other_or_an_input_are_refused_up_front(video, tmp_path, caplog, clash):
    target = tmp_path / "F"
    target.write_text("kept\n")
    paths = {"SOURCE": str(video), "F": str(target), "G": str(tmp_path / "G")}  # G: a new folder or file
    args = [paths.get(a, a) for a in clash]
    assert main(["stream", str(video), *args, *MODEL]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "would overwrite" in errors[0] and "\n" not in errors[0]
    assert target.read_text() == "kept\n" and video.stat().st_size > 1000 and not (tmp_path / "G").exists()


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("-k", "1000000000000", "-k: must be an integer in [1, 1048576]"), ("-k", "10^12", "-k: must be an integer"),
    ("--sequence", "100000000", "--sequence: must be an integer in [2, 1000]"),
])
def test_numbers_beyond_their_range_are_usage_errors(video, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["stream", str(video), flag, value, *MODEL])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
