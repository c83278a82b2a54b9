"""`netvlad convert`: another implementation's weights (MATLAB .mat, pytorch-NetVlad, Patch-NetVLAD) -> checkpoint."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from netvlad.cli.options import number, output
from netvlad.limits import COUNT
from netvlad.models.converters import CONVERTERS
from netvlad.models.published import PUBLISHED

logger = logging.getLogger(__name__)


def source_file(text: str) -> str:
    """SRC: an existing file, or a published model's name (a missing file is reported by ``cli.main``)."""
    path = Path(text).expanduser()
    if text in PUBLISHED or path.is_file():
        return text
    if path.is_dir():
        raise IsADirectoryError(f"{text}: is a folder; give the model file inside it (.mat, .pth.tar or .pth)")
    raise FileNotFoundError(f"{text}: no such file, nor a published model name ({', '.join(PUBLISHED.names())})")


def register(subparsers) -> None:
    """Add ``netvlad convert``."""
    parser = subparsers.add_parser(
        "convert", help="convert MATLAB / pytorch-NetVlad / Patch-NetVLAD weights to a netvlad checkpoint",
        description="Convert another NetVLAD implementation's weights into a netvlad checkpoint whose "
                    "descriptors equal the source's. SRC is a file, or a published model name: "
                    + ", ".join(PUBLISHED.names()) + ".")
    parser.add_argument("src", metavar="SRC", type=source_file, help="file to convert, or a published model name")
    parser.add_argument("--out", required=True, type=output(), help="checkpoint to write (.safetensors)")
    parser.add_argument("--from", dest="source", choices=CONVERTERS.names(),
                        help="source format (default: detect): " + CONVERTERS.describe())
    parser.add_argument("--backbone", help="encoder, when the file cannot tell (pytorch-NetVlad: vgg16|alexnet)")
    parser.add_argument("--clusters", dest="num_clusters", type=number(COUNT), help="K, checked against the file")
    parser.add_argument("--vladv2", action=argparse.BooleanOptionalAction, default=None,
                        help="assignment with a bias (checked against the file)")
    parser.add_argument("--no-whitening", action="store_true", help="drop the file's PCA-whitening layer")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert ``args.src`` (a file or a published name) and write ``args.out``."""
    from netvlad.models import save_model
    from netvlad.models.converters import ConvertOptions, convert, get_converter
    from netvlad.models.pretrained import PUBLISHED as ENTRIES
    from netvlad.models.pretrained import fetch

    source = args.source
    path = args.src
    if args.src in ENTRIES and not Path(args.src).exists():
        entry = ENTRIES[args.src]
        path, source = fetch(entry), source or entry.source
    options = ConvertOptions(backbone=args.backbone, num_clusters=args.num_clusters, vladv2=args.vladv2,
                             whitening=not args.no_whitening)
    conversion = convert(path, source, options)
    written = save_model(conversion.model, args.out, extra=conversion.provenance)
    config = conversion.model.config
    origin = conversion.provenance["converted_from"]
    logger.info("%s (%s: %s) -> %s: %s + NetVLAD K=%d, %d-D descriptors", path, origin["format"],
                get_converter(origin["format"]).description, written, config.backbone, config.num_clusters,
                conversion.model.output_dim)
    return 0
