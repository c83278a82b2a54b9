"""What a bag holds for place recognition: its image, GNSS and odometry topics with message counts, rates and
time spans (``netvlad data inspect BAG``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netvlad.data.bags.bag import Bag


@dataclass(frozen=True)
class TopicSummary:
    """One topic: name, kind (image, gnss, odometry, other), message type, count, first/last log time (s) and the
    median time between messages (s; NaN for fewer than two)."""

    name: str
    kind: str
    msgtype: str
    count: int
    start: float
    end: float
    period: float = float("nan")

    @property
    def rate(self) -> float | None:
        """Messages per second: one over the median time between messages (robust to pauses), None if unknown."""
        return 1.0 / self.period if self.period > 0 else None

    def line(self) -> str:
        rate = f"{self.rate:.2f} Hz" if self.rate is not None else "— Hz"
        return (f"  {self.kind:8s} {self.name}  {self.msgtype.split('/')[-1]}  {self.count} messages  {rate}  "
                f"{self.start:.3f}–{self.end:.3f} s ({self.end - self.start:.1f} s)")


def log_times(bag: Bag, topic: str) -> np.ndarray:
    """Log times (ns, int64) of ``topic``'s messages: from a ROS 1 bag's index, else by reading the messages."""
    reader = bag.reader
    if not bag.ros2:  # ROS 1: the index in memory holds every message's time, no chunk is read
        times = [entry.time for sub in reader.readers for c in sub.connections if c.topic == topic
                 for entry in sub.indexes[c.id]]
        return np.sort(np.asarray(times, dtype=np.int64))
    return np.fromiter((t for t, _ in bag.messages(topic)), dtype=np.int64)


def inspect_bag(path: Path | str) -> list[TopicSummary]:
    """The image, GNSS and odometry topics of the bag at ``path``, in that order then by name (``other`` topics
    last)."""
    order = {"image": 0, "gnss": 1, "odometry": 2, "other": 3}
    with Bag(path) as bag:
        topics = sorted(bag.topics.values(), key=lambda t: (order[t.kind or "other"], t.name))
        out = []
        for topic in topics:
            times = log_times(bag, topic.name)
            start, end = (float(times[0]) / 1e9, float(times[-1]) / 1e9) if len(times) else (np.nan, np.nan)
            period = float(np.median(np.diff(times))) / 1e9 if len(times) > 1 else np.nan
            out.append(TopicSummary(topic.name, topic.kind or "other", topic.msgtype, len(times), start, end,
                                    period))
    return out


def inspect_lines(path: Path | str) -> list[str]:
    """The lines ``netvlad data inspect BAG`` prints."""
    summaries = inspect_bag(path)
    with Bag(path) as bag:
        total = sum(t.count for t in bag.topics.values())
        start, end = bag.span_ns()
    kind = "ROS 2" if Path(path).suffix.lower() != ".bag" else "ROS 1"
    lines = [f"{path}: {kind} bag, {total} messages, {(end - start) / 1e9:.1f} s"]
    lines += [s.line() for s in summaries] or ["  no topics"]
    if not any(s.kind == "image" for s in summaries):
        lines.append("  no image topic (sensor_msgs/Image or CompressedImage)")
    return lines
