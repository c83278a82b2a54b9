"""Position estimates from top-k matches: the top-1 estimator follows the distances it is given."""

import numpy as np

from netvlad.places.localise import POSITION_ESTIMATORS
from netvlad.places.positions import top1_position


def test_top1_position_is_the_nearest_match_in_descriptor_space():
    positions = np.array([[10.0, 0.0], [20.0, 5.0], [30.0, 7.0]])
    assert top1_position(positions, np.array([0.1, 0.2, 0.3])).tolist() == [10.0, 0.0]  # ranked input: first row
    assert top1_position(positions, np.array([0.5, 0.2, 0.3])).tolist() == [20.0, 5.0]  # unranked: the nearest
    assert top1_position(positions, np.array([0.2, 0.2, 0.3])).tolist() == [10.0, 0.0]  # ties: the first
    assert POSITION_ESTIMATORS["top1"] is top1_position
