"""A benchmark set's stream column: the replay equals a brute-force stream on a toy route (two query traversals,
so the second can close loops onto the first), a set without order says so, and the leave-one-set-out choice never
picks a family that wins offline but collapses when streamed."""

from __future__ import annotations

import numpy as np
import pytest

from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.sequences import SequenceOrder
from netvlad.match.sequence import SequenceConfig
from netvlad.pipeline.benchmark.run import BenchmarkResult, Cell, compute_stream_cell
from netvlad.pipeline.benchmark.selection import select_default
from netvlad.pipeline.benchmark.stream_column import _shortlist, replay
from netvlad.pipeline.benchmark.suite import MethodSpec, Suite
from netvlad.search.exact import plan_search
from tests.match.test_sequence_methods import route, route_dataset


def two_traversals(n: int = 24, dim: int = 8, tolerance: int = 1, skip: int = 10):
    """(dataset, database, queries): a database route of ``n`` frames and two noisy query traversals of it (two
    sequences, listed second first so the stream's order is not the list's; the second misses frame ``skip``),
    ±``tolerance`` frames."""
    database, first = route(n, dim, 0, 0.6)
    _, second = route(n, dim, 0, 0.6)
    second = second + np.random.default_rng(1).normal(0, 0.3, second.shape).astype(np.float32)
    kept = np.delete(np.arange(n), skip)
    queries = np.concatenate([second[kept], first])
    utm = np.zeros((n, 2))
    db = ImageList("/x", tuple(f"d{i}.png" for i in range(n)), utm, frames=np.arange(n),
                   sequence=SequenceOrder.single(np.arange(n)))
    frames = np.concatenate([kept, np.arange(n)])
    q = ImageList("/x", tuple(f"q{i}.png" for i in range(len(frames))), np.zeros((len(frames), 2)), frames=frames,
                  sequence=SequenceOrder(np.repeat([1, 0], [n - 1, n]), frames, ("a", "b")))
    return GeoDataset("loops", db, q, frame_tolerance=tolerance), database, queries


def brute_force_stream(database, queries, frames, length, exclude, tolerance):
    """Per query (stream order: the database, then sequence "a" = the last n of ``queries``, then the first ones):
    the best entry of the plain causal trajectory score over the searchable stream, written out."""
    n, first = len(database), len(queries) - len(database)
    order = np.concatenate([np.arange(first, len(queries)), np.arange(first)])  # query indices in stream order
    stream = np.concatenate([database, queries[order]]).astype(np.float64)
    recorded = np.concatenate([frames["db"], frames["q"][order]])
    new_window = {0, n, 2 * n}
    window, hits, best = [], np.zeros(len(queries), bool), {}
    for t in range(len(stream)):
        window = [t] if t in new_window else [*window, t][-length:]
        count = max(0, t - exclude + 1)
        if t < n or count == 0:
            continue
        largest = max(np.linalg.norm(stream[j]) for j in range(count))
        scores = []
        for j in range(count):
            total = 0.0
            for i in window:
                p = j + (recorded[i] - recorded[t])  # velocity 1: the trajectory point of window frame i
                total += (np.sum((stream[i] - stream[p]) ** 2) if 0 <= p < count
                          else (np.linalg.norm(stream[i]) + largest) ** 2)
            scores.append(total / len(window))
        b = int(np.argmin(scores))
        i = order[t - n]
        best[i] = b
        match_frame = frames["db"][b] if b < n else frames["q"][order[b - n]]
        hits[i] = abs(match_frame - frames["q"][i]) <= tolerance
    return best, hits


def test_the_stream_column_is_a_brute_force_stream_over_a_growing_map():
    """The plain score streamed over the database route then both query traversals, the last 5 frames left out:
    every query's best entry and hit as the written-out stream has them (the trajectory steps over the skipped
    frame); the second traversal's frames close loops onto the first traversal's (correct by the set's tolerance),
    so loop closures onto the stream's own frames count."""
    dataset, database, queries = two_traversals()
    n = len(database) - 1  # the first-listed traversal (streamed second) misses a frame
    result = replay("diagonal", SequenceConfig(length=4), database, queries, dataset, exclude_recent=5)
    best, hits = brute_force_stream(database, queries, {"db": dataset.database.frames, "q": dataset.queries.frames},
                                    4, 5, 1)
    assert {i: int(result.best[i]) for i in best} == best
    assert (result.correct == hits).all() and result.recall == pytest.approx(100.0 * hits.mean())
    onto_first = result.best[:n] >= len(database)  # the traversal streamed last (listed first) onto the other
    assert onto_first.any() and result.correct[:n][onto_first].any()
    assert 0 < result.pr()["pr_auc"] <= 1


def test_a_frame_shortlist_is_the_exact_nearest_ties_to_the_lower_id_padded_to_k():
    """The candidates a SeqSLAM stream step gets: the k nearest searchable rows by L2 (float64 reference), equal
    rows in id order, −1 after the last searchable row."""
    rng = np.random.default_rng(0)
    stream = rng.normal(size=(40, 8)).astype(np.float32)
    stream[[7, 21, 33]] = stream[3]  # four equal rows: one distance
    plan = plan_search(1, len(stream), 8, 6)
    for count in (0, 4, 25, 40):
        for query in (stream[3], stream[39], rng.normal(size=8).astype(np.float32)):
            distances = np.sum((stream[:count].astype(np.float64) - query) ** 2, axis=1)
            want = np.full(6, -1)
            want[:min(6, count)] = np.argsort(distances, kind="stable")[:6]
            np.testing.assert_array_equal(_shortlist(query, stream[:count], 6, plan), want)
    assert _shortlist(stream[3], stream, 6, plan)[:4].tolist() == [3, 7, 21, 33]


