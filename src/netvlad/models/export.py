"""Exports: global descriptors in hloc's HDF5 layout, and the whole model as ONNX or TorchScript.

hloc (cvg/Hierarchical-Localization) keeps one HDF5 group per image name, relative to its image
directory, holding a ``global_descriptor`` dataset ``(dim,)``; ``pairs_from_retrieval`` lists the
names with ``visititems`` and stacks ``f[name]["global_descriptor"]``. Names with sub-folders
(``db/0001.jpg``) become nested groups, exactly as hloc writes them.

The model exporters by name (:data:`EXPORTERS`): an export function ``(model, path, height=480, width=640) -> Path``
writes the whole model (normalisation included, any batch and image size); ``netvlad export FORMAT`` has one
sub-command per name. h5py, numpy and torch are imported inside the functions, so the CLI lists the formats without
them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from netvlad.errors import BadInputError
from netvlad.files import atomic_write
from netvlad.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch

    from netvlad.models import PlaceModel

EXPORTERS: Registry = Registry("model export format", known="known")
EXPORTERS.declare("onnx", "netvlad.models.export:export_onnx", "the whole model as onnx (dynamic batch and image size)")
EXPORTERS.declare("torchscript", "netvlad.models.export:export_torchscript",
                  "the whole model as torchscript (dynamic batch and image size)")


logger = logging.getLogger(__name__)

HLOC_KEY = "global_descriptor"


def hloc_names(path: Path | str) -> list[str]:
    """Image names held in an hloc feature file (as hloc's ``list_h5_names`` finds them)."""
    import h5py

    names: set[str] = set()
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda _, obj: names.add(obj.parent.name.strip("/")) if isinstance(obj, h5py.Dataset)
                          else None)
    return sorted(names)


def export_hloc(names: Sequence[str], descriptors: np.ndarray, path: Path | str, overwrite: bool = False) -> Path:
    """Write ``descriptors`` ``(N, dim)`` under ``names`` (relative to the image root) into hloc's HDF5 layout.

    An existing file is extended (names already there are kept) unless ``overwrite``.
    """
    import h5py
    import numpy as np

    descriptors = np.asarray(descriptors, dtype=np.float32)
    if descriptors.ndim != 2 or len(descriptors) != len(names):
        raise ValueError(f"expected ({len(names)}, dim) descriptors for {len(names)} names, got {descriptors.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        check_hloc_file(path)
    with h5py.File(path, "w" if overwrite else "a") as handle:
        for name, descriptor in zip(names, descriptors, strict=True):
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"hloc names are relative to the image root, got {name!r}")
            if name in handle:
                existing = handle[name].get(HLOC_KEY)
                if existing is not None and existing.shape != descriptor.shape:
                    raise BadInputError(f"{path}: {name} holds a {existing.shape[0]}-D descriptor, not "
                                     f"{descriptor.shape[0]}-D; write to a new file")
                del handle[name]
            handle.create_group(name).create_dataset(HLOC_KEY, data=descriptor)
    logger.info("wrote %d global descriptors (%d-D) to %s", len(names), descriptors.shape[1], path)
    return path


def check_hloc_file(path: Path | str) -> None:
    """Refuse (BadInputError naming it) an existing ``path`` that is not an HDF5 file hloc's layout can extend."""
    import h5py

    path = Path(path)
    if not path.exists():
        return
    fix = "remove it, write to a new file, or pass overwrite=True"
    if path.is_file() and path.stat().st_size == 0:
        raise BadInputError(f"{path}: is empty, not an hloc HDF5 file to extend; {fix}", path=path,
                            hint="--overwrite replaces it")
    try:
        with h5py.File(path, "r") as handle:
            handle.keys()
    except (OSError, KeyError, ValueError, RuntimeError) as error:  # h5py's errors on a damaged or foreign file
        reason = " ".join(str(error).split())
        raise BadInputError(f"{path}: not a readable HDF5 file to extend ({reason}); {fix}", path=path,
                            hint="--overwrite replaces it") from None


def _exportable(model: PlaceModel, uint8: bool = False, cut: int | None = None) -> torch.nn.Module:
    """The model without its Python-side input checks, for tracing; ``uint8``: taking the image bytes (0–255) and
    dividing them by 255 itself, as :func:`netvlad.data.images.load_image` does; ``cut``: returning the feature maps
    of the first ``cut`` backbone stages beside the descriptors: the graph of
    :class:`~netvlad.models.global_and_local.GlobalAndLocal`, which torch's runner with the feature maps runs too."""
    import torch

    from netvlad.models.global_and_local import GlobalAndLocal

    class _Exportable(torch.nn.Module):
        def __init__(self, model: PlaceModel) -> None:
            super().__init__()
            self.model = model  # registered first: the parameters keep their names in the graph
            self.local = None if cut is None else GlobalAndLocal(model, cut)

        def forward(self, images: torch.Tensor):
            if uint8:
                images = images.float() / 255.0
            if self.local is not None:
                return self.local(images)
            return self.model.pool_features(self.model.backbone(self.model.normalize(images)))

    return _Exportable(model)


def export_onnx(model: PlaceModel, path: Path | str, height: int = 480, width: int = 640, opset: int = 17,
                dynamic_size: bool = True, uint8: bool = False, cut: int | None = None) -> Path:
    """Write ``model`` (normalisation → backbone → pooling → whitening) as ONNX with dynamic batch, height, width.

    Input ``images`` ``(B, 3, H, W)`` RGB in [0, 1] after the model's resize policy (``uint8``: the bytes 0–255,
    divided by 255 inside the graph, so a caller skips the float conversion and passes 4× fewer bytes); output
    ``descriptors``. Without ``dynamic_size`` only the batch is dynamic: the graph takes ``height`` × ``width``
    images alone. With ``cut`` a second output, ``features`` ``(B, C, h, w)``: the feature maps of the first ``cut``
    backbone stages, from the same pass (:class:`~netvlad.models.global_and_local.GlobalAndLocal`).
    """
    import torch

    module = _exportable(model.cpu().eval(), uint8, cut).eval()
    example = torch.randint(0, 256, (1, 3, height, width), dtype=torch.uint8) if uint8 else torch.rand(1, 3, height,
                                                                                                        width)
    axes = {"images": {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"},
            "descriptors": {0: "batch"}}
    outputs = ["descriptors"]
    if cut is not None:
        outputs.append("features")
        axes["features"] = {0: "batch", 2: "rows", 3: "cols"} if dynamic_size else {0: "batch"}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation and tracer notes
            torch.onnx.export(module, (example,), str(tmp), input_names=["images"], output_names=outputs,
                              dynamic_axes=axes, opset_version=opset, dynamo=False)

    return atomic_write(Path(path), write)


def export_torchscript(model: PlaceModel, path: Path | str, height: int = 480, width: int = 640) -> Path:
    """Write ``model`` as a traced TorchScript module (any batch and image size; load with ``torch.jit.load``)."""
    import torch

    module = _exportable(model.cpu().eval()).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, torch.rand(1, 3, height, width), check_trace=False)
    return atomic_write(Path(path), lambda tmp: torch.jit.save(traced, str(tmp)))


def onnx_max_difference(model: PlaceModel, path: Path | str, images: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime on the file at ``path`` and PyTorch on ``images``."""
    import numpy as np
    import onnxruntime  # optional dependency (netvlad[export])
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy().astype(np.float32)})[0]
    with torch.no_grad():
        expected = model.cpu().eval()(images).numpy()
    return float(np.abs(got - expected).max())
