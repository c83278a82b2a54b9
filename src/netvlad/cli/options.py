"""Options shared by many commands, their checked argument types, and what they turn into.

The types (:func:`number`, :func:`existing`, :func:`output`), ``--threads``, the device, the model (``--model CKPT``
or ``--backbone/--pool``), the dataset and its ROS-bag options, ``--engine``, the descriptor store, the search index,
spatial re-ranking and ``--deterministic``. Nothing heavy is imported at module level: parsing arguments (and
failing on them) never imports torch; the functions that need it import it when they run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from netvlad.data.readers.registry import READERS
from netvlad.errors import BadInputError
from netvlad.extract.engine import COMMAND_ENGINE, ENGINE_VARIABLE, ENGINES
from netvlad.limits import COUNT, NON_NEGATIVE_INT, NUM_CLUSTERS, POSITIVE, Limit
from netvlad.match.verify.presets import FUSED, TOP, VERIFY_PRESETS
from netvlad.models.backbone_specs import BACKBONES
from netvlad.models.pools import POOLS
from netvlad.search.index import INDEX_KINDS
from netvlad.threads import usable_cores

logger = logging.getLogger(__name__)


# ---- argument types
class Number:
    """An argparse ``type`` that accepts numbers in its ``limit`` and names the allowed range otherwise."""

    def __init__(self, limit: Limit) -> None:
        self.limit, self.__name__ = limit, limit.describe()  # argparse names the type by __name__

    def __call__(self, text: str) -> int | float:
        try:
            return self.limit.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None


def number(limit: Limit) -> Number:
    """An argparse ``type`` that accepts numbers in ``limit`` and names the allowed range otherwise."""
    return Number(limit)


def existing(kind: str = "path", what: str | None = None) -> Callable[[str], Path]:
    """An argparse ``type`` for an input that must exist: ``"path"``, ``"file"`` or ``"folder"``.

    A missing input raises FileNotFoundError (IsADirectoryError, NotADirectoryError), which argparse lets
    through: ``netvlad.cli.main`` reports it as one ERROR line naming the path (exit 1), as it reports a file
    that exists but cannot be read.
    """
    what = what or {"path": "file or folder", "file": "file", "folder": "folder"}[kind]

    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{text}: {what} not found; check the path")
        if kind == "file" and path.is_dir():
            raise IsADirectoryError(f"{text}: is a folder; give the {what} itself")
        if kind == "folder" and not path.is_dir():
            raise NotADirectoryError(f"{text}: is a file; give the {what}")
        return path

    parse.__name__ = what
    return parse


def output(kind: str = "file") -> Callable[[str], Path]:
    """An argparse ``type`` for a ``"file"`` or ``"folder"`` to write: refused at once (as ``existing`` refuses a
    missing input) when a folder stands where a file goes, or the other way round, or nothing can be written there.
    """
    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if kind == "file" and path.is_dir():
            raise IsADirectoryError(f"{text}: is a folder; give the name of a file to write")
        if kind == "folder" and path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{text}: is a file; give a folder to write into")
        parent = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
        if parent != path.absolute() and (not parent.is_dir() or not os.access(parent, os.W_OK)):
            raise PermissionError(f"{text}: cannot be written ({parent} is not a writable folder)")
        return path

    parse.__name__ = f"output {kind}"
    return parse


class CountList:
    """An argparse ``type`` for comma-separated counts: ``"1,5,10"`` -> (1, 5, 10); a clear error otherwise."""

    limit = COUNT  # each value's range (the argument checks read it, as they read `Number.limit`)
    __name__ = "comma-separated integers ≥ 1"  # argparse names the type by __name__

    def __call__(self, text: str) -> tuple[int, ...]:
        try:
            ns = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
        except ValueError:
            ns = ()
        if not ns or ns[0] < 1:
            raise argparse.ArgumentTypeError(f"must be comma-separated integers ≥ 1 (e.g. 1,5,10), got {text!r}")
        return ns


parse_ns = CountList()


# ---- threads and device

def default_threads(workers: int = 0) -> int:
    """Compute threads that do not oversubscribe the machine: this process's share of the usable cores (torchrun
    starts ``LOCAL_WORLD_SIZE`` processes per machine) less one for the main thread's other work and one per
    DataLoader worker, at least 1."""
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, usable_cores() // processes - 1 - workers)


THREADS_RULE = "usable cores (÷ torchrun processes) − 1 − --workers, at least 1"


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: compute threads for torch, faiss and BLAS (every command has it)."""
    parser.add_argument("--threads", type=number(COUNT), default=None,
                        help=f"compute threads for torch, faiss and BLAS (default: {THREADS_RULE}; "
                             f"{default_threads()} here without workers). More threads than free cores stall "
                             "each other, ~10× slower")


