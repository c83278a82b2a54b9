import numpy as np
import pytest

from netvlad.search.index import IndexConfig, build_index, read_index, search_index, write_index


def _data(n=600, dim=32, q=40, seed=0):
    rng = np.random.default_rng(seed)
    db = rng.normal(size=(n, dim)).astype(np.float32)
    queries = db[rng.choice(n, q, replace=False)] + 0.05 * rng.normal(size=(q, dim)).astype(np.float32)
    return db, queries


def _brute_force(db, queries, k):
    d = np.sqrt(((queries[:, None, :].astype(np.float64) - db[None]) ** 2).sum(-1))
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), order


def test_flat_index_is_exact():
    db, queries = _data()
    dist, idx = search_index(build_index(db), queries, 7)
    ref_d, ref_i = _brute_force(db, queries, 7)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-4, atol=1e-4)


def test_ivfpq_finds_near_duplicates_and_exposes_params():
    db, queries = _data(n=2000, dim=32)
    config = IndexConfig(kind="ivfpq", nlist=16, m=8, nbits=6, nprobe=4)
    index = build_index(db, config)
    assert (index.nlist, index.nprobe, index.pq.M, index.pq.nbits) == (16, 4, 8, 6)
    _, idx = search_index(index, queries, 5)
    _, exact = _brute_force(db, queries, 1)
    assert (idx[:, 0] == exact[:, 0]).mean() >= 0.9


def test_ivfpq_checks_m_divides_dim():
    db, _ = _data(n=300, dim=30)
    with pytest.raises(ValueError, match="divide"):
        build_index(db, IndexConfig(kind="ivfpq", m=8))


def test_k_is_clamped_and_dims_checked():
    db, queries = _data(n=5, q=3)
    dist, idx = search_index(build_index(db), queries, 50)
    assert idx.shape == (len(queries), 5) and (idx >= 0).all()
    with pytest.raises(ValueError, match="32-D"):
        search_index(build_index(db), queries[:, :16], 3)


def test_unknown_kind_lists_known():
    with pytest.raises(ValueError, match="flat, hnsw, ivfpq, opq-ivfpq"):
        IndexConfig(kind="lsh")


def test_index_round_trip(tmp_path):
    db, queries = _data(n=400)
    for config in (IndexConfig(), IndexConfig(kind="ivfpq", nlist=4, m=8, nbits=6)):
        index = build_index(db, config)
        write_index(index, tmp_path / "i.faiss")
        again = read_index(tmp_path / "i.faiss")
        for a, b in zip(search_index(index, queries, 4), search_index(again, queries, 4), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["ivfpq", "opq-ivfpq", "hnsw"])
def test_ann_built_from_a_float16_memmap_round_trips(tmp_path, kind):
    import faiss

    from netvlad.search.index import check_index, configure, index_settings

    faiss.omp_set_num_threads(1)
    db, queries = _data(n=1200, dim=32)
    np.save(tmp_path / "db.npy", db.astype(np.float16))
    mapped = np.load(tmp_path / "db.npy", mmap_mode="r")
    valid = np.ones(len(db), dtype=bool)
    valid[::10] = False
    config = IndexConfig(kind=kind, nlist=8, m=8, nbits=6, nprobe=8, ef_search=64, train_size=600)
    index = build_index(mapped, config, valid=valid, max_memory=0.1 * 1024**3)
    settings = index_settings(index)
    assert settings["count"] == valid.sum() and settings["dim"] == 32 and settings["kind"] == kind
    write_index(index, tmp_path / "i.faiss")
    again = configure(read_index(tmp_path / "i.faiss"), config)
    check_index(again, settings, tmp_path / "i.faiss")
    for a, b in zip(search_index(index, queries, 4), search_index(again, queries, 4), strict=True):
        np.testing.assert_array_equal(a, b)
    _, exact = _brute_force(db[valid], queries, 1)
    assert (search_index(again, queries, 10)[1] == exact).any(1).mean() >= 0.9
    with pytest.raises(ValueError, match="other settings: dim 32 \\(expected 64\\)"):
        check_index(again, {**settings, "dim": 64}, tmp_path / "i.faiss")


