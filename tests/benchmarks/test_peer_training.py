"""``python -m benchmarks peer-training``: the Pittsburgh-style .mat files it writes read back in netvlad with the
intended positions and ground truth, the peer's stand-in NearestNeighbors is exact, and the peer's printed recalls
are parsed in order."""

import numpy as np
import pytest
import scipy.io

from benchmarks import peer_training
from netvlad.data import open_dataset
from tests.conftest import shared_dataset


def test_dbstruct_reads_back_with_the_places_and_offsets(tmp_path, monkeypatch):
    monkeypatch.setattr(peer_training, "NORDLAND", shared_dataset("nordland"))
    root = tmp_path / "data"
    root.mkdir()
    for season in ("summer", "winter"):
        (root / season).symlink_to(peer_training.NORDLAND / season)
    path = peer_training.write_dbstruct(root / "pitts30k_val.mat", "val", range(10, 16), range(10, 16, 2))
    dataset = open_dataset(path)
    assert len(dataset.database) == 6 and len(dataset.queries) == 3
    assert dataset.database.paths()[0].name == "images-00110.png"  # place 10 is the 11th thumbnail
    assert [p.name for p in dataset.queries.paths()] == ["images-00110.png", "images-00130.png", "images-00150.png"]
    assert dataset.queries.paths()[0].parent.name == "winter"
    np.testing.assert_allclose(dataset.queries.utm[1], [12 * 25.0, 5.0])
    # the peer's reader: positional fields of the struct, cell arrays of names
    fields = scipy.io.loadmat(path)["dbStruct"].item()
    assert [f[0].item() for f in fields[1]][:2] == ["summer/images-00110.png", "summer/images-00120.png"]
    assert fields[5].item() == 6 and fields[6].item() == 3 and fields[9].item() == 100.0
    # only the same place lies within 25 m of a query 5 m off the line (a neighbour is 25.5 m away)
    distance = np.linalg.norm(dataset.queries.utm[:, None] - dataset.database.utm[None], axis=-1)
    assert ((distance <= 25).sum(1) == 1).all()


def test_the_stand_in_nearest_neighbors_is_exact():
    namespace: dict = {}
    exec(peer_training.PEER_SHIMS["sklearn/neighbors.py"], namespace)
    rng = np.random.default_rng(0)
    points, queries = rng.random((50, 3)), rng.random((4, 3))
    knn = namespace["NearestNeighbors"](n_jobs=-1).fit(points)
    distances, indices = knn.kneighbors(queries, 5)
    full = np.linalg.norm(queries[:, None] - points[None], axis=-1)
    np.testing.assert_array_equal(indices, np.argsort(full, axis=1)[:, :5])
    np.testing.assert_allclose(distances, np.sort(full, axis=1)[:, :5])
    within = knn.radius_neighbors(queries, radius=0.3, return_distance=False)
    assert [sorted(w) for w in within] == [sorted(np.flatnonzero(row <= 0.3)) for row in full]


def test_peer_recalls_are_read_in_order():
    log = "".join(f"====> Recall@{n}: {v}\n" for v in (0.0175, 0.1375) for n in (1, 5, 10, 20))
    assert peer_training.peer_recalls(log) == [{"r1": 1.75, "r5": 1.75, "r10": 1.75},
                                               {"r1": 13.75, "r5": 13.75, "r10": 13.75}]


def test_every_patch_names_why():
    assert all(len(patch) == 4 and patch[3] for patch in peer_training.PEER_PATCHES)
    with pytest.raises(SystemExit, match="--peer"):
        peer_training.run(peer_training_args())


def peer_training_args():
    import argparse

    parser = argparse.ArgumentParser()
    peer_training.add_arguments(parser)
    return parser.parse_args([])