def set_threads(threads: int | None, workers: int = 0) -> int:
    """Use ``threads`` (default: :func:`default_threads`) in torch, faiss and BLAS, now or when they are imported."""
    cores = usable_cores()
    if threads is None:
        threads = default_threads(workers)
    elif threads > cores:
        logger.warning("--threads %d is more than the %d usable cores; threads will wait for each other",
                       threads, cores)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)  # read by torch, faiss and numpy when they are first imported
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(threads)
    return threads


def pick_device(name: str = "auto"):
    """A ``torch.device``: ``auto`` picks CUDA, then Apple MPS, then CPU."""
    import torch

    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--workers``, ``--batch-size``, ``--no-progress``."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default)")
    parser.add_argument("--workers", type=number(NON_NEGATIVE_INT), default=2,
                        help="image-decoding worker processes (0: decode in the main process)")
    parser.add_argument("--batch-size", type=number(COUNT), default=8,
                        help="images loaded (and, on a GPU, run through the model) together; on a CPU each image "
                             "runs alone, so its descriptor's bytes never depend on its batch")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide progress bars (shown only when standard error is a terminal)")


# ---- the model

def add_model_args(parser: argparse.ArgumentParser) -> None:
    """A checkpoint (``--model``) or an off-the-shelf backbone + pooling, and input-size overrides."""
    group = parser.add_argument_group("model (a checkpoint, or an off-the-shelf backbone + pooling)")
    group.add_argument("--model", type=existing("file", "checkpoint"), help="a netvlad checkpoint (.safetensors)")
    group.add_argument("--backbone", default="mobilenet_v2", choices=BACKBONES.names(),
                       help=BACKBONES.describe())
    group.add_argument("--pool", default="netvlad", choices=POOLS.names(), help=POOLS.describe())
    group.add_argument("--clusters", type=number(NUM_CLUSTERS), default=64, help="NetVLAD K")
    group.add_argument("--parametrization", default="official", choices=("official", "paper"),
                       help="NetVLAD assignment: the official code's or the paper's (with a bias)")
    group.add_argument("--no-pretrained", action="store_true", help="random backbone weights")
    group.add_argument("--resize", choices=("none", "fixed", "longest"), default=None,
                       help="override the model's input-size policy (default: the checkpoint's; off the shelf: "
                            "longest)")
    group.add_argument("--size", type=number(COUNT), nargs="+", default=None,
                       help="pixels: H W for fixed, S for longest (default: the checkpoint's; off the shelf: 640)")
    group.add_argument("--fast-decode", action="store_true",
                       help="decode JPEGs at reduced scale (1/2, 1/4 or 1/8) before the resize: faster, descriptors "
                            "slightly different from a full decode's (default: the checkpoint's; off the shelf: a "
                            "full decode, as the reference pipelines)")


def model_from_args(args: argparse.Namespace):
    """Load ``--model`` or build ``--backbone``/``--pool``; ``--resize/--size/--fast-decode`` override
    preprocessing."""
    import dataclasses

    from netvlad.models import ModelConfig, PlaceModel, Preprocessing, load

    refuse_model_args(args)
    if args.model:
        model = load(args.model)
    else:
        config = ModelConfig(backbone=args.backbone, pool=args.pool, num_clusters=args.clusters,
                             parametrization=args.parametrization)
        model = PlaceModel(config, pretrained=not args.no_pretrained)
    if args.resize or args.size or getattr(args, "fast_decode", False):
        pre = model.config.preprocessing
        pre = Preprocessing(resize=args.resize or pre.resize, size=tuple(args.size or pre.size), mean=pre.mean,
                            std=pre.std, value_scale=pre.value_scale,
                            fast_decode=pre.fast_decode or getattr(args, "fast_decode", False))
        model.config = dataclasses.replace(model.config, preprocessing=pre)
    return model.eval()


