"""Files the library writes get the permissions any ``open(path, "w")`` gives them (0666 less the umask)."""

import os
import stat

import pytest

from netvlad.files import atomic_write


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_write_follows_the_umask(tmp_path, mask):
    before = os.umask(mask)
    try:
        path = atomic_write(tmp_path / "out.json", lambda p: p.write_text("{}"))
        with open(tmp_path / "plain.json", "w") as handle:  # the reference
            handle.write("{}")
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert path.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "plain.json"]
