"""A benchmark suite: models, datasets (with their protocol and tolerance) and methods (named settings), read from a
YAML file and checked whole before anything runs — an unknown name is one line naming it and the known ones.

A method is a *family* of settings (``single``, or a sequence method with its options) run at every length in
``lengths`` and every mode in ``modes``; a row of the table is one (family, L, mode).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from netvlad.errors import BadInputError

SUITES = Path(__file__).resolve().parent / "suites"
MODES = ("causal", "centred")
DATASET_KEYS = {"path", "database", "queries", "frame_tolerance", "last_places", "city", "split", "radius", "model",
                "condition", "distractors"}
DISTRACTOR_KEYS = {"city", "split"}  # a generated city whose database images (of one split) join a set's map
METHOD_KEYS = {"method", "lengths", "modes", "velocities", "shortlist", "propagate", "contrast_radius", "alpha_rule",
               "alpha_ratio",
               "verify", "verify_top", "verify_global_weight"}
VERIFY_KEYS = ("verify", "verify_top", "verify_global_weight")  # re-ranking (single frame): preset, top K, λ
ALPHA_KEYS = ("alpha_rule", "alpha_ratio")  # off-the-shelf NetVLAD's α: its rule and its top-1/top-2 target ratio
ALPHA_RULES = ("geometric", "arithmetic")  # netvlad.nn.netvlad.RatioAverage: the official closed form, the mean ratio
SUITE_KEYS = {"name", "description", "seed", "recall", "baseline", "models", "datasets", "methods", "extends",
              "fragments", "stream"}
STREAM_KEYS = {"exclude_recent"}  # ``stream:``: each set also replayed as netvlad stream sees it (stream_column.py)
# docs fragments a suite can name (``fragments: {NAME: PART}``, written by ``netvlad benchmark --results DIR``): the
# whole report, every row's Recall@N per set, the leave-one-set-out choice among the re-ranking rows
FRAGMENT_PARTS = ("report", "recall", "reranking")


def _unknown(where: str, kind: str, name: str, known) -> BadInputError:
    return BadInputError(f"{where}: unknown {kind} {name!r}; known: {', '.join(sorted(map(str, known)))}")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of the suite: a folder under the data root (``path``, with ``database``/``queries`` sub-folders
    and ``frame_tolerance`` ±frames, or ``split``) or a generated city (``city``: :class:`CityConfig` fields, with
    ``size`` the preset), optionally only its ``last_places`` frames (validation places of a frame-synchronised
    route) or only its queries taken in ``condition`` (``night``: a set of its own for leave-one-set-out, the
    images described once for every condition); described by the suite's model ``model``. ``distractors``
    (``{"city": {...}, "split": "test"}``): the database images of another generated city join the map as
    sequences of their own, never a query's match — a map much larger than the route."""

    name: str
    model: str
    path: str | None = None
    database: str | None = None
    queries: str | None = None
    frame_tolerance: int | None = None
    last_places: int | None = None
    city: dict | None = None
    split: str | None = None
    radius: float = 25.0
    condition: str | None = None
    distractors: dict | None = None

    def key(self) -> str:
        """The settings as sorted JSON (a cell's cache key)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def source(self) -> str:
        """The name its images and descriptors are kept under: its own, or one shared by every dataset that differs
        from it only in ``condition`` or ``distractors`` (and ``model``: the stores are kept per model)."""
        if self.condition is None and self.distractors is None:
            return self.name
        own = ("name", "condition", "radius", "model", "distractors")
        shared = {k: v for k, v in dataclasses.asdict(self).items() if k not in own}
        return "conditions-" + hashlib.sha1(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class MethodSpec:
    """A family of settings: ``method`` ``single`` or a sequence method, its options, the lengths and modes."""

    name: str
    method: str = "single"
    lengths: tuple[int, ...] = ()
    modes: tuple[str, ...] = ("causal",)
    options: dict = field(default_factory=dict)
    alpha_rule: str | None = None  # off-the-shelf NetVLAD: the row's α rule, replacing its model's
    alpha_ratio: float | None = None  # off-the-shelf NetVLAD: the row's α target ratio, replacing its model's
    verify: dict | None = None  # single frame re-ranked: {"preset", "top", "global_weight" (None: the preset's)}

    def preset(self):
        """The row's :class:`VerifyPreset` with its λ (None without ``verify``)."""
        from netvlad.match.verify.presets import get_preset

        if self.verify is None:
            return None
        preset = get_preset(self.verify["preset"])
        weight = self.verify.get("global_weight")
        return preset if weight is None else preset.with_global_weight(weight)

    def rows(self) -> list[tuple[str, int, str]]:
        """(row label, L, mode) of every row this family gives."""
        if self.method == "single":
            return [(self.name, 1, "-")]
        return [(f"{self.name} L={n} {mode}", n, mode) for n in self.lengths for mode in self.modes]

    def config(self, length: int, mode: str):
        """The :class:`SequenceConfig` of one row."""
        from netvlad.match.sequence import SequenceConfig

        return SequenceConfig(length=length, centred=mode == "centred", **self.options)