def model_label(args: argparse.Namespace, model) -> str:
    """``checkpoint [fingerprint]`` or ``backbone+pool (off-the-shelf) [fingerprint]``."""
    source = str(args.model) if args.model else f"{model.config.backbone}+{model.config.pool} (off-the-shelf)"
    return f"{source} [{model.fingerprint()}]"


# The off-the-shelf model's flags and their defaults (add_model_args; a test keeps the two equal).
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


def refuse_model_args(args: argparse.Namespace) -> None:
    """The model flags that cannot apply together, refused before anything loads."""
    refuse_architecture_with_checkpoint(args)
    if getattr(args, "cluster_cache", None) is not None and (args.model or args.pool != "netvlad"):
        raise BadInputError("--cluster-cache would be ignored: only an off-the-shelf NetVLAD (--pool netvlad, no "
                            "--model) is clustered; drop it")


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


# ---- the dataset

def add_dataset_args(parser: argparse.ArgumentParser, positional: bool = True, optional: bool = False) -> None:
    """Add ``DATASET`` (or ``--dataset`` when ``positional`` is False; may be left out when ``optional``) and the
    reader options."""
    if positional:  # left out with --database RUN1.bag --queries RUN2.bag (two bags named by their paths)
        parser.add_argument("dataset", metavar="DATASET", nargs="?", type=existing(what="dataset"),
                            help="dataset folder or file: DVGB folder, .mat dbStruct, .csv manifest, EXIF photo "
                                 "folder, a ROS bag (.bag, .mcap, ROS 2 folder), or a sequence folder with "
                                 "--database/--queries")
    else:
        parser.add_argument("--dataset", required=True, metavar="DATASET", type=existing(what="dataset"),
                            help="dataset folder or file")
    group = parser.add_argument_group("dataset")
    group.add_argument("--format", choices=READERS.names(), default=None,
                       help="force a format (default: detect): " + READERS.describe())
    group.add_argument("--split", default=None, help="DVGB / .mat split: train, val or test (default: test)")
    group.add_argument("--database", default=None, metavar="FOLDER",
                       help="database sub-folder (sequences: e.g. summer; .mat: under --image-root)")
    group.add_argument("--queries", default=None, metavar="FOLDER", help="query sub-folder (e.g. winter)")
    group.add_argument("--image-root", default=None, metavar="DIR", type=existing("folder"),
                       help=".mat / CSV image root (default: its folder)")
    group.add_argument("--frame-tolerance", type=number(NON_NEGATIVE_INT), default=None, metavar="K",
                       help="sequences: ±K frames count as correct (default 0; Gardens Point uses 2)")
    group.add_argument("--spacing", type=number(POSITIVE), default=None, metavar="M",
                       help="sequences: metres between frames (default 25/(K+1))")
    group.add_argument("--skip-bad", action="store_true", help="skip (and count) bad images and entries")
    add_bag_args(parser.add_argument_group("ROS bags"))


def add_bag_args(group, every: bool = True, positions: bool = True) -> None:
    """The topics and keyframe options of a ROS bag (``every``: add ``--every``, which ``stream`` has already;
    ``positions``: the GNSS / odometry topics and ``--min-distance``)."""
    group.add_argument("--image-topic", default=None, metavar="TOPIC",
                       help="image topic (sensor_msgs/Image or CompressedImage; default: the bag's only one)")
    if positions:
        topics = group.add_mutually_exclusive_group()
        topics.add_argument("--gps-topic", default=None, metavar="TOPIC",
                            help="sensor_msgs/NavSatFix positions (lat/lon to UTM), interpolated to each image "
                                 "stamp")
        topics.add_argument("--odom-topic", default=None, metavar="TOPIC",
                            help="nav_msgs/Odometry or geometry_msgs/PoseStamped positions (metres in its frame)")
    if every:
        group.add_argument("--every", type=number(COUNT), default=None, metavar="N",
                           help="keyframes: one image in N (default: every image)")
    group.add_argument("--min-interval", type=number(POSITIVE), default=None, metavar="SECONDS",
                       help="keyframes: at least SECONDS apart (header stamps)")
    if positions:
        group.add_argument("--min-distance", type=number(POSITIVE), default=None, metavar="METRES",
                           help="keyframes: at least METRES apart along the interpolated positions")


