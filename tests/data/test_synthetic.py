"""The synthetic city: determinism, DVGB naming, disjoint splits and ground truth (views show their poses)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import utm
from PIL import Image

from netvlad.data.convert import dvgb_name
from netvlad.data.synthetic import CONDITIONS, CityConfig, generate_city
from netvlad.data.synthetic.cameras import database_views, query_views
from netvlad.data.synthetic.city import build_city
from netvlad.data.synthetic.render import Pose
from netvlad.data.synthetic.view import render_view
from netvlad.errors import BadInputError

TINY = CityConfig.preset("tiny")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "images").rglob("*.jpg"))}


def _poses(root: Path) -> list[dict]:
    with open(root / "poses.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def tiny_layout():
    return build_city(TINY)


@pytest.fixture(scope="module")
def tiny_city(tmp_path_factory) -> Path:
    return generate_city(TINY, tmp_path_factory.mktemp("city") / "tiny")


def test_same_seed_gives_identical_files_serial_or_parallel(tiny_city, tmp_path):
    again = generate_city(TINY, tmp_path / "again", workers=2)
    first, second = _files(tiny_city), _files(again)
    assert len(first) == len(_poses(tiny_city)) > 50
    assert first == second
    assert (tiny_city / "poses.csv").read_bytes() == (again / "poses.csv").read_bytes()


def test_different_seed_gives_a_different_city(tiny_city, tmp_path):
    other = _files(generate_city(dataclasses.replace(TINY, seed=1), tmp_path / "seed1"))
    first = _files(tiny_city)
    assert set(first) != set(other)
    assert sorted(first.values()) != sorted(other.values())


def test_layout_counts_and_metadata(tiny_city):
    meta = json.loads((tiny_city / "city.json").read_text())
    assert meta["config"] == json.loads(TINY.to_json())
    for split in ("train", "val", "test"):
        for kind in ("database", "queries"):
            n = len(list((tiny_city / "images" / split / kind).glob("@*@.jpg")))
            assert n == meta["counts"][split][kind] > 0
    with Image.open(next((tiny_city / "images" / "test" / "queries").iterdir())) as image:
        assert image.size == TINY.image_size and image.mode == "RGB"


def test_names_parse_with_utm_and_match_recorded_poses(tiny_city):
    east0, north0 = TINY.origin
    bound = 2 * TINY.gps_noise * np.sqrt(2) + 1e-6  # noise is clipped at 2 std per axis
    for row in _poses(tiny_city):
        fields = row["name"].split("@")
        assert fields[0] == "" and fields[-1] == ".jpg" and len(fields) == 16  # the full DVGB name
        east, north, number, letter, lat, lon = float(fields[1]), float(fields[2]), int(fields[3]), fields[4], \
            float(fields[5]), float(fields[6])
        assert (number, letter) == TINY.zone
        assert np.allclose(utm.to_latlon(east, north, number, letter), (lat, lon), atol=6e-6)  # 5 decimals
        e2, n2, number2, letter2 = utm.from_latlon(lat, lon)
        # lat/lon have DVGB's 5 decimals (±0.56 m north, ±0.38 m east here)
        assert (number2, letter2) == (33, "T") and abs(e2 - east) < 0.6 and abs(n2 - north) < 0.6
        assert (east, north) == (float(row["easting"]), float(row["northing"]))
        true = np.array([float(row["x"]) + east0, float(row["y"]) + north0])
        assert np.linalg.norm(true - (east, north)) <= bound


def test_dvgb_name_format():
    lat, lon = utm.to_latlon(399100.5, 5299200.25, 33, "T")
    name = dvgb_name(399100.5, 5299200.25, (33, "T"), (lat, lon), capture="db00001")
    assert name == f"@0399100.50@5299200.25@33@T@{lat:09.5f}@{lon:010.5f}@db00001@@@@@@@@.jpg"
    assert 47 < lat < 48 and 13 < lon < 14


def test_splits_are_disjoint_in_space(tiny_layout):
    city = tiny_layout
    views = [database_views(city, TINY), query_views(city, TINY)]
    xy = np.concatenate([v.xy for v in views])
    recorded = np.concatenate([v.recorded for v in views])
    split = np.concatenate([v.split for v in views])
    assert set(split.tolist()) == {0, 1, 2}
    for points in (xy, recorded):
        for a in range(3):
            for b in range(a + 1, 3):
                gap = np.linalg.norm(points[split == a][:, None] - points[split == b][None], axis=2).min()
                assert gap > 25.0, (a, b, gap)


def test_database_spacing_gives_positives_and_negatives(tiny_layout):
    city = tiny_layout
    db, queries = database_views(city, TINY), query_views(city, TINY)
    d = np.linalg.norm(queries.xy[:, None] - db.xy[None], axis=2)
    same = queries.split[:, None] == db.split[None]
    assert ((d <= 10) & same).any(axis=1).all()  # every query has a positive
    assert ((d > 25) & same).any(axis=1).all()  # and negatives in its own split
    assert np.abs(queries.xy - db.xy[2 * np.searchsorted(np.unique(db.anchor), queries.anchor)]).max() \
        <= TINY.query_offset + TINY.query_lateral + 0.5


def _blocks(image: np.ndarray, size: int = 6) -> np.ndarray:
    """Grey image averaged over size × size pixel blocks, flattened (pixel correlation without texture aliasing)."""
    grey = image.astype(np.float64).mean(axis=2)
    h, w = grey.shape
    return grey.reshape(h // size, size, w // size, size).mean(axis=(1, 3)).ravel()


def test_views_show_their_pose_near_views_correlate_far_views_do_not():
    """Views 0.75–3 m from a database pose (same heading) look more alike the nearer they are; > 50 m: unlike."""
    config = dataclasses.replace(TINY, image_size=(96, 72))
    city = build_city(config)
    db = database_views(city, config)
    clean = dataclasses.replace(CONDITIONS["day"], occluders=0.0, noise=0.0)

    def view(k: int, shift: float = 0.0) -> np.ndarray:
        t = np.radians(db.heading[k])
        pose = Pose(db.xy[k, 0] + shift * np.cos(t), db.xy[k, 1] + shift * np.sin(t), db.heading[k], db.height[k])
        return _blocks(render_view(city, config, pose, clean, [k]))

    rng = np.random.default_rng(0)
    picks = rng.choice(len(db), 16, replace=False)
    layout = np.stack([view(k) for k in range(0, len(db), 3)]).mean(axis=0)  # what every street view shares
    corr = {0.75: [], 1.5: [], 3.0: [], "far": []}
    for k in picks:
        anchor = view(k) - layout
        for shift in (0.75, 1.5, 3.0):
            corr[shift].append(np.corrcoef(anchor, view(k, shift) - layout)[0, 1])
        far = np.flatnonzero((np.linalg.norm(db.xy - db.xy[k], axis=1) > 50)
                             & (np.cos(np.radians(db.heading - db.heading[k])) > 0.99))
        corr["far"].append(np.corrcoef(anchor, view(int(rng.choice(far))) - layout)[0, 1])
    mean = {key: float(np.mean(v)) for key, v in corr.items()}
    assert mean[0.75] > mean[1.5] > mean[3.0] > mean["far"], mean
    assert mean[1.5] > mean["far"] + 0.3, mean
    assert (np.array(corr[1.5]) > np.array(corr["far"])).mean() >= 0.8, corr


def test_files_show_the_pose_in_poses_csv(tiny_city, tiny_layout):
    """Re-rendering a file's true pose reproduces the file (up to JPEG loss)."""
    city = tiny_layout
    rows = [r for r in _poses(tiny_city) if r["kind"] == "queries"][:6]
    for row in rows:
        x, y, heading, height, pitch = (float(row[k]) for k in ("x", "y", "heading", "height", "pitch"))
        index = int(row["name"].split("@")[7][1:6])
        seed = [TINY.seed, 10, 1, index]
        rendered = render_view(city, TINY, Pose(x, y, heading, height, pitch), CONDITIONS[row["condition"]], seed)
        moved = render_view(city, TINY, Pose(x + 5, y + 5, heading, height, pitch), CONDITIONS[row["condition"]], seed)
        with Image.open(tiny_city / "images" / row["split"] / "queries" / row["name"]) as image:
            stored = _blocks(np.asarray(image), 4)
        error, moved_error = np.abs(stored - _blocks(rendered, 4)).mean(), np.abs(stored - _blocks(moved, 4)).mean()
        assert error < 2.0 and error < 0.5 * moved_error, (row["condition"], error, moved_error)


