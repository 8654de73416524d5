"""Typed configuration: dataclasses are the source of truth, YAML is only storage; unknown keys are errors."""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from .core.specs import Member, ensemble_spec
from .core.units import parse_size

T = TypeVar("T")
logger = logging.getLogger(__name__)
# An encoder field: one spec string, or a list of specs and {spec, weight} members (an ensemble). Loading turns
# a list into its canonical string ("minilm + 0.5*minilm-l3"), so every reader sees a string.
EncoderSpec = str | list[str | Member]


class ConfigError(ValueError):
    """A config file or dict that does not fit the dataclasses; the message names the key and file."""


# The demo's caption languages: every language the OpenMoji names come in (CLDR data of the `emoji` package).
DEMO_LANGUAGES: tuple[str, ...] = ("en", "es", "fr", "de", "it", "pt", "ja", "zh", "ru")


@dataclass
class DataConfig:
    source: str = "openmoji"  # data source from the registry: "openmoji", "folder" or "hf"
    # folder: the image directory (caption paths are relative to it); hf: a hub name, a save_to_disk
    # directory, an imagefolder directory (with metadata.csv/.jsonl) or data files (.parquet, .arrow, globs)
    path: str | None = None
    captions: str | None = None  # folder source: caption file, .csv, .jsonl or .parquet
    # caption languages; the first is primary. A config without a data section is the nine-language demo.
    languages: list[str] = field(default_factory=lambda: ["en"])
    image_size: int = 160  # openmoji source: rendered image side in pixels
    limit: int | None = None  # keep a seeded random sample of N items (quick runs that still span the set)
    seed: int = 0  # seed of the limit sample
    cache_dir: str | None = None  # rendered data and embedding cache; default $RELSPACE_CACHE or ~/.cache/relspace
    encoding: str = "utf-8"  # folder source: text encoding of a .csv or .jsonl caption file, e.g. latin-1, cp1252
    split: str = "train"  # hf source: the split to read
    image_column: str = "image"  # hf source: an Image feature (bytes or paths) or a column of paths or bytes
    caption_column: str = "caption"  # hf source: the primary language's captions, a string or a list per row
    caption_columns: dict[str, str] = field(default_factory=dict)  # hf source: per language, {lang: column}
    id_column: str | None = None  # hf source: unique item ids; None numbers the rows
    label_column: str | None = None  # hf source: class labels, kept as the "label" column (eval --task classify)
    # a bad row (missing or corrupt image, too many pixels, empty primary caption), found by a fast pass
    # before any model loads: "skip" leaves it out and lists it in the index's skipped.parquet, "fail" stops
    on_error: Literal["skip", "fail"] = "skip"


@dataclass
class AnchorConfig:
    count: int = 800  # number of parallel anchors (image-caption pairs)
    strategy: str = "random"  # selector from the registry: random, stratified, kmeans, fps, aligned(-stratified)
    seed: int = 0  # seed for the selector
    path: str | None = None  # a parquet anchor set to use instead of selecting anchors from the data
    # an anchor's text side when it has several captions: their "mean" in the encoder space, or the "first"
    caption_pooling: Literal["mean", "first"] = "mean"
    # feature-based selectors (kmeans, fps, stratified) choose among a seeded sample of this many items, so
    # that choosing anchors never embeds a million items twice; None: among all items
    pool: int | None = 50_000


@dataclass
class ProjectorConfig:
    center: bool = True  # subtract the anchors' mean embedding before the cosine (Moschella et al. §3)
    column_norm: bool = False  # standardise each anchor's similarity column with statistics of the anchors
    topk: int | None = None  # keep the k largest similarities per vector and zero the rest (ASIF); None keeps all
    power: float = 2.0  # signed exponent on the kept similarities; >1 sharpens, as ASIF's p
    ridge: float | None = 1.0  # code items by anchor weights (K + ridge*I)^-1 k: undoes correlated anchors; None: off
    anchor_weights: Literal["none", "agreement"] = "none"  # per-anchor ridge penalty; agreement: across modalities


