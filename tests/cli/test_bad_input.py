"""Every file-taking command, fed files of the wrong kind under each extension it accepts: exit 1, one ERROR line
naming the file, no traceback, and nothing executed from a pickle."""

from __future__ import annotations

import logging
import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from netvlad.cli.main import main
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
from netvlad.models.export import export_hloc
from netvlad.train.train_config import TrainConfig, write_config
from tests.data.bags.helpers import write_run
from tests.data.helpers import (
    PITTSBURGH,
    gps_exif,
    pitts_struct,
    pittsburgh_utm,
    write_dvgb,
    write_image,
    write_mat_classic,
)

KINDS = ("random", "empty", "truncated", "pickle", "other")
SMALL = ["--workers", "0", "--no-progress", "--no-pretrained", "--pool", "max", "--resize", "fixed", "--size", "32",
         "32"]


class _CreatesFile:
    """Unpickling this creates ``path`` (what a malicious checkpoint would do)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """One valid file of each of our formats, and a tiny CSV dataset (two real images)."""
    root = tmp_path_factory.mktemp("valid")
    for name, colour in (("a.jpg", (200, 30, 30)), ("b.jpg", (30, 200, 30)), ("c.jpg", (190, 40, 30))):
        write_image(root / name, size=(40, 32), colour=colour, fmt="JPEG")
    (root / "data.csv").write_text("path,split,easting,northing\na.jpg,database,0,0\nb.jpg,database,100,0\n"
                                   "c.jpg,query,3,0\n")
    model = PlaceModel(ModelConfig(pool="max", preprocessing=Preprocessing("fixed", (32, 32))), pretrained=False)
    save_model(model, root / "model.safetensors")
    save_file({"x": torch.zeros(3)}, str(root / "plain.safetensors"))
    write_mat_classic(root / "db.mat", pitts_struct(["a.jpg"], [[0, 0]], ["b.jpg"], [[0, 0]]))
    torch.save({"state_dict": {"pool.centroids": torch.zeros(4, 8)}}, root / "ckpt.pth.tar")
    (root / "config.yaml").write_text("lr: 0.001\nmargin: 0.2\nepochs: 3\n")
    (root / "config.toml").write_text("lr = 0.001\nmargin = 0.2\nepochs = 3\n")
    export_hloc(["a.jpg", "b.jpg"], np.eye(2, 8, dtype=np.float32), root / "feats.h5")
    for bag in ("run.bag", "run.mcap"):
        write_run(root / bag, [root / "a.jpg", root / "b.jpg"], odometry=False)
    return root


# For each extension: which valid file stands for it, and which file of *another* of our formats replaces it.
SAMPLE = {".safetensors": "model.safetensors", ".mat": "db.mat", ".pth.tar": "ckpt.pth.tar", ".pth": "ckpt.pth.tar",
          ".pt": "ckpt.pth.tar", ".tar": "ckpt.pth.tar", ".bin": "ckpt.pth.tar", ".yaml": "config.yaml",
          ".yml": "config.yaml", ".toml": "config.toml", ".csv": "data.csv", ".h5": "feats.h5", ".jpg": "a.jpg",
          ".json": "config.yaml", ".faiss": "feats.h5", ".npy": "ckpt.pth.tar", ".bag": "run.bag",
          ".mcap": "run.mcap"}
OTHER = {".safetensors": "db.mat", ".mat": "model.safetensors", ".pth.tar": "db.mat", ".pth": "model.safetensors",
         ".pt": "feats.h5", ".tar": "db.mat", ".bin": "model.safetensors", ".yaml": "data.csv",
         ".yml": "model.safetensors", ".toml": "config.yaml", ".csv": "model.safetensors", ".h5": "model.safetensors",
         ".jpg": "db.mat", ".json": "data.csv", ".faiss": "model.safetensors", ".npy": "db.mat", ".bag": "run.mcap",
         ".mcap": "run.bag"}


def write_bad(path, kind: str, valid, marker) -> None:
    """Write a wrong file of ``kind`` at ``path`` (its extension picks the truncated and other-format sample)."""
    ext = ".pth.tar" if path.name.endswith(".pth.tar") else path.suffix
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = (valid / SAMPLE[ext]).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": _CreatesFile(marker)}))
    else:
        path.write_bytes((valid / OTHER[ext]).read_bytes())


def _dataset(valid) -> str:
    return str(valid / "data.csv")


def _index(valid, tmp_path):
    """A real index folder (built once per test: it is small); HNSW, so that it has an index.faiss (a flat index
    searches the stored descriptors and writes none)."""
    folder = tmp_path / "index"
    assert main(["index", "build", _dataset(valid), "--out", str(folder), "--index-type", "hnsw", *SMALL]) == 0
    return folder


def _exif_folder(bad, valid, tmp) -> str:
    """A folder of GPS-tagged photos (``{database,queries}/``) in which ``bad`` is one database photo."""
    root = bad.parents[1]
    for side in ("database", "queries"):
        write_image(root / side / "good.jpg", exif=gps_exif(*PITTSBURGH), fmt="JPEG")
    return str(root)


def _dvgb_folder(bad, valid, tmp) -> str:
    """A DVGB dataset whose first database image is ``bad`` (a name the layout accepts)."""
    root = bad.parents[3]
    write_dvgb(root, pittsburgh_utm([[0, 0], [100, 0]]), pittsburgh_utm([[3, 0]]))
    first = sorted(p for p in (root / "images" / "test" / "database").iterdir() if p != bad)[0]
    first.unlink()  # ``bad`` stands in its place
    return str(root)


DVGB_NAME = "dvgb/images/test/database/@0585000.00@4511000.00@17@T@040.74000@-080.00000@@@@@@@@@.jpg"

# (command id, file name, argv given the bad file's path and the test's folders)
CASES = [
    ("evaluate --model", "m.safetensors", lambda p, v, t: ["evaluate", _dataset(v), "--model", str(p), *SMALL]),
    ("index build --model", "m.safetensors",
     lambda p, v, t: ["index", "build", _dataset(v), "--model", str(p), "--out", str(t / "ix"), *SMALL]),
    ("export onnx --model", "m.safetensors",
     lambda p, v, t: ["export", "onnx", "--model", str(p), "--out", str(t / "m.onnx")]),
    ("train --init-model", "m.safetensors",
     lambda p, v, t: ["train", _dataset(v), "--init-model", str(p), "--out", str(t / "run"), "--no-progress"]),
    *[(f"train --config {ext}", f"c{ext}",
       lambda p, v, t: ["train", _dataset(v), "--config", str(p), "--out", str(t / "run"), "--no-progress"])
      for ext in (".yaml", ".yml", ".toml")],
    *[(f"convert {ext}", f"weights{ext}", lambda p, v, t: ["convert", str(p), "--out", str(t / "o.safetensors")])
      for ext in (".mat", ".pth.tar", ".pth", ".pt", ".tar", ".safetensors", ".bin")],
    *[(f"data inspect {ext}", f"dataset{ext}", lambda p, v, t: ["data", "inspect", str(p)])
      for ext in (".mat", ".csv", ".bag", ".mcap")],
    *[(f"evaluate {ext}", f"dataset{ext}", lambda p, v, t: ["evaluate", str(p), *SMALL])
      for ext in (".mat", ".csv", ".bag", ".mcap")],
    *[(f"stream {ext}", f"run{ext}", lambda p, v, t: ["stream", str(p), *SMALL]) for ext in (".bag", ".mcap")],
    ("evaluate EXIF folder (a photo)", "exif/database/x.jpg",
     lambda p, v, t: ["evaluate", _exif_folder(p, v, t), *SMALL]),
    ("evaluate DVGB folder (an image)", DVGB_NAME, lambda p, v, t: ["evaluate", _dvgb_folder(p, v, t), *SMALL]),
    ("export hloc --out (extended)", "feats.h5",
     lambda p, v, t: ["export", "hloc", _dataset(v), "--out", str(p), *SMALL]),
    ("query IMAGE", "photo.jpg", lambda p, v, t: ["query", str(p), "--index", str(_index(v, t)), "--workers", "0"]),
    ("export onnx --check", "photo.jpg",
     lambda p, v, t: ["export", "onnx", "--model", str(v / "model.safetensors"), "--out", str(t / "m.onnx"),
                      "--check", str(p)]),
]


def _assert_one_line_error(argv, bad, caplog, capsys, marker) -> None:
    caplog.clear()
    with caplog.at_level(logging.INFO):
        code = main(argv)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    captured = capsys.readouterr()
    assert code == 1, f"exit {code}; log: {caplog.text}"
    assert len(errors) == 1, caplog.text
    message = errors[0].getMessage()
    assert bad.name in message and "\n" not in message, message
    assert "Traceback" not in captured.err + captured.out + caplog.text
    assert not marker.exists(), "a pickle was executed"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_wrong_file_is_one_error_line(case, kind, valid, tmp_path, caplog, capsys, one_thread):
    _, name, argv = case
    marker = tmp_path / "pwned"
    bad = tmp_path / name
    bad.parent.mkdir(parents=True, exist_ok=True)
    write_bad(bad, kind, valid, marker)
    _assert_one_line_error(argv(bad, valid, tmp_path), bad, caplog, capsys, marker)


INDEX_FILES = ("index.json", "model.safetensors", "index.faiss", "rows.npy", "positions.npy",
               "descriptors/store.json", "descriptors/descriptors.npy")


@pytest.mark.parametrize("kind", KINDS)
def test_query_against_a_damaged_index(kind, valid, tmp_path, caplog, capsys, one_thread):
    folder = _index(valid, tmp_path)
    pristine = tmp_path / "pristine"
    shutil.copytree(folder, pristine)
    marker = tmp_path / "pwned"
    for name in INDEX_FILES:
        shutil.rmtree(folder)
        shutil.copytree(pristine, folder)
        write_bad(folder / name, kind, valid, marker)
        _assert_one_line_error(["query", str(valid / "a.jpg"), "--index", str(folder), "--workers", "0"],
                               folder / name, caplog, capsys, marker)


def test_resume_from_a_damaged_run_folder(valid, tmp_path, caplog, capsys, one_thread):
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "pwned"
    argv = ["train", _dataset(valid), "--resume", str(run), "--no-progress"]
    for kind in KINDS:
        write_bad(run / "config.yaml", kind, valid, marker)
        _assert_one_line_error(argv, run / "config.yaml", caplog, capsys, marker)
    config = TrainConfig(backbone="alexnet", pretrained=False, num_clusters=2, resize="fixed", size=(32, 32),
                         tensorboard=False)
    write_config(config, run / "config.yaml")
    for kind in KINDS:
        write_bad(run / "state.pt", kind, valid, marker)
        _assert_one_line_error(argv, run / "state.pt", caplog, capsys, marker)


def test_error_in_a_dataloader_worker_is_its_own_line(valid, tmp_path, caplog, capsys, one_thread):
    """A damaged image decoded in a worker process: the original one-line message, not torch's wrapper."""
    root = tmp_path / "data"
    shutil.copytree(valid, root)
    (root / "b.jpg").write_bytes((valid / "b.jpg").read_bytes()[:200])  # truncated JPEG
    argv = ["cluster", str(root / "data.csv"), "--out", str(tmp_path / "c.safetensors"), "--workers", "1",
            "--no-progress", "--no-pretrained", "--clusters", "2", "--resize", "fixed", "--size", "32", "32",
            "--descriptors", "8", "--per-image", "4"]
    _assert_one_line_error(argv, root / "b.jpg", caplog, capsys, tmp_path / "pwned")
    message = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR][0]
    assert "DataLoader worker" not in message and message.startswith(f"{root / 'b.jpg'}: cannot decode image")
    assert "(on the command line: --skip-bad skips it)" in message
