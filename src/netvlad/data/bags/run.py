"""One recorded run in a bag: the images of one topic in header-stamp order, their interpolated positions and the
keyframes kept — what both the bag dataset reader and ``netvlad stream`` read."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netvlad.data.bags.bag import Bag, BagError, stamp_ns
from netvlad.data.bags.images import image_name, message_image
from netvlad.data.bags.keyframes import KeyframeRule, select_keyframes
from netvlad.data.bags.positions import Track, gaps, interpolate, read_track

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BagOptions:
    """Which topics to read and which images to keep: ``image_topic`` (None: the bag's only image topic),
    ``gps_topic`` (NavSatFix) or ``odom_topic`` (Odometry / PoseStamped) for positions, the keyframe ``rule``;
    ``need_positions``: without a position topic named, take the bag's only GNSS (else odometry) topic."""

    image_topic: str | None = None
    gps_topic: str | None = None
    odom_topic: str | None = None
    rule: KeyframeRule = field(default_factory=KeyframeRule)
    need_positions: bool = True

    def __post_init__(self) -> None:
        if self.gps_topic is not None and self.odom_topic is not None:
            raise BagError("name one position topic: a GNSS topic or an odometry topic, not both",
                           hint="--gps-topic or --odom-topic")


@dataclass(frozen=True)
class BagRun:
    """Keyframes of one image topic, in header-stamp order: ``names`` (relative to ``bag``, see
    :func:`~netvlad.data.bags.images.image_name`), ``stamps`` (N,) int64 ns, ``points`` (N, 2) metres or None,
    ``zone`` (GNSS: UTM zone), and the counts of what was read, re-ordered, outside the positions and kept."""

    bag: Path
    topic: str
    names: tuple[str, ...]
    stamps: np.ndarray
    points: np.ndarray | None
    zone: tuple[int, str] | None
    position_topic: str | None = None
    indices: np.ndarray | None = None  # (N,) each keyframe's place among the run's images in stamp order
    images: int = 0
    out_of_order: int = 0
    unstamped: int = 0
    outside: int = 0

    def __len__(self) -> int:
        return len(self.names)

    def summary(self) -> str:
        """One line: what was read and kept."""
        parts = [f"{self.images} images on {self.topic}"]
        if self.out_of_order:
            parts.append(f"{self.out_of_order} out of stamp order (sorted)")
        if self.unstamped:
            parts.append(f"{self.unstamped} with a zero header stamp (log time used)")
        if self.position_topic:
            parts.append(f"positions from {self.position_topic}")
        if self.outside:
            parts.append(f"{self.outside} outside its time range (left out)")
        parts.append(f"{len(self)} keyframes")
        return f"{self.bag}: " + ", ".join(parts)


def pick_topic(bag: Bag, name: str | None, kind: str) -> str:
    """``name`` checked to be a ``kind`` topic, or the bag's only ``kind`` topic (an error lists them)."""
    if name is not None:
        return bag.topic(name, kind).name
    have = bag.topics_of(kind)
    if len(have) != 1:
        raise BagError(f"{bag.path}: {'no' if not have else len(have)} image topics"
                       + (f" ({', '.join(have)}); name one" if have else ""), path=bag.path, hint="--image-topic")
    return bag.topic(have[0], kind).name


def position_track(bag: Bag, options: BagOptions) -> Track | None:
    """The position samples the options name (or, when positions are needed, the bag's only GNSS / odometry
    topic); None where none is named and none is needed."""
    if options.gps_topic is not None:
        return read_track(bag, options.gps_topic, "gnss")
    if options.odom_topic is not None:
        return read_track(bag, options.odom_topic, "odometry")
    if not options.need_positions:
        return None
    gnss, odometry = bag.topics_of("gnss"), bag.topics_of("odometry")
    if len(gnss) == 1:
        return read_track(bag, gnss[0], "gnss")
    if not gnss and len(odometry) == 1:
        return read_track(bag, odometry[0], "odometry")
    listed = ", ".join(gnss + odometry)
    raise BagError(f"{bag.path}: images need positions; name a GNSS or odometry topic"
                   + (f" ({listed})" if listed else " (the bag has none)"), path=bag.path,
                   hint="--gps-topic TOPIC or --odom-topic TOPIC")


def image_stamps(bag: Bag, topic: str) -> tuple[list[str], np.ndarray, int]:
    """Names, header stamps (ns) and how many stamps were zero (log time used) of ``topic``'s images, in log
    order; the first image's encoding is checked so an unreadable topic is refused before any work."""
    msgtype = bag.topics[topic].msgtype
    names, stamps, unstamped, last, repeat = [], [], 0, None, 0
    for log_ns, raw in bag.messages(topic):
        if not names:
            message_image(bag.deserialize(raw, msgtype), msgtype, f"{bag.path}: {topic}")
        repeat = repeat + 1 if log_ns == last else 0
        last = log_ns
        names.append(image_name(topic, log_ns, repeat))
        stamp = stamp_ns(raw, bag.ros2)
        if stamp == 0:
            stamp, unstamped = log_ns, unstamped + 1
        stamps.append(stamp)
    return names, np.asarray(stamps, dtype=np.int64), unstamped


GAP_FACTOR = 10  # a gap between position samples this many times their usual spacing is worth a warning


def warn_gaps(path: Path, track: Track, stamps: np.ndarray) -> None:
    """Warn (counting them) about images whose position is interpolated across a gap of more than
    ``GAP_FACTOR`` times the track's median spacing (a GNSS outage, a paused odometry)."""
    if len(track.stamps) < 3 or not len(stamps):
        return
    usual = float(np.median(np.diff(track.stamps))) / 1e9
    seconds = gaps(track, stamps)
    long = seconds > GAP_FACTOR * usual
    if long.any():
        logger.warning("%s: %d images lie in gaps of %s longer than %g s (up to %.1f s; it usually sends every "
                       "%.2f s): their positions are straight lines across the gap", path, int(long.sum()),
                       track.topic, GAP_FACTOR * usual, float(np.nanmax(seconds)), usual)


def read_run(path: Path | str, options: BagOptions = BagOptions()) -> BagRun:
    """The keyframes of ``path``'s image topic with their stamps and positions (see :class:`BagOptions`)."""
    with Bag(path) as bag:
        topic = pick_topic(bag, options.image_topic, "image")
        names, stamps, unstamped = image_stamps(bag, topic)
        track = position_track(bag, options)
    out_of_order = int((stamps[1:] < np.maximum.accumulate(stamps)[:-1]).sum()) if len(stamps) else 0
    order = np.argsort(stamps, kind="stable")
    names, stamps = [names[i] for i in order], stamps[order]
    if out_of_order:
        logger.warning("%s: %d images of %s came out of header-stamp order; sorted by stamp", bag.path,
                       out_of_order, topic)
    points, outside = None, 0
    if track is not None:
        points, inside = interpolate(track, stamps)
        outside = int((~inside).sum())
        if not inside.any():
            span = f"{track.stamps[0] / 1e9:.3f}–{track.stamps[-1] / 1e9:.3f} s"
            raise BagError(f"{bag.path}: none of the {len(stamps)} images of {topic} ({stamps[0] / 1e9:.3f}–"
                           f"{stamps[-1] / 1e9:.3f} s) lies within the positions of {track.topic} ({span}); pick "
                           "the topic recorded with the images", path=bag.path, hint="--gps-topic / --odom-topic")
        if outside:
            logger.warning("%s: %d of %d images of %s lie outside the time range of %s; left out", bag.path,
                           outside, len(stamps), topic, track.topic)
        warn_gaps(bag.path, track, stamps[inside])
        idx = np.flatnonzero(inside)
        names, stamps, points = [names[i] for i in idx], stamps[idx], points[idx]
    keep = select_keyframes(options.rule, stamps, points)
    run = BagRun(bag.path, topic, tuple(names[i] for i in keep), stamps[keep],
                 None if points is None else points[keep], None if track is None else track.zone,
                 None if track is None else track.topic, keep, len(order), out_of_order, unstamped, outside)
    logger.info(run.summary())
    return run
