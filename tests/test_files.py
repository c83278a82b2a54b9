"""Files the library writes get the permissions any ``open(path, "w")`` gives them (0666 less the umask)."""

import os
import stat

import pytest

from netvlad.errors import BadInputError
from netvlad.files import atomic_write, refuse_overlaps


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


def test_write_errors_name_the_file_and_the_fix(tmp_path):
    import errno

    from netvlad.files import WriteError

    (tmp_path / "report.json").write_text("previous")

    def too_large(path):
        raise OSError(errno.EFBIG, "File too large")

    with pytest.raises(WriteError) as caught:
        atomic_write(tmp_path / "report.json", too_large)
    assert str(caught.value).startswith(f"{tmp_path / 'report.json'}: cannot write (File too large); free disk space")
    assert (tmp_path / "report.json").read_text() == "previous"  # the previous file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary file left
    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError, match="choose a writable folder"):
        atomic_write(tmp_path / "file" / "out.json", lambda p: p.write_text("{}"))


def test_store_write_error_leaves_rows_pending(tmp_path, monkeypatch):
    import errno

    import numpy as np

    from netvlad.extract.store import DescriptorStore
    from netvlad.files import WriteError

    store = DescriptorStore.create(tmp_path / "s", ["a", "b"], dim=2)
    store.write(np.array([0]), np.ones((1, 2), np.float32))

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(WriteError, match=r"descriptors\.npy: cannot write \(No space left on device\); free disk"):
        store.write(np.array([1]), np.ones((1, 2), np.float32))
    monkeypatch.undo()
    assert list(DescriptorStore.create(tmp_path / "s", ["a", "b"], dim=2).pending()) == [1]  # a rerun extracts it


def test_outputs_overlapping_each_other_or_an_input_are_refused(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "sub" / ".." / "a.json"
    refuse_overlaps({"--out": a, "--summary": tmp_path / "b.json", "--plot": None}, {"--model": tmp_path / "m"})
    with pytest.raises(BadInputError, match="--summary would overwrite --out"):
        refuse_overlaps({"--out": a, "--summary": b})
    with pytest.raises(BadInputError, match="--out would overwrite the input --model"):
        refuse_overlaps({"--out": a}, {"--model": b})
    (tmp_path / "link.json").symlink_to(a)
    with pytest.raises(BadInputError, match="would overwrite"):
        refuse_overlaps({"--out": a, "--summary": tmp_path / "link.json"})