def test_distractors_are_in_the_map_first_and_never_correct():
    """Rows after the set's own ``own`` are another route's: searchable from the first frame, never a match; the
    stream ids put them first."""
    dataset, database, queries = two_traversals()
    extra = route(40, 8, 5, 0.0)[0]
    joined = np.concatenate([database, extra])
    result = replay("diagonal", SequenceConfig(length=4), joined, queries, dataset, own=len(database),
                    exclude_recent=5)
    assert not result.correct[result.best < len(extra)].any()
    alone = replay("diagonal", SequenceConfig(length=4), database, queries, dataset, exclude_recent=5)
    assert result.recall <= alone.recall


def test_a_set_without_order_or_a_row_that_cannot_stream_says_why():
    dataset, db, q = route_dataset(30, 8, seed=0, noise=0.5, sequences=False)
    family = MethodSpec("diagonal", "diagonal", (5,), ("causal", "centred"), {})
    cell = compute_stream_cell(Cell("diagonal L=5 causal", "diagonal", 5, "causal", "r stream"), family, dataset,
                               db, q, len(db), 25.0, 30)
    assert cell.note == "n/a (no order)" and cell.recall is None
    dataset, db, q = route_dataset(30, 8, seed=0, noise=0.5)
    for other, mode, note in ((family, "centred", "n/a (centred)"),
                              (MethodSpec("std", "diagonal-standardised", (5,)), "causal", "n/a (offline)"),
                              (MethodSpec("delta", "delta", (5,)), "causal", "n/a (no stream score)"),
                              (MethodSpec("single"), "-", "n/a (single frame)")):
        cell = compute_stream_cell(Cell("x", other.name, 5, mode, "r stream"), other, dataset, db, q, len(db),
                                   25.0, 30)
        assert cell.note == note
    cell = compute_stream_cell(Cell("x", "diagonal", 5, "causal", "r stream"), family, dataset, db, q, len(db),
                               25.0, 30)
    assert cell.note is None and cell.recall[1] > 0 and set(cell.stream) == {"pr_auc", "recall_at_100_precision"}


def test_a_family_that_wins_offline_but_collapses_streamed_is_never_chosen():
    """``std`` beats the baseline by 10 points on both sets' offline columns and loses 60 in set a's stream column
    (a lingering camera, fresh entries): whichever set is left out it is judged on the other's stream column too,
    so it is never the default; the held-out table takes a set's offline and stream columns together."""
    values = {("base", "a"): 80.0, ("base", "b"): 60.0, ("base", "a stream"): 90.0, ("base", "b stream"): 70.0,
              ("std", "a"): 90.0, ("std", "b"): 70.0, ("std", "a stream"): 30.0, ("std", "b stream"): 71.0}
    families = ("base", "std")
    methods = tuple(MethodSpec(f, {"std": "diagonal-causal-standardised"}.get(f, "diagonal"), (10,), ("causal",), {})
                    for f in families)
    suite = Suite("t", {}, tuple(type("D", (), {"name": s})() for s in "ab"), methods, (1,), baseline="base",
                  stream=30)
    cells = [Cell(f"{f} L=10 causal", f, 10, "causal", s, recall={1: r}) for (f, s), r in values.items()]
    selection = select_default(BenchmarkResult(suite, cells))
    assert selection.sets == ("a", "b", "a stream", "b stream") and selection.default == "base"
    # chosen on b alone (where it holds), std collapses in a's stream column; chosen on a, it is not
    assert selection.held_out == {"a": ("std", -60.0, -60.0), "b": ("base", -10.0, 0.0)}
    assert selection.margin["std"]["a stream"] == -60.0
    offline = select_default(BenchmarkResult(Suite("t", {}, suite.datasets, methods, (1,), baseline="base"),
                                             [c for c in cells if "stream" not in c.dataset]))
    assert offline.default == "std"  # the offline columns alone would choose it
    # streamed, std now matches the same places, but its score thresholded across frames ranks them worse (PR AUC
    # 0.90 against 0.95 on b): the stream's second column rules it out
    for cell in cells:
        if cell.dataset.endswith("stream"):
            cell.recall = {1: values[("base", cell.dataset)]}
            cell.stream = {"pr_auc": 0.90 if (cell.family, cell.dataset) == ("std", "b stream") else 0.95,
                           "recall_at_100_precision": 50.0}
    selection = select_default(BenchmarkResult(suite, cells))
    assert selection.sets == ("a", "b", "a stream", "a stream PR AUC", "b stream", "b stream PR AUC")
    assert selection.margin["std"]["b stream PR AUC"] == -5.0 and selection.default == "base"
    assert selection.held_out["b"] == ("std", -5.0, -5.0)  # chosen on a, where it holds in every column
