"""The bag reader on bags written from Gardens Point frames: stamps, interpolated positions against hand-computed
values, keyframes, encodings, images identical to the files they came from, and bad input (one line each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netvlad.data import open_dataset
from netvlad.data.bags.images import open_bag_image
from netvlad.data.bags.inspect import inspect_bag
from netvlad.data.images import load_image
from netvlad.errors import BadInputError
from tests.conftest import shared_dataset
from tests.data.bags.helpers import (
    FORMATS,
    IMAGE_PERIOD,
    ODOM_SPEED,
    expected_utm,
    image_stamp,
    raw_pixels,
    write_folder,
    write_run,
)

N = 5


@pytest.fixture(scope="module")
def frames():
    root = shared_dataset("gardens_point") / "day_left"
    return [root / f"Image{i:03d}.jpg" for i in range(0, 10 * N, 10)]


@pytest.fixture(scope="module", params=list(FORMATS))
def bag(request, frames, tmp_path_factory):
    return write_run(tmp_path_factory.mktemp(request.param) / FORMATS[request.param], frames)


def test_stamps_and_gnss_positions_match_hand_computed_values(bag):
    dataset = open_dataset(bag, image_topic="/camera/compressed", gps_topic="/gps/fix")
    images = dataset.database
    assert len(images) == N and len(dataset.queries) == 0 and dataset.info.format == "bag"
    assert images.stamps.tolist() == [image_stamp(i) for i in range(N)]
    np.testing.assert_allclose(images.utm, [expected_utm(i) for i in range(N)], rtol=0, atol=1e-6)
    assert images.zone == (56, "J")
    assert images.sequence.frames.tolist() == list(range(N))


def test_odometry_positions_are_metres_in_its_frame(bag):
    images = open_dataset(bag, image_topic="/camera/raw", odom_topic="/odom").database
    seconds = (images.stamps - images.stamps[0]) / 1e9 + 0.25  # odometry starts with the first fix
    np.testing.assert_allclose(images.utm, np.stack([ODOM_SPEED * seconds, 0 * seconds], 1), atol=1e-9)
    assert images.zone is None


@pytest.mark.parametrize("topic", ["/camera/compressed", "/camera/raw"])
def test_bag_images_decode_to_the_files_pixels(bag, frames, topic, tmp_path):
    images = open_dataset(bag, image_topic=topic, gps_topic="/gps/fix").database
    folder = write_folder(tmp_path, frames[:2], png=topic == "/camera/raw")
    for path, name in zip(images.paths()[:2], folder, strict=False):
        assert torch.equal(load_image(path, "fixed", (48, 64)), load_image(tmp_path / name, "fixed", (48, 64)))


@pytest.mark.parametrize("encoding", ["bgr8", "mono8"])
def test_bgr8_and_mono8_read_as_rgb(frames, tmp_path, encoding):
    bag = write_run(tmp_path / "run.bag", frames[:2], raw=encoding, odometry=False)
    path = open_dataset(bag, image_topic="/camera/raw").database.paths()[1]
    with open_bag_image(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    rgb = raw_pixels(frames[1])
    expected = rgb if encoding == "bgr8" else np.repeat(rgb[:, :, :1], 3, axis=2)
    assert np.array_equal(pixels, expected)


def test_keyframes_every_interval_distance(bag):
    def stamps(**rule):
        images = open_dataset(bag, image_topic="/camera/raw", gps_topic="/gps/fix", **rule).database
        return [(s - image_stamp(0)) // IMAGE_PERIOD for s in images.stamps]

    assert stamps(every=2) == [0, 2, 4]
    assert stamps(min_interval=0.9) == [0, 2, 4]  # 0.5 s apart: every second image is 1.0 s on
    assert stamps(min_interval=1.2) == [0, 3]
    step = float(np.hypot(*np.subtract(expected_utm(1), expected_utm(0))))  # ≈ 5.5 m between images
    assert stamps(min_distance=2.5 * step) == [0, 3]


def test_out_of_order_images_are_sorted_by_stamp(frames, tmp_path, caplog):
    bag = write_run(tmp_path / "run.mcap", frames, order=[0, 2, 1, 4, 3])
    images = open_dataset(bag, image_topic="/camera/compressed", gps_topic="/gps/fix").database
    assert images.stamps.tolist() == [image_stamp(i) for i in range(N)]
    assert "2 images of /camera/compressed came out of header-stamp order" in caplog.text
    np.testing.assert_allclose(images.utm, [expected_utm(i) for i in range(N)], rtol=0, atol=1e-6)


def test_images_outside_the_fixes_are_counted_and_left_out(frames, tmp_path, caplog):
    bag = write_run(tmp_path / "run.bag", frames, fixes=2)  # fixes at 0 and 1 s: images at 0.25, 0.75 s only
    images = open_dataset(bag, image_topic="/camera/raw", gps_topic="/gps/fix").database
    assert images.stamps.tolist() == [image_stamp(0), image_stamp(1)]
    assert "3 of 5 images of /camera/raw lie outside the time range of /gps/fix; left out" in caplog.text


def test_inspect_lists_topics_with_counts_rates_and_spans(bag):
    topics = {t.name: t for t in inspect_bag(bag)}
    assert [t.kind for t in topics.values()] == ["image", "image", "gnss", "odometry"]
    assert topics["/camera/raw"].count == N and topics["/camera/raw"].rate == pytest.approx(2.0)
    assert topics["/gps/fix"].count == 4 and topics["/gps/fix"].end - topics["/gps/fix"].start == pytest.approx(3)


def _message(call) -> str:
    with pytest.raises((BadInputError, FileNotFoundError)) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_input_is_one_line(frames, tmp_path):
    bag = write_run(tmp_path / "run.bag", frames[:2])
    assert "no topic /nope; its image topics are: /camera/compressed, /camera/raw" in _message(
        lambda: open_dataset(bag, image_topic="/nope"))
    assert "topic /gps/fix holds sensor_msgs/msg/NavSatFix, not Image or CompressedImage" in _message(
        lambda: open_dataset(bag, image_topic="/gps/fix"))
    assert "topic /odom holds nav_msgs/msg/Odometry, not NavSatFix" in _message(
        lambda: open_dataset(bag, image_topic="/camera/raw", gps_topic="/odom"))
    assert "2 image topics (/camera/compressed, /camera/raw); name one" in _message(lambda: open_dataset(bag))
    (tmp_path / "not.bag").write_bytes(b"not a bag at all")
    assert "cannot open as a ROS 1 bag" in _message(lambda: open_dataset(tmp_path / "not.bag"))
    truncated = tmp_path / "truncated.bag"
    truncated.write_bytes(bag.read_bytes()[: bag.stat().st_size // 2])
    assert "truncated or unindexed" in _message(lambda: open_dataset(truncated))
    depth = write_run(tmp_path / "depth.bag", frames[:2], raw="mono16")
    assert "encoding mono16 is a depth or 16/32-bit image" in _message(
        lambda: open_dataset(depth, image_topic="/camera/raw"))
    late = write_run(tmp_path / "late.bag", frames[:2], fix_start=image_stamp(100), odometry=False)
    assert "none of the 2 images of /camera/raw" in _message(
        lambda: open_dataset(late, image_topic="/camera/raw", gps_topic="/gps/fix"))
    no_fixes = write_run(tmp_path / "no_fixes.bag", frames[:2], fixes=0, odometry=False)
    assert "topic /gps/fix holds no messages" in _message(
        lambda: open_dataset(no_fixes, image_topic="/camera/raw", gps_topic="/gps/fix"))
    # a GNSS and an odometry topic, none named: positions come from the GNSS topic
    assert open_dataset(bag, image_topic="/camera/raw").database.zone == (56, "J")
    assert "min_distance must be > 0" in _message(lambda: open_dataset(bag, image_topic="/camera/raw",
                                                                         min_distance=-1))
    write_folder(tmp_path / "images", frames[:1])
    (tmp_path / "run.csv").write_text("path,split,easting,northing\nimages/Image000.jpg,database,0,0\n")
    assert "image_topic apply to ROS bags only; this is a csv dataset" in _message(
        lambda: open_dataset(tmp_path / "run.csv", image_topic="/camera/raw"))


def test_images_read_in_any_order_are_the_same(bag):
    paths = open_dataset(bag, image_topic="/camera/raw", gps_topic="/gps/fix").database.paths()
    forward = [load_image(p) for p in paths]
    order = [4, 0, 3, 3, 1, 2]  # backwards, repeated, skipping: the cursor starts again where it must
    assert all(torch.equal(load_image(paths[i]), forward[i]) for i in order)
    assert len({tuple(t.flatten()[:50].tolist()) for t in forward}) == N


def _one_topic_bag(path, messages):
    """A bag with ``/camera`` holding ``messages`` (type, stamp ns, message fields) at log times 1 s apart."""
    from netvlad.data.bags.writer import BagWriter, header

    with BagWriter(path) as bag:
        bag.topic("/camera", messages[0][0])
        for i, (msgtype, stamp, fields) in enumerate(messages):
            bag.write("/camera", image_stamp(0) + i * 1_000_000_000,
                      bag.typestore.types[msgtype](header=header(bag.typestore, stamp), **fields))
    return path


def test_unreadable_encodings_and_formats_are_named(tmp_path):
    raw = {"height": 2, "width": 2, "encoding": "yuv422", "is_bigendian": 0, "step": 4,
           "data": np.zeros(8, np.uint8)}
    bag = _one_topic_bag(tmp_path / "yuv.bag", [("sensor_msgs/msg/Image", image_stamp(0), raw)])
    assert "image encoding 'yuv422' cannot be read (readable: rgb8" in _message(lambda: open_dataset(bag))
    garbage = {"format": "theora", "data": np.frombuffer(b"not an image", np.uint8)}
    bag = _one_topic_bag(tmp_path / "theora.mcap", [("sensor_msgs/msg/CompressedImage", image_stamp(0), garbage)])
    assert "compressed image format 'theora' cannot be read" in _message(lambda: open_dataset(bag))


def test_zero_stamps_fall_back_to_log_time(frames, tmp_path):
    from netvlad.data.bags.run import BagOptions, read_run

    jpeg = {"format": "jpeg", "data": np.frombuffer(frames[0].read_bytes(), np.uint8)}
    bag = _one_topic_bag(tmp_path / "zero.bag", [("sensor_msgs/msg/CompressedImage", 0, jpeg),
                                                 ("sensor_msgs/msg/CompressedImage", image_stamp(3), jpeg)])
    run = read_run(bag, BagOptions(need_positions=False))
    assert run.stamps.tolist() == [image_stamp(0), image_stamp(3)] and run.unstamped == 1
    assert "1 with a zero header stamp (log time used)" in run.summary()


def test_fixes_without_a_fix_are_dropped_and_counted(tmp_path):
    import utm

    from netvlad.data.bags.bag import Bag
    from netvlad.data.bags.positions import interpolate, read_track
    from netvlad.data.bags.writer import BagWriter, header

    path = tmp_path / "fixes.mcap"
    with BagWriter(path) as bag:
        types = bag.typestore.types
        bag.topic("/fix", "sensor_msgs/msg/NavSatFix")
        for k, (status, lat) in enumerate([(0, -27.4773), (-1, 0.0), (2, -27.4771)]):  # the middle: no fix
            stamp = image_stamp(0) + k * 1_000_000_000
            bag.write("/fix", stamp, types["sensor_msgs/msg/NavSatFix"](
                header=header(bag.typestore, stamp), status=types["sensor_msgs/msg/NavSatStatus"](status=status,
                                                                                                   service=1),
                latitude=lat, longitude=153.0283, altitude=0.0, position_covariance=np.zeros(9),
                position_covariance_type=0))
    with Bag(path) as bag:
        track = read_track(bag, "/fix", "gnss")
    assert track.dropped == 1 and len(track.stamps) == 2
    points, inside = interpolate(track, np.array([image_stamp(0) + 500_000_000]))  # a quarter of the way
    (e0, n0, _, _), (e1, n1, _, _) = utm.from_latlon(-27.4773, 153.0283), utm.from_latlon(-27.4771, 153.0283)
    assert inside.all()
    np.testing.assert_allclose(points[0], [e0 + 0.25 * (e1 - e0), n0 + 0.25 * (n1 - n0)], rtol=0, atol=1e-6)


def test_images_across_a_long_gap_in_the_fixes_are_reported(caplog):
    from netvlad.data.bags.positions import Track, gaps
    from netvlad.data.bags.run import warn_gaps

    track = Track("/fix", np.array([0, 1, 2, 30, 31]) * 10**9, np.zeros((5, 2)), None)  # a 28 s outage
    seconds = gaps(track, (np.array([0.5, 1.5, 15, 30.5, 40]) * 10**9).astype(np.int64))
    assert seconds[:4].tolist() == [1.0, 1.0, 28.0, 1.0] and np.isnan(seconds[4])
    warn_gaps(Path("x.bag"), track, (np.array([0.5, 10, 20]) * 10**9).astype(np.int64))
    assert "x.bag: 2 images lie in gaps of /fix longer than 10 s (up to 28.0 s" in caplog.text
