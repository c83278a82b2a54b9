"""The reader registry: every registered format is detected from a real-structure example; bad sources fail."""

from __future__ import annotations

import pytest

from netvlad.data import list_formats, open_dataset
from netvlad.data.readers import READERS
from tests.data.helpers import example_dataset


def test_all_formats_registered_in_detection_order():
    assert list_formats() == ["mat", "csv", "dvgb", "msls", "exif", "sequence", "bag"]
    assert all(READERS[name].description for name in list_formats())


@pytest.mark.parametrize("fmt", list_formats())
def test_each_format_is_detected_and_read(tmp_path, fmt):
    source, options = example_dataset(fmt, tmp_path)
    data = open_dataset(source, **options)
    assert data.info.format == fmt
    assert len(data.database) == 1 and len(data.queries) == 1
    assert data.positives(25.0)[0].tolist() == [0]
    assert open_dataset(source, format=fmt, **options).info.format == fmt


def test_unsupported_and_unknown_formats(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt: unsupported dataset format \(mat: .*\); pass format=NAME"):
        open_dataset(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="unknown dataset format 'lmdb'; choose one of mat, csv, dvgb"):
        open_dataset(tmp_path / "notes.txt", format="lmdb")
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        open_dataset(tmp_path / "nowhere")


def test_empty_folder_is_unsupported(tmp_path):
    with pytest.raises(ValueError, match="folder is empty"):
        open_dataset(tmp_path)
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="unsupported dataset format"):
        open_dataset(tmp_path)


def test_a_missing_sub_folder_is_named_with_the_folders_there(gardens_point, caplog):
    """A typo in database= names the missing folder and those that exist, not the list of formats."""
    from netvlad.cli.main import main
    from netvlad.errors import BadInputError

    with pytest.raises(BadInputError, match=r"gardens_point: no folder 'day_lft' \(database=\); the folders there: "
                                            r"day_left, day_right$") as caught:
        open_dataset(gardens_point, database="day_lft", queries="day_right")
    assert caught.value.hint == "--database NAME"
    with pytest.raises(BadInputError, match=r"no folder 'winter' \(queries=\); the folders there: day_left, day_right"):
        open_dataset(gardens_point, database="day_left", queries="winter")
    assert main(["data", "inspect", str(gardens_point), "--database", "day_lft", "--queries", "day_right"]) == 1
    assert "no folder 'day_lft'" in caplog.text and "unsupported dataset format" not in caplog.text