@dataclass
class IndexConfig:
    # FAISS index_factory string (inner product on L2-normalised vectors = cosine), or "auto": pick the
    # index under max_memory and max_query_ms that reaches the recall target (pipeline/ann/auto.py)
    factory: str = "Flat"
    train_size: int = 100_000  # at most this many vectors train an index that needs training (IVF, PQ)
    thumbnails: int = 128  # side of the PNG thumbnails stored beside the index; 0 stores none
    max_memory: str | int | None = "4G"  # auto: budget of one modality's index, build peak included; None: unbounded
    # auto: median single-thread query time in ms (p99 is recorded too, but is noise on a shared machine);
    # 20 ms keeps a search a small part of an interactive request. None: unbounded
    max_query_ms: float | None = 20.0
    recall: float = 0.95  # auto: recall@10 against exact (Flat) search that the chosen index must reach
    tune_queries: int = 1000  # auto: held-out cross-modal queries that tune and measure the candidates

    def __post_init__(self) -> None:
        # "auto" needs nothing else: every budget has a default, and None switches a budget off.
        if self.max_memory is not None:
            parse_size(self.max_memory, "index.max_memory")
        if self.max_query_ms is not None and not self.max_query_ms > 0:
            raise ConfigError(f"index.max_query_ms must be positive or null, got {self.max_query_ms!r}")
        if not 0 < self.recall <= 1:
            raise ConfigError(f"index.recall must be in (0, 1], got {self.recall!r}")
        if self.tune_queries < 1:
            raise ConfigError(f"index.tune_queries must be at least 1, got {self.tune_queries!r}")


@dataclass
class EvalConfig:
    seeds: int = 3  # number of seeded anchor draws; figures are mean and std over them
    directions: list[str] = field(default_factory=lambda: ["t2i", "i2t"])  # t2i: caption finds image
    baselines: list[str] = field(
        default_factory=lambda: ["chance", "cosine", "asif", "procrustes", "ridge"]
    )  # methods from the registry that run in the same pass as the configured projector
    anchor_counts: list[int] = field(default_factory=list)  # extra anchor counts for the R@10 curve
    plot_dir: str | None = None  # where PNG plots go; None writes none
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])  # the K of R@K
    swap_text_encoder: EncoderSpec | None = None  # re-anchor text to this encoder: queries use it, the gallery not
    swap_image_encoder: EncoderSpec | None = None  # likewise for images (image->text and image->image across encoders)
    cross_space_k: int = 10  # k of the Jaccard@k between two spaces' neighbourhoods
    languages: list[str] = field(default_factory=list)  # per-language t2i table; each must be in data.languages
    # "retrieval": R@K/MRR in both directions; "classify": zero-shot top-1/top-5 of images against class prompts
    task: Literal["retrieval", "classify"] = "retrieval"
    # classify: data columns holding class labels; empty: the source's own (openmoji: group, subgroup; else label)
    label_columns: list[str] = field(default_factory=list)
    # classify: class prompt templates with a {label} field; several are an ensemble (mean embedding per class)
    prompts: list[str] = field(default_factory=lambda: ["{label}"])

    def __post_init__(self) -> None:
        self.swap_text_encoder = _spec(self.swap_text_encoder, "eval.swap_text_encoder")
        self.swap_image_encoder = _spec(self.swap_image_encoder, "eval.swap_image_encoder")


@dataclass
class Config:
    name: str = "openmoji"  # experiment or index name; the default output is indexes/<name>
    # encoder spec: alias, "st:<name|dir>", "open_clip:<arch>/<tag|ckpt>"; or a list of them with optional weights
    # (an ensemble: each member has its own projector on the same anchors, and their relative vectors are averaged)
    text_encoder: EncoderSpec = "minilm"
    text_encoders: dict[str, EncoderSpec] = field(default_factory=dict)  # per-language encoder; others: text_encoder
    image_encoder: EncoderSpec = "efficientnet-lite0"  # alias, "timm:<arch>@<ckpt>", "open_clip:...", or a list
    device: str | None = None  # torch device; None picks CUDA when available
    batch_size: int = 64  # encoder batch size
    shard_size: int = 10_000  # items per build shard: the unit a killed build resumes from, and of peak memory
    num_workers: int | None = None  # image-decoding DataLoader workers; None picks from the core count
    # image forward: "auto" = ONNX Runtime on CPU (same vectors, faster), torch on CUDA; or "torch", "onnx";
    # None: $RELSPACE_IMAGE_BACKEND, else "auto" (the variable is how a server's query encoders are switched)
    image_backend: Literal["auto", "torch", "onnx"] | None = None
    data: DataConfig = field(default_factory=lambda: DataConfig(languages=list(DEMO_LANGUAGES)))  # what to index
    anchors: AnchorConfig = field(default_factory=AnchorConfig)  # the parallel anchor set
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)  # relative-space options
    index: IndexConfig = field(default_factory=IndexConfig)  # FAISS options
    eval: EvalConfig = field(default_factory=EvalConfig)  # relspace eval options (one default, with or without eval:)

    def __post_init__(self) -> None:
        self.text_encoder = _spec(self.text_encoder, "text_encoder")
        self.image_encoder = _spec(self.image_encoder, "image_encoder")
        self.text_encoders = {lang: _spec(v, f"text_encoders.{lang}") for lang, v in self.text_encoders.items()}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False, allow_unicode=True))


