"""SeqNet (Garg & Milford, RA-L 2021): a 1-D temporal convolution over L consecutive single-frame descriptors,
averaged over time and L2-normalised, giving one sequence descriptor; saved like every model (safetensors with its
config in the metadata)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from netvlad.errors import BadInputError
from netvlad.files import atomic_write
from netvlad.nn.functional import all_finite

FORMAT = "netvlad-seqnet"


@dataclass(frozen=True)
class SeqNetConfig:
    """``input_dim`` D of the single-frame descriptors, ``output_dim`` D' of the sequence descriptor, ``length`` L
    frames per window, ``kernel`` temporal width of the convolution (at most L; SeqNet's default 5), ``pca_dim`` P:
    each frame first projected on its P principal components and L2-normalised (0: none; the paper's NetVLAD
    descriptors are PCA-reduced to 4096-D so)."""

    input_dim: int
    output_dim: int = 512
    length: int = 10
    kernel: int = 5
    pca_dim: int = 0

    def __post_init__(self) -> None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in asdict(self).values()):
            raise BadInputError(f"SeqNet dims, length, kernel and pca_dim must be integers, got {asdict(self)}")
        if min(self.input_dim, self.output_dim, self.kernel) < 1 or self.length < 2 or self.pca_dim < 0:
            raise BadInputError(f"SeqNet needs dims ≥ 1, kernel ≥ 1, length ≥ 2 and pca_dim ≥ 0, got "
                                f"{asdict(self)}")
        object.__setattr__(self, "kernel", min(self.kernel, self.length))

    @property
    def frame_dim(self) -> int:
        """Dimensions per frame seen by the convolution: P with a projection, else D."""
        return self.pca_dim or self.input_dim


class SeqNet(nn.Module):
    """Sequence descriptor of L single-frame descriptors.

    Shape:
        ``(B, L, D)`` -> ``(B, D')``, L2-normalised; :meth:`project` ``(..., D) -> (..., P)`` and :meth:`temporal`
        ``(B, L, P) -> (B, D')`` are its two halves (training projects each frame once).
    """

    def __init__(self, config: SeqNetConfig) -> None:
        super().__init__()
        self.config = config
        if config.pca_dim:  # fixed (fitted by fit_pca), saved with the weights
            self.register_buffer("pca_mean", torch.zeros(config.input_dim))
            self.register_buffer("pca_components", torch.zeros(config.input_dim, config.pca_dim))
        self.conv = nn.Conv1d(config.frame_dim, config.output_dim, kernel_size=config.kernel)

    def project(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (..., D) on the principal components, L2-normalised (..., P); unchanged without ``pca_dim``."""
        if not self.config.pca_dim:
            return frames
        return F.normalize((frames - self.pca_mean) @ self.pca_components, dim=-1)

    def temporal(self, windows: torch.Tensor) -> torch.Tensor:
        """Sequence descriptors (B, D') of projected windows (B, L, P)."""
        if windows.dim() != 3 or windows.shape[1:] != (self.config.length, self.config.frame_dim):
            raise ValueError(f"SeqNet expects (B, {self.config.length}, {self.config.frame_dim}) windows, got "
                             f"{tuple(windows.shape)}")
        return F.normalize(self.conv(windows.transpose(1, 2)).mean(dim=2), dim=1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if windows.dim() != 3 or windows.shape[1:] != (self.config.length, self.config.input_dim):
            raise ValueError(f"SeqNet expects (B, {self.config.length}, {self.config.input_dim}) windows, got "
                             f"{tuple(windows.shape)}")
        return self.temporal(self.project(windows))


def fit_pca(model: SeqNet, descriptors: torch.Tensor) -> SeqNet:
    """Set ``model``'s projection to the top ``pca_dim`` principal components of ``descriptors`` (N, D) float32
    (from the N × N Gram matrix when N < D); returns the model."""
    mean = descriptors.mean(0)
    centred = descriptors - mean
    if len(centred) < centred.shape[1]:
        values, vectors = torch.linalg.eigh(centred @ centred.T)  # ascending
        components = centred.T @ vectors / values.clamp(min=1e-12).sqrt()
    else:
        values, components = torch.linalg.eigh(centred.T @ centred)
    dim = model.config.pca_dim
    if components.shape[1] < dim:
        raise BadInputError(f"SeqNet pca_dim {dim} needs at least {dim + 1} training descriptors, got "
                            f"{len(descriptors)}")
    model.pca_mean.copy_(mean)
    model.pca_components.copy_(components.flip(1)[:, :dim])
    return model


def save_seqnet(model: SeqNet, path: Path | str, extra: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (safetensors; config and ``extra`` as JSON metadata) atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "config": json.dumps(asdict(model.config)), "extra": json.dumps(extra or {})}
    return atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_seqnet(path: Path | str, *, descriptor_dim: int | None = None, length: int | None = None) -> SeqNet:
    """The SeqNet saved at ``path``; refused, naming both, when it was trained for another descriptor dim or L."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format is {metadata.get('format')!r}, not {FORMAT!r}")
        config = SeqNetConfig(**json.loads(metadata["config"]))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
        raise BadInputError(f"{path}: not a SeqNet model ({' '.join(str(error).split())[:200]}); train one with "
                            "netvlad.train.seqnet.train_seqnet", path=path) from None
    if descriptor_dim is not None and descriptor_dim != config.input_dim:
        raise BadInputError(f"{path}: SeqNet for {config.input_dim}-D descriptors, but the model gives "
                            f"{descriptor_dim}-D ones; train a SeqNet on this model's descriptors", path=path)
    if length is not None and length != config.length:
        raise BadInputError(f"{path}: SeqNet for sequences of L = {config.length} frames, but L = {length} was "
                            f"asked; use --sequence {config.length} or train one for L = {length}", path=path)
    _check_tensors(path, config, tensors)
    model = SeqNet(config)
    model.load_state_dict(tensors)
    return model.eval()


def _check_tensors(path: Path, config: SeqNetConfig, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse, in one line naming ``path``, tensors whose names or shapes disagree with ``config`` (checked on the
    meta device, so an absurd config allocates nothing) or that hold NaN or inf."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in SeqNet(config).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if found != expected:
        wrong = sorted(set(expected) ^ set(found)) or [k for k in sorted(expected) if expected[k] != found[k]]
        name = wrong[0]
        detail = (f"{name} is {found[name]} where its config ({describe_seqnet(config)}) needs {expected[name]}"
                  if name in found and name in expected else
                  f"tensor {name} is {'missing' if name in expected else 'not part of a SeqNet'}")
        raise BadInputError(f"{path}: the SeqNet's tensors disagree with its config: {detail}; the file is damaged "
                            "or edited: train it again", path=path)
    bad = [k for k, v in tensors.items() if not all_finite(v)]
    if bad:
        raise BadInputError(f"{path}: SeqNet tensor {bad[0]} holds NaN or inf (a diverged training run?); train it "
                            "again", path=path)


def describe_seqnet(config: SeqNetConfig) -> str:
    """``D → PCA P → Conv1d(kernel k) → D', L = 10``."""
    pca = f" → PCA {config.pca_dim}" if config.pca_dim else ""
    return (f"{config.input_dim}-D{pca} → Conv1d(kernel {config.kernel}) → {config.output_dim}-D, "
            f"L = {config.length}")