def test_night_is_dark_and_far_from_day(tiny_layout):
    city = tiny_layout
    db = database_views(city, TINY)
    pose = Pose(db.xy[4, 0], db.xy[4, 1], db.heading[4], db.height[4])
    day = render_view(city, TINY, pose, dataclasses.replace(CONDITIONS["day"], occluders=0), [0])
    night = render_view(city, TINY, pose, dataclasses.replace(CONDITIONS["night"], occluders=0), [0])
    assert night.mean() < 0.4 * day.mean()
    assert np.abs(day.astype(int) - night).mean() > 40


def test_reuse_and_refuse_existing_output(tiny_city):
    assert generate_city(TINY, tiny_city) == tiny_city  # same config: reused, not regenerated
    with pytest.raises(BadInputError, match="overwrite=True"):
        generate_city(dataclasses.replace(TINY, seed=5), tiny_city)


def test_interrupted_generation_resumes_to_the_same_files(tiny_city, tmp_path, monkeypatch):
    """A run killed after 20 images, one of them then damaged, is resumed by the next call: the damaged image is
    rendered again, the others kept, and every image, poses.csv, sequences.csv and city.json equal an
    uninterrupted run's byte for byte."""
    from netvlad.data.synthetic import writer

    render = writer._encoded

    def killed(jobs, workers):
        for n, data in enumerate(render(jobs, workers)):
            if n == 20:
                raise KeyboardInterrupt
            yield data

    monkeypatch.setattr(writer, "_encoded", killed)
    out = tmp_path / "city"
    with pytest.raises(KeyboardInterrupt):
        generate_city(TINY, out)
    assert len(_files(out)) == 20 and not (out / "city.json").exists()
    damaged = sorted((out / "images").rglob("*.jpg"))[3]
    damaged.write_bytes(damaged.read_bytes()[:100])
    (damaged.parent / f".{damaged.name}.x.tmp").write_bytes(b"torn")  # an atomic write cut short
    rendered = []
    monkeypatch.setattr(writer, "_encoded", lambda jobs, workers: (rendered.append(j) or render([j], 1).__next__()
                                                                    for j in jobs))
    assert generate_city(TINY, out) == out
    assert len(rendered) == len(_poses(tiny_city)) - 19  # the 19 intact images kept
    assert _files(out) == _files(tiny_city)
    for name in ("poses.csv", "sequences.csv", "city.json"):
        assert (out / name).read_bytes() == (tiny_city / name).read_bytes()
    assert not (out / writer.PROGRESS).exists() and not list((out / "images").rglob("*.tmp"))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown condition"):
        CityConfig(query_conditions=("monsoon",))
    with pytest.raises(ValueError, match="unknown city size"):
        CityConfig.preset("huge")
    with pytest.raises(ValueError, match="too small"):
        build_and_split = dataclasses.replace(TINY, blocks=(2, 2), splits=(0.1, 0.1, 0.8))
        database_views(build_city(build_and_split), build_and_split)


