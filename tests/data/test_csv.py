"""CSV manifests: lat/lon and easting/northing flavours, and every bad row."""

from __future__ import annotations

import numpy as np
import pytest
import utm

from netvlad.data import DatasetError, open_dataset
from tests.data.helpers import PITTSBURGH, write_image


def manifest(tmp_path, lines: list[str], images=("a.jpg", "b.jpg", "q/c.jpg")):
    for name in images:
        write_image(tmp_path / name)
    path = tmp_path / "set.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_lat_lon_manifest(tmp_path):
    lat, lon = PITTSBURGH
    path = manifest(tmp_path, ["path,split,lat,lon", f"a.jpg,database,{lat},{lon}",
                               f"b.jpg,db,{lat + 0.001},{lon}", f"q/c.jpg,query,{lat + 0.00005},{lon}"])
    data = open_dataset(path)
    assert data.info.format == "csv" and data.database.names == ("a.jpg", "b.jpg")
    e, n, number, letter = utm.from_latlon(lat + 0.001, lon)
    np.testing.assert_allclose(data.database.utm[1], [e, n], atol=1e-6)
    assert data.database.zone == (number, letter) == (17, "T")
    assert data.queries.root == tmp_path and data.positives(25.0)[0].tolist() == [0]


def test_utm_manifest_with_zone_and_time_column(tmp_path):
    path = manifest(tmp_path, ["path,split,easting,northing,zone,time", "a.jpg,database,100,200,17T,t1",
                               "b.jpg,database,105,200,17T,t2", "q/c.jpg,query,102,200,17T,t2"])
    data = open_dataset(path)
    assert data.database.utm.tolist() == [[100, 200], [105, 200]] and data.database.zone == (17, "T")
    assert data.training_positives(10.0)[0].tolist() == [0]  # b shares the query's capture time


def test_missing_column_and_empty_manifest(tmp_path):
    with pytest.raises(DatasetError, match=r"set\.csv: header is path,lat,lon; need path,split,lat,lon"):
        open_dataset(manifest(tmp_path, ["path,lat,lon", "a.jpg,1,2"]))
    with pytest.raises(DatasetError, match="header but no rows"):
        open_dataset(manifest(tmp_path, ["path,split,lat,lon"]))


def test_file_named_but_missing(tmp_path):
    path = manifest(tmp_path, ["path,split,easting,northing", "a.jpg,database,0,0", "gone.jpg,database,1,0",
                               "q/c.jpg,query,0,0"])
    with pytest.raises(DatasetError, match=r"gone\.jpg: image file not found; fix the path or the image root"):
        open_dataset(path)
    data = open_dataset(path, skip_bad=True)
    assert data.database.names == ("a.jpg",) and data.info.skipped[0][1] == "image file not found"


@pytest.mark.parametrize(("row", "message"), [
    ("b.jpg,database,nan,0", r"set\.csv:3 \(b\.jpg\): GPS position missing, NaN"),
    ("b.jpg,database,,0", r"set\.csv:3 \(b\.jpg\): GPS position missing"),
    ("b.jpg,train,1,0", r"set\.csv:3 \(b\.jpg\): split is 'train'; use database or query"),
    ("a.jpg,database,1,0", r"a\.jpg: listed twice"),
])
def test_bad_rows_fail_or_are_skipped(tmp_path, row, message):
    path = manifest(tmp_path, ["path,split,easting,northing", "a.jpg,database,0,0", row, "q/c.jpg,query,0,0"])
    with pytest.raises(DatasetError, match=message):
        open_dataset(path)
    data = open_dataset(path, skip_bad=True)
    assert data.database.names == ("a.jpg",) and len(data.info.skipped) == 1


def test_two_zones_in_a_lat_lon_manifest(tmp_path):
    path = manifest(tmp_path, ["path,split,lat,lon", "a.jpg,database,48.1,11.5", "b.jpg,database,48.1,12.1",
                               "q/c.jpg,query,48.1,11.5"])
    with pytest.raises(DatasetError, match=r"b\.jpg\): images span UTM zones 32N \(2\), 33N \(1\)"):
        open_dataset(path)
    assert open_dataset(path, skip_bad=True).database.names == ("a.jpg",)


def test_image_root_moves_the_paths(tmp_path):
    write_image(tmp_path / "photos" / "a.jpg")
    (tmp_path / "m.csv").write_text("path,split,easting,northing\na.jpg,database,0,0\na.jpg,query,0,0\n")
    data = open_dataset(tmp_path / "m.csv", image_root=tmp_path / "photos")
    assert data.database.paths() == [tmp_path / "photos" / "a.jpg"]


def test_query_without_positive_is_logged_on_open(tmp_path, caplog):
    path = manifest(tmp_path, ["path,split,easting,northing", "a.jpg,database,0,0", "b.jpg,query,10,0",
                               "q/c.jpg,query,500,0"])
    data = open_dataset(path)
    assert "1 of 2 queries have no positive within 25 m" in caplog.text and "first: q/c.jpg" in caplog.text
    assert data.queries_without_positives().tolist() == [1]
