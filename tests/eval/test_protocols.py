"""Named protocols: every registered one is well-formed; datasets of another shape are refused; fed sizes are the
loader's; frame tolerances count the names' frame numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netvlad.data import list_formats, open_dataset
from netvlad.data.images import check_resize, image_size, load_image
from netvlad.errors import BadInputError
from netvlad.eval.protocol_eval import fed_size, open_for_protocol, prepare
from netvlad.eval.protocols import PROTOCOLS, check_dataset, count_differences, get_protocol
from tests.conftest import copy_sequence, shared_dataset
from tests.data.helpers import pitts_struct, pittsburgh_utm, tokyo_tree, write_dvgb, write_mat_classic, write_msls


@pytest.fixture(scope="module")
def nordland_part(tmp_path_factory):
    """The first 8 places of the shared Nordland thumbnails (kept every 10 frames: images-00010, -00020 ...)."""
    return copy_sequence(shared_dataset("nordland"), tmp_path_factory.mktemp("nordland"), ("summer", "winter"),
                         [f"images-{i:05d}.png" for i in range(10, 90, 10)])


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_every_protocol_is_well_formed(name):
    protocol = get_protocol(name)
    check_resize(protocol.resize, protocol.size)
    assert set(protocol.formats) <= set(list_formats())
    assert protocol.num_queries > 0 and protocol.num_database > 0 and protocol.description and protocol.source
    assert (protocol.frame_tolerance is None) == ("sequence" not in protocol.formats)
    assert json.loads(json.dumps(protocol.to_json()))["name"] == name


def test_unknown_protocol():
    with pytest.raises(BadInputError, match="unknown protocol 'pitts' ; choose one of pitts30k".replace(" ;", ";")):
        get_protocol("pitts")


def test_nordland_tolerances_count_frame_numbers(nordland_part):
    wide = open_for_protocol(nordland_part, get_protocol("nordland"))
    strict = open_for_protocol(nordland_part, get_protocol("nordland-1"))
    assert wide.queries.frames.tolist()[:3] == [10, 20, 30]
    # ±10 frames of video = the neighbouring kept frame; ±1 frame = the same place only
    assert [p.tolist() for p in wide.positives()[:3]] == [[0, 1], [0, 1, 2], [1, 2, 3]]
    assert [p.tolist() for p in strict.positives()[:3]] == [[0], [1], [2]]
    assert count_differences(get_protocol("nordland"), 8, 8) == {
        "queries": {"found": 8, "published": 27592}, "database": {"found": 8, "published": 27592}}


def test_a_dataset_of_another_shape_is_refused(tmp_path, nordland_part):
    with pytest.raises(BadInputError, match="protocol tokyo247 needs a mat dataset, this is sequence"):
        open_for_protocol(nordland_part, get_protocol("tokyo247"))
    with pytest.raises(BadInputError, match="protocol gardens-point needs a sequence dataset, this is dvgb"):
        open_for_protocol(write_dvgb(tmp_path / "dvgb", pittsburgh_utm([[0, 0]]), pittsburgh_utm([[1, 0]])),
                          get_protocol("gardens-point"))
    # a Pittsburgh dbStruct has no panoramas; a Tokyo one with a cut-out missing from the list has none either
    db_names, db_utm, q_names, q_utm = tokyo_tree(tmp_path / "tokyo", "247query_v3")
    pitts = write_mat_classic(tmp_path / "tokyo" / "pitts30k_test.mat", pitts_struct(db_names, db_utm, ["x.jpg"],
                                                                                     [[0, 0]]))
    (tmp_path / "tokyo" / "x.jpg").write_bytes((tmp_path / "tokyo" / db_names[0]).read_bytes())
    with pytest.raises(BadInputError, match="no panorama ids"):
        open_for_protocol(pitts, get_protocol("tokyo247"))
    short = write_mat_classic(tmp_path / "tokyo" / "tokyo247.mat", pitts_struct(db_names[:-1], db_utm[:-1], q_names,
                                                                                q_utm))
    with pytest.raises(BadInputError, match="no panorama ids .*multiple of 12"):
        open_for_protocol(short, get_protocol("tokyo247"))
    with pytest.raises(BadInputError, match="the name says pitts30k, not pitts250k"):
        check_dataset(get_protocol("pitts250k"), open_dataset(pitts, image_root=tmp_path / "tokyo"))


def test_msls_val_drops_queries_without_positives_and_needs_both_cities(tmp_path):
    root = write_msls(tmp_path)
    data = open_for_protocol(root, get_protocol("msls-val"))
    assert (len(data.queries), len(data.database)) == (9, 14)  # the two queries 5 km away are dropped
    with pytest.raises(BadInputError, match="evaluates the cities cph and sf, this dataset holds sf"):
        prepare(open_dataset(root, split="sf"), get_protocol("msls-val"))


@pytest.mark.parametrize(("resize", "size"), [("longest", (640,)), ("fixed", (480, 640)), ("none", ())])
def test_reported_sizes_are_what_the_loader_feeds(tokyo_pair, resize, size):
    for name in ("tokyo_query.jpg", "tokyo_db.png"):
        path = tokyo_pair / name
        assert fed_size(*image_size(path), resize, size) == tuple(load_image(path, resize, size).shape[1:])
    assert fed_size(2448, 3264, "longest", (640,)) == (480, 640)


def test_tokyo_protocol_reads_the_release_and_keeps_its_queries(tmp_path):
    db_names, db_utm, q_names, q_utm = tokyo_tree(tmp_path, "247query_v3")
    data = open_for_protocol(write_mat_classic(tmp_path / "tokyo247.mat", pitts_struct(db_names, db_utm, q_names,
                                                                                       q_utm)),
                             get_protocol("tokyo247"))
    assert data.database.panoramas is not None and len(data.queries) == 3  # unmatched queries: misses, as published
    np.testing.assert_array_equal(data.database.panoramas, np.arange(36) // 12)
