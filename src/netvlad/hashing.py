"""The bytes of tensors and arrays as a hash takes them: their own memory, viewed as unsigned bytes, not a copy.

``digest.update(tensor.numpy().tobytes())`` copies every byte before hashing it (168 MB for a patch whitening) and
fails on a bfloat16 tensor, which numpy cannot hold; :func:`raw_bytes` gives the same bytes as one flat ``uint8``
array over the value's memory, which ``hashlib`` reads in place. This module imports neither torch nor numpy.
"""

from __future__ import annotations

from typing import Any


def raw_bytes(value: Any) -> Any:
    """A flat ``uint8`` numpy array over the bytes of ``value``, a tensor (moved to the CPU) or a numpy array, in
    C order: the bytes ``value.numpy().tobytes()`` or ``value.tobytes()`` give, for any dtype (bfloat16 included),
    copied only where the value is not contiguous or not on the CPU.

    Examples:
        >>> import hashlib
        >>> import numpy as np
        >>> import torch
        >>> weight = torch.arange(6, dtype=torch.float32).reshape(2, 3)
        >>> raw_bytes(weight).dtype, len(raw_bytes(weight)), raw_bytes(weight).tobytes() == weight.numpy().tobytes()
        (dtype('uint8'), 24, True)
        >>> hashlib.sha256(raw_bytes(weight.T)).digest() == hashlib.sha256(weight.T.numpy().tobytes()).digest()
        True
        >>> len(raw_bytes(weight.to(torch.bfloat16))), len(raw_bytes(np.float64(1.5)))  # numpy holds no bfloat16
        (12, 8)
    """
    if hasattr(value, "detach"):  # a torch tensor
        import torch

        return value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    import numpy as np

    return np.ascontiguousarray(value).reshape(-1).view(np.uint8)