@dataclass(frozen=True)
class Suite:
    """Models (name → :class:`ModelConfig` dict, off-the-shelf NetVLAD with its ``alpha_rule`` and
    ``alpha_ratio``, or
    ``{"checkpoint": path}``), datasets, methods, Recall@N cut-offs,
    the seed, the ``baseline`` family the others are compared with, the docs ``fragments`` ({file name: part,
    one of FRAGMENT_PARTS}) ``netvlad benchmark --results`` writes, and ``stream``: with a number of frames
    (``exclude_recent``), every dataset also has a stream column, ``NAME stream`` (its routes replayed through
    ``netvlad stream``'s sequence step over a growing map, :mod:`netvlad.pipeline.benchmark.stream_column`)."""

    name: str
    models: dict
    datasets: tuple[DatasetSpec, ...]
    methods: tuple[MethodSpec, ...]
    recall: tuple[int, ...] = (1, 5, 10)
    seed: int = 0
    baseline: str | None = None
    description: str = ""
    source: str = ""
    fragments: dict = field(default_factory=dict)
    stream: int | None = None  # frames left out of a stream column's searches (None: no stream columns)

    def columns(self) -> list[tuple[str, DatasetSpec, bool]]:
        """(column name, its dataset, whether it is the dataset's stream column) of every column, in table order:
        the datasets, then their stream columns."""
        offline = [(d.name, d, False) for d in self.datasets]
        return offline + ([(stream_column(d.name), d, True) for d in self.datasets] if self.stream is not None
                          else [])

    def rows(self) -> list[tuple[MethodSpec, str, int, str]]:
        """(family, label, L, mode) of every row, in suite order."""
        return [(m, *row) for m in self.methods for row in m.rows()]


def stream_column(dataset: str) -> str:
    """The name of dataset ``dataset``'s stream column."""
    return f"{dataset} stream"


def shipped_suites() -> list[str]:
    """The names of the suites that ship with the package (``default``, ``quick``, ...)."""
    return sorted(p.stem for p in SUITES.glob("*.yaml"))


