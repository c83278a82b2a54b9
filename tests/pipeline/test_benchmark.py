"""`netvlad benchmark`: the quick suite on real Nordland thumbnails end to end (table, JSON, Markdown, PNG, a rerun
that continues from the saved cells), suite errors as one line, cells that do not apply or fail, and the
leave-one-set-out choice on a table whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netvlad.cli.main import main
from netvlad.errors import BadInputError
from netvlad.pipeline.benchmark.run import BenchmarkResult, Cell, compute_cell, default_cache, run_benchmark, run_suite
from netvlad.pipeline.benchmark.selection import select_default
from netvlad.pipeline.benchmark.suite import MethodSpec, Suite, load_suite
from tests.conftest import SHARED_DATA, shared_dataset


def test_quick_suite_end_to_end_and_rerun(tmp_path, capsys, caplog, one_thread):
    shared_dataset("nordland")
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["benchmark", "--suite", "quick", "--out", str(out), "--data", str(SHARED_DATA), "--cache", str(cache),
            "--threads", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "nordland_last60" in printed and "diagonal L=5 centred" in printed and "seqslam L=5 causal" in printed
    report = json.loads((out / "benchmark.json").read_text())
    assert all(c["error"] is None and c["queries"] == 60 for c in report["cells"])
    cells = {c["row"]: c for c in report["cells"] if c["dataset"] == "nordland_last60"}
    assert set(cells) == {"single", "diagonal L=5 causal", "diagonal L=5 centred", "seqslam L=5 causal"}
    # the stream column: the causal rows streamed over a growing map, the others say why not
    stream = {c["row"]: c for c in report["cells"] if c["dataset"] == "nordland_last60 stream"}
    assert stream["single"]["note"] == "n/a (single frame)" and stream["diagonal L=5 centred"]["note"] == \
        "n/a (centred)"
    assert 0 < stream["diagonal L=5 causal"]["recall"]["1"] <= 100 and 0 < stream["diagonal L=5 causal"][
        "stream"]["pr_auc"] <= 1
    assert "nordland_last60 stream" in report["selection"]["groups"]
    # the sequence rows beat the single frame on summer → winter thumbnails
    assert cells["diagonal L=5 causal"]["recall"]["1"] > cells["single"]["recall"]["1"]
    assert report["selection"]["default"] in ("diagonal", "seqslam")
    text = (out / "benchmark.md").read_text()
    assert text.startswith("`netvlad benchmark --suite quick --out") and "1 thread" in text and "seed 0" in text
    assert "| diagonal L=5 causal |" in text and "Chosen default" in text
    assert (out / "benchmark.png").read_bytes()[:4] == b"\x89PNG"
    caplog.clear()
    assert main(argv) == 0  # the rerun reads every cell back: nothing recomputed
    assert "every cell saved, reused" in caplog.text
    assert json.loads((out / "benchmark.json").read_text())["cells"] == report["cells"]
    # the library entry gives the command's cells (read back from OUT) and seeds and describes the run the same way
    result = run_suite("quick", out, SHARED_DATA, cache, command="python")
    assert [c.to_dict() for c in result.cells] == report["cells"]
    assert result.meta["seed"] == report["meta"]["seed"] == 0 and result.meta["command"] == "python"


def test_default_cache_follows_netvlad_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("NETVLAD_CACHE", str(tmp_path))
    assert default_cache() == tmp_path / "benchmark"
    monkeypatch.delenv("NETVLAD_CACHE")
    assert default_cache().parent.name == "netvlad-cache"


NETVLAD_SUITE = """
seed: 0
recall: [1, 5]
baseline: geometric
models: {netvlad: {backbone: mobilenet_v2, pool: netvlad, num_clusters: 64,
                   preprocessing: {resize: fixed, size: [160, 224]}}}
datasets: {nordland_last20: {path: nordland, database: summer, queries: winter, frame_tolerance: 1,
                             last_places: 20, model: netvlad}}
