import numpy as np
import pytest

from netvlad.extract.store import BAD, DONE, DescriptorStore


def test_store_writes_and_reopens(tmp_path):
    store = DescriptorStore.create(tmp_path / "s", ["a.jpg", "b/c.jpg", "d.jpg"], dim=4, fingerprint="f1")
    store.write(np.array([2, 0]), np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.float32))
    store.mark_bad([1])
    again = DescriptorStore.open(tmp_path / "s")
    assert again.names == ("a.jpg", "b/c.jpg", "d.jpg")
    np.testing.assert_array_equal(again.load(), [[5, 6, 7, 8], [0, 0, 0, 0], [1, 2, 3, 4]])
    assert list(again.status) == [DONE, BAD, DONE]
    assert again.complete and again.bad() == ["b/c.jpg"]
    np.testing.assert_array_equal(again.valid(), [True, False, True])


def test_store_continues_and_keeps_rows(tmp_path):
    store = DescriptorStore.create(tmp_path, ["a", "b", "c"], dim=2, dtype="float16", fingerprint="f1")
    store.write(np.array([1]), np.array([[0.5, -0.25]], dtype=np.float32))
    del store
    resumed = DescriptorStore.create(tmp_path, ["a", "b", "c"], dim=2, dtype="float16", fingerprint="f1")
    assert list(resumed.pending()) == [0, 2]
    assert resumed.descriptors.dtype == np.float16
    np.testing.assert_array_equal(resumed.load()[1], [0.5, -0.25])


@pytest.mark.parametrize("change, words", [
    (dict(names=["a", "x"]), "other images"),
    (dict(dim=3), "dim 2"),
    (dict(fingerprint="other"), "model f1"),
    (dict(dtype="float16"), "dtype float32"),
])
def test_store_refuses_other_content(tmp_path, change, words):
    DescriptorStore.create(tmp_path, ["a", "b"], dim=2, fingerprint="f1")
    args = dict(names=["a", "b"], dim=2, fingerprint="f1", dtype="float32") | change
    with pytest.raises(ValueError, match=words):
        DescriptorStore.create(tmp_path, **args)


def test_store_open_missing_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a descriptor store"):
        DescriptorStore.open(tmp_path)


def test_store_rejects_wrong_dim_rows(tmp_path):
    store = DescriptorStore.create(tmp_path, ["a"], dim=3)
    with pytest.raises(ValueError, match="3-D"):
        store.write(np.array([0]), np.zeros((1, 4), np.float32))