def suite_path(name_or_path: str | Path) -> Path:
    """A shipped suite by name (:func:`shipped_suites`) or a YAML file; unknown: one line naming the shipped ones."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise BadInputError(f"{path}: suite file not found", path=path)
        return path
    shipped = shipped_suites()
    if str(name_or_path) not in shipped:
        raise _unknown("netvlad benchmark", "suite", str(name_or_path), shipped)
    return SUITES / f"{name_or_path}.yaml"


def load_suite(name_or_path: str | Path) -> Suite:
    """Read and check a suite (see the module docstring); every error is one line naming the file. ``extends:
    NAME`` starts from another suite (shipped name or file) and adds or replaces its models, datasets and
    methods."""
    path = suite_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise BadInputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})", path=path) from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: a suite is a mapping with models, datasets and methods", path=path)
    if "extends" in data:  # another suite's models, datasets and methods, then this file's (which win)
        base = yaml.safe_load(suite_path(data["extends"]).read_text(encoding="utf-8"))
        if "extends" in base:
            raise BadInputError(f"{path}: suite {data['extends']!r} extends another suite itself; extend one "
                                "that does not", path=path)
        merged = {**base, **{k: v for k, v in data.items() if k not in ("models", "datasets", "methods")}}
        for key in ("models", "datasets", "methods"):
            merged[key] = {**(base.get(key) or {}), **(data.get(key) or {})}
        data = merged
    for key in data:
        if key not in SUITE_KEYS:
            raise _unknown(str(path), "suite key", key, SUITE_KEYS)
    models = dict(data.get("models") or {})
    for name, spec in models.items():
        _check_model(path, name, spec)
    datasets = tuple(_dataset(path, name, spec, models) for name, spec in (data.get("datasets") or {}).items())
    methods = tuple(_method(path, name, spec) for name, spec in (data.get("methods") or {}).items())
    if not datasets or not methods:
        raise BadInputError(f"{path}: a suite needs at least one dataset and one method", path=path)
    for family in methods:  # a row's α rule replaces its dataset model's: every such model is off-the-shelf NetVLAD
        alpha = "alpha_rule" if family.alpha_rule else "alpha_ratio" if family.alpha_ratio else None
        for spec in datasets if alpha else ():
            if models[spec.model].get("pool") != "netvlad":
                raise BadInputError(f"{path}: method {family.name!r}: {alpha} needs an off-the-shelf NetVLAD "
                                    f"model, dataset {spec.name!r} uses {spec.model!r}", path=path)
        for spec in datasets if family.verify else ():  # re-ranking matches NetVLAD patches (a checkpoint: its cells)
            model = models[spec.model]
            if "checkpoint" not in model and model.get("pool") != "netvlad":
                raise BadInputError(f"{path}: method {family.name!r}: verify re-ranks with NetVLAD patches, dataset "
                                    f"{spec.name!r} uses {spec.model!r} (pool {model.get('pool')!r})", path=path)
    baseline = data.get("baseline")
    if baseline is not None and baseline not in {m.name for m in methods}:
        raise _unknown(str(path), "baseline method", baseline, [m.name for m in methods])
    recall = tuple(int(n) for n in data.get("recall", (1, 5, 10)))
    fragments = data.get("fragments") or {}
    if not isinstance(fragments, dict):
        raise BadInputError(f"{path}: fragments is a mapping of file names to parts ({', '.join(FRAGMENT_PARTS)})",
                            path=path)
    for name, part in fragments.items():
        if part not in FRAGMENT_PARTS:
            raise _unknown(f"{path}: fragment {name!r}", "part", part, FRAGMENT_PARTS)
        if part == "reranking" and not any(m.verify for m in methods):
            raise BadInputError(f"{path}: fragment {name!r} is the re-ranking choice, but no method re-ranks "
                                "(verify: PRESET)", path=path)
    if any(part == "reranking" for part in fragments.values()) and baseline is None:
        raise BadInputError(f"{path}: a reranking fragment compares with the baseline; name one (baseline: single)",
                            path=path)
    return Suite(str(data.get("name", path.stem)), models, datasets, methods, recall, int(data.get("seed", 0)),
                 baseline, str(data.get("description", "")), str(path), dict(fragments), _stream(path, data))


def _stream(path: Path, data: dict) -> int | None:
    """``stream: {exclude_recent: FRAMES}`` as the frames a stream column leaves out (None without ``stream``)."""
    spec = data.get("stream")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise BadInputError(f"{path}: stream is a mapping (exclude_recent: FRAMES)", path=path)
    for key in spec:
        if key not in STREAM_KEYS:
            raise _unknown(f"{path}: stream", "key", key, STREAM_KEYS)
    from netvlad.pipeline.benchmark.stream_column import EXCLUDE_RECENT

    frames = spec.get("exclude_recent", EXCLUDE_RECENT)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
        raise BadInputError(f"{path}: stream exclude_recent must be a whole number of frames ≥ 0, got {frames!r}",
                            path=path)
    return frames


def _check_model(path: Path, name: str, spec) -> None:
    if not isinstance(spec, dict):
        raise BadInputError(f"{path}: model {name!r} must be a mapping (ModelConfig fields or checkpoint)", path=path)
    if "checkpoint" in spec:
        if set(spec) != {"checkpoint"}:
            raise BadInputError(f"{path}: model {name!r}: a checkpoint fixes its own settings; give checkpoint "
                                "alone", path=path)
        return
    from netvlad.models import ModelConfig

    config = {k: v for k, v in spec.items() if k not in ALPHA_KEYS}
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    for key in config:
        if key not in names:
            raise _unknown(f"{path}: model {name!r}", "option", key, names | {*ALPHA_KEYS, "checkpoint"})
    try:
        model = ModelConfig.from_dict(config)
    except (TypeError, ValueError) as error:
        raise BadInputError(f"{path}: model {name!r}: {error}", path=path) from None
    if "alpha_rule" in spec and spec["alpha_rule"] not in ALPHA_RULES:
        raise _unknown(f"{path}: model {name!r}", "alpha_rule", spec["alpha_rule"], ALPHA_RULES)
    if "alpha_ratio" in spec:
        _alpha_ratio(path, f"model {name!r}", spec["alpha_ratio"])
    for key in ALPHA_KEYS if model.pool != "netvlad" else ():
        if key in spec:
            raise BadInputError(f"{path}: model {name!r}: {key} sets off-the-shelf NetVLAD's α, this model "
                                f"pools with {model.pool!r}; remove it or use pool: netvlad", path=path)


def _dataset(path: Path, name: str, spec, models: dict) -> DatasetSpec:
    if not isinstance(spec, dict):
        raise BadInputError(f"{path}: dataset {name!r} must be a mapping", path=path)
    for key in spec:
        if key not in DATASET_KEYS:
            raise _unknown(f"{path}: dataset {name!r}", "key", key, DATASET_KEYS)
    if spec.get("model") not in models:
        raise _unknown(f"{path}: dataset {name!r}", "model", spec.get("model"), models)
    if ("path" in spec) == ("city" in spec):
        raise BadInputError(f"{path}: dataset {name!r} needs one of path (a folder under the data root) or city "
                            "(a generated city)", path=path)
    if "city" in spec:
        conditions = _city(path, f"dataset {name!r} city", spec["city"]).get("query_conditions")
        if spec.get("condition") is not None and spec["condition"] not in conditions:
            raise _unknown(f"{path}: dataset {name!r}", "condition", spec["condition"], conditions)
    if "distractors" in spec:
        distractors = spec["distractors"]
        if not isinstance(distractors, dict) or "city" not in distractors:
            raise BadInputError(f"{path}: dataset {name!r} distractors must be a mapping with city (a generated "
                                "city's settings) and optionally split", path=path)
        for key in distractors:
            if key not in DISTRACTOR_KEYS:
                raise _unknown(f"{path}: dataset {name!r} distractors", "key", key, DISTRACTOR_KEYS)
        _city(path, f"dataset {name!r} distractors city", distractors["city"])
    return DatasetSpec(name=name, **spec)


def _city(path: Path, where: str, spec) -> dict:
    """A city's settings checked (:class:`CityConfig` fields and ``size``), with its query conditions filled in."""
    from netvlad.data.synthetic import CityConfig

    if not isinstance(spec, dict):
        raise BadInputError(f"{path}: {where} must be a mapping of CityConfig fields", path=path)
    fields = {f.name for f in dataclasses.fields(CityConfig)} | {"size"}
    for key in spec:
        if key not in fields:
            raise _unknown(f"{path}: {where}", "key", key, fields)
    return {"query_conditions": CityConfig.query_conditions, **spec}