methods: {geometric: {alpha_rule: geometric}, arithmetic: {alpha_rule: arithmetic}, ratio10: {alpha_ratio: 10},
          diagonal: {method: diagonal, velocities: [1.0], lengths: [5]},
          verify: {verify: storage, verify_top: 5, verify_global_weight: 0.5},
          verify-top3: {verify: storage, verify_top: 3, verify_global_weight: 0.75}}
"""


def test_off_the_shelf_netvlad_cells_one_per_alpha_rule(tmp_path, one_thread):
    """K = 64 NetVLAD k-means initialised on the set's database images, once per α rule and target ratio, each row
    on its own descriptors; the leave-one-set-out choice is among the single-frame rows (the baseline's kind)."""
    from netvlad.extract.store import DescriptorStore
    from netvlad.pipeline.benchmark.report import write_reports

    shared_dataset("nordland")
    suite = load_suite(_suite(tmp_path, NETVLAD_SUITE))
    result = run_benchmark(suite, tmp_path / "out", SHARED_DATA, tmp_path / "cache")
    cells = {c.row: c for c in result.cells}
    assert all(c.error is None for c in cells.values()), [c.error for c in cells.values()]
    (queries,) = {c.queries for c in cells.values()}
    stores = tmp_path / "cache" / "nordland_last20"
    # the geometric rule is the model's own (the default): its rows and the diagonal row share one store
    assert sorted(p.name for p in stores.iterdir()) == ["netvlad", "netvlad@arithmetic", "netvlad@geometricx10"]
    geometric = DescriptorStore.open(stores / "netvlad" / "queries").load()
    arithmetic = DescriptorStore.open(stores / "netvlad@arithmetic" / "queries").load()
    assert geometric.shape == arithmetic.shape == (queries, 64 * 1280)
    np.testing.assert_allclose(np.linalg.norm(geometric, axis=1), 1, atol=1e-3)
    assert not np.allclose(geometric, arithmetic)  # the softer arithmetic α assigns otherwise
    ratio10 = DescriptorStore.open(stores / "netvlad@geometricx10" / "queries").load()
    assert not np.allclose(geometric, ratio10)  # ratio 10: a softer α than the official 100
    kept = sorted(p.name for p in (tmp_path / "cache" / "clusters").glob("*.safetensors"))
    assert len([n for n in kept if not n.startswith("patch-whitening-")]) == 3  # one k-means per α setting
    assert len([n for n in kept if n.startswith("patch-whitening-")]) == 1  # one fit serves both re-ranking rows
    result.meta = {"command": "netvlad benchmark", "threads": 1, "seed": 0}
    report = json.loads(write_reports(result, tmp_path / "out")["json"].read_text())
    families = {"geometric", "arithmetic", "ratio10", "verify", "verify-top3"}
    assert report["selection"]["default"] in families
    assert set(report["selection"]["gap"]) == families  # single-frame rows
    # the re-ranked row: the top 5 of the single frame re-ordered, so its R@5 is the single frame's
    assert cells["verify"].recall[5] == cells["geometric"].recall[5] and cells["verify"].ms_per_query > 0
    # the top-3 row re-fuses the top-5 pass's raw patch scores: what a run of its own gives
    from netvlad.eval.recall import evaluate_descriptors
    from netvlad.eval.verified import verify_given
    from netvlad.match.verify.run import patch_extractor
    from netvlad.pipeline.benchmark.run import describe_spec, open_spec

    spec = suite.datasets[0]
    dataset = open_spec(spec, SHARED_DATA, tmp_path / "cache")
    db, q, model, store = describe_spec(suite, spec, dataset, tmp_path / "cache")  # read back: stores, k-means
    single = evaluate_descriptors(db, q, dataset.positives(), (1, 5), k=5)
    extractor = patch_extractor(model, suite.methods[-1].preset(), dataset.database.paths(),
                                tmp_path / "cache" / "clusters")
    own = verify_given(extractor, dataset, dataset.positives(), store, single.ranked[:, :3], single.distances[:, :3],
                       (1,))
    assert cells["verify-top3"].recall[1] == round(float(own.recall[1]), 4)


def test_the_quick_suite_used_in_ci_has_no_re_ranking_row():
    """Re-ranking extracts patches of every image: minutes on a CPU, so CI's quick suite leaves it out."""
    assert all(family.verify is None for family in load_suite("quick").methods)


def _suite(tmp_path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


BASE = """
models: {m: {backbone: mobilenet_v2, pool: gem}}
datasets: {d: {path: nordland, database: summer, queries: winter, model: m}}
methods: {single: {}}
"""


@pytest.mark.parametrize(("change", "message"), [
    (("methods: {single: {}}", "methods: {x: {method: seqslim}}"), "unknown method 'seqslim'; known: delta, diagonal"),
    (("methods: {single: {}}", "methods: {x: {method: diagonal, radius: 3}}"), "unknown option 'radius'; known:"),
    (("model: m}", "model: m, tolerance: 2}"), "unknown key 'tolerance'; known: city, condition, database"),
    (("model: m}", "model: n}"), "unknown model 'n'; known: m"),
    (("model: m}", "model: m, distractors: {city: {size: tiny}, queries: x}}"),
     "dataset 'd' distractors: unknown key 'queries'; known: city, split"),
    (("model: m}", "model: m, distractors: {city: {size: tiny, roads: 3}}}"),
     "dataset 'd' distractors city: unknown key 'roads'; known: block_size"),
    (("model: m}", "model: m, distractors: [a]}"), "dataset 'd' distractors must be a mapping with city"),
    (("methods: {single: {}}", "methods: {x: {method: seqslam, contrast_radius: 0}}"), "contrast_radius must be"),
    (("methods: {single: {}}", "methods: {x: {method: diagonal, modes: [forward]}}"), "unknown mode 'forward'"),
    (("models:", "baseline: z\nmodels:"), "unknown baseline method 'z'; known: single"),
    (("pool: gem}", "pool: gem, alpha: 3}"),
     "model 'm': unknown option 'alpha'; known: alpha_ratio, alpha_rule, backbone"),
    (("pool: gem}", "pool: netvlad, alpha_rule: median}"), "unknown alpha_rule 'median'; known: arithmetic, geometric"),
    (("pool: gem}", "pool: gem, alpha_rule: geometric}"), "model 'm': alpha_rule sets off-the-shelf NetVLAD's α"),
    (("methods: {single: {}}", "methods: {a: {alpha_rule: arithmetic}}"),
     "method 'a': alpha_rule needs an off-the-shelf NetVLAD model, dataset 'd' uses 'm'"),
    (("methods: {single: {}}", "methods: {a: {alpha_rule: mean}}"), "unknown alpha_rule 'mean'; known: arithmetic"),
    (("methods: {single: {}}", "methods: {a: {alpha_ratio: 1}}"),
     "method 'a': alpha_ratio must be a number > 1 \\(the official 100\\), got 1"),
    (("methods: {single: {}}", "methods: {a: {alpha_ratio: 10}}"),
     "method 'a': alpha_ratio needs an off-the-shelf NetVLAD model, dataset 'd' uses 'm'"),
    (("pool: gem}", "pool: gem, alpha_ratio: 10}"), "model 'm': alpha_ratio sets off-the-shelf NetVLAD's α"),
    (("pool: gem}", "pool: netvlad, alpha_ratio: many}"), "model 'm': alpha_ratio must be a number > 1"),
    (("methods: {single: {}}", "methods: {v: {verify: fast}}"),
     "method 'v': unknown verify preset 'fast'; known: performance, speed, storage"),
    (("methods: {single: {}}", "methods: {v: {verify_top: 20}}"), "method 'v': verify_top without verify"),
    (("methods: {single: {}}", "methods: {v: {method: diagonal, verify: speed}}"),
     "verify re-ranks the single-frame shortlist; give it on a row without method"),
    (("methods: {single: {}}", "methods: {v: {verify: speed, verify_global_weight: 1.5}}"),
     r"verify_global_weight \(λ\) must be in \[0, 1\], got 1.5"),
    (("methods: {single: {}}", "methods: {v: {verify: speed, verify_top: 0}}"), "verify_top must be an integer ≥ 1"),
    (("methods: {single: {}}", "methods: {v: {verify: speed}}"),
     "method 'v': verify re-ranks with NetVLAD patches, dataset 'd' uses 'm' \\(pool 'gem'\\)"),
    (("models:", "stream: {exclude: 3}\nmodels:"), "stream: unknown key 'exclude'; known: exclude_recent"),
    (("models:", "stream: {exclude_recent: -1}\nmodels:"), "stream exclude_recent must be a whole number of frames"),
    (("models:", "stream: yes\nmodels:"), "stream is a mapping"),
])
def test_bad_suite_entries_are_one_line(tmp_path, change, message):
    with pytest.raises(BadInputError, match=message) as info:
        load_suite(_suite(tmp_path, BASE.replace(*change)))
    assert "\n" not in str(info.value) and "s.yaml" in str(info.value)


def test_a_city_condition_outside_its_query_conditions_is_one_line(tmp_path):
    city = "city: {size: small, query_conditions: [dusk, night]}, condition: sunny, model: m}"
    with pytest.raises(BadInputError, match="unknown condition 'sunny'; known: dusk, night") as info:
        load_suite(_suite(tmp_path, BASE.replace("path: nordland, database: summer, queries: winter, model: m}",
                                                 city)))
    assert "\n" not in str(info.value) and "s.yaml" in str(info.value)


def test_the_default_suite_has_one_city_set_per_condition_sharing_one_city():
    """Each condition is a set of its own (leave-one-set-out holds it out), described from one generated city; the
    scale suite puts two of them again against a map of 13,000+ frames (one second city's images, described once,
    join both maps) and shares the default suite's stores."""
    from netvlad.pipeline.benchmark.run import distractor_source

    suite = load_suite("default")
    city = [spec for spec in suite.datasets if spec.city is not None]
    assert sorted(spec.condition for spec in city) == ["dusk", "fog", "night", "winter"]
    assert len({spec.source for spec in city}) == 1 and len({spec.key() for spec in city}) == 4
    assert all(spec.source == spec.name for spec in suite.datasets if spec.city is None)
    scale = load_suite("scale")
    large = [spec for spec in scale.datasets if spec.distractors is not None]
    assert sorted(spec.condition for spec in large) == ["dusk", "night"] and len(scale.datasets) == 8
    assert {spec.source for spec in large} == {city[0].source} and len({distractor_source(s) for s in large}) == 1
    assert [m.name for m in scale.methods] == [m.name for m in suite.methods] and "diagonal-causal-std" in \
        {m.name for m in suite.methods}
    assert suite.stream == scale.stream == 30 and [c for c, _, stream in suite.columns() if stream] == [
        f"{spec.name} stream" for spec in suite.datasets]


def test_distractors_join_the_map_and_are_never_a_match(tmp_path, one_thread):
    """A set with distractors: the same queries and ground truth against its own map plus another city's database
    images (real Nordland thumbnails + a tiny generated city), in its own sequences; re-ranking rows do not apply."""
    from netvlad.data.dataset import ImageList
    from netvlad.data.sequences import SequenceOrder
    from netvlad.pipeline.benchmark.run import FAR, joined_database

    shared_dataset("nordland")
    model = "{m: {backbone: mobilenet_v2, pool: gem, preprocessing: {resize: fixed, size: [32, 64]}}}"
    own = "{path: nordland, database: summer, queries: winter, frame_tolerance: 1, last_places: 30, model: m"
    text = (f"seed: 0\nrecall: [1, 5]\nbaseline: diagonal\nmodels: {model}\ndatasets:\n  own: {own}}}\n"
            f"  large: {own}, distractors: {{city: {{size: tiny}}}}}}\n"
            "methods: {single: {}, diagonal: {method: diagonal, lengths: [5], modes: [causal]}}\n"
            "stream: {exclude_recent: 5}\n")
    result = run_benchmark(load_suite(_suite(tmp_path, text)), tmp_path / "o", SHARED_DATA, tmp_path / "c")
    assert all(c.error is None and c.queries == 30 for c in result.cells)
    for row, column in (("single", ""), ("diagonal L=5 causal", ""), ("diagonal L=5 causal", " stream")):
        # more frames to confuse, never more recall (streamed: the distractors in the map before the stream)
        assert result.cell(row, "large" + column).recall[1] <= result.cell(row, "own" + column).recall[1]
    assert result.cell("diagonal L=5 causal", "large").recall[1] > 0
    assert not (tmp_path / "c" / "large").exists()  # the set's own images: described once, for both sets
    # the joined list: positions and frame numbers of the extra images out of every query's reach, own sequences
    database = ImageList("a", ["0.jpg", "1.jpg"], [[0.0, 0.0], [5.0, 0.0]], frames=[0, 1],
                         sequence=SequenceOrder.single([0, 1]))
    extra = ImageList(tmp_path, ["x.jpg", "y.jpg", "z.jpg"], [[0.0, 0.0]] * 3,
                      sequence=SequenceOrder(np.array([1, 0, 1]), np.array([0, 0, 1]), ("p", "q")))
    joined = joined_database(database, extra)
    assert joined.names[:2] == ("0.jpg", "1.jpg") and joined.paths()[2] == (tmp_path / "x.jpg").resolve()
    assert (joined.utm[2:] == FAR).all() and (joined.frames[2:] <= -FAR).all()
    assert joined.sequence.names == ("0", "distractors/p", "distractors/q")
    assert joined.sequence.ids.tolist() == [0, 0, 2, 1, 2] and joined.sequence.frames.tolist() == [0, 1, 0, 0, 1]


def test_unknown_suite_name(caplog, tmp_path):
    assert main(["benchmark", "--suite", "nightly", "--out", str(tmp_path / "o")]) == 1
    assert "unknown suite 'nightly'; known: alpha, default, quick, recipe, reranking, scale" in caplog.text


def test_a_missing_dataset_fills_its_column_with_the_error(tmp_path):
    suite = load_suite(_suite(tmp_path, BASE.replace("path: nordland", "path: nowhere")))
    result = run_benchmark(suite, tmp_path / "o", tmp_path, tmp_path / "c")
    assert result.cells[0].error.startswith("BadInputError:") and "dataset 'd' not found" in result.cells[0].error
    assert result.cells[0].text().startswith("error: ")


def test_cells_that_do_not_apply_say_why():
    from netvlad.eval.recall import evaluate_descriptors
    from tests.match.test_sequence_methods import route_dataset

    family = MethodSpec("diagonal", "diagonal", (5, 40), ("causal",), {})
    for sequences, note in ((False, "n/a (no order)"), (True, "n/a (L > 30)")):
        dataset, db, q = route_dataset(30, 8, seed=0, noise=0.5, sequences=sequences)
        single = evaluate_descriptors(db, q, dataset.positives(), (1,), k=5)
        cell = compute_cell(Cell("diagonal L=40 causal", "diagonal", 40, "causal", "r"), family, dataset, db, q,
                            single, (1,))
        assert cell.note == note and cell.recall is None


def _table(values: dict, methods: dict | None = None) -> BenchmarkResult:
    """A result whose R@1 per (family, set) is given (one row per family: L = 10 causal; each family's sequence
    method from ``methods``, else diagonal)."""
    families = sorted({f for f, _ in values})
    sets = sorted({s for _, s in values})
    methods = tuple(MethodSpec(f, (methods or {}).get(f, "diagonal"), (10,), ("causal",), {}) for f in families)
    suite = Suite("t", {}, tuple(type("D", (), {"name": s})() for s in sets), methods, (1,), baseline="base")
    cells = [Cell(f"{f} L=10 causal", f, 10, "causal", s, recall={1: r}) for (f, s), r in values.items()]
    return BenchmarkResult(suite, cells)


def test_leave_one_set_out_judges_by_the_worst_set():
    """``tuned`` wins two sets by far and loses the third by 5 points to the baseline: never the default;
    ``steady`` is within 1 point of the baseline everywhere and best on one set: the default."""
    values = {("base", "a"): 90.0, ("base", "b"): 60.0, ("base", "c"): 70.0,
              ("tuned", "a"): 99.0, ("tuned", "b"): 75.0, ("tuned", "c"): 65.0,
              ("steady", "a"): 89.5, ("steady", "b"): 62.0, ("steady", "c"): 70.0}
    selection = select_default(_table(values))
    assert selection.default == "steady"
    assert selection.held_out["c"] == ("tuned", -5.0, -5.0)  # tuned on a and b, it fails on c
    # left out a, tuned is 5 points below the baseline on c, so the rule on b and c does not take it
    assert selection.held_out["a"][0] == "steady" and selection.margin["tuned"]["c"] == -5.0
    assert selection.gap["steady"] == {"a": -9.5, "b": -13.0, "c": 0.0}
    values[("steady", "a")] = 88.0  # 2 points below the baseline on a: nothing qualifies but the baseline
    assert select_default(_table(values)).default == "base"
    assert np.isfinite(selection.gap["base"]["a"])


def test_a_method_that_needs_every_query_is_never_chosen_held_out_or_as_the_default():
    """``std`` (diagonal-standardised) beats the baseline on every set, but it needs the whole query set, which
    ``netvlad stream`` never has: whichever set is left out, and on every set, the choice is the best frame-by-frame
    family, and the report says why."""
    from netvlad.pipeline.benchmark.report import markdown

    values = {("base", "a"): 90.0, ("base", "b"): 60.0, ("std", "a"): 95.0, ("std", "b"): 70.0,
              ("other", "a"): 90.0, ("other", "b"): 59.5}
    result = _table(values, {"std": "diagonal-standardised"})
    selection = select_default(result)
    assert {held[0] for held in selection.held_out.values()} == {"base"}
    assert selection.offline == ("std",) and selection.default == "base"
    result.meta = {"command": "netvlad benchmark", "threads": 1, "seed": 0}
    text = markdown(result, selection)
    assert "Never the default (they need the whole query set, so `netvlad stream` cannot run them): std." in text
    assert ("Within 1 point of the best family on every set: no, `base` misses by 10.0 on b; the best worst set of "
            "any family is `std`'s, within it everywhere.") in text


def test_a_suite_extends_another_and_a_missing_checkpoint_names_itself(tmp_path):
    suite = load_suite("recipe")
    assert [d.name for d in suite.datasets] == ["gardens_point", "nordland_val", "city_dusk", "city_night",
                                                "city_winter", "city_fog", "nordland_val_recipe"]
    assert suite.baseline == "diagonal" and len(suite.methods) == len(load_suite("default").methods)
    path = _suite(tmp_path, BASE.replace("models: {m: {backbone: mobilenet_v2, pool: gem}}",
                                         "models: {m: {checkpoint: nowhere.safetensors}}"))
    result = run_benchmark(load_suite(path), tmp_path / "o", SHARED_DATA, tmp_path / "c")
    assert "nowhere.safetensors: checkpoint of the suite's model 'm' not found" in result.cells[0].error


def test_a_set_without_a_baseline_result_is_left_out_of_the_choice():
    values = {("base", "a"): 90.0, ("base", "b"): 60.0, ("other", "a"): 95.0, ("other", "b"): 59.5}
    result = _table(values)
    result.cells.append(Cell("base L=10 causal", "base", 10, "causal", "c", error="BadInputError: no model"))
    result.cells.append(Cell("other L=10 causal", "other", 10, "causal", "c", error="BadInputError: no model"))
    result.suite = Suite("t", {}, tuple(type("D", (), {"name": s})() for s in "abc"), result.suite.methods, (1,),
                         baseline="base")
    selection = select_default(result)
    assert selection.skipped == ("c",) and selection.sets == ("a", "b") and selection.default == "other"



def test_a_fragment_header_names_its_command_date_and_machine_as_the_docs_require():
    from netvlad.pipeline.benchmark.report import header, run_meta
    from tests.test_docs import COMMAND, DATE, MACHINE

    first = header(run_meta("python benchmarks/decode.py --count 2", threads=1, seed=0))
    assert first.startswith("`python benchmarks/decode.py --count 2` — ")
    assert COMMAND.match(first) and DATE.search(first) and MACHINE.search(first)
    assert ", 1 thread, torch " in first and first.endswith(", seed 0.")


def test_a_failed_cell_runs_again_a_finished_one_is_reused(tmp_path):
    """A saved cell that failed (its store was stale, its checkpoint missing) is computed again by the next run;
    a finished one with the same key is reused, one with another key is not."""
    from netvlad.pipeline.benchmark.run import _save, _saved

    done, failed = tmp_path / "done.json", tmp_path / "failed.json"
    _save(done, "k", Cell("single", "single", 1, "-", "d", recall={1: 50.0}))
    _save(failed, "k", Cell("single", "single", 1, "-", "d", error="BadInputError: stale store"))
    assert _saved(done, "k").recall == {1: 50.0} and _saved(done, "other") is None
    assert _saved(failed, "k") is None


def test_a_checkpoint_retrained_at_the_same_path_is_described_again(tmp_path, caplog, one_thread):
    """The benchmark's stores are its own cache: descriptors of a checkpoint since retrained at the same path (told
    by its content) are extracted again with a logged line, and the cells recomputed; a store the user named is
    still refused."""
    import torch

    from netvlad.extract.descriptors import extract_to_store
    from netvlad.extract.store import DescriptorStore
    from netvlad.models import ModelConfig, PlaceModel, save_model

    shared_dataset("nordland")
    checkpoint = tmp_path / "m.safetensors"
    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="gem",
                                   preprocessing={"resize": "fixed", "size": [32, 64]}), pretrained=False).eval()
    save_model(model, checkpoint)
    suite = load_suite(_suite(tmp_path, BASE.replace("{backbone: mobilenet_v2, pool: gem}",
                                                     f"{{checkpoint: {checkpoint}}}")
                              .replace("model: m}", "model: m, last_places: 8}")))
    first = run_benchmark(suite, tmp_path / "out", SHARED_DATA, tmp_path / "cache")
    store = tmp_path / "cache" / "d" / "m" / "queries"
    assert first.cells[0].error is None and DescriptorStore.open(store).fingerprint == model.fingerprint()
    with torch.no_grad():  # "retrained": other weights, saved at the same path
        next(model.parameters()).mul_(0.5)
    save_model(model, checkpoint)
    caplog.clear()
    second = run_benchmark(suite, tmp_path / "out", SHARED_DATA, tmp_path / "cache")
    assert second.cells[0].error is None, second.cells[0].error
    assert "its checkpoint changed): extracting again" in caplog.text
    retrained = DescriptorStore.open(store)
    assert retrained.fingerprint == model.fingerprint() and retrained.complete
    assert "every cell saved, reused" not in caplog.text  # its cells are keyed by the checkpoint's content
    old = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="gem",
                                 preprocessing={"resize": "fixed", "size": [32, 64]}), pretrained=False).eval()
    with pytest.raises(BadInputError, match="holds descriptors of model"):  # a folder the user named: refused
        extract_to_store(old, retrained.meta["root"], retrained.names, store)


