"""`netvlad index build` and `netvlad query` on a small real sequence (Nordland summer → winter thumbnails)."""

import json
import logging
import shutil

import numpy as np
import pytest

from netvlad.cli.main import main
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
from netvlad.places.localise import PlaceIndex, QueryResult
from netvlad.places.positions import weighted_position
from tests.conftest import copy_sequence, shared_dataset

NAMES = [f"images-{i:05d}.png" for i in range(2000, 2300, 10)]  # 30 places, in daylight


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    return copy_sequence(shared_dataset("nordland"), tmp_path_factory.mktemp("seq"), ("summer", "winter"), NAMES)


@pytest.fixture(scope="module")
def built(tmp_path_factory, sequence):
    """One index for the module (building it is the slow part)."""
    out = tmp_path_factory.mktemp("index")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NETVLAD_OFFLINE", "1")
        code = main(["-q", "index", "build", str(sequence), "--database", "summer", "--queries", "winter",
                     "--backbone", "mobilenet_v2", "--pool", "gem", "--resize", "none", "--out", str(out),
                     "--workers", "0", "--no-progress"])
    assert code == 0
    return out


def test_build_then_query_same_image_is_top1_with_its_position(built, sequence, capsys):
    index = PlaceIndex.load(built)
    assert len(index) == len(NAMES) and index.store.dim == 1280
    capsys.readouterr()
    query = sequence / "summer" / NAMES[7]
    assert main(["query", str(query), "--index", str(built), "-k", "3", "--json", "--no-progress"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    top = result["matches"][0]
    assert top["name"] == NAMES[7] and top["distance"] == pytest.approx(0.0, abs=1e-3)
    assert result["position"] == pytest.approx(index.positions[7].tolist())
    assert len(result["matches"]) == 3 and result["method"] == "top1"


def test_k_larger_than_database_is_clamped_with_a_warning(built, sequence, capsys, caplog):
    with caplog.at_level(logging.WARNING):
        assert main(["query", str(sequence / "winter" / NAMES[0]), "--index", str(built), "-k", "100", "--json",
                     "--method", "weighted"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert len(result["matches"]) == len(NAMES)
    assert "larger than the database" in caplog.text
    positions = np.array([m["position"] for m in result["matches"]])
    distances = np.array([m["distance"] for m in result["matches"]])
    assert result["position"] == pytest.approx(weighted_position(positions, distances).tolist())


def test_query_with_another_model_is_refused(built, sequence, tmp_path, caplog):
    other = PlaceModel(ModelConfig(pool="max", preprocessing=Preprocessing("none")), pretrained=False)
    save_model(other, tmp_path / "other.safetensors")
    with caplog.at_level(logging.ERROR):
        code = main(["query", str(sequence / "winter" / NAMES[0]), "--index", str(built), "--model",
                     str(tmp_path / "other.safetensors")])
    assert code == 1 and "was built with model" in caplog.text


def test_weighted_position_is_inverse_distance_mean():
    positions = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 30.0]])
    distances = np.array([1.0, 2.0, 4.0])
    w = np.array([1.0, 0.5, 0.25])
    expected = (w[:, None] * positions).sum(0) / w.sum()
    np.testing.assert_allclose(weighted_position(positions, distances, eps=0.0), expected)


def test_plain_folder_is_indexed_without_positions(tmp_path, tokyo_pair, capsys):
    out = tmp_path / "ix"
    assert main(["-q", "index", "build", str(tokyo_pair), "--pool", "max", "--resize", "longest", "--size", "64",
                 "--out", str(out), "--workers", "0", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["query", str(tokyo_pair / "tokyo_db.png"), "--index", str(out), "-k", "1", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)  # strict JSON: unknown positions are null, not NaN
    assert result["matches"][0]["name"] == "tokyo_db.png" and result["position"] == [None, None]


def test_estimate_converts_back_to_latlon_when_zone_known():
    import utm

    easting, northing, number, letter = utm.from_latlon(35.6595, 139.7005)  # Shibuya crossing
    result = QueryResult("q.jpg", (), (easting, northing), "top1", (number, letter))
    assert result.latlon() == pytest.approx((35.6595, 139.7005), abs=1e-6)


def test_hnsw_index_reuses_the_store_takes_ef_search_and_refuses_other_settings(built, sequence, tmp_path, caplog,
                                                                               capsys):
    out = tmp_path / "hnsw"
    shutil.copytree(built / "descriptors", out / "descriptors")  # the rerun reuses the extracted descriptors
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NETVLAD_OFFLINE", "1")
        assert main(["-q", "index", "build", str(sequence), "--database", "summer", "--queries", "winter",
                     "--pool", "gem", "--resize", "none", "--out", str(out), "--workers", "0", "--no-progress",
                     "--index-type", "hnsw", "--max-memory", "0.5"]) == 0
    meta = json.loads((out / "index.json").read_text())
    assert meta["settings"] == {"kind": "hnsw", "dim": 1280, "count": len(NAMES)}
    capsys.readouterr()
    assert main(["query", str(sequence / "summer" / NAMES[4]), "--index", str(out), "-k", "2", "--json",
                 "--ef-search", "8"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["matches"][0]["name"] == NAMES[4]
    (out / "index.json").write_text(json.dumps({**meta, "settings": {**meta["settings"], "count": 99}}))
    with caplog.at_level(logging.ERROR):
        assert main(["query", str(sequence / "summer" / NAMES[4]), "--index", str(out)]) == 1
    assert "built with other settings: count 30 (expected 99)" in caplog.text


@pytest.mark.parametrize(("terminal", "flags"), [(False, []), (True, []), (True, ["--no-progress"])])
def test_progress_bars_by_default_on_a_terminal_only(sequence, tmp_path, capsys, monkeypatch, terminal, flags):
    """A terminal gets progress bars without asking, --no-progress hides them there; a redirected log (stderr not a
    terminal) gets none."""
    from netvlad.cli import main as cli_main

    monkeypatch.setattr(cli_main, "stderr_is_terminal", lambda: terminal)
    assert main(["index", "build", str(sequence), "--database", "summer", "--queries", "winter", "--backbone",
                 "mobilenet_v2", "--pool", "gem", "--resize", "none", "--out", str(tmp_path / "ix"), "--workers", "0",
                 "--threads", "1", *flags]) == 0
    err = capsys.readouterr().err
    assert ("database: 100%" in err) == (terminal and not flags), err[-300:]
