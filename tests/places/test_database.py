"""PlaceDatabase: growth without rebuild, time exclusion, removal, add-order equality and atomic saves."""

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from netvlad import PlaceDatabase
from netvlad.errors import BadInputError
from netvlad.files import file_lock
from netvlad.places import database as database_io
from netvlad.places.database_config import DatabaseConfig
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


def test_ivfpq_is_filled_block_by_block_into_the_same_lists(monkeypatch):
    """The trained index is filled a block of rows at a time (no copy of every row): the lists, their codes and ids
    are those of one add of all rows, with removed entries left out."""
    import faiss
    from faiss.contrib.inspect_tools import get_invlist

    x, names, pos, times = _data(700)
    dbs = []
    for block in (10**6, 64):
        monkeypatch.setattr(database_io, "ADD_BLOCK", block)
        db = PlaceDatabase(DIM, IVFPQ)
        db.add(x, names, pos, times)
        db.remove([3, 450])
        db.search(x[:1], 1)
        dbs.append(db)
    one, blocked = ([get_invlist(faiss.extract_index_ivf(db.index).invlists, lst) for lst in range(IVFPQ.index.nlist)]
                     for db in dbs)
    assert dbs[1].index.ntotal == 698 and dbs[1].trained_on == 698
    for (ids, codes), (blocked_ids, blocked_codes) in zip(one, blocked, strict=True):
        np.testing.assert_array_equal(ids, blocked_ids)
        np.testing.assert_array_equal(codes, blocked_codes)
    ids = np.concatenate([ids for ids, _ in blocked])
    assert sorted(ids) == sorted(set(range(700)) - {3, 450})


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


def _state(folder):
    return folder / (folder / "CURRENT").read_text().split()[0]


def _rewrite_meta(folder, meta):
    """Replace database.json with ``meta`` and give CURRENT its checksum (a consistent but edited save)."""
    state = _state(folder)
    (state / "database.json").write_text(json.dumps(meta))
    crc = zlib.crc32((state / "database.json").read_bytes())
    (folder / "CURRENT").write_text(f"{state.name} {crc:08x}\n")


