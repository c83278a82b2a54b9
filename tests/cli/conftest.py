"""Fixtures shared by the command tests."""

from __future__ import annotations

import pytest

from tests.conftest import copy_sequence, shared_dataset


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    """Every 10th Gardens Point frame of day_left and day_right (20 each): a small real sequence pair."""
    return copy_sequence(shared_dataset("gardens_point"), tmp_path_factory.mktemp("gp"), ("day_left", "day_right"),
                         [f"Image{i:03d}.jpg" for i in range(0, 200, 10)])
