"""`netvlad evaluate --sequence L` on a small real sequence: table, JSON, per-query CSV, --store, index kinds,
SeqNet models, and the bad-input messages."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from netvlad.cli.main import main
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
from netvlad.models.seqnet import SeqNet, SeqNetConfig, load_seqnet, save_seqnet
from tests.test_docs import COMMAND, DATE, MACHINE


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m.safetensors"
    save_model(PlaceModel(ModelConfig(pool="max", preprocessing=Preprocessing("fixed", (48, 64)))).eval(), path)
    return path


def _args(sequence, checkpoint, *extra):
    return ["evaluate", str(sequence), "--database", "day_left", "--queries", "day_right", "--frame-tolerance", "2",
            "--workers", "0", "--no-progress", "--recall", "1,5", "--model", str(checkpoint), "--no-pictures", *extra]


def test_sequence_table_json_and_csv(sequence, checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(_args(sequence, checkpoint, "--sequence", "5", "--store", str(tmp_path / "s"), "--output",
                      str(out))) == 0
    printed = capsys.readouterr().out
    assert "single frame" in printed and "diagonal L=5 causal" in printed  # the default method
    assert "4 of 20 queries had fewer than 5 frames" in printed
    assert "\nsingle-frame top-1 (score: L2 distance): PR AUC" in printed  # the PR line names its ranking
    report = json.loads(out.read_text())
    seq = report["sequence_recall"]
    assert seq["sequence_length"] == 5 and seq["method"] == "diagonal" and seq["mode"] == "causal"
    assert seq["shortened_windows"] == 4 and list(seq["recall"]) == ["1", "5"] and list(report["recall"]) == ["1", "5"]
    rows = list(csv.DictReader(open(tmp_path / "r_queries.csv")))
    assert len(rows) == 20 and {"seq_top1", "seq_correct_at_1", "seq_window", "seq_shortened"} <= set(rows[0])
    assert seq["recall"]["1"] == pytest.approx(100 * np.mean([int(r["seq_correct_at_1"]) for r in rows]))
    assert [int(r["seq_window"]) for r in rows[:6]] == [1, 2, 3, 4, 5, 5]
    # the stored descriptors are reused: centred Delta over the same store, and an HNSW index
    assert main(_args(sequence, checkpoint, "--sequence", "4", "--centred", "--sequence-method", "delta", "--store",
                      str(tmp_path / "s"), "--index-type", "hnsw")) == 0
    assert "delta L=4 centred" in capsys.readouterr().out


def test_seqnet_model_checked_against_dim_and_length(sequence, checkpoint, tmp_path, capsys, caplog):
    path = save_seqnet(SeqNet(SeqNetConfig(1280, 32, 4, 3)), tmp_path / "seq.safetensors")
    assert main(_args(sequence, checkpoint, "--sequence", "4", "--sequence-method", "seqnet", "--sequence-model",
                      str(path))) == 0
    assert "seqnet L=4 causal" in capsys.readouterr().out
    assert main(_args(sequence, checkpoint, "--sequence", "6", "--sequence-method", "seqnet", "--sequence-model",
                      str(path))) == 1
    assert "L = 4 frames, but L = 6 was asked" in caplog.text


def test_sequence_length_below_two_is_a_usage_error(sequence, checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(_args(sequence, checkpoint, "--sequence", "1"))
    assert exit_info.value.code == 2 and "--sequence: must be" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (("--sequence", "50"), "longer than every query sequence (the longest has 20 frames)"),
    (("--sequence", "5", "--sequence-method", "seqnet"), "needs --sequence-model"),
    (("--centred",), "--centred applies to sequence matching; add --sequence L"),
    (("--sequence", "5", "--protocol", "gardens-point"), "scores per group (MSLS cities) without the sequence matcher"),
    (("--sequence", "5", "--sequence-method", "diagonal", "--shortlist", "30"),
     "--shortlist does not apply to --sequence-method diagonal"),
    (("--sequence", "5", "--sequence-method", "diagonal", "--contrast-radius", "3"),
     "--contrast-radius does not apply to --sequence-method diagonal"),
    (("--sequence", "5", "--sequence-method", "diagonal-standardised", "--shortlist", "30"),
     "--shortlist does not apply to --sequence-method diagonal-standardised (it scores every database frame"),
    (("--sequence", "5", "--sequence-method", "delta", "--velocities", "0.8,1"),
     "--velocities does not apply to --sequence-method delta"),
    (("--sequence", "5", "--sequence-method", "seqslam", "--shortlist", "1", "--propagate", "0"),
     "the ranking would be the single-frame one"),
])
def test_bad_sequence_options(sequence, checkpoint, caplog, extra, message):
    assert main(_args(sequence, checkpoint, *extra)) == 1
    assert message in caplog.text


def test_dataset_without_sequence_order(tmp_path, checkpoint, caplog):
    from tests.data.helpers import write_image

    for name in ("a.jpg", "b.jpg"):
        write_image(tmp_path / name)
    (tmp_path / "m.csv").write_text("path,split,easting,northing\na.jpg,database,0,0\nb.jpg,query,1,0\n")
    assert main(["evaluate", str(tmp_path / "m.csv"), "--model", str(checkpoint), "--sequence", "3",
                 "--no-progress"]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "carry no sequence order" in errors[0] and "CSV sequence and frame columns" in errors[0]


def test_seqnet_train_then_evaluate_with_it(sequence, checkpoint, tmp_path, capsys):
    """`netvlad seqnet train` on the stored descriptors of the first 15 places (the last 5 validate): the model
    file and its JSON are written, its PCA is orthonormal, and `evaluate --sequence-method seqnet` loads it."""
    model, store = tmp_path / "seqnet.safetensors", str(tmp_path / "s")
    assert main(["seqnet", "train", str(sequence), "--database", "day_left", "--queries", "day_right",
                 "--frame-tolerance", "2", "--workers", "0", "--no-progress", "--model", str(checkpoint), "--store",
                 store, "--length", "4", "--output-dim", "16", "--pca", "8", "--epochs", "2", "--epoch-queries",
                 "12", "--negative-samples", "6", "--num-negatives", "2", "--val-places", "5", "--out",
                 str(model), "--report", str(tmp_path / "seqnet.md")]) == 0
    printed = capsys.readouterr().out
    assert "seqnet → seqslam (HVPR)" in printed and "1280-D → PCA 8 → Conv1d(kernel 4) → 16-D, L = 4" in printed
    summary = json.loads(model.with_suffix(".json").read_text())
    assert [e["epoch"] for e in summary["log"]] == [1, 2] and summary["train_places"] == [15, 15]
    assert set(summary["validation"]) == {"single frame", "seqslam", "seqnet", "seqnet → seqslam (HVPR)"}
    first, _, sentence, _, head, _, *rows = (tmp_path / "seqnet.md").read_text().splitlines()  # the docs fragment
    assert COMMAND.match(first) and DATE.search(first) and MACHINE.search(first) and "--report" in first
    assert "SeqNet 1280-D → PCA 8" in sentence and head == "| ranking | R@1 | R@5 | R@10 |"
    assert rows == [f"| {name} | " + " | ".join(f"{r:.2f}" for r in recall.values()) + " |"
                    for name, recall in summary["validation"].items()]
    loaded = load_seqnet(model, descriptor_dim=1280, length=4)
    gram = (loaded.pca_components.T @ loaded.pca_components).numpy()
    np.testing.assert_allclose(gram, np.eye(8), atol=1e-4)
    out = tmp_path / "r.json"
    assert main(_args(sequence, checkpoint, "--sequence", "4", "--sequence-method", "seqnet", "--sequence-model",
                      str(model), "--store", store, "--output", str(out))) == 0
    seq = json.loads(out.read_text())["sequence_recall"]
    assert seq["method"] == "seqnet" and seq["sequence_length"] == 4 and seq["num_queries"] == 20


def test_seqnet_train_refuses_an_out_that_its_summary_or_an_input_would_overwrite(sequence, checkpoint, tmp_path,
                                                                                  caplog):
    common = ["seqnet", "train", str(sequence), "--database", "day_left", "--queries", "day_right", "--workers", "0",
              "--no-progress", "--model", str(checkpoint)]
    kept = tmp_path / "x.json"
    kept.write_text("{}")
    assert main([*common, "--out", str(kept)]) == 1
    assert "would be one file" in caplog.text and kept.read_text() == "{}"
    caplog.clear()
    before = checkpoint.read_bytes()
    assert main([*common, "--out", str(checkpoint)]) == 1
    assert "--out would overwrite the input --model" in caplog.text and checkpoint.read_bytes() == before
    caplog.clear()
    assert main([*common, "--out", str(tmp_path / "s.safetensors"), "--report", str(tmp_path / "s.md")]) == 1
    assert "--report writes the validation table: give --val-places N" in caplog.text


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--velocities", "1e12", "each a number in [-100, 100]"), ("--velocities", "1,nan", "each a number in"),
    ("--contrast-radius", "1000000000000", "an integer in [1, 10000]"),
    ("--shortlist", "1000000000", "an integer in [1, 10000]"), ("--propagate", "100000", "an integer in [0, 1000]"),
    ("--sequence", "1000000", "an integer in [2, 1000]"),
])
def test_sequence_numbers_beyond_their_range_are_usage_errors(sequence, checkpoint, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(_args(sequence, checkpoint, "--sequence", "4", flag, value))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"{flag}: must be" in err and message in err


def test_sequence_config_bounds_its_numbers_for_python_users_too():
    from netvlad.errors import BadInputError
    from netvlad.match.sequence import SequenceConfig

    for kwargs, words in (({"velocities": (1e12,)}, "velocities must be"), ({"contrast_radius": 10**12}, "contrast"),
                          ({"length": 10**9}, "sequence length"), ({"shortlist": 0}, "shortlist"),
                          ({"velocities": ("x",)}, "velocities must be numbers")):
        with pytest.raises(BadInputError, match=words):
            SequenceConfig(**kwargs)


def test_contrast_radius_zero_is_refused(sequence, checkpoint, capsys):
    """±0 frames would normalise every distance to 0 (the single-frame ranking): a usage error, and the library
    config refuses it naming the method that gives raw distances."""
    from netvlad.errors import BadInputError
    from netvlad.match.sequence import SequenceConfig

    with pytest.raises(SystemExit) as exit_info:
        main(_args(sequence, checkpoint, "--sequence", "5", "--contrast-radius", "0"))
    assert exit_info.value.code == 2 and "--contrast-radius: must be" in capsys.readouterr().err
    with pytest.raises(BadInputError, match="diagonal"):
        SequenceConfig(contrast_radius=0)


def test_diagonal_method_through_the_command(sequence, checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(_args(sequence, checkpoint, "--sequence", "5", "--sequence-method", "diagonal", "--velocities", "1,2",
                      "--output", str(out))) == 0
    assert "diagonal L=5 causal" in capsys.readouterr().out
    seq = json.loads(out.read_text())["sequence_recall"]
    assert seq["method"] == "diagonal" and seq["velocities"] == [1.0, 2.0]