def test_generated_city_reads_as_a_dvgb_dataset(tiny_city):
    from netvlad.data import list_formats, open_dataset

    if "dvgb" not in list_formats():
        pytest.skip("no dvgb reader registered")
    dataset = open_dataset(tiny_city, split="test")
    meta = json.loads((tiny_city / "city.json").read_text())
    assert len(dataset.database) == meta["counts"]["test"]["database"]
    assert len(dataset.queries) == meta["counts"]["test"]["queries"]
    assert all(len(p) > 0 for p in dataset.positives(10.0))


def test_cli_generate(tmp_path):
    from netvlad.cli.main import main

    assert main(["generate", "--out", str(tmp_path / "c"), "--size", "tiny", "--seed", "2", "--no-progress"]) == 0
    meta = json.loads((tmp_path / "c" / "city.json").read_text())
    assert meta["config"]["seed"] == 2 and meta["counts"]["train"]["database"] > 0


def test_previews_are_written(tmp_path):
    from netvlad.data.synthetic.preview import save_previews

    paths = save_previews(TINY, tmp_path)
    assert [p.name for p in paths] == ["city_conditions.png", "city_map.png", "city_pairs.png"]
    with Image.open(paths[0]) as strip:
        width, height = TINY.image_size
        assert strip.size == (width * (1 + len(TINY.query_conditions)), 2 * height)
