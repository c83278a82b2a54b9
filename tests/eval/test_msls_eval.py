"""MSLS validation numbers: netvlad's per-city evaluation against a transcription of the official script.

The reference below follows ``mapillary_sls`` (``MSLS(mode="val", task="im2im")`` + ``evaluate.py`` +
``utils/eval.py``) step by step on the raw CSV files, positionally as pandas reads them: rows filtered by the
subtask column and ``pano == False``, keys from ``seq_info.csv``, positives within 25 m (inclusive), queries without
a positive dropped, predictions as key lists, the recall loop over ks. It shares no code with netvlad.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from netvlad.data import open_dataset
from netvlad.data.readers.msls import city_of
from netvlad.eval.grouped import evaluate_groups
from tests.data.helpers import write_msls

KS = (1, 2, 5, 20)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def official_side(root, city, side, subtask="all"):
    base = root / "train_val" / city / side
    post, raw = _rows(base / "postprocessed.csv"), _rows(base / "raw.csv")
    seq, sub = _rows(base / "seq_info.csv"), _rows(base / "subtask_index.csv")
    keep = [i for i in range(len(post)) if sub[i][subtask] == "True" and raw[i]["pano"] == "False"]
    keys = [seq[i]["key"] for i in keep]
    utm = np.array([[float(post[i]["easting"]), float(post[i]["northing"])] for i in keep])
    return keys, utm


def official_recall(root, cities, predict, ks=KS):
    """Recall@k (fractions) as evaluate.py prints them for ``--cities``; ``predict(city, q_keys, db_keys)`` ranks."""
    query_keys, positive_keys, predictions = [], [], []
    for city in cities:
        q_keys, q_utm = official_side(root, city, "query")
        db_keys, db_utm = official_side(root, city, "database")
        ranked = predict(city, q_keys, db_keys)
        for j, key in enumerate(q_keys):
            near = np.flatnonzero(np.linalg.norm(db_utm - q_utm[j], axis=1) <= 25)
            if len(near):
                query_keys.append(key)
                positive_keys.append([db_keys[i] for i in near])
                predictions.append([key] + [db_keys[i] for i in ranked[j]])
    recall = np.zeros(len(ks))
    for q, row in enumerate(predictions):
        for i, k in enumerate(ks):
            if np.sum(np.isin(row[1:][:k], positive_keys[q])) > 0:  # np.in1d in the original
                recall[i:] += 1
                break
    return recall / len(predictions)


@pytest.fixture
def sample(tmp_path):
    root = write_msls(tmp_path)
    data = open_dataset(root).with_positive_queries(25.0)
    rng = np.random.default_rng(7)
    db = rng.normal(size=(len(data.database), 6)).astype(np.float32)
    positives = data.positives(25.0)
    queries = rng.normal(size=(len(data.queries), 6)).astype(np.float32)
    for q in range(0, len(queries), 2):  # every other query looks like one of its positives
        queries[q] = db[positives[q][-1]] + 0.3 * rng.normal(size=6)
    return root, data, db, queries


def test_per_city_and_combined_numbers_equal_the_official_script(sample):
    root, data, db, queries = sample
    by_key = {n.rsplit("/", 1)[-1][:-4]: i for i, n in enumerate(data.database.names)}
    q_by_key = {n.rsplit("/", 1)[-1][:-4]: i for i, n in enumerate(data.queries.names)}

    def predict(city, q_keys, db_keys):  # brute-force L2 ranking within the city
        d = np.stack([db[by_key[k]] for k in db_keys])
        return [np.argsort(np.linalg.norm(d - queries[q_by_key[k]], axis=1), kind="stable") if k in q_by_key
                else np.arange(len(db_keys)) for k in q_keys]

    combined, per_city = evaluate_groups(db, queries, data, city_of, ns=KS)
    assert list(per_city) == ["cph", "sf"] and [r.num_queries for r in per_city.values()] == [5, 4]
    for city, result in per_city.items():
        np.testing.assert_allclose(list(result.recall.values()), 100 * official_recall(root, [city], predict))
    np.testing.assert_allclose(list(combined.recall.values()), 100 * official_recall(root, ["cph", "sf"], predict))
    assert 0 < combined.recall[1] < 100
    # pooled over queries: the query-weighted mean of the cities, not their plain mean
    weighted = {n: (5 * per_city["cph"].recall[n] + 4 * per_city["sf"].recall[n]) / 9 for n in KS}
    assert combined.recall == pytest.approx(weighted)


def test_each_city_searches_only_its_own_database(sample):
    _, data, db, queries = sample
    combined, _ = evaluate_groups(db, queries, data, city_of, ns=KS)
    for q, row in enumerate(combined.ranked):
        cities = {city_of(data.database.names[i]) for i in row if i >= 0}
        assert cities == {city_of(data.queries.names[q])}
