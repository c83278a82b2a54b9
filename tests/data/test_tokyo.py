"""Tokyo 24/7 dbStruct files: panoramas, query-set versions and times of day, as the release lays them out."""

from __future__ import annotations

import numpy as np
import pytest

from netvlad.data import open_dataset
from netvlad.data.conditions import CONDITION_WORDS, condition_from_name, query_conditions
from netvlad.data.convert import dvgb_name
from netvlad.data.synthetic.conditions import CONDITIONS
from tests.data.helpers import pitts_struct, tokyo_tree, write_mat_classic, write_mat_v73


@pytest.mark.parametrize("writer", [write_mat_classic, write_mat_v73])
def test_tokyo247_panoramas_query_set_and_times_of_day(tmp_path, writer):
    db_names, db_utm, q_names, q_utm = tokyo_tree(tmp_path, "247query_v3")
    mat = writer(tmp_path / "tokyo247.mat", pitts_struct(db_names, db_utm, q_names, q_utm))
    data = open_dataset(mat)
    assert data.info.dataset == "tokyo247" and data.info.query_set == "247query_v3"
    assert data.database.panoramas is not None and data.info.cutouts_per_panorama == 12
    np.testing.assert_array_equal(data.database.panoramas, np.arange(36) // 12)
    assert query_conditions(data) == ["day", "sunset", "night"]


def test_query_set_version_from_the_folder_when_names_have_none(tmp_path):
    db_names, db_utm, q_names, q_utm = tokyo_tree(tmp_path, "247query_subset_v2", prefixed=False)
    mat = write_mat_classic(tmp_path / "tokyo247.mat", pitts_struct(db_names, db_utm, q_names, q_utm))
    data = open_dataset(mat, queries="247query_subset_v2")
    assert data.info.query_set == "247query_subset_v2"


def test_skipped_cutouts_keep_their_panorama(tmp_path):
    db_names, db_utm, q_names, q_utm = tokyo_tree(tmp_path, "247query_v3")
    (tmp_path / db_names[5]).unlink()  # a missing cut-out must not shift the panoramas after it
    mat = write_mat_classic(tmp_path / "tokyo247.mat", pitts_struct(db_names, db_utm, q_names, q_utm))
    data = open_dataset(mat, skip_bad=True)
    assert len(data.database) == 35
    np.testing.assert_array_equal(data.database.panoramas, np.delete(np.arange(36) // 12, 5))


def test_database_not_in_panoramas_of_twelve_is_scored_per_image(tmp_path, caplog):
    db_names, db_utm, q_names, q_utm = tokyo_tree(tmp_path, "247query_v3")
    mat = write_mat_classic(tmp_path / "tokyo247.mat", pitts_struct(db_names[:30], db_utm[:30], q_names, q_utm))
    data = open_dataset(mat)
    assert data.database.panoramas is None and data.database.times is None
    assert "not a multiple of 12" in caplog.text


def test_generated_city_conditions_come_from_the_names():
    assert set(CONDITIONS) <= set(CONDITION_WORDS)  # every condition the city renders is recognised
    for condition in CONDITIONS:
        name = dvgb_name(500_000.0, 4_000_000.0, (17, "T"), capture=f"q00012_{condition}")
        assert condition_from_name(f"test/queries/{name}") == condition
    assert condition_from_name("db00001@.jpg") is None and condition_from_name("Image010.jpg") is None


def test_png_cutouts_of_the_release_are_found(tmp_path):
    db_names, db_utm, q_names, q_utm = tokyo_tree(tmp_path, "247query_v3")
    for name in db_names:  # database_gsv_vga holds .png files; the dbStruct names them .jpg
        (tmp_path / name).rename((tmp_path / name).with_suffix(".png"))
    data = open_dataset(write_mat_classic(tmp_path / "tokyo247.mat", pitts_struct(db_names, db_utm, q_names, q_utm)))
    assert data.database.names[0] == "03814/381400_000.png" and all(p.is_file() for p in data.database.paths())
    assert data.database.panoramas is not None