def test_opq_refuses_huge_dims_and_nprobe_is_set_from_config():
    from netvlad.search.index import configure

    with pytest.raises(ValueError, match="whiten to fewer dims"):
        build_index(np.zeros((300, 8192), np.float16), IndexConfig(kind="opq-ivfpq"))
    db, _ = _data(n=1000, dim=32)
    index = build_index(db, IndexConfig(kind="ivfpq", nlist=8, m=8, nbits=6, nprobe=2))
    assert configure(index, IndexConfig(kind="ivfpq", nprobe=5)).nprobe == 5


@pytest.mark.parametrize("kind", ["ivfpq", "opq-ivfpq"])
def test_default_pq_is_4_bit_fast_scan_of_dim_over_16_bytes(tmp_path, kind):
    import faiss

    from netvlad.search.index import check_index, index_kind, index_settings, search_rows

    faiss.omp_set_num_threads(1)
    db, queries = _data(n=3000, dim=64, q=30)
    config = IndexConfig(kind=kind, train_size=2000)
    assert (config.subquantizers(64), config.code_bytes(64)) == (8, 4)  # dim/8 codes of 4 bits = dim/16 bytes
    index = build_index(db, config)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    assert type(ivf).__name__ == "IndexIVFPQFastScan" and (ivf.pq.M, ivf.pq.nbits, ivf.by_residual) == (8, 4, False)
    assert index_kind(index) == kind and index_settings(index)["nbits"] == 4
    write_index(index, tmp_path / "i.faiss")
    again = read_index(tmp_path / "i.faiss")
    check_index(again, index_settings(index), tmp_path / "i.faiss")
    np.testing.assert_array_equal(search_index(index, queries, 5)[1], search_index(again, queries, 5)[1])
    # re-ranking the top 100 from the float descriptors: exact distances, ascending, and the true nearest first
    _, ref_i = _brute_force(db, queries, 1)
    dist, found = search_rows(again, queries, 5, config, db)
    np.testing.assert_array_equal(found[:, 0], ref_i[:, 0])
    np.testing.assert_allclose(dist, np.linalg.norm(db[found] - queries[:, None], axis=2), atol=1e-5)
    assert (np.diff(dist, axis=1) >= 0).all()


def test_classic_ivfpq_for_other_code_widths_and_its_default_m():
    config = IndexConfig(kind="ivfpq", nbits=8)
    assert (config.subquantizers(1024), config.code_bytes(1024)) == (64, 64)
    index = build_index(_data(n=20_000, dim=32)[0], IndexConfig(kind="ivfpq", nbits=8, nlist=4, train_size=10_000))
    assert type(index).__name__ == "IndexIVFPQ" and (index.pq.M, index.pq.nbits, index.by_residual) == (2, 8, True)


def test_default_probes_cover_small_databases_whole_and_stay_flat_at_scale():
    from netvlad.search.index import configure

    config = IndexConfig(kind="ivfpq")
    assert config.probes(36, 1280) == 36  # the generated city: every list
    assert config.probes(100, 10_000) == 100
    assert config.probes(316, 100_000) == 52  # ⌈316 × 16,384 / 10⁵⌉
    assert config.probes(1000, 1_000_000) == 17
    assert config.probes(3162, 10_000_000) == 16  # at least 16
    assert IndexConfig(kind="ivfpq", nprobe=8).probes(1000, 1_000_000) == 8
    index = build_index(_data(n=2000, dim=32)[0], IndexConfig(kind="ivfpq", nlist=40, nbits=8, m=8))
    assert index.nprobe == 40  # 2,000 vectors: all 40 lists
    assert configure(index, IndexConfig(kind="ivfpq", nprobe=3)).nprobe == 3
