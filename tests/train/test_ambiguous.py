"""Ambiguous training images (dark; far duplicates) on real Nordland frames: exactly which are excluded, and why."""

import logging

import numpy as np
import pytest

from netvlad.data import open_dataset
from netvlad.errors import BadInputError
from netvlad.train.ambiguous import ambiguous_images, dark_images, far_duplicates, grey_thumbnails, standardised
from netvlad.train.sets import exclude_ambiguous
from netvlad.train.train_config import TrainConfig
from tests.conftest import copy_sequence

# 16 consecutive places (one frame per 10 s): the train standing at a station (0-3: the same picture), leaving it
# (4-11), entering a tunnel (12-15: mean grey ~7 in summer, ~17-24 in winter)
NAMES = [f"images-{i:05d}.png" for i in range(1760, 1920, 10)]
STOP, TUNNEL = [0, 1, 2, 3], [12, 13, 14, 15]


def _places(n: int) -> np.ndarray:
    return np.stack([np.arange(n) * 25.0, np.zeros(n)], 1)  # the sequence reader's 25 m per place


@pytest.fixture
def summer(nordland):
    return grey_thumbnails([nordland / "summer" / name for name in NAMES])


def test_thumbnails_are_the_grey_pixels(nordland, summer):
    from PIL import Image

    first = np.asarray(Image.open(nordland / "summer" / NAMES[0]).convert("L"), dtype=np.float32)
    assert summer.shape == (16, 32 * 64)
    np.testing.assert_allclose(summer[0], first.flatten(), atol=0.5)  # a grey PNG: R = G = B = L


def test_the_stop_and_the_tunnel_are_what_the_rules_find(summer):
    verdicts = ambiguous_images(summer, _places(16), 25.0, 25.0, 0.97)
    assert np.flatnonzero(verdicts["dark"]).tolist() == TUNNEL
    assert np.flatnonzero(verdicts["far_duplicate"]).tolist() == STOP  # the tunnel's noise correlates < 0.9
    assert np.flatnonzero(verdicts["ambiguous"]).tolist() == STOP + TUNNEL


@pytest.mark.parametrize("correlation", [0.5, 0.8, 0.9, 0.97, 0.999])
def test_far_duplicates_agree_with_numpy_corrcoef(summer, correlation):
    corr = np.corrcoef(summer.astype(np.float64))
    offset = np.abs(np.subtract.outer(np.arange(16), np.arange(16)))
    expected = (np.where(offset >= 2, corr, -1.0) > correlation).any(1)  # 25 m apart: a non-negative, not a twin
    found = far_duplicates(summer, _places(16), 25.0, correlation, block=5)
    assert found.tolist() == expected.tolist()


def test_twins_within_the_negative_radius_are_not_ambiguous(summer):
    # at 75 m the stop's 4 frames are each other's non-negatives: no image beyond the radius duplicates them
    assert not far_duplicates(summer, _places(16), 75.0, 0.97).any()
    assert np.flatnonzero(far_duplicates(summer, _places(16), 50.0, 0.97)).tolist() == [0, 3]  # 3 places apart


def test_dark_is_the_mean_grey_level(summer):
    means = summer.mean(1)
    assert dark_images(summer, 25.0).tolist() == (means < 25.0).tolist()
    assert np.flatnonzero(dark_images(summer, 7.0)).tolist() == [12]  # 6.8; the others 7.1-7.2
    assert not dark_images(summer, 0.0).any()


def test_a_flat_image_correlates_with_nothing():
    z = standardised(np.array([[5.0, 5.0, 5.0], [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]]))
    assert z[0].tolist() == [0.0, 0.0, 0.0]
    assert z[1] @ z[2] == pytest.approx(1.0)


def test_exclude_ambiguous_drops_those_images_of_each_side_and_says_so(nordland, tmp_path, caplog):
    root = copy_sequence(nordland, tmp_path / "nordland", ("summer", "winter"), NAMES)
    dataset = open_dataset(root, database="summer", queries="winter")
    with caplog.at_level(logging.INFO, logger="netvlad.train.sets"):
        kept = exclude_ambiguous(dataset, 25.0, 25.0, 0.97)
    kept_names = [NAMES[i] for i in range(16) if i not in STOP + TUNNEL]
    assert list(kept.database.names) == kept_names and list(kept.queries.names) == kept_names
    assert kept.database.frames.tolist() == [4, 5, 6, 7, 8, 9, 10, 11]  # the places keep their numbers
    lines = [r.getMessage() for r in caplog.records if "ambiguous" in r.getMessage()]
    assert len(lines) == 1
    assert "8 of 16 database and 8 of 16 query images" in lines[0]
    assert "mean grey < 25.0: 4 / 4" in lines[0] and "> 0.97 with an image beyond 25 m: 4 / 4" in lines[0]


def test_both_rules_off_keep_the_dataset(nordland):
    dataset = open_dataset(nordland, database="summer", queries="winter")
    assert exclude_ambiguous(dataset, 25.0, None, None) is dataset


@pytest.mark.parametrize(("name", "value"), [("exclude_dark_below", 256), ("exclude_dark_below", 0),
                                             ("exclude_duplicates_above", 1.5), ("exclude_duplicates_above", 0)])
def test_the_options_refuse_values_out_of_range(name, value):
    with pytest.raises(BadInputError, match=name):
        TrainConfig(**{name: value})


def test_training_excludes_from_its_split_only_and_validation_keeps_every_place(nordland, tmp_path, monkeypatch):
    from netvlad.train import loop

    root = copy_sequence(nordland, tmp_path / "nordland", ("summer", "winter"), NAMES)
    dataset = open_dataset(root, database="summer", queries="winter")
    seen, split = {}, loop.holdout_last

    def holdout(data, count):
        seen["train"], seen["val"] = split(data, count)
        return seen["train"], seen["val"]

    def stop(data, *rules):
        seen["excluded"] = exclude_ambiguous(data, *rules)
        raise KeyboardInterrupt  # stop before any model is built

    monkeypatch.setattr(loop, "holdout_last", holdout)
    monkeypatch.setattr(loop, "exclude_ambiguous", stop)
    config = TrainConfig(val_places=4, exclude_dark_below=25, exclude_duplicates_above=0.97)
    with pytest.raises(KeyboardInterrupt):
        loop.train(config, dataset, tmp_path / "run")
    assert list(seen["val"].database.names) == NAMES[12:] == list(seen["val"].queries.names)  # the tunnel, kept
    assert list(seen["excluded"].database.names) == NAMES[4:12]  # the stop left out of the 12 training places