def test_table_rows_and_cost_ratios():
    side = {"before": {"r1": 3.0, "r5": 11.5, "r10": 17.75}, "after": {"r1": 13.75, "r5": 28.25, "r10": 40.0},
            "epoch_wall_s": 300.0, "epoch_cpu_s": 270.0, "maxrss_kb": 2048 * 1024}
    text = peer_training.table({0: {"ours": {**side, "loss_normalization": "violating_mean"},
                                    "peer": {**side, "epoch_wall_s": 400.0, "epoch_cpu_s": 360.0}}})
    assert "| 0 | netvlad, violating_mean | 3.00 → 13.75 | 11.50 → 28.25 | 17.75 → 40.00 | 300 | 270 | 2048 |" in text
    assert "epoch wall time 0.75×, CPU time 0.75×" in text
    assert "`main.py`: numpy 2 removed np.in1d" in text


def test_the_peers_peak_memory_is_its_largest_step():
    log = ("====> Recall@1: 0.0175\n====> Recall@5: 0.1\n====> Recall@10: 0.2\n====> Recall@20: 0.3\nMAXRSS_KB 900000\n"
           "====> Recall@1: 0.12\n====> Recall@5: 0.27\n====> Recall@10: 0.37\n====> Recall@20: 0.5\n"
           "PEER_EPOCH_SECONDS 12.5 10.25\nMAXRSS_KB 1200000\n")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "peer.log").write_text(log)
        peer = peer_training.read_peer(Path(folder))
    assert peer["maxrss_kb"] == 1200000 and peer["epoch_cpu_s"] == 10.25 and peer["after"]["r1"] == 12.0


def test_the_peak_wrapper_reports_its_childs_memory_and_exit_status():
    import shlex
    import subprocess
    import sys

    step = f"{sys.executable} -c {shlex.quote(peer_training.PEAK_WRAPPER)} {sys.executable} -c"
    out = subprocess.run(["bash", "-c", f"{step} 'x = bytearray(200_000_000)'; {step} 'raise SystemExit(3)'; "
                          "echo rc $?"], capture_output=True, text=True).stdout.split()
    assert int(out[1]) > 195_000  # kB: the 200 MB the child held
    assert out[-2:] == ["rc", "3"]


def test_a_kept_seed_is_not_run_again(tmp_path, monkeypatch):
    monkeypatch.setattr(peer_training, "NORDLAND", shared_dataset("nordland"))
    side = {"before": {"r1": 3.0, "r5": 11.5, "r10": 17.75}, "after": {"r1": 13.75, "r5": 28.25, "r10": 40.0},
            "epoch_wall_s": 300.0, "epoch_cpu_s": 270.0, "maxrss_kb": 2048 * 1024, "loss_normalization": "sum"}
    (tmp_path / "seed4" / "ours").mkdir(parents=True)
    (tmp_path / "seed4" / "ours" / "ours.json").write_text(__import__("json").dumps(side))
    monkeypatch.setattr(peer_training, "start_seed", lambda *a: pytest.fail("a kept seed was started"))
    results = peer_training.side_by_side(None, [4], "default", tmp_path, with_peer=False, peer_init=False)
    assert results[4]["ours"]["kept"] and results[4]["ours"]["after"]["r1"] == 13.75
    assert "Seed(s) 4 were kept from an earlier run" in peer_training.table(results)


def test_the_mean_row_gives_the_spread_over_seeds():
    def side(r1, cpu):
        return {"before": {"r1": 1.0, "r5": 2.0, "r10": 3.0}, "after": {"r1": r1, "r5": 20.0, "r10": 30.0},
                "epoch_wall_s": 2 * cpu, "epoch_cpu_s": cpu, "maxrss_kb": 1024 * 1000}

    text = peer_training.table({0: {"ours": side(10.0, 100.0), "peer": side(12.0, 200.0)},
                                1: {"ours": side(14.0, 120.0), "peer": side(12.0, 300.0)}})
    assert ("| mean ± sd | netvlad | 12.00 ± 2.83 | 20.00 ± 0.00 | 30.00 ± 0.00 | 220 ± 28 | 110 ± 14 | 1000 ± 0 |"
            in text)
    assert "CPU time 0.45 ± 0.07×, peak memory 1.00 ± 0.00×" in text
