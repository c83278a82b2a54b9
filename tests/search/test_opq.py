"""OPQ's rotation, learnt with torch's SVD, against PQ without a rotation and against faiss's own OPQ training."""

import faiss
import numpy as np

from netvlad.search.opq import learn_rotation, train_opq


def _correlated(n=3000, dim=32, seed=0):
    """Rows whose variance sits in a few mixed directions: PQ's axis-aligned split is a poor fit without a rotation."""
    rng = np.random.default_rng(seed)
    mixing = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    scales = np.geomspace(4.0, 0.05, dim)
    return ((rng.normal(size=(n, dim)) * scales) @ mixing.T).astype(np.float32)


def _pq_error(x, m, nbits, rotation=None):
    y = x if rotation is None else x @ rotation.T
    pq = faiss.ProductQuantizer(x.shape[1], m, nbits)
    pq.train(np.ascontiguousarray(y))
    return float(((pq.decode(pq.compute_codes(np.ascontiguousarray(y))) - y) ** 2).sum(1).mean())


def test_rotation_is_orthogonal_and_beats_plain_pq_and_matches_faiss():
    faiss.omp_set_num_threads(1)
    x = _correlated()
    rotation = learn_rotation(x, m=8, nbits=4, iterations=8)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(32), atol=1e-4)
    ours, plain = _pq_error(x, 8, 4, rotation), _pq_error(x, 8, 4)
    reference = faiss.OPQMatrix(32, 8)
    reference.niter = 8
    reference.pq = pq = faiss.ProductQuantizer(32, 8, 4)  # faiss's training, for the same 4-bit codes
    reference.train(x)
    theirs = _pq_error(x, 8, 4, faiss.vector_to_array(reference.A).reshape(32, 32))
    assert ours < 0.8 * plain, (ours, plain)
    assert ours <= 1.05 * theirs, (ours, theirs)
    del pq


def test_trained_opq_matrix_applies_the_rotation():
    x = _correlated(n=800, dim=16)
    opq = faiss.OPQMatrix(16, 4)
    train_opq(opq, x, nbits=4, iterations=2)
    assert opq.is_trained
    np.testing.assert_allclose(opq.apply(x[:5]), x[:5] @ learn_rotation(x, 4, 4, 2).T, atol=1e-4)
