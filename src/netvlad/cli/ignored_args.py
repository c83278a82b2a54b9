"""Model flags that a command would not use are refused, never silently dropped.

A checkpoint (``--model``) fixes its own backbone, pooling and K; an index (``--index``) brings its own model. The
flags that describe an off-the-shelf model (and, with ``--index``, the input-size overrides) are then an error
naming what is used instead.
"""

from __future__ import annotations

import argparse

from netvlad.errors import BadInputError

# The off-the-shelf model's flags and their defaults (common.add_model_args; a test keeps the two equal).
ARCHITECTURE = {"backbone": "mobilenet_v2", "pool": "netvlad", "clusters": 64, "parametrization": "official",
                "no_pretrained": False}
INPUT = {"resize": None, "size": None, "fast_decode": False}


def given(args: argparse.Namespace, defaults: dict) -> list[str]:
    """The flags of ``defaults`` that ``args`` sets to something else, as typed (``--pool gem``)."""
    flags = []
    for dest, default in defaults.items():
        value = getattr(args, dest, default)
        if value != default:
            shown = "" if isinstance(value, bool) else " " + " ".join(map(str, value if isinstance(value, list)
                                                                          else [value]))
            flags.append(f"--{dest.replace('_', '-')}{shown}")
    return flags


def refuse_architecture_with_checkpoint(args: argparse.Namespace) -> None:
    """``--model CHECKPOINT`` with ``--backbone/--pool/--clusters/--parametrization/--no-pretrained``: an error."""
    flags = given(args, ARCHITECTURE)
    if getattr(args, "model", None) and flags:
        raise BadInputError(f"{' '.join(flags)} would be ignored: the checkpoint {args.model} fixes its own backbone, "
                            "pooling and K; drop them (--resize/--size do apply to a checkpoint), or drop --model "
                            "for an off-the-shelf model", path=args.model)


def refuse_model_with_index(args: argparse.Namespace, option: str = "index") -> None:
    """``--index DIR`` (or ``--map DIR``) without ``--model`` and with model, input-size or decoding flags: an error
    naming the model used."""
    flags = given(args, ARCHITECTURE | INPUT)
    folder = getattr(args, option)
    if not getattr(args, "model", None) and flags:
        raise BadInputError(f"{' '.join(flags)} would be ignored: the {option} {folder} brings its own model "
                            f"({folder}/model.safetensors, with its input size and decoding); drop them, or give "
                            "--model CHECKPOINT (a model of the same fingerprint)", path=folder)


# Options that act only together with another one (``dest: the dest it needs``): given without it, the command
# would silently not use them. tests/cli/test_every_argument.py finds the next one.
NEEDS = {"verify_top": "verify", "verify_global_weight": "verify", "verify_ransac_threshold": "verify",
         "sequence_method": "sequence", "velocities": "sequence"}


def refuse_unused(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """An option of :data:`NEEDS` set without the option it needs (where the command has that one): an error."""
    for dest, needed in NEEDS.items():
        if not hasattr(args, dest) or not hasattr(args, needed) or getattr(args, needed):
            continue
        if getattr(args, dest) != parser.get_default(dest):
            flag, other = ("/".join(o for a in parser._actions if a.dest == name for o in a.option_strings)
                           for name in (dest, needed))
            raise BadInputError(f"{flag} would be ignored without {other}: give {other} too, or drop {flag}")
