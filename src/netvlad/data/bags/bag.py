"""A ROS bag opened for reading: ROS 1 ``.bag``, a ROS 2 bag folder (SQLite or MCAP storage) or a bare ``.mcap``
file, read with the pure-Python ``rosbags`` package (no ROS installation). Messages are read one at a time; a bag
is never loaded whole.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from netvlad.errors import BadInputError

logger = logging.getLogger(__name__)

BAG_SUFFIXES = (".bag", ".mcap")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
GNSS_TYPES = ("sensor_msgs/msg/NavSatFix",)
ODOMETRY_TYPES = ("nav_msgs/msg/Odometry", "geometry_msgs/msg/PoseStamped",
                  "geometry_msgs/msg/PoseWithCovarianceStamped")
KINDS = {"image": IMAGE_TYPES, "gnss": GNSS_TYPES, "odometry": ODOMETRY_TYPES}


class BagError(BadInputError):
    """A bag (or a topic in it) cannot be read as asked; the message names the bag and the fix."""


def is_bag(path: Path) -> bool:
    """True for a ``.bag`` or ``.mcap`` file, or a ROS 2 bag folder (one holding ``metadata.yaml``)."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in BAG_SUFFIXES
    return path.is_dir() and (path / "metadata.yaml").is_file()


def stamp_ns(raw: bytes | memoryview, ros2: bool) -> int:
    """The ``header.stamp`` (nanoseconds) of a serialised message whose first field is a ``std_msgs/Header``.

    ROS 1: ``uint32 seq, uint32 sec, uint32 nsec`` little-endian; ROS 2 (CDR): a 4-byte encapsulation header
    (byte 1 odd: little-endian) then ``int32 sec, uint32 nanosec``. Reading 12 bytes spares deserialising an image.
    """
    if ros2:
        order = "<" if raw[1] & 1 else ">"
        sec, nsec = struct.unpack_from(order + "iI", raw, 4)
    else:
        sec, nsec = struct.unpack_from("<II", raw, 4)
    return sec * 1_000_000_000 + nsec


@dataclass(frozen=True)
class Topic:
    """One topic of a bag: its name, message type (``sensor_msgs/msg/Image``), message count and kind
    (``image``, ``gnss``, ``odometry`` or None)."""

    name: str
    msgtype: str
    count: int

    @property
    def kind(self) -> str | None:
        return next((kind for kind, types in KINDS.items() if self.msgtype in types), None)


class Bag:
    """An open bag: :attr:`topics`, :meth:`messages` of one topic in log-time order, :meth:`deserialize`.

    Use as a context manager; opening errors (not a bag, truncated, unindexed) are one-line :class:`BagError`.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: bag not found; check the path")
        if not is_bag(self.path):
            raise BagError(f"{self.path}: not a ROS bag (need a ROS 1 .bag, a .mcap file or a ROS 2 bag folder "
                           "holding metadata.yaml)", path=self.path)
        self.ros2 = self.path.suffix.lower() != ".bag"
        self._reader = None

    def __enter__(self) -> Bag:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> Bag:
        """Open the bag (reads its index, not its messages)."""
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        try:
            reader = AnyReader([self.path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
            reader.open()
        except Exception as error:  # rosbags raises its own error types, struct/EOF/zstd errors on damage
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            kind = "ROS 2 bag" if self.ros2 else "ROS 1 bag"
            raise BagError(f"{self.path}: cannot open as a {kind} ({reason}); not a bag, or truncated or "
                           "unindexed: re-record it, or reindex it (rosbag reindex / ros2 bag reindex)",
                           path=self.path) from None
        self._reader = reader
        return self

    def close(self) -> None:
        """Close the bag's files."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    @property
    def reader(self):
        if self._reader is None:
            self.open()
        return self._reader

    @property
    def topics(self) -> dict[str, Topic]:
        """Topic name → :class:`Topic`, sorted by name."""
        out = {}
        for name, info in sorted(self.reader.topics.items()):
            out[name] = Topic(name, info.msgtype or "?", int(info.msgcount))
        return out

    def topics_of(self, kind: str) -> list[str]:
        """Names of the topics of ``kind`` (``image``, ``gnss``, ``odometry``)."""
        return [t.name for t in self.topics.values() if t.kind == kind]

    def topic(self, name: str, kind: str) -> Topic:
        """The topic ``name``, checked to be of ``kind``; an unknown topic's error lists the bag's topics of it."""
        topics = self.topics
        flag = {"image": "--image-topic", "gnss": "--gps-topic", "odometry": "--odom-topic"}[kind]
        wanted = " or ".join(t.split("/")[-1] for t in KINDS[kind])
        if name not in topics and "/" + name.lstrip("/") in topics:
            name = "/" + name.lstrip("/")
        if name not in topics:
            have = self.topics_of(kind)
            raise BagError(f"{self.path}: no topic {name}; its {kind} topics are: "
                           f"{', '.join(have) if have else 'none'}", path=self.path, hint=flag)
        topic = topics[name]
        if topic.kind != kind:
            raise BagError(f"{self.path}: topic {name} holds {topic.msgtype}, not {wanted}; its {kind} topics are: "
                           f"{', '.join(self.topics_of(kind)) or 'none'}", path=self.path, hint=flag)
        if topic.count == 0:
            raise BagError(f"{self.path}: topic {name} holds no messages", path=self.path, hint=flag)
        return topic

    def messages(self, topic: str, start_ns: int | None = None) -> Iterator[tuple[int, bytes]]:
        """``(log time ns, serialised message)`` of ``topic`` in log-time order, from ``start_ns`` on."""
        connections = [c for c in self.reader.connections if c.topic == topic]
        try:
            for _, log_ns, raw in self.reader.messages(connections=connections, start=start_ns):
                yield int(log_ns), raw
        except BadInputError:
            raise
        except Exception as error:  # damage past the index: a one-line error naming the bag
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            raise BagError(f"{self.path}: cannot read {topic} ({reason}); the bag may be truncated: re-record or "
                           "reindex it", path=self.path) from None

    def deserialize(self, raw: bytes, msgtype: str):
        """The message object of a serialised message of type ``msgtype``."""
        try:
            return self.reader.deserialize(raw, msgtype)
        except Exception as error:
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            raise BagError(f"{self.path}: cannot decode a {msgtype} message ({reason})", path=self.path) from None

    def span_ns(self) -> tuple[int, int]:
        """First and last log time of the bag (ns)."""
        return int(self.reader.start_time), int(self.reader.end_time)
