"""The DVGB layout of VPR-datasets-downloader: splits, names, capture ids, bad names and zones."""

from __future__ import annotations

import numpy as np
import pytest

from netvlad.data import DatasetError, open_dataset
from tests.data.helpers import dvgb_name, pittsburgh_utm, write_dvgb, write_image

DB = pittsburgh_utm([[0, 0], [8, 0], [20, 0], [60, 0]])
Q = pittsburgh_utm([[1, 0], [59, 3]])


def test_reads_split_folders_and_positions(tmp_path):
    write_dvgb(tmp_path, DB, Q, split="test")
    write_dvgb(tmp_path, DB[:2], Q[:1], split="train")
    data = open_dataset(tmp_path)  # test split chosen by default
    assert data.info.format == "dvgb" and (len(data.database), len(data.queries)) == (4, 2)
    assert data.database.root == tmp_path / "images" / "test" / "database"
    np.testing.assert_allclose(data.database.utm, DB[np.argsort(DB[:, 0])], atol=0.006)  # names sort by easting
    assert data.database.zone == (17, "T")
    assert [p.tolist() for p in data.positives(25.0)] == [[0, 1, 2], [3]]
    train = open_dataset(tmp_path / "images", split="train")
    assert (len(train.database), len(train.queries)) == (2, 1)
    with pytest.raises(DatasetError, match="split not found; this dataset has test, train"):
        open_dataset(tmp_path, split="val")


def test_folder_directly_holding_database_and_queries(tmp_path):
    write_dvgb(tmp_path, DB, Q, split=None)
    data = open_dataset(tmp_path)
    assert len(data.database) == 4 and data.database.root == tmp_path / "database"


def test_panorama_ids_make_training_positives_non_trivial(tmp_path):
    write_dvgb(tmp_path, DB[:2], pittsburgh_utm([[3, 0]]), split=None, db_panos=["p1", "p2"], q_panos=["p2"])
    data = open_dataset(tmp_path)
    assert data.positives(25.0)[0].tolist() == [0, 1]
    assert data.training_positives(10.0)[0].tolist() == [0]  # database image 1 shares the query's panorama


def test_bad_name_fails_or_is_skipped(tmp_path):
    write_dvgb(tmp_path, DB, Q, split=None)
    write_image(tmp_path / "database" / "holiday.jpg")
    write_image(tmp_path / "database" / "@nan@4477000.00@17@T@@@@@@@@@@@@.jpg")
    with pytest.raises(DatasetError, match=r"(holiday|@nan).*\.jpg: file name does not start with @UTM_east"):
        open_dataset(tmp_path)
    data = open_dataset(tmp_path, skip_bad=True)
    assert len(data.database) == 4 and len(data.info.skipped) == 2


def test_two_utm_zones_are_refused(tmp_path):
    write_dvgb(tmp_path, DB, Q, split=None)
    write_image(tmp_path / "queries" / dvgb_name(500000.0, 4477000.0, zone=(18, "T")))
    with pytest.raises(DatasetError, match=r"span UTM zones 17N \(6\), 18N \(1\).*keep only zone 17N"):
        open_dataset(tmp_path)
    assert len(open_dataset(tmp_path, skip_bad=True).queries) == 2


def test_empty_query_folder(tmp_path):
    write_dvgb(tmp_path, DB, Q, split=None)
    for f in (tmp_path / "queries").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"queries: folder holds no images"):
        open_dataset(tmp_path)


def test_frame_options_refused_for_gps_data(tmp_path):
    write_dvgb(tmp_path, DB, Q, split=None)
    with pytest.raises(DatasetError, match="frame sequences only"):
        open_dataset(tmp_path, frame_tolerance=2)
