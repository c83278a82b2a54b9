"""Bytes of tensors and arrays for a hash: the bytes a copy would give, with no copy, any dtype."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from netvlad.hashing import raw_bytes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int64, torch.bool, torch.uint8])
def test_a_tensor_s_bytes_are_numpy_s_copy_of_them_without_a_copy(dtype):
    tensor = (torch.randn(5, 7, generator=torch.Generator().manual_seed(0)) * 9).to(dtype)
    got = raw_bytes(tensor)
    assert got.dtype == np.uint8 and got.tobytes() == tensor.numpy().tobytes()
    assert np.shares_memory(got, tensor.numpy())  # a contiguous CPU tensor is hashed in place
    assert raw_bytes(tensor.T).tobytes() == tensor.T.numpy().tobytes()  # not contiguous: C order, as tobytes


def test_bfloat16_is_hashed_by_its_bits():
    tensor = torch.tensor([1.0, -2.5, 3.0e-3], dtype=torch.bfloat16)
    want = tensor.view(torch.int16).numpy().tobytes()  # the same 16-bit patterns, through a dtype numpy holds
    assert raw_bytes(tensor).tobytes() == want and len(want) == 6


def test_an_array_s_bytes_are_its_tobytes():
    array = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]  # a strided view
    assert raw_bytes(array).tobytes() == array.tobytes()
    scalar = np.float32(2.0)
    assert hashlib.sha256(raw_bytes(scalar)).hexdigest() == hashlib.sha256(scalar.tobytes()).hexdigest()


def test_digests_kept_their_values():
    from netvlad.extract.cluster_cache import backbone_digest
    from netvlad.models import ModelConfig, PlaceModel

    torch.manual_seed(0)
    model = PlaceModel(ModelConfig(num_clusters=4), pretrained=False)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.backbone.state_dict().items()):  # the formula the caches were keyed by
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    assert backbone_digest(model) == digest.hexdigest()[:16]
    assert len(backbone_digest(model.to(torch.bfloat16))) == 16  # numpy holds no bfloat16: this raised before
