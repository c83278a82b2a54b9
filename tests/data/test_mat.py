"""Pittsburgh / Tokyo dbStruct .mat files, classic (v5) and v7.3 (HDF5), with the real field layout."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from netvlad.data import DatasetError, open_dataset
from tests.data.helpers import pitts_struct, pittsburgh_utm, write_image, write_mat_classic, write_mat_v73

WRITERS = {"classic": write_mat_classic, "v7.3": write_mat_v73}
DB_NAMES = ["000/000000_pitch1_yaw1.jpg", "000/000000_pitch1_yaw2.jpg", "000/000001_pitch1_yaw1.jpg"]
Q_NAMES = ["000/000000_pitch1_yaw1.jpg", "001/000123_pitch2_yaw3.jpg"]
DB_UTM = pittsburgh_utm([[0, 0], [0, 0], [15, 0]])
Q_UTM = pittsburgh_utm([[4, 0], [200, 0]])


def pittsburgh_tree(root):
    """Images laid out as the Pittsburgh release: database under the root, queries under queries_real/."""
    for name in DB_NAMES:
        write_image(root / name)
    for name in Q_NAMES:
        write_image(root / "queries_real" / name)
    return root


@pytest.mark.parametrize("flavour", WRITERS)
def test_reads_pittsburgh_dbstruct(tmp_path, flavour):
    pittsburgh_tree(tmp_path / "pitts")
    mat = WRITERS[flavour](tmp_path / "pitts30k_test.mat", pitts_struct(DB_NAMES, DB_UTM, Q_NAMES, Q_UTM))
    data = open_dataset(mat, image_root=tmp_path / "pitts")
    assert data.name == "pitts30k_test" and data.info.format == "mat"
    assert data.database.names == tuple(DB_NAMES) and data.queries.names == tuple(Q_NAMES)
    np.testing.assert_array_equal(data.database.utm, DB_UTM)
    np.testing.assert_array_equal(data.queries.utm, Q_UTM)
    assert data.database.root == tmp_path / "pitts" and data.queries.root == tmp_path / "pitts" / "queries_real"
    assert (data.info.eval_radius, data.info.train_radius, data.info.split) == (25.0, 10.0, "test")
    assert [p.tolist() for p in data.positives()] == [[0, 1, 2], []]
    assert data.training_positives()[0].tolist() == [0, 1]  # 4 m away: non-trivial; 11 m: beyond 10 m
    assert all(p.is_file() for p in data.queries.paths())


@pytest.mark.parametrize("flavour", WRITERS)
def test_tokyo_time_machine_timestamps(tmp_path, flavour):
    for name in ("images/a.jpg", "images/b.jpg", "images/q.jpg"):
        write_image(tmp_path / name)
    fields = pitts_struct(["a.jpg", "b.jpg"], pittsburgh_utm([[3, 0], [5, 0]]), ["q.jpg"], pittsburgh_utm([[0, 0]]),
                          which="val", db_times=[201401, 201406], q_times=[201406])
    data = open_dataset(WRITERS[flavour](tmp_path / "tokyoTM_val.mat", fields))
    assert data.database.root == tmp_path / "images" and data.queries.root == tmp_path / "images"
    assert data.database.times.tolist() == [201401, 201406]
    assert data.training_positives()[0].tolist() == [0]  # b was taken at the query's time


def test_single_image_sides_and_explicit_folders(tmp_path):
    write_image(tmp_path / "db" / "x.jpg")
    write_image(tmp_path / "qq" / "y.jpg")
    mat = write_mat_classic(tmp_path / "one.mat", pitts_struct(["x.jpg"], [[1, 2]], ["y.jpg"], [[1, 3]]))
    data = open_dataset(mat, database="db", queries="qq")
    assert data.database.utm.tolist() == [[1, 2]] and data.positives()[0].tolist() == [0]


@pytest.mark.parametrize("flavour", WRITERS)
def test_missing_and_misspelt_fields(tmp_path, flavour):
    fields = pitts_struct(DB_NAMES, DB_UTM, Q_NAMES, Q_UTM)
    fields["utmDB"] = fields.pop("utmDb")
    del fields["qImageFns"]
    mat = WRITERS[flavour](tmp_path / "bad.mat", fields)
    with pytest.raises(DatasetError, match=r"bad\.mat: dbStruct lacks field\(s\) utmDb \(found utmDB\?\), qImageFns"):
        open_dataset(mat)


def test_no_dbstruct_and_not_a_mat(tmp_path):
    scipy.io.savemat(tmp_path / "other.mat", {"features": np.zeros(3)})
    with pytest.raises(DatasetError, match=r"other\.mat: no dbStruct variable \(found features\)"):
        open_dataset(tmp_path / "other.mat")
    (tmp_path / "junk.mat").write_bytes(b"hello")
    with pytest.raises(DatasetError, match=r"junk\.mat: cannot read the \.mat file"):
        open_dataset(tmp_path / "junk.mat")


def test_inconsistent_counts(tmp_path):
    fields = pitts_struct(DB_NAMES, DB_UTM, Q_NAMES, Q_UTM)
    fields["numImages"] = 4.0
    with pytest.raises(DatasetError, match="numImages = 4 but 3 file names"):
        open_dataset(write_mat_classic(tmp_path / "n.mat", fields))
    fields = pitts_struct(DB_NAMES, DB_UTM[:2], Q_NAMES, Q_UTM)
    with pytest.raises(DatasetError, match=r"utmDb holds 4 values for 3 images"):
        open_dataset(write_mat_classic(tmp_path / "u.mat", fields))


def test_missing_images_fail_or_are_skipped(tmp_path):
    pittsburgh_tree(tmp_path)
    (tmp_path / "queries_real" / Q_NAMES[1]).unlink()
    mat = write_mat_classic(tmp_path / "p.mat", pitts_struct(DB_NAMES, DB_UTM, Q_NAMES, Q_UTM))
    with pytest.raises(DatasetError, match=r"000123_pitch2_yaw3\.jpg: image file not found; fix the path"):
        open_dataset(mat)
    data = open_dataset(mat, skip_bad=True)
    assert data.queries.names == (Q_NAMES[0],) and len(data.info.skipped) == 1
    with pytest.raises(DatasetError, match=r"image not found .*give the image root"):
        open_dataset(mat, image_root=tmp_path / "elsewhere")


def test_nan_position_and_wrong_split(tmp_path):
    pittsburgh_tree(tmp_path)
    utm = DB_UTM.copy()
    utm[1, 0] = np.nan
    mat = write_mat_classic(tmp_path / "p.mat", pitts_struct(DB_NAMES, utm, Q_NAMES, Q_UTM))
    with pytest.raises(DatasetError, match=r"yaw2\.jpg: position is NaN"):
        open_dataset(mat)
    assert len(open_dataset(mat, skip_bad=True).database) == 2
    with pytest.raises(DatasetError, match="holds split 'test', not 'train'"):
        open_dataset(mat, split="train")
