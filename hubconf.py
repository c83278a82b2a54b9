"""torch.hub entry points: ``torch.hub.load("netvlad/netvlad", "netvlad", ...)`` returns a ready PlaceModel.

    >>> model = torch.hub.load("netvlad/netvlad", "netvlad", pretrained="vgg16-netvlad-pitts30k")  # doctest: +SKIP
    >>> model = torch.hub.load(".", "netvlad", checkpoint="runs/best.safetensors", source="local")  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "numpy", "scipy", "faiss", "safetensors", "h5py", "utm"]

_SRC = Path(__file__).resolve().parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:  # a hub checkout is not installed: import netvlad from its src/
    sys.path.insert(0, str(_SRC))


def netvlad(backbone: str = "mobilenet_v2", pool: str = "netvlad", pretrained: bool | str = True,
            checkpoint: str | None = None, **config):
    """A PlaceModel in eval mode.

    ``checkpoint``: a netvlad safetensors checkpoint or any file ``netvlad convert`` reads (MATLAB, pytorch-NetVlad,
    Patch-NetVLAD); it fixes the architecture, so nothing else may be given. ``pretrained``: a published model name
    (``netvlad.models.pretrained.list_pretrained()``, downloaded and converted once), ``True`` for the backbone's
    ImageNet weights (NetVLAD clusters then start random: fit them with ``netvlad cluster``) or ``False`` for random
    weights. ``config``: further :class:`netvlad.ModelConfig` fields (``num_clusters``, ``whitening_dim``, ...).
    """
    from netvlad.errors import BadInputError
    from netvlad.models import ModelConfig, PlaceModel
    from netvlad.models.pretrained import load_pretrained

    if checkpoint is not None or isinstance(pretrained, str):
        given = {"backbone": backbone != "mobilenet_v2", "pool": pool != "netvlad", **{k: True for k in config}}
        if checkpoint is not None and isinstance(pretrained, str):
            raise BadInputError("give checkpoint= or a published pretrained= name, not both")
        if any(given.values()):
            raise BadInputError(f"a checkpoint or published model fixes the architecture; drop "
                                f"{', '.join(k for k, v in given.items() if v)}")
        return load_pretrained(checkpoint if checkpoint is not None else pretrained).eval()
    if not isinstance(pretrained, bool):
        raise BadInputError(f"pretrained must be True, False or a published model name, got {pretrained!r}")
    try:
        model_config = ModelConfig.from_dict({"backbone": backbone, "pool": pool, **config})
    except BadInputError:
        raise
    except (TypeError, ValueError) as error:  # an unknown keyword, or a value of the wrong type
        raise BadInputError(f"netvlad(): {' '.join(str(error).split())}") from None
    return PlaceModel(model_config, pretrained=pretrained).eval()


def list_pretrained() -> list[str]:
    """The published model names ``netvlad(pretrained=NAME)`` accepts."""
    from netvlad.models.pretrained import list_pretrained as names

    return names()
