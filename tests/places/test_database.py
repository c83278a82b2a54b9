"""PlaceDatabase: growth without rebuild, time exclusion, removal, add-order equality and atomic saves."""

import json
import logging

import numpy as np
import pytest

from netvlad import PlaceDatabase
from netvlad.errors import BadInputError
from netvlad.places import database as database_io
from netvlad.places.database import DatabaseConfig
from netvlad.search.index import IndexConfig

DIM = 32
IVFPQ = DatabaseConfig(IndexConfig(kind="ivfpq", nlist=8), min_train=200, retrain_factor=2.0)


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x, [f"f{i:04d}.jpg" for i in range(n)], rng.uniform(0, 100, (n, 2)), np.arange(n) * 0.5


def _brute(db_x, q, k, keep):
    d = np.linalg.norm(q[:, None] - db_x[None], axis=2)
    d[:, ~keep] = np.inf
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), order


def _filled(config, batches, x, names, pos, times):
    db = PlaceDatabase(DIM, config)
    for b in batches:
        db.add(x[b], [names[i] for i in b], pos[b], times[b])
    return db


def test_exact_search_matches_brute_force_with_time_exclusion_and_removal():
    x, names, pos, times = _data(300)
    db = PlaceDatabase(DIM)
    assert list(db.add(x, names, pos, times)) == list(range(300))
    q = x[[5, 100, 299]] + 0.01
    d, ids = db.search(q, 3)
    ref_d, ref_i = _brute(x, q, 3, np.ones(300, bool))
    np.testing.assert_array_equal(ids, ref_i)
    np.testing.assert_allclose(d, ref_d, rtol=1e-4, atol=1e-4)
    d, ids = db.search(q, 3, exclude_recent=100.0)  # newest is 149.5 s: entries after 49.5 s are left out
    np.testing.assert_array_equal(ids, _brute(x, q, 3, times <= 49.5)[1])
    d, ids = db.search(q, 3, exclude_after=10.0)
    np.testing.assert_array_equal(ids, _brute(x, q, 3, times <= 10.0)[1])
    assert db.remove([5, 5, 100, 10_000]) == 2 and len(db) == 298
    keep = np.ones(300, bool)
    keep[[5, 100]] = False
    np.testing.assert_array_equal(db.search(q, 3)[1], _brute(x, q, 3, keep)[1])
    d, ids = db.search(q, 2, exclude_after=-1.0)  # nothing qualifies
    assert (ids == -1).all() and np.isinf(d).all()
    with pytest.raises(BadInputError, match="exclude_recent"):
        db.search(q, 1, exclude_recent=-1)
    with pytest.raises(BadInputError, match="32-D"):
        db.add(x[:2, :8], names[:2])


def test_max_distance_and_frame_counts_when_times_are_missing():
    x, names, _, _ = _data(50)
    db = PlaceDatabase(DIM, DatabaseConfig(max_distance=1.0))
    db.add(x, names)
    np.testing.assert_array_equal(db.times, np.arange(50))  # frame counts
    d, ids = db.search(np.stack([x[3], x[3] + 10]), 1, exclude_recent=10)
    assert ids[0, 0] == 3 and d[0, 0] == pytest.approx(0, abs=1e-3)
    assert ids[1, 0] == -1 and np.isinf(d[1, 0])  # farther than max_distance


@pytest.mark.parametrize("config", [DatabaseConfig(), IVFPQ], ids=["flat", "ivfpq"])
def test_built_once_equals_built_by_adds_in_any_split(config):
    x, names, pos, times = _data()
    once = _filled(config, [np.arange(400)], x, names, pos, times)
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.choice(np.arange(1, 400), 7, replace=False))
    adds = _filled(config, np.split(np.arange(400), cuts), x, names, pos, times)
    singles = _filled(config, [np.array([i]) for i in range(400)], x, names, pos, times)
    q = _data(20, seed=5)[0]
    ref = once.search(q, 5, exclude_recent=30.0)
    for other in (adds, singles):
        assert other.names == once.names
        d, ids = other.search(q, 5, exclude_recent=30.0)
        np.testing.assert_array_equal(ids, ref[1])
        np.testing.assert_allclose(d, ref[0], rtol=1e-5)


def test_reserve_makes_room_without_changing_contents_or_results():
    x, names, pos, times = _data(100)
    plain = _filled(DatabaseConfig(), [np.arange(60), np.arange(60, 100)], x, names, pos, times)
    reserved = PlaceDatabase(DIM)
    reserved.reserve(100)
    assert len(reserved) == 0 and reserved.descriptors.shape == (0, DIM)
    reserved.add(x[:60], names[:60], pos[:60], times[:60])
    rows = reserved.descriptors
    reserved.add(x[60:], names[60:], pos[60:], times[60:])
    assert np.shares_memory(rows, reserved.descriptors)  # the second add copied nothing
    np.testing.assert_array_equal(reserved.descriptors, plain.descriptors)
    q = x[[3, 70]] + 0.01
    np.testing.assert_array_equal(reserved.search(q, 4)[1], plain.search(q, 4)[1])


