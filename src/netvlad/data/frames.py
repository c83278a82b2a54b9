"""Frames of a stream: a video file (decoded with PyAV, the ``av`` package) or a folder of images, in order.

A folder's frames are its images in name order, or the rows of its ``frames.csv`` (columns ``name`` and optional
``time`` seconds, ``easting``/``northing`` metres, as ``netvlad data route`` writes) in that file's order. Images
named by a timestamp (``1403636579.76.png`` seconds, or ≥ 16 digits: nanoseconds, as ROS and EuRoC write them)
are sorted and timed by it. A video's frames carry their presentation times. Without any time, ``fps`` gives
``frame / fps`` seconds; else times are frame counts (logged once). ``every`` keeps one frame in N; a frame's
``index`` is its position in the whole source (0, N, 2N, ...). :meth:`FrameSource.decoded_as` gives the frames
as :func:`netvlad.data.images.load_image` prepares a file (EXIF orientation, RGB, a model's resize), so a frame
is described exactly as the same image in a dataset or an index.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from netvlad.data.images import DECODE_ERRORS, check_resize, decode_image, resize_image
from netvlad.data.readers.common import is_image, list_images
from netvlad.errors import BadInputError

logger = logging.getLogger(__name__)

MANIFEST = "frames.csv"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".h264", ".hevc")
_SECONDS = re.compile(r"\d+\.\d+")
_NANOSECONDS = re.compile(r"\d{16,}")


class StreamEndedEarly(BadInputError):
    """A video (or frame) could not be decoded past ``frame``; the frames before it were delivered."""

    def __init__(self, message: str, *, path: Path, frame: int) -> None:
        super().__init__(message, path=path)
        self.frame = frame


@dataclass(frozen=True)
class Frame:
    """One frame: ``index`` in the source, ``time`` seconds (or a frame count), ``name``, RGB ``image``,
    ``position`` ``(easting, northing)`` metres where the source has one."""

    index: int
    time: float
    name: str
    image: Image.Image
    position: tuple[float, float] | None = None


class DecodedFrames:
    """A frame source's decoding: frames as they are (``resize`` "none"), or decoded and resized as
    :func:`netvlad.data.images.load_image` does for a model."""

    resize: str = "none"
    size: tuple[int, ...] = ()
    fast_decode: bool = False

    def decoded_as(self, resize: str = "none", size: tuple[int, ...] = (), fast_decode: bool = False):
        """A copy of this source whose frames are decoded and resized as :func:`netvlad.data.images.load_image`
        does."""
        check_resize(resize, size)
        source = copy.copy(self)
        source.resize, source.size, source.fast_decode = resize, tuple(size), fast_decode
        return source


class FrameSource(DecodedFrames):
    """Iterate the frames of ``path`` (video or folder); see the module docstring."""

    def __init__(self, path: Path | str, every: int = 1, fps: float | None = None) -> None:
        self.path, self.every, self.fps = Path(path), int(every), fps
        if self.every < 1:
            raise BadInputError(f"every must be ≥ 1 (one frame in N), got {every}")
        if fps is not None and not fps > 0:
            raise BadInputError(f"fps must be > 0, got {fps}")
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such video or folder of frames")
        self.kind = "folder" if self.path.is_dir() else "video"
        if self.kind == "video" and not (self.path.suffix.lower() in VIDEO_SUFFIXES or not is_image(self.path)):
            raise BadInputError(f"{self.path}: is one image, not a video or a folder of frames", path=self.path)
        self.counted = False  # True once times fell back to frame counts
        self._entries = self._list_folder() if self.kind == "folder" else None

    def __repr__(self) -> str:
        return f"FrameSource({self.path}, {self.kind}, every {self.every})"

    @property
    def has_positions(self) -> bool:
        """True when every frame of a folder's ``frames.csv`` carries a position."""
        return bool(self._entries) and all(e[2] is not None for e in self._entries)

    def __len__(self) -> int:
        """Frames this source will yield (a video's count is its container's estimate, 0 when unknown)."""
        if self._entries is not None:
            return len(range(0, len(self._entries), self.every))
        return -(-self._video_frames() // self.every)

    # ---- folders ---------------------------------------------------------------------------------------
    def _list_folder(self) -> list[tuple[str, float | None, tuple[float, float] | None]]:
        """(name, time or None, position or None) per frame, in stream order."""
        manifest = self.path / MANIFEST
        if manifest.is_file():
            return _read_manifest(manifest)
        names = list_images(self.path, recursive=False)
        stems = [Path(n).stem for n in names]
        if all(_SECONDS.fullmatch(s) for s in stems):
            times = [float(s) for s in stems]
        elif all(_NANOSECONDS.fullmatch(s) for s in stems):
            times = [int(s) / 1e9 for s in stems]
        else:
            return [(n, None, None) for n in names]
        order = np.argsort(times, kind="stable")
        return [(names[i], times[i], None) for i in order]

    def _time(self, index: int, time: float | None) -> float:
        if time is not None:
            return float(time)
        if self.fps:
            return index / self.fps
        if not self.counted:
            logger.warning("%s: frames carry no timestamps and no fps was given: times are frame counts (so is "
                           "exclude_recent)", self.path)
            self.counted = True
        return float(index)

    def _folder_frames(self) -> Iterator[Frame]:
        for index in range(0, len(self._entries), self.every):
            name, time, position = self._entries[index]
            try:
                with Image.open(self.path / name) as image:
                    decoded = decode_image(image, self.resize, self.size, self.fast_decode)
                    image = decoded if decoded is not image else image.copy()  # the file closes here
            except DECODE_ERRORS as error:
                reason = " ".join(str(error).split())[:200]
                raise StreamEndedEarly(f"{self.path / name}: cannot decode frame {index} ({reason}); the stream "
                                       f"stops there, results of frames 0–{index - 1} kept", path=self.path / name,
                                       frame=index) from None
            yield Frame(index, self._time(index, time), name, image, position)

    # ---- videos ----------------------------------------------------------------------------------------
    def _open_video(self):
        try:
            import av
        except ImportError:
            raise BadInputError("reading videos needs PyAV: pip install 'netvlad[stream]' (or pip install av)",
                                path=self.path) from None
        try:
            return av.open(str(self.path))
        except (av.FFmpegError, OSError, ValueError) as error:
            reason = " ".join(str(error).split()).split(": '")[0][:200]
            raise StreamEndedEarly(f"{self.path}: cannot open the video ({reason}); stopped at frame 0, no frame "
                                   "decoded", path=self.path, frame=0) from None

    def _video_frames(self) -> int:
        container = self._open_video()
        try:
            return int(container.streams.video[0].frames) if container.streams.video else 0
        finally:
            container.close()

    def duration(self) -> float | None:
        """Seconds (or frame counts) from the first frame to the last, None when a video does not say."""
        if self._entries is not None:
            if not self._entries:
                return 0.0
            times = [t for _, t, _ in self._entries]
            if all(t is not None for t in times):
                return float(max(times) - min(times))
            return (len(self._entries) - 1) / (self.fps or 1.0)
        container = self._open_video()
        try:
            streams = container.streams.video
            if streams and streams[0].duration and streams[0].time_base:
                return float(streams[0].duration * streams[0].time_base)
            return container.duration / 1e6 if container.duration else None
        finally:
            container.close()

    def _decoded(self) -> Iterator[Frame]:
        import av

        container = self._open_video()
        index = 0
        try:
            if not container.streams.video:
                raise StreamEndedEarly(f"{self.path}: holds no video stream", path=self.path, frame=0)
            stream = container.streams.video[0]
            declared = int(stream.frames or 0)
            for frame in container.decode(stream):
                if index % self.every == 0:
                    image = resize_image(frame.to_image(), self.resize, self.size)
                    yield Frame(index, self._time(index, frame.time), f"{self.path.name}#{index:06d}", image)
                index += 1
            if declared and index < declared:
                raise StreamEndedEarly(f"{self.path}: ended at frame {index} of the {declared} it declares "
                                       "(truncated?); results so far kept", path=self.path, frame=index)
        except (av.FFmpegError, OSError, ValueError) as error:
            reason = " ".join(str(error).split())[:200]
            raise StreamEndedEarly(f"{self.path}: cannot decode past frame {index} ({reason}); results of the "
                                   f"{index} frames before it kept", path=self.path, frame=index) from None
        finally:
            container.close()

    def __iter__(self) -> Iterator[Frame]:
        return self._folder_frames() if self.kind == "folder" else self._decoded()


def _read_manifest(path: Path) -> list[tuple[str, float | None, tuple[float, float] | None]]:
    """The rows of a ``frames.csv``: name, time (seconds or None), (easting, northing) or None."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "name" not in rows[0]:
        raise BadInputError(f"{path}: needs a header with a name column (and optional time, easting, northing)",
                            path=path)
    out = []
    for line, row in enumerate(rows, 2):
        try:
            time = float(row["time"]) if row.get("time") not in (None, "") else None
            position = ((float(row["easting"]), float(row["northing"]))
                        if row.get("easting") not in (None, "") and row.get("northing") not in (None, "") else None)
        except ValueError:
            raise BadInputError(f"{path}:{line}: time, easting and northing must be numbers", path=path) from None
        if not all(math.isfinite(v) for v in (time if time is not None else 0.0, *(position or ()))):
            raise BadInputError(f"{path}:{line}: time, easting and northing must be finite numbers (seconds, "
                                f"metres), got {row.get('time')!r}, {row.get('easting')!r}, {row.get('northing')!r}",
                                path=path)
        out.append((row["name"], time, position))
    return out
