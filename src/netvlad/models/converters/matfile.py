"""Reading MATLAB v5/v7 MAT-files as loaded by scipy: cells, structs and arrays, with errors naming the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netvlad.errors import BadInputError

STRUCT_FIX = ("convert its layers to structs once in MATLAB: `for i = 1:numel(net.layers), net.layers{i} = "
              "struct(net.layers{i}); end; save('net_struct.mat', 'net', '-v7')` (as hloc's *_struct.mat)")


def is_opaque(value) -> bool:
    """scipy's stand-in for a MATLAB class object (checked by name: scipy.io is imported only when needed)."""
    return type(value).__name__ == "MatlabOpaque"


def unwrap(value):
    """Strip the 1×1 object arrays scipy wraps around cells' and structs' contents."""
    while isinstance(value, np.ndarray) and not is_opaque(value) and value.dtype == object and value.size == 1:
        value = value.flat[0]
    return value


def as_text(value) -> str:
    """A MATLAB char array as a Python string."""
    value = unwrap(value)
    if isinstance(value, np.ndarray):
        return "".join(str(v) for v in value.flat)
    return str(value)


def get_field(struct, name: str, where: str, path: Path):
    """``struct.name``; an error naming ``where`` and the missing field, or explaining class objects."""
    struct = unwrap(struct)
    if is_opaque(struct):
        raise BadInputError(f"{path}: {where} is a MATLAB class object that Python cannot read; {STRUCT_FIX}")
    names = getattr(struct, "_fieldnames", None)
    if names is None or name not in names:
        raise BadInputError(f"{path}: {where} has no field '{name}' (fields: {names}); "
                         "not a MatConvNet simplenn NetVLAD network")
    return getattr(struct, name)


def as_cell(value, where: str, path: Path, length: int | None = None) -> list:
    """A MATLAB cell array's entries, unwrapped, optionally of a required ``length``."""
    if not (isinstance(value, np.ndarray) and value.dtype == object) or is_opaque(value):
        raise BadInputError(f"{path}: {where} is not a cell array")
    items = [unwrap(v) for v in value.flat]
    if length is not None and len(items) != length:
        raise BadInputError(f"{path}: {where} has {len(items)} entries, expected {length}")
    return items


def as_array(value, shape: tuple[int, ...], where: str, path: Path) -> np.ndarray:
    """A numeric MATLAB array as float32 of ``shape`` (MATLAB drops trailing singleton dims)."""
    array = np.asarray(unwrap(value))
    if array.dtype == object or array.size != int(np.prod(shape)):
        raise BadInputError(f"{path}: {where} has shape {array.shape}, expected {shape}")
    squeezed = [s for s in array.shape if s != 1]
    if squeezed != [s for s in shape if s != 1]:
        raise BadInputError(f"{path}: {where} has shape {array.shape}, expected {shape}")
    return array.astype(np.float32).reshape(shape)  # MATLAB single; reordering needs no more precision


def load_net(path: Path):
    """The ``net`` struct of a MAT-file, or a one-line error saying what is wrong with the file."""
    import scipy.io  # only MATLAB conversions need it

    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=False, chars_as_strings=True)
    except NotImplementedError:  # v7.3 = HDF5
        raise BadInputError(f"{path}: a MATLAB v7.3 (HDF5) file, which this reader does not support; re-save it "
                            "in MATLAB with save(FILE, 'net', '-v7')", path=path) from None
    except (ValueError, TypeError, OSError, IndexError, KeyError, EOFError, AttributeError,
            scipy.io.matlab.MatReadError) as error:  # scipy's errors on a damaged or foreign file
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        raise BadInputError(f"{path}: not a readable MAT-file ({reason}); expected the MATLAB NetVLAD .mat",
                            path=path) from None
    if "net" not in mat:
        raise BadInputError(f"{path}: no variable 'net' (found {sorted(k for k in mat if not k.startswith('__'))})")
    return mat["net"]
