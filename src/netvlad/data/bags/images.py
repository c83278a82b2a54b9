"""Image messages of a bag as RGB images: ``sensor_msgs/Image`` (rgb8, bgr8, mono8, rgba8, bgra8) and
``sensor_msgs/CompressedImage`` (JPEG, PNG), and the lazy loading of one image by its name.

A bag image is named ``<bag>/<topic>@<log time ns>`` (``+k`` for the k-th of equal log times), so every step that
takes image paths takes bag images: :func:`netvlad.data.images.load_image` hands such a path to
:func:`open_bag_image`. Each process keeps its bags open and a cursor per topic, so images asked in log-time order
(extraction) are read in one pass, never loading the bag whole.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from netvlad.data.bags.bag import Bag, BagError, is_bag

RAW_ENCODINGS = {"rgb8": ("RGB", 3), "bgr8": ("RGB", 3), "mono8": ("L", 1), "8uc1": ("L", 1),
                 "rgba8": ("RGBA", 4), "bgra8": ("RGBA", 4), "8uc3": ("RGB", 3)}
DEPTH_ENCODINGS = ("mono16", "16uc1", "16sc1", "32fc1", "32sc1", "64fc1")
_NAME = re.compile(r"@(\d{1,20})(?:\+(\d+))?$")
OPEN_BAGS = 4  # bags kept open per process


def image_name(topic: str, log_ns: int, repeat: int = 0) -> str:
    """The name of the ``repeat``-th image of ``topic`` logged at ``log_ns``, relative to the bag."""
    return f"{topic.strip('/')}@{log_ns}" + (f"+{repeat}" if repeat else "")


def is_bag_image(path: Path | str) -> bool:
    """True when ``path`` names an image inside a bag (its last part ends in ``@<log time ns>``)."""
    return _NAME.search(Path(path).name) is not None


def split_image_path(path: Path) -> tuple[Path, str, int, int]:
    """``(bag, topic, log time ns, repeat)`` of a bag image path."""
    match = _NAME.search(path.name)
    for bag in path.parents:
        if is_bag(bag):
            relative = path.relative_to(bag).as_posix()
            topic = "/" + relative[: relative.rindex("@")]
            return bag, topic, int(match.group(1)), int(match.group(2) or 0)
    raise FileNotFoundError(f"{path}: no bag holds this image (the bag was moved or deleted?)")


def message_image(msg, msgtype: str, where: str) -> Image.Image:
    """An opened PIL image of an image message (compressed: not decoded yet); unreadable encodings are refused."""
    if msgtype.endswith("CompressedImage"):
        data = bytes(msg.data)
        if not data:
            raise BagError(f"{where}: empty compressed image")
        try:
            return Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise BagError(f"{where}: compressed image format {msg.format!r} cannot be read (readable: JPEG, PNG "
                           "and the other formats Pillow opens)", hint="--image-topic") from None
    encoding = msg.encoding.lower()
    if encoding in DEPTH_ENCODINGS:
        raise BagError(f"{where}: encoding {msg.encoding} is a depth or 16/32-bit image, not a camera image; pick "
                       "a colour or mono8 image topic", hint="--image-topic")
    if encoding not in RAW_ENCODINGS:
        raise BagError(f"{where}: image encoding {msg.encoding!r} cannot be read (readable: "
                       f"{', '.join(RAW_ENCODINGS)}, or a CompressedImage JPEG/PNG)", hint="--image-topic")
    mode, channels = RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if step < width * channels or len(data) < step * height:
        raise BagError(f"{where}: image data of {len(data)} bytes is short of {height}×{step} ({width}×{height} "
                       f"{msg.encoding})")
    pixels = data[: step * height].reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    if encoding.startswith("bgr"):
        pixels = pixels[:, :, [2, 1, 0, 3][:channels]]
    return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0] if channels == 1 else pixels), mode)


class _Cursor:
    """One open bag and, per topic, a forward iterator and the position it has reached."""

    def __init__(self, path: Path) -> None:
        self.bag = Bag(path).open()
        self.types = {t.name: t.msgtype for t in self.bag.topics.values()}
        self.streams: dict[str, list] = {}  # topic -> [iterator, (log ns, repeat) last read]

    def fetch(self, topic: str, log_ns: int, repeat: int) -> bytes:
        state = self.streams.get(topic)
        if state is None or state[1] >= (log_ns, repeat):  # behind: start again at this log time
            state = self.streams[topic] = [self.bag.messages(topic, log_ns), (-1, 0)]
        iterator, last = state
        for time, raw in iterator:
            key = (time, last[1] + 1 if time == last[0] else 0)
            state[1] = last = key
            if key == (log_ns, repeat):
                return raw
            if key > (log_ns, repeat):
                break
        del self.streams[topic]
        raise FileNotFoundError(f"{self.bag.path}: no {topic} message at log time {log_ns} ns (the bag changed?)")


# The open bags of this process: image paths are all the extraction pipeline hands over, so the cursors that let
# consecutive images be read in one pass live here, keyed by the bag and its modification time (a bag written
# again at the same path is opened again).
_cursors: dict[tuple[Path, int], _Cursor] = {}
_owner = [os.getpid()]  # a forked DataLoader worker opens its own files, never the parent's


def _cursor(bag: Path) -> _Cursor:
    if _owner[0] != os.getpid():
        _cursors.clear()
        _owner[0] = os.getpid()
    key = (bag, (bag / "metadata.yaml" if bag.is_dir() else bag).stat().st_mtime_ns)
    cursor = _cursors.get(key)
    if cursor is None:
        if len(_cursors) >= OPEN_BAGS:
            _cursors.pop(next(iter(_cursors))).bag.close()
        cursor = _cursors[key] = _Cursor(bag)
    return cursor


def bag_message(path: Path | str) -> tuple[str, bytes]:
    """The message type and serialised bytes of the image message named by ``path``, not decoded (a bag image's
    identity: it has no file of its own to hash)."""
    bag, topic, log_ns, repeat = split_image_path(Path(path))
    cursor = _cursor(bag)
    return cursor.types[topic], cursor.fetch(topic, log_ns, repeat)


def open_bag_image(path: Path | str) -> Image.Image:
    """The image message named by ``path`` (see :func:`image_name`) as an opened PIL image, ready for
    :func:`netvlad.data.images.decode_image` like an image file."""
    bag, topic, log_ns, _ = split_image_path(Path(path))
    msgtype, raw = bag_message(path)
    return message_image(_cursor(bag).bag.deserialize(raw, msgtype), msgtype, f"{bag}: {topic} at {log_ns} ns")
