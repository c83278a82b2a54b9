"""Loop closures written back as bag messages a SLAM back-end reads beside the original topics.

Each accepted match becomes one ``netvlad_msgs/msg/LoopClosure`` message on ``/netvlad/loop_closure``, logged at
the query keyframe's stamp; the bag embeds the type's definition (ROS 1 connection header, MCAP schema, ROS 2
SQLite ``message_definitions``), so readers need no package installed::

    std_msgs/Header header               # stamp: the query keyframe's image stamp; frame_id: the image topic
    builtin_interfaces/Time match_stamp  # the image stamp of the matched earlier keyframe
    float64 distance                     # L2 distance between the two global descriptors
    string query                         # the keyframes' names: <topic>@<log time ns> in the source bag
    string match
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from netvlad.data.bags.writer import BagWriter, header

TOPIC = "/netvlad/loop_closure"
MSGTYPE = "netvlad_msgs/msg/LoopClosure"
DEFINITION = """std_msgs/Header header
builtin_interfaces/Time match_stamp
float64 distance
string query
string match
"""


@dataclass(frozen=True)
class Closure:
    """One loop closure: the query and matched keyframes' stamps (ns) and names, and their descriptor distance."""

    stamp_ns: int
    match_stamp_ns: int
    distance: float
    query: str
    match: str


def write_closures(path: Path | str, closures: list[Closure], image_topic: str) -> Path:
    """Write ``closures`` to a new bag at ``path`` (``.bag``: ROS 1; ``.mcap``: MCAP; else a ROS 2 SQLite folder);
    returns ``path``."""
    with BagWriter(path) as writer:
        writer.register({MSGTYPE: DEFINITION})
        writer.topic(TOPIC, MSGTYPE)
        types = writer.typestore.types
        for c in closures:
            match = header(writer.typestore, c.match_stamp_ns).stamp
            writer.write(TOPIC, c.stamp_ns, types[MSGTYPE](header=header(writer.typestore, c.stamp_ns, image_topic),
                                                           match_stamp=match, distance=float(c.distance),
                                                           query=c.query, match=c.match))
    return Path(path)
