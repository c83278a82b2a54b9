"""Keyed, checksummed tensor entries: the checksum is SHA-256 over length-prefixed fields and tensors, the entry is
read back as written, and a flipped byte or another key makes it unusable (logged, None)."""

import hashlib
import logging

import pytest
import torch

from netvlad.extract.tensor_cache import entry_checksum, entry_path, read_entry, write_entry

KIND = ("test-entry", "1")


def _reference(fields: list[str], tensors: dict[str, torch.Tensor]) -> str:
    """The checksum as the module documents it, from bytes copies."""
    digest = hashlib.sha256()
    parts = [f.encode() for f in fields]
    for name, tensor in sorted(tensors.items()):
        parts += [name.encode(), str(tuple(tensor.shape)).encode(), tensor.contiguous().numpy().tobytes()]
    for part in parts:
        digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()


def test_checksum_equals_sha256_of_the_length_prefixed_bytes():
    """Strided, scalar, empty and integer tensors: the same checksum as the bytes copies give; bfloat16 (which
    numpy cannot hold) is hashed by its bytes too."""
    torch.manual_seed(0)
    tensors = {"weight": torch.randn(30, 40).T, "scalar": torch.tensor(2.5), "empty": torch.empty(0, 3),
               "index": torch.arange(7), "bias": torch.randn(40)}
    assert entry_checksum(["key", "eps"], tensors) == _reference(["key", "eps"], tensors)
    assert entry_checksum(["key"], tensors) != entry_checksum(["key", ""], tensors)  # the fields' count counts
    half = torch.randn(5, 3).to(torch.bfloat16)
    as_int = {"half": half.view(torch.int16)}  # the same bytes, a dtype numpy holds
    assert entry_checksum([], {"half": half}) == _reference([], as_int)


def test_an_entry_reads_back_and_a_flipped_byte_is_refused(tmp_path, caplog):
    key = {"model": "abc", "dims": 4}
    tensors = {"weight": torch.randn(4, 6), "bias": torch.randn(4)}
    path = write_entry(tmp_path, key, KIND, tensors, {"eps": "0.1"})
    assert path == entry_path(tmp_path, key)

    def read(k: dict = key):
        return read_entry(tmp_path, k, KIND, ("eps",), lambda t: None, "entry %s unusable (%s)")

    found, fields = read()
    assert fields == {"eps": "0.1"} and all(torch.equal(found[n], tensors[n]) for n in tensors)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # a flipped bit in the last tensor's bytes
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert read() is None
    assert "checksum does not match" in caplog.text
    assert read({"model": "other", "dims": 4}) is None  # no entry under another key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_checksum_does_not_copy_shape_or_order_away(dtype):
    """Equal bytes under another shape or name give another checksum."""
    values = torch.arange(12, dtype=dtype)
    assert entry_checksum([], {"a": values.view(3, 4)}) != entry_checksum([], {"a": values.view(4, 3)})
    assert entry_checksum([], {"a": values}) != entry_checksum([], {"b": values})
