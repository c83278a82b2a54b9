"""``python -m benchmarks loss-normalisation``: a trained model's held-out recalls per set (the city per query
condition, as its own ranking says), and the table's worst set and pick."""

import numpy as np
import pytest

from benchmarks import loss_normalisation
from netvlad.data import open_dataset
from netvlad.data.conditions import query_conditions
from netvlad.data.synthetic import CityConfig, generate_city
from netvlad.eval import evaluate
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model


def row(setup, variant, seed, lr, r1s):
    recalls = {name: {"r1": r1, "r5": r1 + 10.0} for name, r1 in zip(loss_normalisation.HELD_OUT, r1s, strict=True)}
    return {"setup": setup, "variant": variant, "seed": seed, "lr": lr, "recalls": recalls}


def test_table_reports_each_set_the_worst_and_picks_the_best_worst():
    rows = [row("nordland", "sum@1", 0, 3e-4, [30, 20, 60, 50, 40]),
            row("nordland", "sum@1", 1, 3e-4, [32, 22, 61, 52, 44]),
            row("nordland", "violating_mean@1", 0, 3e-4, [25, 35, 60, 50, 40]),
            row("nordland", "violating_mean@1", 1, 3e-4, [27, 30, 61, 52, 44]),
            row("city", "sum@1", 0, 2e-4, [10, 40, 90, 80, 70]),
            row("city", "violating_mean@1", 0, 2e-4, [12, 40, 90, 80, 70])]
    text = loss_normalisation.table(rows, 500)
    assert "| nordland | `sum` @ 3e-04 | 31.0 ± 1.4 / 41.0 ± 1.4 | 21.0 ± 1.4 / 31.0 ± 1.4 |" in text
    assert text.count("| nordland | `sum` @ 3e-04 |") == 1  # one row per recipe and variant, seeds pooled
    assert "| city | `violating_mean` @ 2e-04 | 12.0 / 22.0 |" in text
    assert text.splitlines()[-1].startswith("Worst held-out Recall@1 over every recipe and seed: `sum@1` 10.0, "
                                            "`violating_mean@1` 12.0")
    assert text.endswith("highest: `violating_mean@1`.")
    header = next(line for line in text.splitlines() if line.startswith("| recipe"))
    assert all(name in header for name in loss_normalisation.HELD_OUT)


@pytest.mark.parametrize("variant", ["sum", "nope@2"])
def test_variants_are_checked_before_any_work(variant):
    import argparse

    parser = argparse.ArgumentParser()
    loss_normalisation.add_arguments(parser)
    args = parser.parse_args(["--variants", variant])
    if variant == "sum":
        assert loss_normalisation.parse_variant(variant) == ("sum", 1.0)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="nope"):
            loss_normalisation.run(args)


def test_evaluate_model_splits_the_city_by_condition(tmp_path):
    config = CityConfig.preset("tiny", seed=3, query_conditions=loss_normalisation.CITY_CONDITIONS)
    city = open_dataset(generate_city(config, tmp_path / "city"))
    model = PlaceModel(ModelConfig(pool="gem", preprocessing=Preprocessing("none")), pretrained=False).eval()
    checkpoint = save_model(model, tmp_path / "model.safetensors")
    out = loss_normalisation.evaluate_model(checkpoint, {"city": city})
    assert sorted(out) == sorted(f"city {c}" for c in loss_normalisation.CITY_CONDITIONS)
    # each condition's recall is the whole evaluation's ranking restricted to that condition's queries
    result = evaluate(model, city, ns=loss_normalisation.NS)
    conditions = np.array(query_conditions(city))
    for condition in loss_normalisation.CITY_CONDITIONS:
        mine = np.flatnonzero(conditions == condition)
        hits = [np.isin(result.ranked[q, :1], result.positives[q]).any() for q in mine]
        assert out[f"city {condition}"]["r1"] == pytest.approx(100 * np.mean(hits))


def test_a_kept_model_is_marked():
    rows = [row("city", "sum@1", 0, 2e-4, [10, 40, 90, 80, 70]) | {"kept": True},
            row("city", "violating_mean@1", 0, 2e-4, [12, 40, 90, 80, 70])]
    text = loss_normalisation.table(rows, 500)
    assert "| city | `sum` @ 2e-04 (kept) |" in text and "| city | `violating_mean` @ 2e-04 |" in text
    assert "Rows marked kept come from an earlier run in the same `--keep` folder" in text
