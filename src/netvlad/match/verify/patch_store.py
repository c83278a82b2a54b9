"""Patch descriptors of database images on disk: one float16 :class:`DescriptorStore` per patch size (float32 for
queries' patches, kept as computed).

``folder/patches.json`` names the model (fingerprint), the preset and the patch whitening (a digest of its
weights: a store projected by another whitening is refused, never mixed with new query patches);
``folder/size_P/`` holds one row per image: its window grid (rows, cols) then its ``capacity × dim`` patch
descriptors (zero past its own windows). Rows are written batch by batch, so an interrupted extraction continues
where it stopped; candidates' rows are read with the store row reader (:func:`netvlad.search.exact.read_rows`, one
``pread`` per row).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from netvlad.errors import BadInputError
from netvlad.extract.store import PENDING, DescriptorStore
from netvlad.files import atomic_write, read_json
from netvlad.hashing import raw_bytes
from netvlad.match.verify.patches import Patches, PatchExtractor, iter_images
from netvlad.match.verify.presets import VerifyPreset
from netvlad.search.exact import read_rows

logger = logging.getLogger(__name__)

FORMAT = "netvlad-patches"
HEADER = 2  # rows, cols of the window grid, exact in float16 up to 2,048


KEYS = ("model", "preset", "dim", "whitening")  # what must match for a store's patches to be comparable


def whitening_digest(extractor: PatchExtractor) -> str:
    """16 hex digits of SHA-256 over the projection's weight and bias (float32 bytes, as cropped for the preset),
    hashed once for the extractor and its twins while those tensors are unchanged (each store opened or created with
    them names it)."""
    def digest() -> str:
        hashed = hashlib.sha256()
        for tensor in (extractor.whitening.linear.weight, extractor.whitening.linear.bias):
            hashed.update(raw_bytes(tensor.to(torch.float32)))
        return hashed.hexdigest()[:16]

    return extractor.whitening_fact("digest", digest)


def _identity(extractor: PatchExtractor, fingerprint: str) -> dict:
    return {"format": FORMAT, "version": 2, "model": fingerprint, "preset": extractor.preset.name,
            "config": extractor.preset.to_dict(), "dim": extractor.dim, "whitening": whitening_digest(extractor)}


def describe_identity(meta: dict) -> str:
    """``model 0123… with preset speed (512-D), whitening 4567…``."""
    return (f"model {meta.get('model')} with preset {meta.get('preset')} ({meta.get('dim')}-D), whitening "
            f"{meta.get('whitening', 'unrecorded (written before version 2)')}")


def check_description(path: Path, meta: dict) -> None:
    """Refuse, in one line naming ``path``, a ``patches.json`` with a missing or unknown key, or a config that is
    not a valid preset or disagrees with its ``preset`` and ``dim``."""
    version = meta.get("version")
    if version not in (1, 2):
        raise BadInputError(f"{path}: patch store version {version!r}, this netvlad reads versions 1 and 2; delete "
                            "the folder to extract it again", path=path)
    expected = {"format", "version", "model", "preset", "config", "dim"} | ({"whitening"} if version == 2 else set())
    missing, extra = sorted(expected - set(meta)), sorted(set(meta) - expected)
    if missing or extra:
        what = "; ".join([f"missing {', '.join(missing)}"] * bool(missing) + [f"unexpected {', '.join(extra)}"]
                         * bool(extra))
        raise BadInputError(f"{path}: patch store description keys disagree ({what}); delete the folder to extract "
                            "it again", path=path)
    config = meta["config"]
    try:
        preset = VerifyPreset(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    except (BadInputError, TypeError, ValueError, AttributeError) as error:
        raise BadInputError(f"{path}: config is not a re-ranking preset ({' '.join(str(error).split())[:160]}); "
                            "delete the folder to extract it again", path=path) from None
    dim = meta["dim"]  # the whitening's output: the preset's dim, or fewer when too few patches allowed them
    if preset.name != meta["preset"] or not (isinstance(dim, int) and 1 <= dim <= preset.dim) or not all(
            isinstance(size, int) for size in preset.sizes):
        raise BadInputError(f"{path}: config (preset {preset.name}, up to {preset.dim}-D, sizes {preset.sizes}) "
                            f"disagrees with preset {meta['preset']!r}, dim {dim!r}; delete the folder to extract it "
                            "again", path=path)


class PatchStore:
    """Patch descriptors of named images for each patch size of a preset; see the module docstring.

    :func:`extract_patch_store` writes one; :meth:`open` refuses a folder that is not one, or one written by
    another model, preset or whitening.

    Examples:
        >>> Path("not-a-store").mkdir()
        >>> _ = (Path("not-a-store") / "patches.json").write_text('{"format": "something else"}')
        >>> PatchStore.open("not-a-store")
        Traceback (most recent call last):
        ...
        netvlad.errors.BadInputError: not-a-store: not a netvlad patch store
    """

    def __init__(self, folder: Path, meta: dict, stores: list[DescriptorStore]) -> None:
        self.folder, self.meta, self.stores = folder, meta, stores

    @classmethod
    def open(cls, folder: Path | str, identity: dict | None = None) -> PatchStore:
        """Open a patch store, refusing one written by another model, preset or whitening than ``identity`` says."""
        folder = Path(folder)
        meta = read_json(folder / "patches.json", "patch store description")
        if meta.get("format") != FORMAT:
            raise BadInputError(f"{folder}: not a netvlad patch store", path=folder)
        check_description(folder / "patches.json", meta)
        if identity is not None and tuple(meta.get(k) for k in KEYS) != tuple(identity[k] for k in KEYS):
            raise BadInputError(f"{folder}: patch store written by {describe_identity(meta)}, not by "
                                f"{describe_identity(identity)}; use another folder or delete this one", path=folder)
        sizes = meta["config"]["sizes"]
        stores = [DescriptorStore.open(folder / f"size_{s}", mode="r+") for s in sizes]
        _pend_unfinished(stores)
        return cls(folder, meta, stores)

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def capacity(self) -> list[int]:
        """Windows per row for each size."""
        return [(s.dim - HEADER) // self.dim for s in self.stores]

    def bytes_per_image(self) -> int:
        """Bytes of one image's rows over all sizes."""
        return sum(s.dim * s.descriptors.dtype.itemsize for s in self.stores)

    def write(self, indices: np.ndarray, patches: Sequence[Patches]) -> None:
        """Store the patches of images at rows ``indices``; a grid larger than the store's rows is refused."""
        for i, (store, capacity) in enumerate(zip(self.stores, self.capacity, strict=True)):
            rows = np.zeros((len(indices), store.dim), dtype=store.descriptors.dtype)
            for j, image in enumerate(patches):
                grid, values = image.grids[i], image.descriptors[i]
                if len(values) > capacity:
                    raise BadInputError(f"{self.folder}: an image has {grid[0]}×{grid[1]} windows of size "
                                        f"{self.meta['config']['sizes'][i]}, more than the {capacity} the store "
                                        "holds (its first image's); resize database images to one size")
                rows[j, :HEADER] = grid
                rows[j, HEADER:HEADER + values.numel()] = values.reshape(-1).cpu().numpy()
            store.write(indices, rows)

    def read(self, size_index: int, rows: np.ndarray, out: np.ndarray | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidates' patches of one size: (descriptors ``(C, capacity, dim)`` float32, grids ``(C, 2)`` int64)."""
        store = self.stores[size_index]
        values = read_rows(store.descriptors, np.asarray(rows, dtype=np.int64), out)
        values = torch.from_numpy(values[:len(rows)])
        grids = values[:, :HEADER].round().to(torch.int64)
        return values[:, HEADER:].view(len(rows), -1, self.dim), grids


def _pend_unfinished(stores: list[DescriptorStore]) -> None:
    """Mark pending, in the last size's store, each image some other size's store lacks.

    Sizes are written in order and the last size's status says which images are done; status bytes are not synced
    one by one, so a crash may keep a later size's mark and lose an earlier one's: that image is extracted again.
    """
    if len(stores) < 2:
        return
    missing = np.zeros(len(stores[-1]), dtype=bool)
    for store in stores[:-1]:
        missing |= np.asarray(store.status) == PENDING
    rows = np.flatnonzero(missing & (np.asarray(stores[-1].status) != PENDING))
    if len(rows):
        logger.warning("%s: %d image(s) lack the patches of a smaller size (first: %s): extracting them again",
                       stores[-1].folder.parent, len(rows), stores[-1].names[rows[0]])
        stores[-1].mark_pending(rows)


def create_patch_store(extractor: PatchExtractor, names: Sequence[str], folder: Path | str,
                       grids: Sequence[tuple[int, int]], dtype: str = "float16") -> PatchStore:
    """Open the patch store in ``folder`` (refusing another model's or preset's) or create it for ``names``, with
    rows holding ``grids`` (rows, cols) windows of each size (those of the first image: all share one size), of
    ``dtype`` (float32 keeps the patches as computed).

    Examples:
        >>> from netvlad.match.verify import PatchExtractor, VerifyPreset
        >>> from netvlad.models import ModelConfig, PlaceModel
        >>> from netvlad.nn import PCAWhitening
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> preset = VerifyPreset("toy", "2 × 2 patches, 32-D", sizes=(2,), dim=32, scorer="ransac")
        >>> extractor = PatchExtractor(model, preset, whitening=PCAWhitening(4 * 1280, 32))
        >>> store = create_patch_store(extractor, ["a.jpg", "b.jpg"], "rows", grids=[(3, 4)])  # empty rows
        >>> store.capacity, store.dim, store.bytes_per_image()  # 12 windows of 32 float16 values (+ the grid)
        ([12], 32, 772)
        >>> other = VerifyPreset("other", "3 × 3 patches, 32-D", sizes=(3,), dim=32, scorer="ransac")
        >>> create_patch_store(PatchExtractor(model, other, extractor.whitening), ["a.jpg"], "rows", [(2, 3)])
        Traceback (most recent call last):
        ...
        netvlad.errors.BadInputError: rows: patch store written by ..., not by ...; use another folder or ...
    """
    folder = Path(folder)
    identity = _identity(extractor, extractor.model.fingerprint())
    if not (folder / "patches.json").is_file():
        for size, (r, c) in zip(extractor.preset.sizes, grids, strict=True):
            DescriptorStore.create(folder / f"size_{size}", names, HEADER + max(1, r * c) * extractor.dim,
                                   dtype, identity["model"])
        atomic_write(folder / "patches.json", lambda tmp: tmp.write_text(json.dumps(identity, indent=1)))
    return PatchStore.open(folder, identity)


def extract_patch_store(extractor: PatchExtractor, root: Path | str, names: Sequence[str], folder: Path | str,
                        batch_size: int = 4, device: str | torch.device = "cpu") -> PatchStore:
    """Patch descriptors of ``root/names`` into ``folder`` (created, or continued when interrupted) -> the store.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> from netvlad.match.verify import PatchExtractor, VerifyPreset
        >>> from netvlad.models import ModelConfig, PlaceModel
        >>> from netvlad.nn import PCAWhitening
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> preset = VerifyPreset("toy", "2 × 2 patches, 32-D", sizes=(2,), dim=32, scorer="ransac")
        >>> extractor = PatchExtractor(model, preset, whitening=PCAWhitening(4 * 1280, 32))
        >>> store = extract_patch_store(extractor, city.database.root, city.database.names, "patches")
        >>> store.bytes_per_image(), len(store.stores[0].names)  # float16 patch descriptors on disk
        (68, 20)
        >>> type(PatchStore.open("patches")).__name__  # reopened later, checked against its description
        'PatchStore'
    """
    paths = [Path(root) / n for n in names]
    grids: list[tuple[int, int]] = []
    if not (Path(folder) / "patches.json").is_file():
        grids = extractor.from_images(next(iter_images(extractor.model, paths[:1], device=device))[1])[0].grids
    store = create_patch_store(extractor, names, folder, grids)
    todo = store.stores[-1].pending()
    if len(todo):
        logger.info("patch store %s: extracting %d of %d images (%d bytes each)", folder, len(todo), len(names),
                    store.bytes_per_image())
    for indices, images in iter_images(extractor.model, [paths[i] for i in todo], batch_size, device):
        store.write(todo[indices], extractor.from_images(images))
    return store
