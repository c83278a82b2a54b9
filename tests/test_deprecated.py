"""Old names kept one release: they still resolve to the renamed code, and the modules among them warn."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_eval_retrieve_is_folder_ranking(monkeypatch):
    from netvlad.eval import folder_ranking

    monkeypatch.delitem(sys.modules, "netvlad.eval.retrieve", raising=False)
    with pytest.warns(DeprecationWarning, match="folder_ranking"):
        old = importlib.import_module("netvlad.eval.retrieve")
    for name in ("Ranking", "rank_folders", "ranking_picture", "retrieve_folders", "write_ranking", "_prefix"):
        assert getattr(old, name) is getattr(folder_ranking, name)


def test_training_validation_keeps_its_old_name():
    from netvlad.train import loop

    assert loop.evaluate is loop.validate_epoch


def test_csv_read_rows_is_read_manifest():
    from netvlad.data.readers import csv

    assert csv.read_rows is csv.read_manifest
