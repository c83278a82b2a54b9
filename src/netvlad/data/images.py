"""Image decoding and resizing, and the one torch Dataset over image paths that every step shares."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from netvlad.errors import BadInputError


class ImageDecodeError(BadInputError):
    """An image file could not be decoded.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> _ = (Path(folder.name) / "broken.jpg").write_bytes(b"not a JPEG")
        >>> load_image(Path(folder.name) / "broken.jpg")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        netvlad.data.images.ImageDecodeError: /.../broken.jpg: cannot decode image (...); re-export it or pass ...
        >>> folder.cleanup()
    """


SKIP_HINT = "--skip-bad skips it"  # the command-line wording of skip_bad=True


RESIZE_POLICIES = ("none", "fixed", "longest")
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
                 struct.error, EOFError)


def _open_error(path: Path, error: Exception) -> Exception:
    """The one-line error for an image that cannot be read."""
    if isinstance(error, FileNotFoundError):
        return FileNotFoundError(f"{path}: image file not found")
    if isinstance(error, IsADirectoryError):
        return ImageDecodeError(f"{path}: is a folder, not an image; remove it or pass skip_bad=True", path=path,
                                hint=SKIP_HINT, skippable=True)
    if path.is_file() and path.stat().st_size == 0:
        return ImageDecodeError(f"{path}: image file is empty (0 bytes); re-copy it or pass skip_bad=True",
                                path=path, hint=SKIP_HINT, skippable=True)
    reason = " ".join(str(error).split())
    return ImageDecodeError(f"{path}: cannot decode image ({reason}); re-export it or pass skip_bad=True",
                            path=path, hint=SKIP_HINT, skippable=True)


def load_image(path: Path | str, resize: str = "none", size: Sequence[int] = (),
               fast_decode: bool = False, uint8: bool = False) -> torch.Tensor:
    """Decode ``path`` to RGB float ``(3, H, W)`` in [0, 1], EXIF orientation applied, then resize.

    ``resize``: ``"none"``; ``"fixed"`` to ``size`` = (height, width) pixels; ``"longest"``: longest side
    ≤ ``size[0]`` pixels, keeping the aspect ratio (never upscales). ``fast_decode``: let a JPEG decode at reduced
    scale first (see :func:`draft_for_resize`). ``uint8``: the bytes (0–255) before the division by 255, for a
    model that converts them itself. Raises :class:`ImageDecodeError` naming the file.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = Path(folder.name) / "photo.png"
        >>> Image.new("RGB", (640, 480), (255, 128, 0)).save(path)
        >>> image = load_image(path, resize="longest", size=(320,))
        >>> image.shape, image[:, 0, 0]  # RGB in [0, 1]
        (torch.Size([3, 240, 320]), tensor([1.0000, 0.5020, 0.0000]))
        >>> load_image(path, resize="fixed", size=(224, 224)).shape
        torch.Size([3, 224, 224])
        >>> folder.cleanup()
    """
    path = Path(path)
    check_resize(resize, size)
    try:
        with open_image(path) as image:
            image = decode_image(image, resize, size, fast_decode)
            return torch.from_numpy(image_planes(image)) if uint8 else image_to_tensor(image)
    except DECODE_ERRORS as error:
        raise _open_error(path, error) from None


def open_image(path: Path) -> Image.Image:
    """An image file opened (not decoded) by PIL, or an image message inside a ROS bag (see
    :mod:`netvlad.data.bags.images`): the one place every step's images come from."""
    from netvlad.data.bags.images import is_bag_image, open_bag_image

    return open_bag_image(path) if is_bag_image(path) else Image.open(path)


def decode_image(image: Image.Image, resize: str = "none", size: Sequence[int] = (),
                 fast_decode: bool = False) -> Image.Image:
    """Decode an opened image in full (``fast_decode``: a JPEG at reduced scale where the resize allows), orient it
    by its EXIF tag, make it RGB and resize it: the steps of :func:`load_image` before the tensor, with no copy that
    changes nothing. The full decode followed by PIL's antialiased bilinear resize is what torchvision's ``Resize``
    gives the reference models."""
    if fast_decode:
        draft_for_resize(image, resize, size)
    image.load()  # decode now: truncated files fail here, not later
    if image.getexif().get(0x0112, 1) != 1:  # exif_transpose copies even an upright image; only turn turned ones
        image = ImageOps.exif_transpose(image) or image
    rgb = image if image.mode == "RGB" else to_rgb(image)  # to_rgb copies even an RGB image (callers keep it)
    return resize_image(rgb, resize, size)


