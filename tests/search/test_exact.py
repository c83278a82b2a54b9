"""Streamed exact search against faiss's in-RAM flat index, memory plans, and what a store must be to be searched."""

import faiss
import numpy as np
import pytest

from netvlad.errors import BadInputError
from netvlad.eval.recall import evaluate_descriptors
from netvlad.extract.store import DescriptorStore
from netvlad.search.exact import GIB, SearchPlan, exact_search, iter_chunks, plan_search


@pytest.fixture(autouse=True)
def _one_thread():
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _store(folder, n=700, dim=48, q=60, seed=0, dtype="float16"):
    """A float16 store of clustered unit vectors (places) and noisy queries near some of them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    db = centres[rng.integers(0, 40, n)] + 0.4 * rng.normal(size=(n, dim))
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    store = DescriptorStore.create(folder, [f"{i}.jpg" for i in range(n)], dim, dtype=dtype, fingerprint="m1")
    store.write(np.arange(n), db.astype(np.float32))
    queries = (db[rng.choice(n, q, replace=False)] + 0.1 * rng.normal(size=(q, dim))).astype(np.float32)
    return DescriptorStore.open(folder), queries


def _flat(db, queries, k):
    index = faiss.IndexFlatL2(db.shape[1])
    index.add(np.ascontiguousarray(db, dtype=np.float32))
    squared, found = index.search(queries, k)
    return np.sqrt(np.maximum(squared, 0)), found


@pytest.mark.parametrize("query_block,db_chunk", [(60, 700), (7, 64), (16, 1), (1, 333), (60, 100)])
def test_streamed_search_equals_in_ram_flat(tmp_path, query_block, db_chunk):
    store, queries = _store(tmp_path / "s")
    ref_d, ref_i = _flat(store.load(), queries, 10)
    dist, found = exact_search(store.descriptors, queries, 10, plan=SearchPlan(query_block, db_chunk, 0))
    np.testing.assert_array_equal(found, ref_i)
    np.testing.assert_allclose(dist, ref_d, atol=1e-5)


def test_valid_mask_searches_only_valid_rows_and_k_is_clamped(tmp_path):
    store, queries = _store(tmp_path / "s", n=300)
    valid = np.zeros(300, dtype=bool)
    valid[::3] = True
    ref_d, ref_i = _flat(store.load()[valid], queries, 5)
    dist, found = exact_search(store.descriptors, queries, 5, valid=valid, plan=SearchPlan(13, 50, 0))
    np.testing.assert_array_equal(found, np.flatnonzero(valid)[ref_i])
    np.testing.assert_allclose(dist, ref_d, atol=1e-5)
    dist, found = exact_search(store.descriptors, queries[:2], 1000, valid=valid & (np.arange(300) < 30))
    assert found.shape == (2, 10) and set(found[0]) == set(range(0, 30, 3)) and np.all(np.diff(dist) >= 0)


def test_an_in_memory_float32_database_is_searched_where_it_lies(tmp_path):
    """No float32 copy per chunk of a database already float32 in RAM (a per-frame search would pay it every frame),
    and the same distances and ids as the memory map read chunk by chunk, with or without a mask."""
    store, queries = _store(tmp_path / "s", dtype="float32")
    db = np.array(store.load(), dtype=np.float32)  # a copy in RAM, not a view of the mapping
    assert all(np.shares_memory(rows, db) for _, rows in iter_chunks(db, 64))
    assert not any(np.shares_memory(rows, store.descriptors) for _, rows in iter_chunks(store.descriptors, 64))
    for valid in (None, np.arange(len(db)) % 4 != 1):
        mapped = exact_search(store.descriptors, queries, 10, valid=valid, plan=SearchPlan(7, 64, 0))
        in_ram = exact_search(db, queries, 10, valid=valid, plan=SearchPlan(7, 64, 0))
        np.testing.assert_array_equal(in_ram[1], mapped[1])
        np.testing.assert_array_equal(in_ram[0], mapped[0])


def test_evaluate_descriptors_streams_a_float16_memmap_with_a_small_budget(tmp_path):
    store, queries = _store(tmp_path / "s")
    positives = [np.array([i]) for i in _flat(store.load(), queries, 1)[1][:, 0]]
    in_ram = evaluate_descriptors(store.load(), queries, positives, ns=(1, 5))
    streamed = evaluate_descriptors(store.descriptors, queries, positives, ns=(1, 5), max_memory=0.07 * GIB)
    assert isinstance(store.descriptors, np.memmap) and store.descriptors.dtype == np.float16
    np.testing.assert_array_equal(streamed.ranked, in_ram.ranked)
    assert streamed.recall == in_ram.recall == {1: 100.0, 5: 100.0}


def test_plan_fits_the_budget_and_a_too_small_budget_names_the_minimum():
    plan = plan_search(1000, 250_000, 32768, 20, 4 * GIB, itemsize=2)
    assert plan.bytes <= 4 * GIB and plan.query_block == 1000 and plan.db_chunk >= 256
    with pytest.raises(BadInputError, match=r"needs at least 0\.\d+ GiB") as error:
        plan_search(1000, 250_000, 32768, 20, 0.01 * GIB, itemsize=2)
    assert "--max-memory" in error.value.hint


def test_store_with_pending_rows_or_of_another_model_is_refused(tmp_path):
    store = DescriptorStore.create(tmp_path / "s", ["a", "b", "c"], 8, fingerprint="m1")
    store.write(np.array([0]), np.ones((1, 8), np.float32))
    with pytest.raises(BadInputError, match="2 of 3 descriptors are still pending"):
        store.require_complete()
    with pytest.raises(BadInputError, match="8-D descriptors but the model gives 16-D"):
        store.check_source("m1", 16)
    with pytest.raises(BadInputError, match="model m1, not by m2"):
        store.check_source("m2", 8)


def test_rerank_orders_candidates_by_exact_distance(tmp_path):
    from netvlad.search.exact import rerank

    store, queries = _store(tmp_path / "s", n=200, q=9)
    db = store.load()
    rng = np.random.default_rng(3)
    candidates = np.stack([rng.choice(200, 30, replace=False) for _ in queries])
    candidates[0, 5:] = -1  # fewer candidates than k: padded
    dist, found = rerank(store.descriptors, queries, candidates, 10, block=4)
    for q, cand in enumerate(candidates):
        cand = cand[cand >= 0]
        exact = np.linalg.norm(db[cand] - queries[q], axis=1)
        order = np.argsort(exact)[:10]
        np.testing.assert_array_equal(found[q, :len(order)], cand[order])
        np.testing.assert_allclose(dist[q, :len(order)], exact[order], atol=1e-5)
    assert (found[0, 5:] == -1).all() and np.isinf(dist[0, 5:]).all()


def test_ivfpq_with_rerank_matches_exact_recall_on_a_memmap(tmp_path):
    from netvlad.search.index import IndexConfig

    store, queries = _store(tmp_path / "s", n=1500, q=40)
    positives = [np.array([i]) for i in _flat(store.load(), queries, 1)[1][:, 0]]
    config = IndexConfig(kind="ivfpq", nlist=16, m=6, nbits=6, nprobe=16, rerank=50)
    approx = evaluate_descriptors(store.descriptors, queries, positives, ns=(1, 5), index_config=config)
    plain = evaluate_descriptors(store.descriptors, queries, positives, ns=(1, 5),
                                 index_config=IndexConfig(kind="ivfpq", nlist=16, m=6, nbits=6, nprobe=16, rerank=0))
    assert approx.recall[1] == 100.0 and plain.recall[1] <= approx.recall[1]
    exact = evaluate_descriptors(store.descriptors, queries, positives, ns=(1, 5))
    np.testing.assert_allclose(approx.distances[:, 0], exact.distances[:, 0], atol=1e-5)


def test_read_rows_from_a_memmap_in_batches_equals_fancy_indexing(tmp_path):
    from netvlad.search.exact import read_rows

    store, _ = _store(tmp_path / "s", n=300, dim=16)
    rows = np.sort(np.random.default_rng(1).choice(300, 40, replace=False))
    expected = store.load()[rows]
    for batch in (1, 3, 256):
        np.testing.assert_array_equal(read_rows(store.descriptors, rows, batch=batch), expected)
    np.testing.assert_array_equal(read_rows(store.load(), rows), expected)  # an in-RAM array: one gather
    later = rows[rows >= 100]
    np.testing.assert_array_equal(read_rows(store.descriptors[100:], later - 100), expected[rows >= 100])  # mapped


def test_read_rows_refuses_a_truncated_store(tmp_path):
    from netvlad.search.exact import read_rows

    store, _ = _store(tmp_path / "s", n=50, dim=16, q=5)
    mapped = store.descriptors
    path = tmp_path / "s" / "descriptors.npy"
    with open(path, "r+b") as file:  # cut the file under a live memory map: its last rows are gone
        file.truncate(path.stat().st_size - 10)
    with pytest.raises(BadInputError, match="ends inside row 49"):
        read_rows(mapped, np.array([3, 49]))
