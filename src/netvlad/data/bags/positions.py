"""Positions from a bag: GNSS fixes (``sensor_msgs/NavSatFix``, lat/lon → UTM metres) or odometry
(``nav_msgs/Odometry``, ``geometry_msgs/PoseStamped``, ``PoseWithCovarianceStamped``: x, y metres in the odometry
frame), each at its header stamp, and their linear interpolation to image stamps."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from netvlad.data import geo
from netvlad.data.bags.bag import Bag, BagError, stamp_ns

logger = logging.getLogger(__name__)

NO_FIX = -1  # sensor_msgs/NavSatStatus.STATUS_NO_FIX


@dataclass(frozen=True)
class Track:
    """Position samples sorted by stamp: ``stamps`` (M,) int64 ns, ``points`` (M, 2) metres, ``zone`` (UTM zone
    number and letter for GNSS, None for odometry), ``dropped`` messages without a usable position."""

    topic: str
    stamps: np.ndarray
    points: np.ndarray
    zone: tuple[int, str] | None
    dropped: int = 0


def _xy(msg, msgtype: str) -> tuple[float, float]:
    pose = msg.pose if msgtype.endswith("PoseStamped") else msg.pose.pose  # Odometry, PoseWithCovarianceStamped
    return float(pose.position.x), float(pose.position.y)


def read_track(bag: Bag, topic: str, kind: str) -> Track:
    """The ``kind`` (``gnss`` or ``odometry``) samples of ``topic``, sorted by header stamp; GNSS messages without
    a fix (status −1) or with NaN coordinates are dropped and counted."""
    msgtype = bag.topic(topic, kind).msgtype
    topic = bag.topic(topic, kind).name
    stamps, values, dropped = [], [], 0
    for _, raw in bag.messages(topic):
        msg = bag.deserialize(raw, msgtype)
        if kind == "gnss":
            value = (float(msg.latitude), float(msg.longitude))
            if msg.status.status <= NO_FIX or not (np.isfinite(value).all() and abs(value[0]) <= 84
                                                   and abs(value[1]) <= 180):
                dropped += 1
                continue
        else:
            value = _xy(msg, msgtype)
            if not np.isfinite(value).all():
                dropped += 1
                continue
        stamps.append(stamp_ns(raw, bag.ros2))
        values.append(value)
    if not stamps:
        raise BagError(f"{bag.path}: topic {topic} has no usable position ({dropped} messages without a fix or "
                       "with NaN); pick another position topic", path=bag.path,
                       hint="--gps-topic / --odom-topic")
    stamps = np.asarray(stamps, dtype=np.int64)
    order = np.argsort(stamps, kind="stable")
    stamps, values = stamps[order], np.asarray(values, dtype=np.float64)[order]
    keep = np.concatenate([[True], np.diff(stamps) > 0])  # one sample per stamp (the first)
    stamps, values = stamps[keep], values[keep]
    zone = None
    if kind == "gnss":
        values, zone, keys = geo.latlon_to_utm(values[:, 0], values[:, 1])
        if len(set(keys.tolist())) > 1:
            raise BagError(f"{bag.path}: {topic} spans UTM zones {geo.describe_zones(keys)}; split the bag so that "
                           "each part stays in one zone", path=bag.path)
    if dropped:
        logger.warning("%s: %s: dropped %d messages without a fix or with NaN", bag.path, topic, dropped)
    return Track(topic, stamps, values, zone, dropped)


def gaps(track: Track, stamps: np.ndarray) -> np.ndarray:
    """Seconds between the two position samples around each stamp (ns) inside the track (NaN outside)."""
    stamps = np.asarray(stamps, dtype=np.int64)
    after = np.searchsorted(track.stamps, stamps, side="left").clip(1, max(1, len(track.stamps) - 1))
    out = (track.stamps[after] - track.stamps[after - 1]) / 1e9 if len(track.stamps) > 1 else np.zeros(len(stamps))
    inside = (stamps >= track.stamps[0]) & (stamps <= track.stamps[-1])
    return np.where(inside, out, np.nan)


def interpolate(track: Track, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(points (N, 2) metres, inside (N,) bool)``: positions linearly interpolated to ``stamps`` (ns) between the
    two samples around each; stamps before the first or after the last sample are outside (NaN)."""
    stamps = np.asarray(stamps, dtype=np.int64)
    inside = (stamps >= track.stamps[0]) & (stamps <= track.stamps[-1])
    points = np.full((len(stamps), 2), np.nan)
    if inside.any():
        t = (stamps[inside] - track.stamps[0]).astype(np.float64)  # ns from the first sample: exact in float64
        ts = (track.stamps - track.stamps[0]).astype(np.float64)
        points[inside, 0] = np.interp(t, ts, track.points[:, 0])
        points[inside, 1] = np.interp(t, ts, track.points[:, 1])
    return points, inside
