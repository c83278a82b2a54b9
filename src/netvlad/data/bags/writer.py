"""Writing a bag with ``rosbags``: a ROS 1 ``.bag``, a bare ``.mcap`` file, or a ROS 2 folder (SQLite, or MCAP
storage). The bag is written beside its final path and moved there when complete, so a crash leaves no half bag.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from netvlad.errors import BadInputError

STORAGES = ("sqlite3", "mcap")


class BagWriter:
    """Messages into a new bag at ``path``: ``.bag`` → ROS 1, ``.mcap`` → one MCAP file, any other name → a ROS 2
    bag folder with ``storage`` ``sqlite3`` or ``mcap``. Use as a context manager; :meth:`topic` then
    :meth:`write` (message objects of :attr:`typestore` types, or registered with :meth:`register`)."""

    def __init__(self, path: Path | str, storage: str = "sqlite3") -> None:
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        if self.path.exists():
            raise BadInputError(f"{self.path}: exists; choose a new path for the bag", path=self.path)
        if storage not in STORAGES:
            raise BadInputError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.ros1 = self.path.suffix.lower() == ".bag"
        self.storage = "mcap" if self.path.suffix.lower() == ".mcap" else storage
        self.typestore = get_typestore(Stores.ROS1_NOETIC if self.ros1 else Stores.ROS2_HUMBLE)
        self._temp: Path | None = None
        self._writer = None
        self._connections: dict[str, object] = {}

    def register(self, definitions: dict[str, str]) -> None:
        """Add message types: ``{"pkg/msg/Name": "<.msg text>"}`` (the bag embeds their definitions)."""
        from rosbags.typesys import get_types_from_msg

        for name, text in definitions.items():
            self.typestore.register(get_types_from_msg(text, name))

    def __enter__(self) -> BagWriter:
        from rosbags.rosbag1 import Writer as Writer1
        from rosbags.rosbag2 import StoragePlugin
        from rosbags.rosbag2 import Writer as Writer2

        self._temp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        target = self._temp / (self.path.name if self.ros1 else "bag")
        if self.ros1:
            self._writer = Writer1(target)
        else:
            plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
            self._writer = Writer2(target, version=9, storage_plugin=plugin)
        self._writer.open()
        return self

    def topic(self, name: str, msgtype: str) -> None:
        """Declare topic ``name`` carrying ``msgtype`` (``sensor_msgs/msg/Image``)."""
        self._connections[name] = self._writer.add_connection(name, msgtype, typestore=self.typestore)

    def write(self, topic: str, log_ns: int, message) -> None:
        """Write ``message`` on ``topic`` at log time ``log_ns`` nanoseconds."""
        connection = self._connections[topic]
        serialize = self.typestore.serialize_ros1 if self.ros1 else self.typestore.serialize_cdr
        self._writer.write(connection, int(log_ns), serialize(message, connection.msgtype))

    def __exit__(self, exc_type, *exc) -> None:
        try:
            self._writer.close()
            if exc_type is None:
                if self.ros1:
                    (self._temp / self.path.name).replace(self.path)
                elif self.path.suffix.lower() == ".mcap":
                    (self._temp / "bag" / "bag.mcap").replace(self.path)
                else:
                    (self._temp / "bag").replace(self.path)
        finally:
            shutil.rmtree(self._temp, ignore_errors=True)


def header(typestore, stamp_ns: int, frame_id: str = ""):
    """A ``std_msgs/msg/Header`` at ``stamp_ns`` nanoseconds."""
    types = typestore.types
    stamp = types["builtin_interfaces/msg/Time"](sec=int(stamp_ns) // 1_000_000_000,
                                                 nanosec=int(stamp_ns) % 1_000_000_000)
    if "seq" in types["std_msgs/msg/Header"].__dataclass_fields__:  # ROS 1
        return types["std_msgs/msg/Header"](seq=0, stamp=stamp, frame_id=frame_id)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)