class _Dumper(yaml.SafeDumper):
    """PyYAML writes NEL (U+0085) raw inside single quotes, where its reader folds it to a space: such a
    string is written double-quoted (escaped as \\N) instead, so that save and load round-trip."""


_Dumper.add_representer(
    str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style='"' if "\x85" in s else None)
)


def _spec(value: Any, key: str) -> Any:
    try:
        return None if value is None else ensemble_spec(value, key)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def from_dict(cls: type[T], data: dict[str, Any], where: str = "<dict>", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and ill-typed values by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix or 'top level'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {prefix + unknown[0]!r}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; known keys at this level: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(hints[k], v, where, prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:  # a check across fields (__post_init__): say which file
        raise ConfigError(f"{where}: {e}") from None
    except ValueError as e:  # a value object's own check (an ensemble member's weight): say which key too
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'top level'}: {e}") from None


def _coerce(tp: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {key!r} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where, key)
            except ConfigError as e:
                errors.append((arg, str(e)))
        # the error of the branch the value was shaped for (a list for list[...]) says what is wrong inside it
        shaped = [e for a, e in errors if (typing.get_origin(a) or a) is type(value)
                  or (type(value) is dict and dataclasses.is_dataclass(a))]
        raise ConfigError((shaped or [errors[0][1]])[0])
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, where, key + ".")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key!r} must be a mapping, got {value!r}")
        kt, vt = typing.get_args(tp)
        return {_coerce(kt, k, where, f"{key}.{k}"): _coerce(vt, v, where, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key!r} must be a list, got {value!r}")
        (arg,) = typing.get_args(tp)
        return [_coerce(arg, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: {key!r} must be {tp.__name__}, got {value!r}")
    return value


def load_config(source: str | Path | dict[str, Any] | Config | None = None, **overrides: Any) -> Config:
    """Load a :class:`Config` from a YAML path, a dict, or an existing config (copied).

    Args:
        source: YAML path, mapping, Config, or None for the embedded OpenMoji default.
        overrides: dotted keys to set afterwards, e.g. ``**{"anchors.count": 400}``.

    Returns:
        A validated Config.
    """
    if source is None:
        cfg = Config()
    elif isinstance(source, Config):
        cfg = from_dict(Config, source.to_dict(), "<Config>")
    elif isinstance(source, dict):
        cfg = from_dict(Config, source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        cfg = from_dict(Config, data, str(path))
        _paths_beside(cfg, path.parent)
    for dotted, value in overrides.items():
        set_key(cfg, dotted, value)
    return cfg


def _paths_beside(cfg: Config, base: Path) -> None:
    """A config file's relative paths name files beside it, wherever the command runs; one found only from the
    working directory (as before) is kept with a warning, one found nowhere is left as written (a 🤗 hub name)."""
    for section in (cfg.data, cfg.anchors):
        if not (value := section.path) or Path(value).expanduser().is_absolute():
            continue
        if (base / value).exists():
            section.path = str((base / value).resolve())
        elif Path(value).exists():
            logger.warning("%s: path %r is relative to the working directory; write it relative to the config "
                           "file (%s), which is how relative paths are read", base, value, base)


def set_key(cfg: Config, dotted: str, value: Any) -> None:
    """Set ``a.b`` on a config with the same type checks as the loader."""
    *parents, last = dotted.split(".")
    obj: Any = cfg
    for p in parents:
        if not hasattr(obj, p) or not dataclasses.is_dataclass(getattr(obj, p)):
            raise ConfigError(f"<override>: unknown key {dotted!r}")
        obj = getattr(obj, p)
    hints = typing.get_type_hints(type(obj))
    if last not in hints:
        raise ConfigError(f"<override>: unknown key {dotted!r}")
    setattr(obj, last, _coerce(hints[last], value, "<override>", dotted))
    if hasattr(obj, "__post_init__"):
        obj.__post_init__()  # the same checks and normalisation as loading