def test_batches_added_in_another_order_give_the_same_matches():
    x, names, pos, _ = _data()
    parts = np.split(np.arange(400), [50, 170, 300])
    forward = _filled(DatabaseConfig(), parts, x, names, pos, np.zeros(400))
    backward = _filled(DatabaseConfig(), parts[::-1], x, names, pos, np.zeros(400))
    q = _data(20, seed=5)[0]
    (d1, i1), (d2, i2) = forward.search(q, 5), backward.search(q, 5)
    assert [[forward.names[i] for i in r] for r in i1] == [[backward.names[i] for i in r] for r in i2]
    np.testing.assert_allclose(d1, d2, rtol=1e-5)


def test_ivfpq_adds_to_its_lists_and_retrains_past_the_factor(caplog):
    x, names, pos, times = _data(1000)
    db = PlaceDatabase(DIM, IVFPQ)
    db.add(x[:150], names[:150], pos[:150], times[:150])
    db.search(x[:1], 1)
    assert db.index is None  # below min_train: exact
    db.add(x[150:300], names[150:300], pos[150:300], times[150:300])
    db.search(x[:1], 1)
    index = db.index
    assert db.trained_on == 300 and index.ntotal == 300
    db.add(x[300:600], names[300:600], pos[300:600], times[300:600])
    db.search(x[:1], 1)
    assert db.index is index and index.ntotal == 600  # added to the lists, not rebuilt
    with caplog.at_level(logging.INFO, logger="netvlad.places.database"):
        db.add(x[600:], names[600:], pos[600:], times[600:])
        d, ids = db.search(x[[10, 700]], 1, exclude_recent=1.0)
    assert "retraining" in caplog.text and db.trained_on == 1000 and db.index is not index
    assert list(ids[:, 0]) == [10, 700] and d.max() < 1e-3  # exact re-ranking finds the frames themselves
    db.remove([10])
    assert db.index.ntotal == 999 and db.search(x[[10]], 1)[1][0, 0] != 10
    assert len(db) == 999 and db.count == 1000
    d, ids = db.search(x[[11, 400]], 20, exclude_after=300.0)  # removed entries and a time cut-off together
    found = ids[ids >= 0]
    assert 10 not in found and (db.times[found] <= 300.0).all() and ids[0, 0] == 11


@pytest.mark.parametrize("config", [DatabaseConfig(), IVFPQ], ids=["flat", "ivfpq"])
def test_save_load_round_trip(tmp_path, config):
    x, names, pos, times = _data()
    db = _filled(config, [np.arange(400)], x, names, pos, times)
    db.remove([7])
    db.save(tmp_path / "db")
    back = PlaceDatabase.load(tmp_path / "db")
    q = _data(10, seed=3)[0]
    for a, b in zip(db.search(q, 4, exclude_recent=5), back.search(q, 4, exclude_recent=5), strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.names == names and len(back) == 399 and back.config == config
    np.testing.assert_array_equal(back.positions, pos)
    back.add(x[:3], ["a", "b", "c"])  # a loaded database keeps growing
    assert back.count == 403


def test_a_crash_mid_save_leaves_the_previous_state_loadable(tmp_path, monkeypatch):
    x, names, pos, times = _data(100)
    db = _filled(DatabaseConfig(), [np.arange(60)], x, names, pos, times)
    db.save(tmp_path / "db")
    db.add(x[60:], names[60:], pos[60:], times[60:])
    real_save = np.save
    written = []

    def crash(path, array):
        written.append(path)
        if len(written) == 3:  # dies after two of the arrays of the new state are on disk
            raise OSError("disk died")
        real_save(path, array)

    monkeypatch.setattr(database_io.np, "save", crash)
    with pytest.raises(OSError, match="disk died"):
        db.save(tmp_path / "db")
    monkeypatch.undo()
    back = PlaceDatabase.load(tmp_path / "db")
    assert back.count == 60 and back.names == names[:60]
    np.testing.assert_array_equal(back.descriptors, x[:60])
    db.save(tmp_path / "db")  # the next save succeeds and clears the half-written state
    assert PlaceDatabase.load(tmp_path / "db").count == 100
    assert len(list((tmp_path / "db").glob("state-*"))) == 1


def test_other_versions_and_damaged_saves_are_refused(tmp_path):
    x, names, pos, times = _data(30)
    folder = _filled(DatabaseConfig(), [np.arange(30)], x, names, pos, times).save(tmp_path / "db")
    state = folder / (folder / "CURRENT").read_text().strip()
    meta = json.loads((state / "database.json").read_text())
    (state / "database.json").write_text(json.dumps(meta | {"version": 99}))
    with pytest.raises(BadInputError, match="version 99"):
        PlaceDatabase.load(folder)
    (state / "database.json").write_text(json.dumps(meta | {"count": 31}))
    with pytest.raises(BadInputError, match="damaged"):
        PlaceDatabase.load(folder)
    with pytest.raises(FileNotFoundError, match="not a place database"):
        PlaceDatabase.load(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(BadInputError, match="not a place database"):
        PlaceDatabase(DIM).save(tmp_path / "other")