def image_planes(image: Image.Image) -> np.ndarray:
    """An RGB image's bytes as uint8 ``(3, H, W)``, contiguous."""
    return np.array(np.asarray(image).transpose(2, 0, 1), order="C")  # HWC → CHW on the bytes, the cheap pass


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image as float ``(3, H, W)`` in [0, 1], contiguous: one uint8 → float conversion and division."""
    # numpy, not torch: the same bits, without waking torch's worker threads on the cores a model runs on beside
    # the decoding thread
    return torch.from_numpy(np.divide(image_planes(image), np.float32(255.0), dtype=np.float32))


def draft_for_resize(image: Image.Image, resize: str, size: Sequence[int]) -> None:
    """Let the JPEG decoder downscale by 1/2, 1/4 or 1/8 where the resize shrinks at least that much.

    Decoding at reduced scale (libjpeg's DCT scaling) costs a fraction of a full decode; the exact resize follows,
    but from other pixels than a full decode's, so descriptors differ slightly from the reference pipelines'.
    """
    if image.format != "JPEG" or resize == "none":
        return
    width, height = image.size
    if resize == "longest":
        scale = size[0] / max(width, height)
        if scale >= 1:
            return
        target = (width * scale, height * scale)
    else:
        target_h, target_w = size
        swapped = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF rotation by 90° comes after decoding
        target = (target_h, target_w) if swapped else (target_w, target_h)
    image.draft(None, (math.ceil(target[0]), math.ceil(target[1])))


def image_size(path: Path | str) -> tuple[int, int]:
    """(height, width) pixels after EXIF orientation, from the header only (no decoding).

    Examples:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = Path(folder.name) / "photo.png"
        >>> Image.new("RGB", (64, 48), "white").save(path)  # 64 pixels wide, 48 high
        >>> image_size(path)
        (48, 64)
        >>> folder.cleanup()
    """
    path = Path(path)
    try:
        with open_image(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except DECODE_ERRORS as error:
        raise _open_error(path, error) from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any PIL mode: bilevel, grey, 16-bit grey, 32-bit int/float, RGBA/LA/PA (over white), palette, CMYK."""
    if image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float64) / 65535.0 * 255.0
        image = Image.fromarray(array.round().clip(0, 255).astype(np.uint8), "L")
    elif image.mode in ("I", "F"):  # 32-bit: scale by the range the values use (8-bit, 16-bit or [0, 1])
        array = np.asarray(image, dtype=np.float64)
        top = 1.0 if image.mode == "F" and array.max() <= 1.0 else 255.0 if array.max() <= 255 else 65535.0
        image = Image.fromarray((array / top * 255.0).round().clip(0, 255).astype(np.uint8), "L")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def check_resize(resize: str, size: Sequence[int]) -> None:
    """Raise ValueError unless ``size`` fits the ``resize`` policy."""
    need = {"none": (0,), "fixed": (2,), "longest": (1,)}
    if resize not in need:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_POLICIES)}, got {resize!r}")
    if resize != "none" and (len(size) not in need[resize] or min(size) < 1):
        what = "(height, width)" if resize == "fixed" else "(longest side,)"
        raise ValueError(f"resize {resize!r} needs size {what} in pixels ≥ 1, got {tuple(size)}")


def resize_image(image: Image.Image, resize: str, size: Sequence[int]) -> Image.Image:
    """Apply a resize policy (see :func:`load_image`)."""
    check_resize(resize, size)
    if resize == "fixed":
        height, width = size
        return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.BILINEAR)
    if resize == "longest":
        scale = size[0] / max(image.size)
        if scale >= 1:
            return image
        new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return image.resize(new, Image.Resampling.BILINEAR)
    return image


