"""A bag's keyframes as the frames of a stream (``netvlad stream RUN.bag``): in header-stamp order, each with its
stamp as the frame time (seconds) and, where a position topic is named, its interpolated position; images are
decoded one at a time as the stream reaches them, by the decode path of every image file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from netvlad.data.bags.images import open_bag_image
from netvlad.data.bags.run import BagOptions, read_run
from netvlad.data.frames import DecodedFrames, Frame, StreamEndedEarly
from netvlad.data.images import DECODE_ERRORS, decode_image


class BagFrames(DecodedFrames):
    """The keyframes of the bag at ``path`` (see :class:`~netvlad.data.bags.run.BagOptions`; positions are read
    only from a named topic) as :class:`~netvlad.data.frames.Frame` objects; ``stamps`` maps a frame's name to its
    header stamp in nanoseconds."""

    kind = "bag"

    def __init__(self, path: Path | str, options: BagOptions | None = None) -> None:
        self.path = Path(path)
        self.run = read_run(self.path, options or BagOptions(need_positions=False))
        self.stamps = dict(zip(self.run.names, (int(s) for s in self.run.stamps), strict=True))

    def __repr__(self) -> str:
        return f"BagFrames({self.path}, {self.run.topic}, {len(self)} keyframes)"

    def __len__(self) -> int:
        return len(self.run)

    @property
    def has_positions(self) -> bool:
        return self.run.points is not None

    def duration(self) -> float:
        """Seconds from the first keyframe's stamp to the last."""
        return float(self.run.stamps[-1] - self.run.stamps[0]) / 1e9 if len(self.run) else 0.0

    def __iter__(self) -> Iterator[Frame]:
        run = self.run
        for i, name in enumerate(run.names):
            try:
                with open_bag_image(run.bag / name) as image:
                    decoded = decode_image(image, self.resize, self.size, self.fast_decode)
                    image = decoded if decoded is not image else image.copy()  # the message's buffer closes here
            except DECODE_ERRORS as error:
                reason = " ".join(str(error).split())[:200]
                raise StreamEndedEarly(f"{run.bag}: cannot decode keyframe {i} ({name}: {reason}); the stream "
                                       f"stops there, results of the {i} keyframes before it kept", path=run.bag,
                                       frame=int(run.indices[i])) from None
            position = None if run.points is None else (float(run.points[i, 0]), float(run.points[i, 1]))
            yield Frame(int(run.indices[i]), int(run.stamps[i]) / 1e9, name, image, position)