def _method(path: Path, name: str, spec) -> MethodSpec:
    from netvlad.match.sequence import METHODS

    spec = dict(spec or {})
    for key in spec:
        if key not in METHOD_KEYS:
            raise _unknown(f"{path}: method {name!r}", "option", key, METHOD_KEYS)
    method = spec.pop("method", "single")
    alpha_rule = spec.pop("alpha_rule", None)
    if alpha_rule is not None and alpha_rule not in ALPHA_RULES:
        raise _unknown(f"{path}: method {name!r}", "alpha_rule", alpha_rule, ALPHA_RULES)
    alpha_ratio = spec.pop("alpha_ratio", None)
    if alpha_ratio is not None:
        alpha_ratio = _alpha_ratio(path, f"method {name!r}", alpha_ratio)
    known = ["single", *METHODS.names()]
    if method not in known or method == "seqnet":  # SeqNet needs a trained model: not a suite row
        raise _unknown(f"{path}: method {name!r}", "method", method, [k for k in known if k != "seqnet"])
    verify = _verify(path, name, method, {k: spec.pop(k) for k in VERIFY_KEYS if k in spec})
    lengths = tuple(int(n) for n in spec.pop("lengths", () if method == "single" else (10,)))
    modes = tuple(spec.pop("modes", ("causal",)))
    for mode in modes:
        if mode not in MODES:
            raise _unknown(f"{path}: method {name!r}", "mode", mode, MODES)
    if method == "single" and (spec or lengths):
        raise BadInputError(f"{path}: method {name!r}: single frame takes no options, got "
                            f"{sorted(spec) + (['lengths'] if lengths else [])}", path=path)
    if "velocities" in spec:
        spec["velocities"] = tuple(float(v) for v in spec["velocities"])
    family = MethodSpec(name, method, lengths, modes, spec, alpha_rule, alpha_ratio, verify)
    if method != "single":
        for _, n, mode in family.rows():
            try:
                family.config(n, mode)  # refuses bad values now, not half-way through the run
            except (BadInputError, TypeError, ValueError) as error:
                raise BadInputError(f"{path}: method {name!r}: {error}", path=path) from None
    return family


