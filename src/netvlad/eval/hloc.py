"""hloc's global-descriptor file for a dataset or a folder: names rooted at one folder, resumable through stores."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from netvlad.data.dataset import ImageList
from netvlad.errors import BadInputError


def hloc_names(images: ImageList, root: Path) -> list[str]:
    """The image names relative to ``root`` with ``/`` separators (hloc's keys); refused when outside it."""
    names = [Path(os.path.relpath(images.root / n, root)).as_posix() for n in images.names]
    if any(n.startswith("../") for n in names):
        raise BadInputError(f"images under {images.root} are outside the names root {root}",
                            hint="choose --names-root above them")
    return names


def write_hloc_descriptors(model, lists: Sequence[ImageList], out: Path | str, *, names_root: Path | str | None = None,
                           stores: Sequence[Path | None] | None = None, overwrite: bool = False,
                           **describe) -> tuple[int, Path]:
    """Describe every image of ``lists`` and write (or extend) hloc's HDF5 file ``out``; -> (images written, the
    names' root: ``names_root`` or the lists' common parent). ``stores``: one store folder per list (resumable);
    ``describe``: :func:`netvlad.eval.recall.describe` options (device, batch size, ...)."""
    from netvlad.eval.recall import describe as describe_images
    from netvlad.models.export import check_hloc_file, export_hloc

    if not overwrite:
        check_hloc_file(out)
    root = Path(names_root or os.path.commonpath([str(images.root) for images in lists]))
    names = [hloc_names(images, root) for images in lists]  # refused before any descriptor is computed
    written = 0
    for i, images in enumerate(lists):
        descriptors, valid, _ = describe_images(model, images, stores[i] if stores else None, **describe)
        export_hloc([n for n, ok in zip(names[i], valid, strict=True) if ok], descriptors[valid], out,
                    overwrite=i == 0 and overwrite)
        written += int(valid.sum())
    return written, root