BAG_KEYS = ("image_topic", "gps_topic", "odom_topic", "every", "min_interval", "min_distance")


def dataset_options(args: argparse.Namespace) -> dict:
    """The :func:`netvlad.data.open_dataset` keyword arguments the dataset flags give."""
    return dict(format=args.format, split=args.split, database=args.database, queries=args.queries,
                image_root=args.image_root, frame_tolerance=args.frame_tolerance, spacing=args.spacing,
                skip_bad=args.skip_bad, **{key: getattr(args, key, None) for key in BAG_KEYS})


def dataset_source(args: argparse.Namespace) -> Path:
    """DATASET, or the current folder when it is left out and ``--database``/``--queries`` name two bags."""
    if args.dataset is not None:
        return args.dataset
    from netvlad.data.bags.bag import is_bag

    if args.database and args.queries and is_bag(Path(args.database)) and is_bag(Path(args.queries)):
        return Path(".")
    from netvlad.errors import BadInputError

    raise BadInputError("DATASET missing: give the dataset folder or file (or two bags: --database RUN1.bag "
                        "--queries RUN2.bag)", hint="DATASET")


def check_pair(args: argparse.Namespace) -> None:
    """Refuse ``--database`` without ``--queries`` (or the reverse): the same one-line error in every command."""
    database, queries = getattr(args, "database", None), getattr(args, "queries", None)
    if (database is None) != (queries is None):
        given, missing = ("--database", "--queries") if database is not None else ("--queries", "--database")
        from netvlad.errors import BadInputError

        raise BadInputError(f"{given} {database or queries} without {missing}: name both sub-folders (the "
                            "database and the queries, e.g. --database day_left --queries day_right)")


def dataset_from_args(args: argparse.Namespace, opener=None, **extra):
    """Open the dataset the arguments describe: a :class:`netvlad.data.GeoDataset`, or what ``opener`` (e.g.
    :func:`netvlad.data.folders.open_database`, which takes the same arguments) returns; ``extra``: its own."""
    if opener is None:
        from netvlad.data import open_dataset as opener

    check_pair(args)
    return opener(dataset_source(args), **dataset_options(args), **extra)


# ---- the engine, descriptors and k-means

def default_engine() -> str:
    """The commands' engine unless ``--engine`` names one: ``$NETVLAD_ENGINE``, else :data:`COMMAND_ENGINE`."""
    return os.environ.get(ENGINE_VARIABLE) or COMMAND_ENGINE


def add_engine_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None = None) -> None:
    """Add ``--engine`` (``default``: the command's own, else :func:`default_engine`)."""
    default = default or default_engine()
    parser.add_argument("--engine", choices=ENGINES.names(), default=default,
                        help=f"inference engine: onnxruntime runs the model's ONNX export (made once, cached in "
                             f"$NETVLAD_CACHE or ~/.cache/netvlad), ~3× faster on a CPU; auto picks it on a CPU "
                             f"when installed, torch otherwise (default {default}; ${ENGINE_VARIABLE} "
                             "sets it)")


def engine_from_args(args: argparse.Namespace, model=None, device="cpu", images: int | None = None):
    """The :class:`netvlad.extract.engine.EngineConfig` of ``--engine`` (onnxruntime threads: the command's); with
    ``model``, the runner resolved for it on ``device`` (exported once, its ``.name`` the engine that runs)."""
    from netvlad.extract.engine import EngineConfig, make_runner

    config = EngineConfig(name=getattr(args, "engine", None) or default_engine())
    if model is None:
        return config
    runner = make_runner(model, config, device, images=images)
    threads = getattr(runner, "threads", 0)
    logger.info("descriptors by %s (%s)", runner.name, f"{threads} thread{'s' * (threads != 1)}" if threads
                else f"device {device}")
    return runner


def add_cluster_images_arg(parser) -> None:
    """``--cluster-images``: database images k-means samples for an off-the-shelf NetVLAD."""
    parser.add_argument("--cluster-images", type=number(COUNT), default=500,
                        help="off-the-shelf NetVLAD: database images sampled for k-means")
    add_cluster_cache_arg(parser)


