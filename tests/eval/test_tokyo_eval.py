"""Tokyo 24/7 evaluation on the shared real day/night pair: the full path (reader, model, per-panorama scoring)."""

from __future__ import annotations

import pytest
from PIL import Image

from netvlad.data import open_dataset
from netvlad.eval.recall import evaluate
from tests.data.helpers import pitts_struct, tokyo_tree, write_mat_classic


def test_real_day_night_pair_scored_per_panorama(tmp_path, tokyo_pair, tiny_model, one_thread):
    """The shared Tokyo pair as panorama 0 (12 crops of the daytime cut-out) and the night phone photo as query."""
    day = Image.open(tokyo_pair / "tokyo_db.png").convert("RGB")
    night = Image.open(tokyo_pair / "tokyo_query.jpg").convert("RGB").resize((320, 240))

    def crop(i):  # 12 overlapping crops stand in for the 12 cut-outs of one panorama; others are shifted copies
        x = (i % 12) * 20
        return day.crop((x, 0, x + 400, 480)).rotate(0 if i < 12 else 90 * (i // 12), expand=True).resize((80, 60))

    db_names, db_utm, q_names, q_utm = tokyo_tree(tmp_path, "247query_v3", db_image=crop,
                                                  q_image=lambda i: night)
    mat = write_mat_classic(tmp_path / "tokyo247.mat", pitts_struct(db_names, db_utm, q_names, q_utm))
    data = open_dataset(mat)
    result = evaluate(tiny_model, data, ns=(1, 2, 3))
    groups = data.database.panoramas
    for row in result.ranked:
        kept = row[row >= 0]
        assert len(set(groups[kept])) == len(kept) == 3  # one cut-out per panorama, all three panoramas
    assert result.recall[3] == pytest.approx(200 / 3)  # queries 1-2 have a panorama within 25 m; query 3 none