def _alpha_ratio(path: Path, where: str, value) -> float:
    """An α target ratio (the top-1/top-2 soft-assignment ratio α aims at) as a float > 1, or a one-line refusal."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 1:
        raise BadInputError(f"{path}: {where}: alpha_ratio must be a number > 1 (the official 100), got {value!r}",
                            path=path)
    return float(value)


def _verify(path: Path, name: str, method: str, spec: dict) -> dict | None:
    """A row's re-ranking: ``verify`` a preset, ``verify_top`` K (default TOP), ``verify_global_weight`` λ (the
    preset's)."""
    from netvlad.match.verify.presets import TOP, VERIFY_PRESETS

    if not spec:
        return None
    if "verify" not in spec:
        raise BadInputError(f"{path}: method {name!r}: {', '.join(sorted(spec))} without verify (a preset: "
                            f"{', '.join(VERIFY_PRESETS.names())})", path=path)
    if spec["verify"] not in VERIFY_PRESETS.names():
        raise _unknown(f"{path}: method {name!r}", "verify preset", spec["verify"], VERIFY_PRESETS.names())
    if method != "single":
        raise BadInputError(f"{path}: method {name!r}: verify re-ranks the single-frame shortlist; give it on a "
                            f"row without method ({method!r} here)", path=path)
    top, weight = spec.get("verify_top", TOP), spec.get("verify_global_weight")
    if not isinstance(top, int) or top < 1:
        raise BadInputError(f"{path}: method {name!r}: verify_top must be an integer ≥ 1, got {top!r}", path=path)
    if weight is not None and not (isinstance(weight, (int, float)) and 0 <= weight <= 1):
        raise BadInputError(f"{path}: method {name!r}: verify_global_weight (λ) must be in [0, 1], got {weight!r}",
                            path=path)
    return {"preset": spec["verify"], "top": top, "global_weight": None if weight is None else float(weight)}
