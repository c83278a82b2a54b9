"""Image decoding and resizing, and the one torch Dataset over image paths that every step shares."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

ResizeSpec = tuple[str, tuple[int, ...]]  # ("none"|"fixed"|"longest", size)


class ImageDecodeError(ValueError):
    """An image file could not be decoded."""


def load_image(path: Path | str, resize: str = "none", size: Sequence[int] = ()) -> torch.Tensor:
    """Decode ``path`` to RGB float ``(3, H, W)`` in [0, 1], EXIF orientation applied, then resize.

    ``resize``: ``"none"``; ``"fixed"`` to ``size`` = (height, width); ``"longest"``: longest side
    ≤ ``size[0]`` pixels, keeping the aspect ratio (never upscales).
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image = to_rgb(image)
            image = resize_image(image, resize, size)
            array = np.asarray(image, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"{path}: cannot decode image ({error}); re-export it or pass --skip-bad") from None
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any PIL mode: grey, 16-bit grey, RGBA (over white), palette, CMYK."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray((array / top * 255.0).round().clip(0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def resize_image(image: Image.Image, resize: str, size: Sequence[int]) -> Image.Image:
    """Apply a resize policy (see :func:`load_image`)."""
    if resize == "none":
        return image
    if resize == "fixed":
        height, width = size
        return image.resize((width, height), Image.BILINEAR)
    if resize == "longest":
        longest = size[0]
        scale = longest / max(image.size)
        if scale >= 1:
            return image
        new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return image.resize(new, Image.BILINEAR)
    raise ValueError(f"resize must be none, fixed or longest, got {resize!r}")


class ImageDataset(torch.utils.data.Dataset):
    """Images at ``paths`` as ``(index, (3, H, W) tensor)``; undecodable ones as ``(index, None)`` if ``skip_bad``."""

    def __init__(self, paths: Sequence[Path | str], resize: str = "none", size: Sequence[int] = (),
                 skip_bad: bool = False) -> None:
        self.paths = [Path(p) for p in paths]
        self.resize, self.size, self.skip_bad = resize, tuple(size), skip_bad

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None]:
        try:
            return index, load_image(self.paths[index], self.resize, self.size)
        except (ImageDecodeError, FileNotFoundError):
            if self.skip_bad:
                return index, None
            raise


def collate_images(batch: list[tuple[int, torch.Tensor | None]]) -> tuple[torch.Tensor, torch.Tensor | None, list[int]]:
    """Stack same-size images: -> (indices, images (B, 3, H, W) or None, indices that failed)."""
    good = [(i, im) for i, im in batch if im is not None]
    bad = [i for i, im in batch if im is None]
    if not good:
        return torch.empty(0, dtype=torch.long), None, bad
    indices = torch.tensor([i for i, _ in good])
    return indices, torch.stack([im for _, im in good]), bad
