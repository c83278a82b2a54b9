"""Folders of geo-tagged photos: EXIF GPS to UTM, one zone, photos without GPS, unreadable photos."""

from __future__ import annotations

import numpy as np
import pytest
import utm

from netvlad.data import DatasetError, open_dataset
from tests.data.helpers import PITTSBURGH, gps_exif, write_image


def photos(root, positions: dict[str, tuple[float, float]]):
    for name, (lat, lon) in positions.items():
        write_image(root / name, exif=gps_exif(lat, lon), fmt="JPEG")
    return root


def test_photo_folders_with_gps(tmp_path):
    lat, lon = PITTSBURGH
    photos(tmp_path, {"database/a.jpg": (lat, lon), "database/b.jpg": (lat + 0.001, lon),
                      "queries/c.jpg": (lat + 0.00005, lon + 0.00005)})
    data = open_dataset(tmp_path)
    assert data.info.format == "exif" and data.database.names == ("a.jpg", "b.jpg")
    e, n, number, letter = utm.from_latlon(lat + 0.001, lon)
    np.testing.assert_allclose(data.database.utm[1], [e, n], atol=0.05)  # EXIF seconds rounded to 1e-4
    assert data.database.zone == (17, "T") and data.positives()[0].tolist() == [0]


def test_single_folder_goes_to_the_database(tmp_path):
    photos(tmp_path, {"a.jpg": PITTSBURGH, "b.jpg": PITTSBURGH})
    data = open_dataset(tmp_path)
    assert len(data.database) == 2 and len(data.queries) == 0


def test_southern_western_hemisphere(tmp_path):
    photos(tmp_path, {"database/a.jpg": (-33.8568, 151.2153), "queries/b.jpg": (-33.8570, 151.2150)})
    data = open_dataset(tmp_path)
    e, n, number, letter = utm.from_latlon(-33.8568, 151.2153)
    np.testing.assert_allclose(data.database.utm[0], [e, n], atol=0.05)
    assert data.database.zone == (number, letter) == (56, "H")


def test_photo_without_gps_or_unreadable(tmp_path):
    photos(tmp_path, {"database/a.jpg": PITTSBURGH, "queries/q.jpg": PITTSBURGH})
    write_image(tmp_path / "database" / "nogps.jpg")
    with pytest.raises(DatasetError, match=r"nogps\.jpg: no usable EXIF GPS position"):
        open_dataset(tmp_path)
    (tmp_path / "database" / "nogps.jpg").unlink()
    (tmp_path / "database" / "zero.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"zero\.jpg: cannot read the photo"):
        open_dataset(tmp_path)
    data = open_dataset(tmp_path, skip_bad=True)
    assert data.database.names == ("a.jpg",) and len(data.info.skipped) == 1


def test_photos_spanning_two_zones(tmp_path):
    photos(tmp_path, {"database/a.jpg": (48.1, 11.5), "database/b.jpg": (48.1, 11.6),
                      "queries/c.jpg": (48.1, 12.1)})  # Munich 32U and 33U
    with pytest.raises(DatasetError, match=r"c\.jpg: images span UTM zones 32N \(2\), 33N \(1\); .*zone 32N"):
        open_dataset(tmp_path)
    data = open_dataset(tmp_path, skip_bad=True)
    assert len(data.database) == 2 and len(data.queries) == 0
