"""The MSLS reader on a structure-exact two-city sample (the release's CSV columns, keys and folders)."""

from __future__ import annotations

import numpy as np
import pytest

from netvlad.data import DatasetError, open_dataset
from netvlad.data.conditions import query_conditions
from tests.data.helpers import MSLS_ORIGIN, write_msls


def test_official_val_cities_panoramas_and_night(tmp_path):
    data = open_dataset(write_msls(tmp_path))
    assert data.info.format == "msls" and data.info.cities == ("cph", "sf")
    # database: 8 per city minus one panorama; queries: 7 (cph) and 6 (sf) minus one panorama each
    assert (len(data.database), len(data.queries)) == (14, 11)
    assert data.queries.names[0].startswith("cph/query/images/") and data.queries.names[-1].startswith("sf/query/")
    assert all((data.database.root / n).is_file() for n in data.database.names)
    np.testing.assert_allclose(data.database.utm[0], MSLS_ORIGIN["cph"], atol=1e-3)
    np.testing.assert_allclose(data.database.utm[1], np.add(MSLS_ORIGIN["cph"], (40, 0)), atol=1e-3)  # 10 m: pano
    assert query_conditions(data)[:5] == ["day", "night", "day", "night", "day"]
    # 25 m exactly counts (the official code's radius_neighbors is inclusive); the query 5 km away has none
    assert [p.tolist() for p in data.positives(25.0)[:5]] == [[0], [1, 2], [3], [5], []]


def test_subtask_and_single_city(tmp_path):
    data = open_dataset(write_msls(tmp_path), split="sf:n2d")
    assert (data.info.cities, data.info.subtask) == (("sf",), "n2d")
    assert len(data.queries) == 3 and len(data.database) == 4  # even rows; row 1 of the database is a panorama


def test_subtask_index_with_a_key_column(tmp_path):
    positional = open_dataset(write_msls(tmp_path / "a"), split="val:n2d")
    keyed = open_dataset(write_msls(tmp_path / "b", keyed_subtasks=True), split="val:n2d")
    assert positional.queries.names == keyed.queries.names and positional.database.names == keyed.database.names


def test_bad_rows_refused_with_the_row_or_skipped_with_a_count(tmp_path):
    root = write_msls(tmp_path)
    post = root / "train_val" / "sf" / "query" / "postprocessed.csv"
    lines = post.read_text().splitlines()
    fields = lines[2].split(",")
    fields[3] = ""  # the easting of the second query
    lines[2] = ",".join(fields)
    post.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"sf/query/postprocessed\.csv:3: key \S+: easting/northing missing"):
        open_dataset(root)
    data = open_dataset(root, skip_bad=True)
    assert len(data.queries) == 10 and len(data.info.skipped) == 1
    raw = root / "train_val" / "cph" / "database" / "raw.csv"
    raw.write_text("\n".join(raw.read_text().splitlines()[:-1]) + "\n")  # the last key is now unknown
    with pytest.raises(DatasetError, match=r"cph/database/postprocessed\.csv:9: key '\S+' is not in raw\.csv"):
        open_dataset(root)
    assert len(open_dataset(root, skip_bad=True).database) == 13


@pytest.mark.parametrize(("split", "message"), [
    ("val:x2y", "unknown MSLS subtask 'x2y'"), ("zurich", "zurich: MSLS city not found .*cities here: cph, sf"),
    ("test", "test cities carry no positions"), ("miami", "test cities carry no positions")])
def test_bad_splits(tmp_path, split, message):
    with pytest.raises(DatasetError, match=message):
        open_dataset(write_msls(tmp_path), split=split)