class ImageDataset(torch.utils.data.Dataset):
    """Images at ``paths`` as ``(index, (3, H, W) tensor)`` (float in [0, 1]; with ``uint8`` the bytes); undecodable
    ones as ``(index, None)`` if ``skip_bad``.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = Path(folder.name) / "photo.png"
        >>> Image.new("RGB", (64, 48), "white").save(path)  # 64 pixels wide, 48 high
        >>> _ = (Path(folder.name) / "broken.jpg").write_bytes(b"not a JPEG")
        >>> images = ImageDataset([path, Path(folder.name) / "broken.jpg"], resize="fixed", size=(24, 32),
        ...                       skip_bad=True)
        >>> [(index, None if image is None else tuple(image.shape)) for index, image in images]
        [(0, (3, 24, 32)), (1, None)]
        >>> folder.cleanup()
    """

    def __init__(self, paths: Sequence[Path | str], resize: str = "none", size: Sequence[int] = (),
                 skip_bad: bool = False, fast_decode: bool = False, uint8: bool = False) -> None:
        self.paths = [Path(p) for p in paths]
        self.resize, self.size, self.skip_bad, self.fast_decode = resize, tuple(size), skip_bad, fast_decode
        self.uint8 = uint8

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | WorkerFailure | None]:
        try:
            return index, load_image(self.paths[index], self.resize, self.size, self.fast_decode, self.uint8)
        except (ImageDecodeError, FileNotFoundError, ValueError) as error:
            if self.skip_bad and isinstance(error, ImageDecodeError | FileNotFoundError):
                return index, None
            if torch.utils.data.get_worker_info() is not None:  # torch would replace it by a traceback's text
                return index, WorkerFailure(error)
            raise


class WorkerFailure:
    """An error raised while loading an image in a DataLoader worker, carried whole to the main process."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class _PassFailures:
    """Wrap a collate function: a batch holding a :class:`WorkerFailure` becomes that failure."""

    def __init__(self, collate) -> None:
        self.collate = collate

    def __call__(self, batch):
        failure = next((item for _, item in batch if isinstance(item, WorkerFailure)), None)
        return failure if failure is not None else self.collate(batch)


class ImageLoader(torch.utils.data.DataLoader):
    """A DataLoader over an :class:`ImageDataset` whose worker errors reach the caller as the original exception.

    torch re-raises a worker's exception as the same type with a multi-line message ("Caught ValueError in
    DataLoader worker process 0 ... Original Traceback ..."); here the worker hands the exception over as data
    and the main process raises it unchanged, so the user sees its one line.
    """

    def __init__(self, dataset: ImageDataset, *, collate_fn, **kwargs) -> None:
        super().__init__(dataset, collate_fn=_PassFailures(collate_fn), **kwargs)

    def __iter__(self):
        for batch in super().__iter__():
            if isinstance(batch, WorkerFailure):
                raise batch.error
            yield batch


def collate_images(batch: list[tuple[int, torch.Tensor | None]]) -> tuple[torch.Tensor, torch.Tensor | None, list[int]]:
    """Stack same-size images: -> (indices, images (B, 3, H, W) or None, indices that failed).

    Examples:
        >>> batch = [(0, torch.zeros(3, 24, 32)), (1, None), (2, torch.ones(3, 24, 32))]  # image 1 was undecodable
        >>> indices, images, failed = collate_images(batch)
        >>> indices, images.shape, failed
        (tensor([0, 2]), torch.Size([2, 3, 24, 32]), [1])
    """
    good = [(i, im) for i, im in batch if im is not None]
    bad = [i for i, im in batch if im is None]
    if not good:
        return torch.empty(0, dtype=torch.long), None, bad
    indices = torch.tensor([i for i, _ in good])
    return indices, torch.stack([im for _, im in good]), bad


def collate_by_size(batch: list[tuple[int, torch.Tensor | None]]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]],
                                                                         list[int]]:
    """Group a batch by image size: -> ([(indices, images (b, 3, H, W)), …], indices that failed to decode)."""
    groups: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    bad = []
    for index, image in batch:
        if image is None:
            bad.append(index)
        else:
            groups.setdefault(tuple(image.shape), []).append((index, image))
    stacked = [(torch.tensor([i for i, _ in g]), stack_images([im for _, im in g])) for g in groups.values()]
    return stacked, bad


def stack_images(images: list[torch.Tensor]) -> torch.Tensor:
    """(B, 3, H, W) of same-size images; one image becomes a view (batch 1 pays no copy)."""
    return images[0].unsqueeze(0) if len(images) == 1 else torch.stack(images)
