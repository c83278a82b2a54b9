"""The generated city's loop route: a drive that comes back to its streets under other conditions."""

import numpy as np
import pytest

from netvlad.cli.main import main
from netvlad.data.frames import FrameSource
from netvlad.data.synthetic import CityConfig
from netvlad.data.synthetic.cameras import street_positions
from netvlad.data.synthetic.city import build_city
from netvlad.data.synthetic.loop import LoopConfig, loop_drive, revisit_mask
from netvlad.errors import BadInputError


def test_loop_route_revisits_streets_under_other_conditions(tmp_path, capsys):
    config = CityConfig.preset("tiny")
    places = len(street_positions(build_city(config), config)[0])
    assert main(["generate", "--size", "tiny", "--route", "loop", "--out", str(tmp_path)]) == 0
    assert "loop route of" in capsys.readouterr().out
    frames = list(FrameSource(tmp_path / "frames"))
    again = int(round(0.5 * places))
    assert len(frames) == places + 2 * again
    mask = revisit_mask(tmp_path / "frames")
    assert not mask[:places].any() and mask[places:].all()
    first, revisit = frames[3], frames[places + 3]  # the same street position, day then dusk
    assert np.allclose(first.position, revisit.position) and first.position[0] > config.origin[0]
    assert not np.array_equal(np.asarray(first.image), np.asarray(revisit.image))
    drive = loop_drive(config, LoopConfig(conditions=("night",), revisit=1.0))
    assert len(drive) == 2 * places and drive[places] == (0, "night")
    with pytest.raises(BadInputError, match="unknown condition"):
        LoopConfig(conditions=("sunset",))