def _reranking_table(values: dict) -> BenchmarkResult:
    """A result of single-frame rows (``single``: no re-ranking; ``speed-...``: the speed preset with λ = 0.5 and
    the top in the name) whose R@1 per (row, set) is given."""
    names = list(dict.fromkeys(f for f, _ in values))
    sets = sorted({s for _, s in values})
    methods = tuple(MethodSpec(f, "single", (1,), ("-",), {}, verify=None if f == "single" else
                               {"preset": "speed", "top": int(f.rsplit("k", 1)[1]), "global_weight": 0.5})
                    for f in names)
    suite = Suite("t", {}, tuple(type("D", (), {"name": s})() for s in sets), methods, (1, 5), baseline="single",
                  fragments={"chosen": "reranking", "sets": "recall"})
    cells = [Cell(f, f, 1, "-", s, recall={1: r, 5: min(100.0, r + 5)}) for (f, s), r in values.items()]
    return BenchmarkResult(suite, cells, meta={"command": "netvlad benchmark --suite t", "threads": 1, "seed": 0})


def test_the_re_ranking_choice_is_the_row_whose_worst_set_is_best(tmp_path):
    """``speed-k100`` gains most on two sets and loses 6 points on the third; ``speed-k20`` never falls more than
    2 below the best row: it is chosen, and the fragments name it and their command."""
    from netvlad.pipeline.benchmark.report import FRAGMENTS, write_fragments
    from netvlad.pipeline.benchmark.selection import select_reranking
    from netvlad.pipeline.benchmark.suite import FRAGMENT_PARTS

    values = {("single", "a"): 90.0, ("single", "b"): 60.0, ("single", "c"): 70.0,
              ("speed-k100", "a"): 95.0, ("speed-k100", "b"): 70.0, ("speed-k100", "c"): 64.0,
              ("speed-k20", "a"): 93.0, ("speed-k20", "b"): 68.0, ("speed-k20", "c"): 71.0}
    result = _reranking_table(values)
    selection = select_reranking(result)
    assert selection.families == ("speed-k100", "speed-k20") and selection.default == "speed-k20"
    assert selection.gap["speed-k20"] == {"a": -2.0, "b": -2.0, "c": 0.0}
    assert selection.margin["speed-k100"]["c"] == -6.0
    assert selection.held_out["c"] == ("speed-k100", -7.0, -6.0)  # chosen on a and b, it fails on c
    assert selection.held_out["a"] == ("speed-k20", -2.0, 3.0)
    assert selection.per_method == {"speed": "speed-k20"}
    assert set(FRAGMENTS) == set(FRAGMENT_PARTS)
    chosen, sets = (p.read_text() for p in write_fragments(result, tmp_path))
    assert chosen.startswith("`netvlad benchmark --suite t` — ") and sets.startswith("`netvlad benchmark --suite t`")
    assert "Chosen re-ranking default: **speed-k20** (preset speed, λ = 0.5, top 20): the best worst set, 2.0 below " \
           "the best row on a." in chosen
    assert "| **speed-k20** | speed | 0.5 | 20 | 93.0 | 68.0 | 71.0 | -2.0 (a) | +1.0 (c) |" in chosen
    assert "| speed-k100 | 95.0 / 100.0 | 70.0 / 75.0 | 64.0 / 69.0 |" in sets
    assert select_reranking(_table({("base", "a"): 1.0})) is None  # no re-ranking row: nothing to choose