def add_cluster_cache_arg(parser) -> None:
    """``--cluster-cache DIR``: where an off-the-shelf NetVLAD's k-means centroids (and its patch whitening) are kept
    for reuse."""
    parser.add_argument("--cluster-cache", default=None, metavar="DIR",
                        help="off-the-shelf NetVLAD: folder of cached k-means centroids and --verify's fitted "
                             "patch whitening, reused on the same images (default: $NETVLAD_CLUSTER_CACHE, else "
                             "clusters/ in $NETVLAD_CACHE or ~/.cache/netvlad; 'none': cluster and fit anew)")


def cluster_cache(args: argparse.Namespace) -> Path | bool:
    """``--cluster-cache`` as :func:`netvlad.extract.clusters.cluster_if_off_the_shelf` takes it."""
    if args.cluster_cache in (None, "none"):
        return args.cluster_cache is None  # the default folder, or none
    return Path(args.cluster_cache).expanduser()


def clustering(args: argparse.Namespace) -> dict:
    """The k-means keywords of an off-the-shelf NetVLAD (``--cluster-images`` as a
    :class:`~netvlad.extract.clusters.ClusterConfig`, progress, batch size, workers, ``--skip-bad``, the cache), as
    :func:`netvlad.extract.processes.prepare_model` and :func:`netvlad.extract.clusters.cluster_if_off_the_shelf`
    take them."""
    from netvlad.extract.clusters import ClusterConfig

    return dict(config=ClusterConfig(num_images=args.cluster_images), progress=not args.no_progress,
                batch_size=args.batch_size, workers=args.workers, skip_bad=getattr(args, "skip_bad", False),
                cache=cluster_cache(args))


def add_extract_args(parser: argparse.ArgumentParser) -> None:
    """Where descriptors are kept, their type, and k-means sampling for an off-the-shelf NetVLAD."""
    group = parser.add_argument_group("descriptors")
    group.add_argument("--store", type=Path, default=None, metavar="DIR",
                       help="keep descriptors here (memory-mapped .npy); a rerun continues an interrupted run")
    group.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="stored descriptor type")
    add_cluster_images_arg(group)


def add_pictures_arg(parser) -> None:
    """``--pictures N``: queries drawn in the retrieval picture (``--no-pictures``: none)."""
    parser.add_argument("--pictures", type=number(NON_NEGATIVE_INT), default=6, metavar="N",
                        help="queries drawn in the retrieval picture (default 6; 0: none)")
    parser.add_argument("--no-pictures", dest="pictures", action="store_const", const=0,
                        help="skip the retrieval picture (as --pictures 0)")


# ---- search

def add_index_args(parser: argparse.ArgumentParser) -> None:
    """The faiss index options (``--index-type``, IVF/PQ/HNSW settings and the search options)."""
    group = parser.add_argument_group("search index")
    group.add_argument("--index-type", "--index-kind", dest="index_kind", default="flat", choices=INDEX_KINDS.names(),
                       help=INDEX_KINDS.describe())
    group.add_argument("--nlist", type=number(COUNT), default=None, help="IVF: inverted lists (default √N)")
    group.add_argument("--pq-m", type=number(COUNT), default=None,
                       help="PQ: sub-quantisers (default: dim/16 bytes per image, i.e. dim/8 of 4 bits)")
    group.add_argument("--pq-bits", type=number(Limit(1, 16, integer=True)), default=4,
                       help="PQ: bits per sub-quantiser code (4: SIMD fast-scan, the fastest; else classic IVF-PQ)")
    add_search_args(group)


def add_search_args(group) -> None:
    """Search-time options shared by ``evaluate``, ``index build`` and ``query``."""
    group.add_argument("--nprobe", type=number(COUNT), default=None,
                       help="IVF: lists visited per query (default: lists holding ≥ 16,384 vectors, at least 16)")
    group.add_argument("--ef-search", type=number(COUNT), default=128, help="HNSW: search beam width")
    group.add_argument("--rerank", type=number(NON_NEGATIVE_INT), default=100, metavar="C",
                       help="IVF-PQ: re-rank the top C candidates exactly from the stored descriptors (0: off)")
    group.add_argument("--max-memory", type=number(POSITIVE), default=None, metavar="GIB",
                       help="working memory of exact search and index building, GiB (default: half the available)")


def max_memory_from_args(args: argparse.Namespace) -> float | None:
    """``--max-memory`` in bytes (None: the library's default)."""
    return None if args.max_memory is None else args.max_memory * 1024**3


