"""Which evaluated queries a model was trained on, from the provenance its training run records."""

import numpy as np
import pytest

from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.place_range import PlaceRange
from netvlad.data.provenance import Provenance, seen_queries
from netvlad.train.sets import holdout_last


def _list(root, count, frames=True, offset=0):
    names = [f"{i:05d}.png" for i in range(offset, offset + count)]
    utm = np.stack([np.arange(count) * 25.0, np.zeros(count)], axis=1)
    return ImageList(root, names, utm, frames=np.arange(count) if frames else None)


def _trained(dataset, val_places):
    train, val = holdout_last(dataset, val_places)
    record = Provenance.of_training(dataset, train, val, seed=3, config_hash="0" * 16).to_dict()
    return Provenance.from_extra({"provenance": record})


def test_sequence_queries_are_seen_by_place(tmp_path):
    data = GeoDataset("seq", _list(tmp_path / "summer", 10), _list(tmp_path / "winter", 10))
    provenance = _trained(data, 4)
    assert provenance.train["places"] == "0:6" and provenance.val["places"] == "6:10" and provenance.seed == 3
    assert seen_queries(provenance, data).tolist() == [True] * 6 + [False] * 4
    swapped = GeoDataset("swapped", data.queries, data.database)  # the seasons the other way round: same places
    assert seen_queries(provenance, swapped).tolist() == [True] * 6 + [False] * 4
    held = PlaceRange(5, 9).select(data)
    assert held.queries.frames.tolist() == [5, 6, 7, 8] and len(held.database) == 4
    assert seen_queries(provenance, held).tolist() == [True, False, False, False]
    elsewhere = GeoDataset("other", _list(tmp_path / "a", 10), _list(tmp_path / "b", 10))
    assert seen_queries(provenance, elsewhere) is None


def test_gps_queries_are_seen_when_they_are_the_training_list(tmp_path, caplog):
    data = GeoDataset("gps", _list(tmp_path / "db", 12, frames=False), _list(tmp_path / "q", 12, frames=False))
    provenance = _trained(data, 5)
    assert provenance.train["places"] is None and provenance.train["queries"]["images"] == 7
    assert seen_queries(provenance, data).tolist() == [True] * 7 + [False] * 5
    other = GeoDataset("gps2", data.database, _list(tmp_path / "q", 12, frames=False, offset=100))
    assert seen_queries(provenance, other) is None and "which of them the model saw is unknown" in caplog.text


def test_a_checkpoint_without_provenance_relates_to_nothing():
    assert Provenance.from_extra({}) is None and Provenance.from_extra({"provenance": {"seed": 1}}) is None


@pytest.mark.parametrize("text", ["1", "1-4", "a:4", "4:1", "3:3", "-1:2", "1:", ""])
def test_malformed_place_ranges_are_refused(text):
    with pytest.raises(ValueError, match="place range"):
        PlaceRange.parse(text)