def test_fragments_a_suite_names_are_checked(tmp_path):
    with pytest.raises(BadInputError, match="fragment 'x': unknown part 'all'; known: recall, report, reranking"):
        load_suite(_suite(tmp_path, BASE + "fragments: {x: all}\n"))
    with pytest.raises(BadInputError, match="fragment 'x' is the re-ranking choice, but no method re-ranks"):
        load_suite(_suite(tmp_path, BASE + "fragments: {x: reranking}\n"))
    assert load_suite("reranking").fragments == {"reranking-defaults": "reranking", "reranking-sets": "recall"}


def test_the_library_default_is_the_family_the_default_suites_table_chose():
    """The docs table of the default suite (offline and stream columns) names the default it chose: that family's
    method and velocities are what ``evaluate --sequence`` and ``stream --sequence`` use."""
    import re
    from pathlib import Path

    from netvlad.match.sequence import DEFAULT, DEFAULT_METHOD, DEFAULT_STREAM_SCORE

    text = (Path(__file__).parents[2] / "docs" / "results" / "sequence-defaults-stream.md").read_text("utf-8")
    chosen = re.search(r"Chosen default: \*\*([\w-]+)\*\*", text).group(1)
    family = next(m for m in load_suite("default").methods if m.name == chosen)
    assert family.method == DEFAULT_METHOD == DEFAULT_STREAM_SCORE
    assert tuple(family.options.get("velocities", DEFAULT.velocities)) == DEFAULT.velocities