def test_other_versions_and_damaged_saves_are_refused(tmp_path):
    x, names, pos, times = _data(30)
    folder = _filled(DatabaseConfig(), [np.arange(30)], x, names, pos, times).save(tmp_path / "db")
    meta = json.loads((_state(folder) / "database.json").read_text())
    _rewrite_meta(folder, meta | {"version": 99})
    with pytest.raises(BadInputError, match="version 99"):
        PlaceDatabase.load(folder)
    _rewrite_meta(folder, meta | {"count": 31})
    with pytest.raises(BadInputError, match="damaged"):
        PlaceDatabase.load(folder)
    with pytest.raises(FileNotFoundError, match="not a place database"):
        PlaceDatabase.load(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(BadInputError, match="not a place database"):
        PlaceDatabase(DIM).save(tmp_path / "other")


def _one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


def _flip_a_byte(path):
    """``path`` with one bit of the byte two thirds in flipped -> ``path``."""
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x10
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("name", ["descriptors.npy", "alive.npy", "times.npy", "positions.npy", "names.txt",
                                  "index.faiss", "database.json"])
def test_a_flipped_byte_in_any_saved_file_is_refused_naming_it(tmp_path, name):
    x, names, pos, times = _data(300)
    db = _filled(IVFPQ, [np.arange(300)], x, names, pos, times)
    db.remove([3])
    folder = db.save(tmp_path / "db")
    path = _flip_a_byte(_state(folder) / name)
    with pytest.raises(BadInputError) as error:
        PlaceDatabase.load(folder)
    assert str(path) in _one_line(error) and "checksum" in str(error.value)


def test_swapped_arrays_are_refused_by_checksum_and_by_dtype_and_shape(tmp_path):
    x, names, pos, times = _data(30)
    folder = _filled(DatabaseConfig(), [np.arange(30)], x, names, pos, times).save(tmp_path / "db")
    state = _state(folder)
    meta = json.loads((state / "database.json").read_text())
    a, b = state / "times.npy", state / "alive.npy"
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    with pytest.raises(BadInputError, match="alive.npy: does not match its checksum"):
        PlaceDatabase.load(folder)
    files = meta["files"]  # the records swapped too: each file matches a checksum, but not its dtype
    _rewrite_meta(folder, meta | {"files": files | {"times.npy": files["alive.npy"], "alive.npy": files["times.npy"]}})
    with pytest.raises(BadInputError) as error:
        PlaceDatabase.load(folder)
    assert "alive.npy: holds (30,) float64, not (30,) bool" in _one_line(error)


@pytest.mark.parametrize("edit, words", [
    (lambda m: {k: v for k, v in m.items() if k != "trained_on"}, "missing trained_on"),
    (lambda m: m | {"colour": "red"}, "unexpected colour"),
    (lambda m: m | {"config": m["config"] | {"nprobe": 3}}, "config keys disagree .*unexpected nprobe"),
    (lambda m: m | {"config": m["config"] | {"index": {"kind": "flat"}}}, "config.index keys disagree .*missing"),
    (lambda m: m | {"config": m["config"] | {"retrain_factor": 0.5}}, "config is not valid"),
    (lambda m: m | {"dim": "32"}, "impossible value"),
    (lambda m: m | {"files": {}}, "files keys disagree"),
])
def test_a_database_json_with_a_missing_extra_or_wrong_key_is_refused_in_one_line(tmp_path, edit, words):
    folder = _filled(DatabaseConfig(), [np.arange(10)], *_data(10)).save(tmp_path / "db")
    _rewrite_meta(folder, edit(json.loads((_state(folder) / "database.json").read_text())))
    with pytest.raises(BadInputError, match=words) as error:
        PlaceDatabase.load(folder)
    assert "database.json" in _one_line(error)


@pytest.mark.parametrize("change, words", [
    (lambda x, n, p, t: (np.where(np.arange(4)[:, None] == 2, np.nan, x), n, p, t), "descriptor 2 .* not finite"),
    (lambda x, n, p, t: (x, n, p, np.array([0, 1, np.inf, 3.0])), "times must be finite"),
    (lambda x, n, p, t: (x, n, p, np.array([0, 1, np.nan, 3.0])), "times must be finite"),
    (lambda x, n, p, t: (x, n, np.array([[0, 0], [np.inf, 0], [0, 0], [0, 0]]), t), "positions finite"),
    (lambda x, n, p, t: (x, ["a", "b\nc", "d", "e"], p, t), "line break"),
    (lambda x, n, p, t: (x, ["a", "b\rc", "d", "e"], p, t), "line break"),
    (lambda x, n, p, t: (x, ["a", "b\u2028c", "d", "e"], p, t), "line break"),
    (lambda x, n, p, t: (x, ["a", "b\udc80", "d", "e"], p, t), "not valid Unicode"),
])
def test_add_refuses_what_a_saved_database_could_not_hold_and_changes_nothing(tmp_path, change, words):
    x, names, pos, times = _data(304)
    db = _filled(IVFPQ, [np.arange(300)], x, names, pos, times)
    db.search(x[:1], 1)  # trained: IVF-PQ lists that a NaN row would poison
    with pytest.raises(BadInputError, match=words):
        db.add(*change(x[300:], names[300:], pos[300:], times[300:]))
    assert db.count == 300 and len(db.names) == 300 and db.index.ntotal == 300
    np.testing.assert_array_equal(db.search(x[[5]], 1)[1], [[5]])  # searches and saves still work
    assert PlaceDatabase.load(db.save(tmp_path / "db")).count == 300


def test_ids_times_and_k_are_validated():
    x, names, pos, times = _data(20)
    db = _filled(DatabaseConfig(), [np.arange(20)], x, names, pos, times)
    for ids in ([1.7], [1.0], np.array([True]), ["1"]):
        with pytest.raises(BadInputError, match="entry ids must be integers"):
            db.remove(ids)
    assert len(db) == 20 and db.remove([]) == 0 and db.remove(np.array([1], np.uint8)) == 1
    for kwargs, words in (({"exclude_after": float("nan")}, "exclude_after must be a number"),
                          ({"exclude_after": "soon"}, "exclude_after must be a number"),
                          ({"exclude_recent": float("nan")}, "exclude_recent must be a number ≥ 0"),
                          ({"exclude_recent": -1}, "exclude_recent must be a number ≥ 0"),
                          ({"k": 0}, r"k must be an integer in \[1, "), ({"k": 10**12}, "k must be an integer"),
                          ({"k": 2.5}, "k must be an integer")):
        with pytest.raises(BadInputError, match=words):
            db.search(x[:1], **kwargs)
    with pytest.raises(BadInputError, match="query descriptors must be finite"):
        db.search(np.full((1, DIM), np.nan))
    assert db.search(x[:1], exclude_after=np.inf)[1][0, 0] == 0  # inf: nothing left out


def test_a_second_writer_waits_for_the_lock_then_is_refused(tmp_path):
    folder = _filled(DatabaseConfig(), [np.arange(10)], *_data(10)).save(tmp_path / "db")
    with file_lock(folder / "LOCK"):  # another writer in the middle of its save
        with pytest.raises(BadInputError, match="another process has been saving") as error:
            PlaceDatabase(DIM).save(folder, timeout=0.05)
        assert PlaceDatabase.load(folder).count == 10  # readers need no lock
    assert str(folder) in _one_line(error)


def test_a_copy_refuses_to_save_over_what_another_writer_saved_since(tmp_path):
    x, names, pos, times = _data(30)
    folder = _filled(DatabaseConfig(), [np.arange(10)], x, names, pos, times).save(tmp_path / "db")
    first, second = PlaceDatabase.load(folder), PlaceDatabase.load(folder)
    first.add(x[10:20], names[10:20])
    first.save(folder)
    first.add(x[20:], names[20:])
    first.save(folder)  # its own earlier save: fine
    second.add(x[10:12], ["p", "q"])
    with pytest.raises(BadInputError, match="another writer saved this place database"):
        second.save(folder)
    assert PlaceDatabase.load(folder).names == names
    second.save(tmp_path / "elsewhere")  # another folder is not affected


def test_a_crash_during_the_first_save_leaves_a_folder_the_next_save_uses(tmp_path):
    folder = tmp_path / "db"
    (folder / "state-0123456789ab").mkdir(parents=True)  # half-written, no CURRENT
    (folder / "state-0123456789ab" / "descriptors.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(FileNotFoundError, match="no CURRENT"):
        PlaceDatabase.load(folder)
    _filled(DatabaseConfig(), [np.arange(10)], *_data(10)).save(folder)
    assert PlaceDatabase.load(folder).count == 10 and len(list(folder.glob("state-*"))) == 1


def _same(db, other):
    return (db.names == other.names and np.array_equal(db.descriptors, other.descriptors)
            and np.array_equal(db.alive, other.alive) and np.array_equal(db.times, other.times)
            and np.array_equal(db.positions, other.positions, equal_nan=True))


@pytest.fixture
def memory_folder(tmp_path):
    """A folder in memory (tmpfs) where there is one: a killed process, unlike a power cut, loses nothing synced
    or not, and syncs there cost nothing, so a loop of many saves stays fast."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="netvlad-test-", dir=shm))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _fork(work) -> int:
    """Run ``work()`` in a forked child process (exit status 0 when it returns, 1 when it raises) -> its pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            work()
            status = 0
        finally:
            os._exit(status)
    return pid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_two_processes_saving_to_one_folder_never_interleave(memory_folder):
    folder, go = memory_folder / "db", memory_folder / "go"

    def writer(tag):
        while not go.exists():
            time.sleep(0.0005)
        for i in range(40):
            db = PlaceDatabase(8)
            db.add(np.full((3, 8), 100 * tag + i, np.float32), [f"w{tag}-{i}-{j}" for j in range(3)])
            db.save(folder)

    writers = [_fork(lambda tag=tag: writer(tag)) for tag in (1, 2)]
    go.touch()  # both writers start saving at once
    seen, running = set(), set(writers)
    while running:  # every state a reader sees meanwhile is whole
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert status == 0, "a writer failed"
                running.discard(pid)
        try:
            db = PlaceDatabase.load(folder)
        except FileNotFoundError:
            continue
        tag, i = map(int, db.names[0][1:].split("-")[:2])
        assert db.names == [f"w{tag}-{i}-{j}" for j in range(3)] and (db.descriptors == 100 * tag + i).all()
        seen.add((tag, i))
    last = PlaceDatabase.load(folder)
    assert last.names[0].split("-")[1] == "39" and (last.descriptors == last.descriptors[0, 0]).all()
    assert len(list(folder.glob("state-*"))) == 1 and {tag for tag, _ in seen} == {1, 2}, seen


KILLER = """
import json, os, signal, sys, time
from pathlib import Path
import numpy as np
from netvlad.places.database import PlaceDatabase

root, rng = Path(sys.argv[1]), np.random.default_rng(0)
x = rng.standard_normal((12, 8)).astype(np.float32)

def version(rows, tag):
    db = PlaceDatabase(8)
    db.add(x[rows], [f"{tag}{i}" for i in rows], times=rows * 0.5)
    db.remove([int(rows[1])])
    return db

def same(db, other):
    return (db.names == other.names and np.array_equal(db.descriptors, other.descriptors)
            and np.array_equal(db.alive, other.alive) and np.array_equal(db.times, other.times)
            and np.array_equal(db.positions, other.positions, equal_nan=True))

def killed_save(db, folder, delay):
    # fork a writer saving a fresh copy of db; SIGKILL it delay seconds after it starts saving (None: never)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            db._saved_as.clear()
            os.write(write, b"s")
            db.save(folder)
        finally:
            os._exit(0)
    os.read(read, 1)
    start = time.perf_counter()
    if delay is not None:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read), os.close(write)
    return time.perf_counter() - start

versions = {"a": version(np.arange(5), "a"), "b": version(np.arange(3, 12), "b")}
folder = root / "db"
span = float(np.median([killed_save(versions["a"], folder, None) for _ in range(3)]))  # a whole save
result = {"old": 0, "new": 0, "half": 0, "neither": [], "first": 0, "first_bad": []}
for point in range(100):
    old = "a" if PlaceDatabase.load(folder).names[0] == "a0" else "b"
    new = "b" if old == "a" else "a"
    killed_save(versions[new], folder, rng.uniform(0, span))
    result["half"] += len(list(folder.glob("state-*"))) > 1
    back = PlaceDatabase.load(folder)
    if same(back, versions[new]) or same(back, versions[old]):
        result["new" if same(back, versions[new]) else "old"] += 1
        span *= 0.95 if same(back, versions[new]) else 1.05  # kill points spread around the commit, whatever the load
    else:
        result["neither"].append(point)
for point in range(20):  # the first save into a folder
    first = root / f"first{point}"
    killed_save(versions["a"], first, rng.uniform(0, span))
    committed = (first / "CURRENT").exists()
    result["first"] += committed
    versions["b"]._saved_as.clear()
    if committed and not same(PlaceDatabase.load(first), versions["a"]) or not same(
            PlaceDatabase.load(versions["b"].save(first)), versions["b"]):  # a later save always works
        result["first_bad"].append(point)
print(json.dumps(result))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_writer_killed_at_100_random_points_leaves_the_old_or_the_new_state(memory_folder):
    """A process (without torch, so that forking it is fast) kills a forked writer at 100 random points of its
    save, and 20 of a first save, and loads the folder after each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    run = subprocess.run([sys.executable, "-c", KILLER, str(memory_folder)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["neither"] == [] and result["first_bad"] == [], result
    assert result["old"] >= 10 and result["new"] >= 10, result  # kills before and after the commit
    assert result["half"] >= 10, result  # kills in the middle of writing a state
    assert 0 < result["first"] < 20, result


def _rescored_and_shortlists(rerank: int, nprobe: int, k: int = 5):
    """(IVF-PQ + exact re-scoring ids, exact ids, the IVF-PQ shortlists of ``rerank`` ids) of 60 noisy revisits of
    3,000 clustered 64-D entries."""
    import faiss

    rng = np.random.default_rng(4)
    centres = rng.standard_normal((40, 64)).astype(np.float32)
    x = centres[rng.integers(0, 40, 3000)] + 0.6 * rng.standard_normal((3000, 64)).astype(np.float32)
    q = x[rng.choice(3000, 60, replace=False)] + 0.3 * rng.standard_normal((60, 64)).astype(np.float32)
    config = IndexConfig(kind="ivfpq", nlist=32, m=8, nbits=4, nprobe=nprobe, rerank=rerank)
    approx = PlaceDatabase(64, DatabaseConfig(config, min_train=1000))
    exact = PlaceDatabase(64)
    for db in (approx, exact):
        db.add(x, [str(i) for i in range(len(x))])
    dist, ids = approx.search(q, k)
    exact_dist, exact_ids = exact.search(q, k)
    _, shortlists = approx.index.search(q, rerank, params=faiss.SearchParametersIVF(nprobe=nprobe))
    return (dist, ids), (exact_dist, exact_ids), shortlists


def test_ivfpq_rescoring_is_exact_search_whenever_its_shortlist_holds_the_exact_top_k():
    (dist, ids), (exact_dist, exact_ids), shortlists = _rescored_and_shortlists(rerank=60, nprobe=8)
    held = np.array([set(e) <= set(s) for e, s in zip(exact_ids, shortlists, strict=True)])
    assert held.sum() >= 40  # most shortlists hold it: the check below is not vacuous
    np.testing.assert_array_equal(ids[held], exact_ids[held])
    np.testing.assert_allclose(dist[held], exact_dist[held], atol=1e-5)


def test_a_too_short_shortlist_misses_exact_matches_and_only_then():
    (_, ids), (_, exact_ids), shortlists = _rescored_and_shortlists(rerank=5, nprobe=1)
    differ = (ids != exact_ids).any(1)
    held = np.array([set(e) <= set(s) for e, s in zip(exact_ids, shortlists, strict=True)])
    assert differ.any()  # re-scoring cannot bring back what the shortlist lacks
    assert not (differ & held).any()  # and it is the only way to differ


def _local(rng, n, cells=5, channels=6, grid=(4, 7)):
    """``n`` frames' local features (every third without), cells up to ``cells`` on a ``grid``."""
    from netvlad.extract.local_features import LocalFeatures

    out = []
    for i in range(n):
        k = 0 if i % 3 == 1 else int(rng.integers(1, cells + 1))
        out.append(None if i % 3 == 2 else LocalFeatures(
            rng.integers(-127, 128, (k, channels)).astype(np.int8),
            np.stack([rng.integers(0, grid[1], k), rng.integers(0, grid[0], k)], 1).astype(np.uint8), grid))
    return out


def test_local_features_are_saved_and_loaded_with_the_entries(tmp_path):
    x, names, pos, times = _data(30)
    local = _local(np.random.default_rng(1), 30)
    db = PlaceDatabase(DIM)
    db.add(x[:20], names[:20], pos[:20], times[:20], local[:20])
    db.add(x[20:], names[20:], pos[20:], times[20:], local[20:])
    db.remove([4])
    back = PlaceDatabase.load(db.save(tmp_path / "db"))
    assert back.local[4] is None and local[4] is not None  # a removed entry's features are dropped
    for i, (a, b) in enumerate(zip(local, back.local, strict=True)):
        if a is None or i == 4:
            assert b is None
        else:
            assert b.grid == a.grid and b.descriptors.dtype == np.int8 and b.xy.dtype == np.uint8
            assert np.array_equal(b.descriptors, a.descriptors) and np.array_equal(b.xy, a.xy)
    assert back.local[1] is not None and len(back.local[1]) == 0  # a frame with no cell is not a frame without
    plain = PlaceDatabase.load(PlaceDatabase(DIM).save(tmp_path / "plain"))
    assert plain.local == [] and not list(_state(tmp_path / "plain").glob("local_*"))
    db = PlaceDatabase(DIM)
    db.add(x[:3], names[:3], pos[:3], times[:3])
    with pytest.raises(BadInputError, match="need 3 local features .or None each., got 2"):
        db.add(x[:3], names[:3], pos[:3], times[:3], local[:2])


def test_a_database_saved_before_local_features_still_loads(tmp_path):
    x, names, pos, times = _data(30)
    folder = _filled(DatabaseConfig(), [np.arange(30)], x, names, pos, times).save(tmp_path / "db")
    meta = json.loads((_state(folder) / "database.json").read_text())
    _rewrite_meta(folder, {k: v for k, v in meta.items() if k != "local"} | {"version": 2})
    assert PlaceDatabase.load(folder).local == [None] * 30


@pytest.mark.parametrize("name", database_io.LOCAL_FILES)
def test_a_flipped_byte_in_the_local_features_is_refused_naming_the_file(tmp_path, name):
    x, names, pos, times = _data(30)
    db = PlaceDatabase(DIM)
    db.add(x, names, pos, times, _local(np.random.default_rng(2), 30))
    folder = db.save(tmp_path / "db")
    path = _flip_a_byte(_state(folder) / name)
    with pytest.raises(BadInputError) as error:
        PlaceDatabase.load(folder)
    message = _one_line(error)
    assert str(path) in message and "checksum" in message and "rebuild the database" in message
