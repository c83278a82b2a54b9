"""Patch-NetVLAD descriptors of images from a NetVLAD model: its own residuals, its (or a fitted) PCA whitening."""

from __future__ import annotations

import copy
import logging
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from netvlad.data.images import ImageDataset, ImageLoader, collate_by_size
from netvlad.errors import BadInputError
from netvlad.match.verify.presets import VerifyPreset
from netvlad.models import PlaceModel
from netvlad.nn import NetVLAD, PCAWhitening
from netvlad.nn.patch import (
    SHARED_IMAGES,
    cell_rows,
    patch_netvlad,
    projection_rows,
    projection_work,
    shared_products_keep_bits,
    window_grid,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")
_WAIT = object()  # whitening_fact's default: wait for a twin making a fact

# patch vectors a fitted whitening sees at least: with dim + 1,000 (1,512 for the speed preset's 512-D) the
# whitened small-variance directions were noise and re-ranking lost 1.5 R@1 on Gardens Point (docs/reranking.md)
FIT_SAMPLES = 5000
# the fitted whitening's regularisation: ε = SHRINK × the mean eigenvalue of its dims. Whitened exactly (ε ≈ 0), the
# 512-D patches of an 81,920-D (K = 64) model matched worse (Gardens Point R@1 of the patch score alone 69.0, 79.0
# with ε = 10 × mean λ; measured in docs/reranking.md)
SHRINK = 10.0

WHO_CAN = ("spatial re-ranking needs a NetVLAD model: an off-the-shelf one (--pool netvlad, k-means initialised), "
           "a trained NetVLAD checkpoint, or one converted from MATLAB / pytorch-NetVlad / Patch-NetVLAD")


def require_netvlad(model: PlaceModel) -> NetVLAD:
    """The model's NetVLAD layer; a one-line refusal saying which models can verify otherwise.

    Examples:
        >>> from netvlad.models import ModelConfig
        >>> require_netvlad(PlaceModel(ModelConfig(num_clusters=4), pretrained=False)).num_clusters
        4
        >>> require_netvlad(PlaceModel(ModelConfig(pool="gem"), pretrained=False))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        netvlad.errors.BadInputError: this model pools with 'gem'; spatial re-ranking needs a NetVLAD model: ...
    """
    if not isinstance(model.pool, NetVLAD):
        raise BadInputError(f"this model pools with {model.config.pool!r}; {WHO_CAN}")
    return model.pool


@torch.no_grad()
def feature_maps(model: PlaceModel, images: torch.Tensor) -> torch.Tensor:
    """Local descriptors ``(B, D, h, w)`` float32 of images ``(B, 3, H, W)``: on a CPU, for a model in eval mode,
    through the copy extraction runs (:meth:`netvlad.extract.engine.TorchRunner.inference_model`: batch norms folded
    into the convolutions, channels_last; 1.75× faster than the model itself for MobileNetV2 at 480 px, equal to it
    within float rounding), else through the model itself.

    Examples:
        >>> from netvlad.models import ModelConfig
        >>> model = PlaceModel(ModelConfig(num_clusters=4), pretrained=False).eval()
        >>> images = torch.rand(1, 3, 64, 96)
        >>> torch.allclose(feature_maps(model, images), model.features(images), atol=1e-5, rtol=1e-5)
        True
    """
    if images.device.type != "cpu" or any(m.training for m in model.modules()):
        return model.features(images).float()
    from netvlad.extract.engine import TorchRunner

    prepared = TorchRunner(model, images.device, trace=False).inference_model()
    # one image a call, as extraction runs the model: the CPU kernels split a batch's work by its shape, so maps of a
    # batch would round differently from the same image's alone (a store row redone later would not be the same)
    return torch.cat([prepared.features(image[None].contiguous(memory_format=torch.channels_last)).float()
                      for image in images]).contiguous()


@dataclass
class Patches:
    """One image's patch descriptors for each size: ``descriptors[i]`` ``(rows·cols, dim)``, ``grids[i]`` (rows,
    cols); a size larger than the image's feature map has no windows (grid (0, 0)).

    Examples:
        >>> patches = Patches(descriptors=[torch.zeros(12, 32), torch.zeros(0, 32)], grids=[(3, 4), (0, 0)])
        >>> [tuple(d.shape) for d in patches.descriptors], patches.grids  # the second size did not fit the image
        ([(12, 32), (0, 32)], [(3, 4), (0, 0)])
    """

    descriptors: list[torch.Tensor]
    grids: list[tuple[int, int]]


class PatchExtractor:
    """Images -> :class:`Patches` of every size of ``preset``, through ``model``'s backbone and NetVLAD layer.

    ``whitening``: a PCA whitening of K·D-D patch vectors to at least ``preset.dim`` dims (cropped to it); default:
    the model's own whitening.

    Examples:
        >>> from netvlad.match.verify import VerifyPreset
        >>> from netvlad.models import ModelConfig
        >>> model = PlaceModel(ModelConfig(num_clusters=4), pretrained=False).eval()
        >>> preset = VerifyPreset("toy", "2 × 2 patches, 32-D", sizes=(2,), dim=32, scorer="ransac")
        >>> extractor = PatchExtractor(model, preset, whitening=PCAWhitening(4 * 1280, 32))
        >>> patches = extractor.from_images(torch.rand(2, 3, 128, 160))  # 4 × 5 feature maps: 3 × 4 windows of 2 × 2
        >>> len(patches), patches[0].grids, patches[0].descriptors[0].shape
        (2, [(3, 4)], torch.Size([12, 32]))
    """

    def __init__(self, model: PlaceModel, preset: VerifyPreset, whitening: PCAWhitening | None = None) -> None:
        self.model, self.preset = model, preset
        self.layer = require_netvlad(model)
        whitening = whitening if whitening is not None else model.whitening
        if whitening is None:
            raise BadInputError(f"the model has no PCA whitening for the {preset.name} preset's {preset.dim}-D patch "
                                "descriptors; fit one with fit_patch_whitening (the CLI does so from database images)")
        if whitening.out_dim < preset.dim:
            logger.warning("whitening gives %d dims, fewer than the %s preset's %d; using %d-D patches",
                           whitening.out_dim, preset.name, preset.dim, whitening.out_dim)
        self.whitening = whitening.crop(min(preset.dim, whitening.out_dim))  # its own copy: moved to the maps' device
        self._work: torch.Tensor | None = None  # the projection's block buffer, reused batch after batch
        self._facts_lock = threading.Lock()
        self._facts: dict[Hashable, tuple[tuple, object]] = {}  # whitening_fact's, shared with the twins

    @property
    def dim(self) -> int:
        """Patch descriptor dims after whitening."""
        return self.whitening.out_dim

    def whitening_fact(self, name: Hashable, compute: Callable[[], T], busy: object = _WAIT) -> T:
        """``compute()``, made once for this extractor and its twins while its whitening's weight and bias are the
        same tensors with the same values (an in-place change, ``.data`` or a device move makes it again): what
        depends on the whitening's values, such as the digest a patch store records or whether images may share a
        projection product (a twin in another thread waits for it rather than making it again; with ``busy``
        given, it gets ``busy`` at once while another thread makes or reads a fact)."""
        tensors = (self.whitening.linear.weight, self.whitening.linear.bias)
        if busy is _WAIT:
            self._facts_lock.acquire()
        elif not self._facts_lock.acquire(blocking=False):
            return busy  # type: ignore[return-value]
        try:
            known = self._facts.get(name)
            if known is None or not all(ref() is t and (address, version) == (t.data_ptr(), t._version)
                                        for (ref, address, version), t in zip(known[0], tensors, strict=True)):
                # weak references: a replaced tensor is neither kept alive nor mistaken for its successor
                state = tuple((weakref.ref(t), t.data_ptr(), t._version) for t in tensors)  # _version: in place
                known = self._facts[name] = (state, compute())
            return known[1]
        finally:
            self._facts_lock.release()

    def twin(self) -> PatchExtractor:
        """An extractor of the same model, preset and whitening for another thread: its own projection buffer, the
        checks of shared products made once for both."""
        twin = copy.copy(self)
        twin._work = None
        return twin

    @torch.no_grad()
    def from_features(self, features: torch.Tensor) -> list[Patches]:
        """Patches of a batch of feature maps ``(B, D, h, w)``.

        On a CPU, the windows of up to :data:`~netvlad.nn.patch.SHARED_IMAGES` images share one projection product
        (the K·D × out weight read once for them) where this process's product, at torch's current thread count,
        gives each image's rows the same bits in it as alone (:func:`~netvlad.nn.patch.shared_products_keep_bits`,
        checked once per window count; a twin's batches meanwhile project each image alone): an image's patches are
        the same bits alone as in any batch either way.
        """
        layer, w = self.layer, self.whitening.to(features.device)
        weight = layer.conv.weight.view(layer.num_clusters, layer.dim)
        if self._work is None or self._work.dtype != features.dtype or self._work.device != features.device:
            self._work = projection_work(layer.num_clusters, layer.dim, features.dtype, features.device)
        grids = [window_grid(features.shape[2], features.shape[3], size, self.preset.stride)
                 for size in self.preset.sizes]
        by_cell = cell_rows(features, weight, layer.conv.bias, layer.normalize_input)  # once for every size
        per_size = [patch_netvlad(features, weight, layer.conv.bias, layer.centroids, size, self.preset.stride,
                                  layer.normalize_input, (w.linear.weight, w.linear.bias), work=self._work,
                                  by_cell=by_cell, shared=self._shared(features, rows * cols, w.linear.weight))
                    for size, (rows, cols) in zip(self.preset.sizes, grids, strict=True)]
        return [Patches([p[b] for p in per_size], grids) for b in range(len(features))]

    def _shared(self, features: torch.Tensor, windows: int, project: torch.Tensor) -> int:
        """Images whose ``windows`` windows each may share a projection product in this batch (1: each alone)."""
        most = projection_rows(self.layer.num_clusters, self.layer.dim, features.dtype)
        images = min(SHARED_IMAGES, most // max(1, windows))
        if features.device.type != "cpu" or len(features) < 2 or images < 2 or project.dtype != features.dtype:
            return 1
        threads = torch.get_num_threads()

        def check() -> bool:
            keeps = shared_products_keep_bits(project, windows, images)
            logger.debug("%d images of %d windows %s one projection product on %d threads", images, windows,
                         "share" if keeps else "do not share (their rows' bits would change)", threads)
            return keeps

        # while a twin checks, this thread projects each image alone (the same bits) rather than wait for it
        return images if self.whitening_fact(("shared", windows, images, threads, project.dtype), check,
                                             busy=False) else 1

    @torch.no_grad()
    def from_images(self, images: torch.Tensor) -> list[Patches]:
        """Patches of RGB images ``(B, 3, H, W)`` in [0, 1]."""
        return self.from_features(feature_maps(self.model, images))


def iter_images(model: PlaceModel, paths: Sequence[Path | str], batch_size: int = 4, device: str | torch.device = "cpu"
                ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield (indices into ``paths``, images ``(b, 3, H, W)``) resized as the model's preprocessing says."""
    pre = model.config.preprocessing
    loader = ImageLoader(ImageDataset([Path(p) for p in paths], pre.resize, pre.size,
                                      fast_decode=pre.fast_decode), batch_size=batch_size,
                         num_workers=0, collate_fn=collate_by_size)
    for groups, _bad in loader:
        for indices, images in groups:
            yield indices.numpy(), images.to(device)


@torch.no_grad()
def shrink_whitening(whitening: PCAWhitening, shrink: float) -> PCAWhitening:
    """The same principal directions scaled by 1/√(λ + ε), ε = ``shrink`` × mean λ of its dims (0: as fitted).

    A larger ``shrink`` whitens less: the small-variance directions, noise in a fit on few patches, are no longer
    raised to unit variance; the output (L2-normalised) tends to the plain PCA projection as ``shrink`` grows.
    """
    lam = whitening.eigenvalues.double()
    eps = float(shrink) * float(lam.mean())
    scale = ((lam + whitening.eps) / (lam + whitening.eps + eps)).sqrt().to(whitening.linear.weight)
    return PCAWhitening.from_tensors(whitening.linear.weight * scale[:, None], whitening.linear.bias * scale,
                                     whitening.eigenvalues, whitening.eps + eps)


@torch.no_grad()
def fit_patch_whitening(model: PlaceModel, paths: Sequence[Path | str], dim: int, size: int = 5, stride: int = 1,
                        samples: int | None = None, seed: int = 0, device: str | torch.device = "cpu",
                        shrink: float | None = None) -> PCAWhitening:
    """A PCA whitening to ``dim`` dims fitted on ``samples`` (default: dim + 1,000, at least :data:`FIT_SAMPLES`)
    random P×P patch vectors of images, regularised by :func:`shrink_whitening` (``shrink``: ε / mean λ, default
    :data:`SHRINK`).

    Too few patches for ``dim``: as many dims as they allow (one fewer than the patches), with a warning.

    The same fitting code as the global whitening (:meth:`PCAWhitening.fit`), on K·D-D intra- and L2-normalised
    patch vectors; patches are drawn evenly from the images at ``paths``.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.models import ModelConfig
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> netvlad_model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> whitening = fit_patch_whitening(netvlad_model, city.database.paths(), dim=16, size=1, samples=60)
        >>> whitening.in_dim, whitening.out_dim  # K·D-D patch vectors to 16 dims
        (5120, 16)
    """
    layer = require_netvlad(model)
    shrink = SHRINK if shrink is None else shrink
    samples = samples or max(dim + 1000, FIT_SAMPLES)
    rng = np.random.default_rng(seed)
    per_image = max(1, -(-samples // max(1, len(paths))))
    weight = layer.conv.weight.view(layer.num_clusters, layer.dim)
    chosen: list[torch.Tensor] = []
    model = model.to(device).eval()
    for _, images in iter_images(model, paths, device=device):
        vectors = patch_netvlad(feature_maps(model, images), weight, layer.conv.bias, layer.centroids, size,
                                stride, layer.normalize_input)
        for v in vectors:
            if len(v):
                chosen.append(v[torch.from_numpy(rng.choice(len(v), min(per_image, len(v)), replace=False))].cpu())
    found = sum(len(c) for c in chosen)
    if found < 2:
        raise BadInputError(f"{found} patch vectors of size {size} from {len(paths)} images cannot fit a whitening; "
                            "use more or larger images")
    if found <= dim:
        logger.warning("only %d patch vectors of size %d from %d images: the fitted whitening keeps %d dims, not %d",
                       found, size, len(paths), found - 1, dim)
        dim = found - 1
    data = torch.cat(chosen)[:samples]
    del chosen
    logger.info("fitting a %d-D patch whitening on %d patch vectors of size %d (ε = %g × mean λ)", dim, len(data),
                size, shrink)
    return shrink_whitening(PCAWhitening(data.shape[1], dim).fit(data), shrink)
