"""Several writers fill one store: shards in any order give the single run's bytes; plans and races are handled."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from netvlad.errors import BadInputError
from netvlad.extract.descriptors import _open_on_rank, extract_to_store
from netvlad.extract.store import BAD, DONE, DescriptorStore, Shard
from netvlad.parallel import DistInfo
from tests.extract.conftest import write_images


def _files(folder):
    return {name: (folder / name).read_bytes() for name in ("descriptors.npy", "status.npy", "names.txt")}


def test_shards_are_disjoint_contiguous_and_cover_every_row():
    parts = [Shard(i, 3).rows(11) for i in range(3)]
    assert [list(p) for p in parts] == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9, 10]]
    assert len(Shard(0, 4).rows(2)) == 0  # more shards than rows: some are empty


@pytest.mark.parametrize("text", ["3/2", "x", "1/0", "-1/2", "1/2/3", "1"])
def test_bad_shard_text_names_the_form(text):
    with pytest.raises(BadInputError, match="I/N"):
        Shard.parse(text)


def test_shards_in_any_order_give_the_single_run_bytes(tmp_path, tiny_model):
    names = write_images(tmp_path / "img", 9)
    one = extract_to_store(tiny_model, tmp_path / "img", names, tmp_path / "one", batch_size=2)
    for index in (2, 0, 1):  # three scheduler jobs, finishing in any order
        store = extract_to_store(tiny_model, tmp_path / "img", names, tmp_path / "three", batch_size=2,
                                 shard=Shard(index, 3))
        assert set(np.flatnonzero(store.valid())) >= set(Shard(index, 3).rows(9))
    assert store.complete and store.shards == 3
    assert _files(tmp_path / "one") == _files(tmp_path / "three")
    assert one.num_done == 9


def test_unfinished_store_refuses_another_plan_and_a_finished_one_is_read(tmp_path, tiny_model):
    names = write_images(tmp_path / "img", 4)
    extract_to_store(tiny_model, tmp_path / "img", names, tmp_path / "s", shard=Shard(0, 2))
    for shard in (Shard(0, 3), None):  # another shard count, or one process, before shard 1 of 2 has run
        with pytest.raises(BadInputError, match=r"planned for 2 shard\(s\).*Shard\(i, 2\)") as caught:
            extract_to_store(tiny_model, tmp_path / "img", names, tmp_path / "s", shard=shard)
        assert "--shard I/2" in caught.value.hint and caught.value.path.name == "store.json"
    extract_to_store(tiny_model, tmp_path / "img", names, tmp_path / "s", shard=Shard(1, 2))
    store = extract_to_store(tiny_model, tmp_path / "img", names, tmp_path / "s")  # complete: any reader
    assert store.complete and store.num_done == 4


def test_bad_image_in_one_shard_is_skipped_and_reported_to_all(tmp_path, tiny_model):
    names = write_images(tmp_path, 6)
    (tmp_path / names[4]).write_bytes(b"not an image")  # in shard 1 of 2 (rows 3-5)
    first = extract_to_store(tiny_model, tmp_path, names, tmp_path / "s", shard=Shard(0, 2))
    with pytest.raises(BadInputError, match=names[4]):
        extract_to_store(tiny_model, tmp_path, names, tmp_path / "s", shard=Shard(1, 2), batch_size=1)
    extract_to_store(tiny_model, tmp_path, names, tmp_path / "s", shard=Shard(1, 2), skip_bad=True)
    assert first.bad() == [names[4]] and first.complete  # shard 0's handle sees shard 1's status
    assert list(first.status) == [DONE] * 4 + [BAD, DONE]


def _create_and_write(folder, names, index):
    """One shard job: create (or join) the store and write its rows; returns the error text, or None."""
    try:
        store = DescriptorStore.create(folder, names, dim=3, fingerprint="f", shards=8)
        rows = Shard(index, 8).rows(len(names))
        store.write(rows, np.full((len(rows), 3), index, np.float32))
    except Exception as error:  # noqa: BLE001 - reported to the test
        return repr(error)
    return None


def test_concurrent_creators_agree_on_one_store(tmp_path):
    # Processes, as shard jobs are (threads would also race inside CPython 3.11's ast module, which np.load uses
    # to parse .npy headers: an interpreter bug, not the store's).
    names = [f"{i}.jpg" for i in range(50)]
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("fork")) as pool:
        outcomes = list(pool.map(_create_and_write, [tmp_path / "s"] * 8, [names] * 8, range(8)))
    errors = [o for o in outcomes if o is not None]
    stores = [o for o in outcomes if o is None]
    assert not errors and len(stores) == 8
    store = DescriptorStore.open(tmp_path / "s")
    assert store.complete and not list(tmp_path.glob(".s.creating-*"))
    expected = np.concatenate([np.full(len(Shard(i, 8).rows(50)), i) for i in range(8)])
    np.testing.assert_array_equal(store.load()[:, 0], expected)  # no writer clobbered another's rows


def test_folder_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.txt").write_text("mine")
    with pytest.raises(BadInputError, match="not a descriptor store"):
        DescriptorStore.create(tmp_path / "s", ["a"], dim=2)


def test_rank_that_cannot_see_the_store_names_the_path(tmp_path):
    with pytest.raises(BadInputError, match=rf"{tmp_path / 'absent'}.*shared by every process"):
        _open_on_rank(tmp_path / "absent", DistInfo(1, 2), {})
