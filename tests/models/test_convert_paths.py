"""`netvlad convert` on a path that is not a model file: one-line errors that say what is wrong."""

from __future__ import annotations

from netvlad.cli.main import main


def test_convert_of_a_folder_says_it_is_a_folder(tmp_path, caplog):
    folder = tmp_path / "models"
    folder.mkdir()
    assert main(["convert", str(folder), "--out", str(tmp_path / "m.safetensors")]) == 1
    assert f"{folder}: is a folder; give the model file inside it" in caplog.text
    assert "no such file" not in caplog.text
    assert not (tmp_path / "m.safetensors").exists()


def test_convert_of_a_missing_file_says_no_such_file(tmp_path, caplog):
    missing = tmp_path / "vd16_pitts30k_conv5_3_vlad_preL2_intra_white.mat"
    assert main(["convert", str(missing), "--out", str(tmp_path / "m.safetensors")]) == 1
    assert f"{missing}: no such file" in caplog.text
    assert "Traceback" not in caplog.text
