"""A dataset in any readable format, or a plain folder of photos (positions unknown): what ``index build`` and
``export hloc`` describe."""

from __future__ import annotations

import logging
from pathlib import Path

from netvlad.data.dataset import ImageList
from netvlad.data.readers import DatasetError, open_dataset
from netvlad.data.readers.common import list_images
from netvlad.errors import BadInputError

logger = logging.getLogger(__name__)

READER_OPTIONS = ("format", "split", "database", "frame_tolerance", "spacing", "image_root")


def open_image_lists(source: Path | str, positions: bool = True, **options) -> list[ImageList]:
    """``[database, queries]`` of a dataset (``[database]`` without queries), or ``[every image]`` of a folder that is
    no dataset, with NaN positions; ``options`` are :func:`netvlad.data.open_dataset`'s (given a reader option —
    format, split, sub-folders, frame tolerance, spacing, image root — the source is meant as a dataset: no
    fallback). ``positions``: the caller uses positions, so a plain folder is worth a warning (else a note)."""
    try:
        dataset = open_dataset(source, **options)
    except BadInputError as error:  # DatasetError, or no format recognised
        folder = Path(source).expanduser()
        reading = [name for name in READER_OPTIONS if options.get(name)]
        if not folder.is_dir() or reading:
            raise
        try:
            names = list_images(folder)
        except DatasetError:
            raise error from None
        (logger.warning if positions else logger.info)(
            "%s is not a geo-tagged dataset (%s); taking its %d images%s", folder, str(error).split(" (", 1)[0],
            len(names), " without positions" if positions else "")
        import numpy as np

        return [ImageList(folder, tuple(names), np.full((len(names), 2), np.nan))]
    return [dataset.database, dataset.queries] if len(dataset.queries) else [dataset.database]


def open_database(source: Path | str, **options) -> ImageList:
    """The database of a dataset in any readable format, or every image of a plain folder (positions unknown)."""
    return open_image_lists(source, **options)[0]