def index_config_from_args(args: argparse.Namespace, device=None):
    """The :class:`netvlad.search.index.IndexConfig` of the command line; faiss uses a GPU only when ``--device``
    picked CUDA."""
    from netvlad.search.index import IndexConfig

    return IndexConfig(kind=getattr(args, "index_kind", "flat"), nlist=getattr(args, "nlist", None),
                       m=getattr(args, "pq_m", None), nbits=getattr(args, "pq_bits", 4), nprobe=args.nprobe,
                       ef_search=args.ef_search, rerank=args.rerank,
                       use_gpu=device is not None and device.type == "cuda")


# ---- spatial re-ranking

def add_verify_args(parser, top_default: int = TOP) -> None:
    """Add the spatial re-ranking options (choices from the torch-free preset registry)."""
    group = parser.add_argument_group("spatial re-ranking (Patch-NetVLAD)")
    group.add_argument("--verify", metavar="PRESET", default=None, choices=VERIFY_PRESETS.names(),
                       help="re-rank the global shortlist by patch matching: "
                            + "; ".join(f"{n}: {VERIFY_PRESETS.get(n).description}" for n in VERIFY_PRESETS.names()))
    group.add_argument("--verify-top", type=number(COUNT), default=top_default, metavar="N",
                       help=f"candidates re-ranked per query: the global ranking's, or under --sequence the "
                            f"sequence ranking's (default {top_default}; clamped to the database, or to --shortlist)")
    group.add_argument("--verify-global-weight", type=number(Limit(0, 1)), default=None, metavar="λ",
                       help="weight of the global similarity fused with the patch score, 0..1 (default: the "
                            f"preset's, {FUSED:g}, chosen across sets: docs/reranking.md; 0: the patch score alone)")
    group.add_argument("--verify-ransac-threshold", type=number(POSITIVE), nargs="+", default=None, metavar="CELLS",
                       help="RANSAC inlier distance in feature-map cells: one for every patch size, or one per size "
                            "(default 1.5 for every size, Patch-NetVLAD's 24 pixels for VGG16)")


def preset_from_args(args: argparse.Namespace):
    """The chosen preset with ``--verify-global-weight`` and ``--verify-ransac-threshold`` applied (None without
    ``--verify``)."""
    if not getattr(args, "verify", None):
        return None
    preset = VERIFY_PRESETS.get(args.verify)
    weight = getattr(args, "verify_global_weight", None)
    preset = preset if weight is None else preset.with_global_weight(weight)
    thresholds = getattr(args, "verify_ransac_threshold", None)
    if thresholds:
        if preset.scorer != "ransac":
            from netvlad.errors import BadInputError

            raise BadInputError(f"--verify-ransac-threshold would be ignored: preset {preset.name} scores by "
                                "rapid spatial scoring, not RANSAC; drop it or use --verify performance")
        if len(thresholds) not in (1, len(preset.sizes)):
            from netvlad.errors import BadInputError

            raise BadInputError(f"--verify-ransac-threshold takes one value or one per patch size {preset.sizes}, "
                                f"got {len(thresholds)}")
        preset = preset.with_thresholds(tuple(thresholds))
    return preset


def check_verify_model(args: argparse.Namespace, model) -> None:
    """Refuse ``--verify`` with a model whose pooling is not NetVLAD (or without a store), before any extraction."""
    if getattr(args, "verify", None):
        from netvlad.errors import BadInputError
        from netvlad.match.verify.patches import require_netvlad

        if hasattr(args, "store") and args.store is None:
            raise BadInputError("--verify needs --store DIR: the database's patch descriptors are kept there "
                                "(a rerun reuses them)")
        require_netvlad(model)


# ---- numerics

def add_numerics_args(parser: argparse.ArgumentParser, default: bool) -> None:
    """Add ``--deterministic/--no-deterministic`` (``default``: on or off for this command)."""
    parser.add_argument(
        "--deterministic", action=argparse.BooleanOptionalAction, default=default,
        help="pin torch (ATen, oneDNN, MKL), faiss and OpenBLAS to one code path, so that the same seed and "
             "--threads give bit-identical weights and Recall@N on any x86-64 CPU (slower: see "
             f"docs/reproducibility.md); default: {'on' if default else 'off'}")
