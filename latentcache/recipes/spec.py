"""Recipes: one TOML file per experiment of the papers, loaded into a frozen :class:`Recipe`.

::

    pipelines/<name>.toml ─► tomllib ─► check keys per table ─► Recipe (frozen, validated)
        name, title, cites          what it reproduces (paper, table)
        [dataset]                   adapter name, data_root, options
        [codec]                     arch, source, checkpoint, qualities x metrics = settings
        [encode] [decode] [eval]    options of those stages
        [[model]]                   classifier, input (latents | decoded | original), preset, options
        seeds                       one training run per seed
        [[finetune]]                fine-tune codec and/or classifier (preset, mode, beta, ...);
                                    task = "detection": chamain2021's settings on a detector
        [[paper]]                   the published numbers, each with its table

A recipe is found by path or by name (``demo``): ``$LATENTCACHE_PIPELINES``, the source
tree's ``pipelines/``, then the copy packaged inside an installed latentcache.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from latentcache.codec.spec import ARCHITECTURES, METRICS, WEIGHT_SOURCES
from latentcache.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "INPUTS",
    "FINETUNE_TASKS",
    "PAPER_METRICS",
    "Setting",
    "ModelEntry",
    "FinetuneEntry",
    "PaperPoint",
    "Recipe",
    "load_recipe",
    "find_recipe",
    "recipe_dirs",
]

INPUTS = ("latents", "decoded", "original")  # what a classifier reads
_TOP = {"name", "title", "cites", "notes", "seeds", "dataset", "codec", "encode", "decode"}
_TOP |= {"eval", "model", "paper", "finetune"}
_DATASET = {"name", "data_root", "options"}
_CODEC = {"arch", "source", "checkpoint", "qualities", "metrics"}
_ENCODE = {"formats", "shard_size", "scales_repr", "workers", "batch_size", "device"}
_DECODE = {"device"}
_EVAL = {"split", "checkpoint", "batch_size", "device", "pictures"}
_MODEL = {"name", "model", "input", "preset", "init", "pretrained", "options"}
_FINETUNE = {"name", "preset", "classifier", "mode", "beta", "gamma", "epochs", "then_train"}
_FINETUNE |= {"options", "task", "quality"}
FINETUNE_TASKS = ("classification", "detection")
# a paper point's published scores, in percent as printed: classification top-1 / top-5,
# segmentation mean IoU (VOC protocol), detection mAP (COCO: 0.5:0.95) and AP at IoU 0.5
# (the eval results' keys), few-shot detection's nAP50 (AP50 over the novel classes);
# ``statement``: a published finding without an absolute number
PAPER_METRICS = ("top1", "top5", "miou", "map", "map_50", "nap50")
_PAPER = {"source", "label", "model", "input", "quality", "metric", "bpp", *PAPER_METRICS}
_PAPER.add("statement")


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} should be a table, not {type(table).__name__}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"Unknown keys {unknown} in {where}; valid: {sorted(allowed)}")


@dataclass(frozen=True)
class Setting:
    """One codec operating point: quality x metric (its stages are named after it)."""

    quality: int
    metric: str = "mse"

    @property
    def name(self) -> str:
        return f"q{self.quality}-{self.metric}"


@dataclass(frozen=True)
class ModelEntry:
    """A classifier to train at every setting (``original``: once, on the source images)."""

    name: str
    model: str
    input: str = "latents"
    preset: str | None = None
    init: str | None = None
    pretrained: str | bool | None = None  # ImageNet weights: "auto", true, false
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise ConfigError(
                f'model "{self.name}": invalid input "{self.input}", should be one of {INPUTS}'
            )
        if not self.name or "/" in self.name:
            raise ConfigError(f'Invalid model name "{self.name}": non-empty, no "/"')


@dataclass(frozen=True)
class FinetuneEntry:
    """Fine-tuning after the frozen-codec run: a preset (or mode, beta, gamma, epochs) applied
    to ``classifier`` (a latent [[model]]; None: codec mode alone), then re-encoding.
    ``then_train``: a latent [[model]] trained from scratch on the re-encoded store
    (torfason2018's control) instead of evaluating the fine-tuned classifier.
    ``task = "detection"``: a detector instead (``latentcache finetune --task detection``);
    ``classifier`` then names an earlier detection [[finetune]] whose detector it starts from
    (None: a new detector, ``options.detector_model``)."""

    name: str
    preset: str | None = None
    classifier: str | None = None
    mode: str | None = None
    beta: float | None = None
    gamma: float | None = None
    epochs: int | None = None
    then_train: str | None = None
    options: dict = field(default_factory=dict)
    task: str = "classification"  # "detection": a detector (detection_stages.py)
    quality: int | None = None  # the one codec quality it applies to (None: its preset's, or all)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "+" in self.name:
            raise ConfigError(f'Invalid finetune name "{self.name}": non-empty, no "/" or "+"')
        if self.task not in FINETUNE_TASKS:
            raise ConfigError(
                f'finetune "{self.name}": task "{self.task}", should be one of {FINETUNE_TASKS}'
            )

    def given(self) -> dict:
        """The FinetuneConfig fields this entry sets (they win over its preset's)."""
        named = {k: getattr(self, k) for k in ("mode", "beta", "gamma", "epochs")}
        return {k: v for k, v in named.items() if v is not None} | dict(self.options)


@dataclass(frozen=True)
class PaperPoint:
    """A published number. ``bpp`` is None when the paper gives a quality, not a rate."""

    source: str  # "gupta2024 Table 1"
    label: str  # the row as the paper names it
    model: str
    input: str = "latents"
    quality: int | None = None
    metric: str | None = None
    bpp: float | None = None
    top1: float | None = None  # percent, as printed (every one of PAPER_METRICS)
    top5: float | None = None
    miou: float | None = None
    map: float | None = None
    map_50: float | None = None
    nap50: float | None = None
    statement: str | None = None  # "J-FT gains 7.1 points over T-FT": listed, not drawn

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise ConfigError(f'paper point "{self.label}": input should be one of {INPUTS}')
        if not self.scores() and not self.statement:
            raise ConfigError(
                f'paper point "{self.label}" has no published score; give one of {PAPER_METRICS}'
                " (or a statement)"
            )
        if self.statement is not None and not isinstance(self.statement, str):
            raise ConfigError(f'paper point "{self.label}": statement should be text')
        for name, v in self.scores().items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 100:
                raise ConfigError(f'paper point "{self.label}": {name}={v}, should be in [0, 100]')

    def scores(self) -> dict[str, float]:
        """The published scores it carries, by name (percent)."""
        return {m: getattr(self, m) for m in PAPER_METRICS if getattr(self, m) is not None}


@dataclass(frozen=True)
class Recipe:
    """A validated experiment. ``source`` is the TOML file it came from."""

    name: str
    title: str
    dataset: str
    settings: tuple[Setting, ...]
    models: tuple[ModelEntry, ...]
    cites: tuple[str, ...] = ()
    notes: str = ""
    data_root: str | None = None
    dataset_options: dict = field(default_factory=dict)
    codec: dict = field(default_factory=dict)  # arch, source, checkpoint
    encode: dict = field(default_factory=dict)
    decode: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    papers: tuple[PaperPoint, ...] = ()
    finetunes: tuple[FinetuneEntry, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if not self.settings and any(m.input != "original" for m in self.models):
            raise ConfigError(f"recipe {self.name}: no codec qualities for its latent models")
        if not self.models and not self.finetunes:
            raise ConfigError(f"recipe {self.name}: no [[model]] to train")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ConfigError(f"recipe {self.name}: model names repeat: {names}")
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ConfigError(f"recipe {self.name}: seeds {self.seeds} should be integers >= 0")
        self._check_finetunes()

    def _check_finetunes(self) -> None:
        latent = [m.name for m in self.models if m.input == "latents"]
        decoded = [m.name for m in self.models if m.input == "decoded"]  # task mode only
        names = [f.name for f in self.finetunes]
        if len(set(names)) != len(names):
            raise ConfigError(f"recipe {self.name}: finetune names repeat: {names}")
        detection: list[str] = []
        for f in self.finetunes:
            if f.task == "detection":
                self._check_detection(f, detection)
                detection.append(f.name)
                continue
            for key, valid in (("classifier", latent + decoded), ("then_train", latent)):
                value = getattr(f, key)
                if value is not None and value not in valid:
                    raise ConfigError(
                        f'recipe {self.name}: finetune "{f.name}" {key} "{value}" should name '
                        f"a [[model]] among {valid}"
                    )

    def _check_detection(self, f: FinetuneEntry, before: list[str]) -> None:
        if f.then_train or f.preset:
            raise ConfigError(
                f'recipe {self.name}: detection finetune "{f.name}" takes no then_train or preset'
            )
        if f.classifier is not None and f.classifier not in before:
            raise ConfigError(
                f'recipe {self.name}: detection finetune "{f.name}" classifier "{f.classifier}" '
                f"should name an earlier detection [[finetune]] among {before}"
            )

    def replace(self, **changes) -> Recipe:
        from dataclasses import replace

        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        d = dict(d)
        d["settings"] = tuple(Setting(**s) for s in d.get("settings", ()))
        d["models"] = tuple(ModelEntry(**m) for m in d.get("models", ()))
        d["papers"] = tuple(PaperPoint(**p) for p in d.get("papers", ()))
        d["finetunes"] = tuple(FinetuneEntry(**f) for f in d.get("finetunes", ()))
        d["seeds"] = tuple(d.get("seeds", (0,)))
        d["cites"] = tuple(d.get("cites", ()))
        return cls(**d)


def _settings(codec: dict, where: str) -> tuple[Setting, ...]:
    qualities = codec.get("qualities", [])
    metrics = codec.get("metrics", ["mse"])
    for q in qualities:
        if not isinstance(q, int) or not 1 <= q <= 8:
            raise ConfigError(f'{where}: invalid quality "{q}", should be between (1, 8)')
    for m in metrics:
        if m not in METRICS:
            raise ConfigError(f'{where}: invalid metric "{m}", should be one of {METRICS}')
    return tuple(Setting(q, m) for m in metrics for q in qualities)


def _codec(table: dict, where: str) -> dict:
    _check_keys(table, _CODEC, f"{where} [codec]")
    arch = table.get("arch", "bmshj2018-hyperprior")
    source = table.get("source", "zoo")
    if arch not in ARCHITECTURES:
        raise ConfigError(f'{where}: invalid arch "{arch}". Available: {sorted(ARCHITECTURES)}')
    if source not in WEIGHT_SOURCES or source == "model":
        raise ConfigError(
            f'{where}: invalid codec source "{source}", should be zoo|demo|checkpoint'
        )
    if (source == "checkpoint") != ("checkpoint" in table):
        raise ConfigError(
            f"{where}: [codec] checkpoint is needed exactly when source is checkpoint"
        )
    return {"arch": arch, "source": source, "checkpoint": table.get("checkpoint")}


def _sub(raw: dict, key: str, allowed: set[str], where: str) -> dict:
    table = raw.get(key, {})
    _check_keys(table, allowed, f"{where} [{key}]")
    return dict(table)


def parse_recipe(raw: dict, source: str = "") -> Recipe:
    """A Recipe from the TOML's dict; every unknown key is an error that names the valid ones."""
    where = source or "recipe"
    _check_keys(raw, _TOP, where)
    dataset = raw.get("dataset", {})
    _check_keys(dataset, _DATASET, f"{where} [dataset]")
    if "name" not in dataset:
        raise ConfigError(f"{where}: [dataset] needs a name (an adapter: minc, resisc45, ...)")
    codec = raw.get("codec", {})
    models = []
    for i, m in enumerate(raw.get("model", [])):
        _check_keys(m, _MODEL, f"{where} [[model]] #{i + 1}")
        models.append(ModelEntry(**{"name": m.get("model", ""), **m}))
    papers = []
    for i, p in enumerate(raw.get("paper", [])):
        _check_keys(p, _PAPER, f"{where} [[paper]] #{i + 1}")
        papers.append(PaperPoint(**p))
    finetunes = []
    for i, f in enumerate(raw.get("finetune", [])):
        _check_keys(f, _FINETUNE, f"{where} [[finetune]] #{i + 1}")
        finetunes.append(FinetuneEntry(**{"name": f.get("preset") or "", **f}))
    cites = raw.get("cites", [])
    return Recipe(
        name=raw.get("name") or Path(source).stem,
        title=raw.get("title", ""),
        cites=tuple([cites] if isinstance(cites, str) else cites),
        notes=raw.get("notes", ""),
        dataset=dataset["name"],
        data_root=dataset.get("data_root"),
        dataset_options=dict(dataset.get("options", {})),
        codec=_codec(codec, where),
        settings=_settings(codec, where),
        encode=_sub(raw, "encode", _ENCODE, where),
        decode=_sub(raw, "decode", _DECODE, where),
        eval=_sub(raw, "eval", _EVAL, where),
        models=tuple(models),
        seeds=tuple(raw.get("seeds", [0])),
        papers=tuple(papers),
        finetunes=tuple(finetunes),
        source=source,
    )


def recipe_dirs() -> list[Path]:
    """Where recipes are looked up by name, in order."""
    dirs = []
    if os.environ.get("LATENTCACHE_PIPELINES"):
        dirs.append(Path(os.environ["LATENTCACHE_PIPELINES"]).expanduser())
    dirs.append(Path(__file__).resolve().parents[2] / "pipelines")  # a source checkout
    dirs.append(Path(__file__).resolve().parents[1] / "pipelines")  # packaged in the wheel
    return dirs


def find_recipe(name_or_path: str | os.PathLike) -> Path:
    """A recipe file by path, or by name (``demo``, ``minc2500-gupta2024``)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    stem = path.name[:-5] if path.name.endswith(".toml") else path.name
    for d in recipe_dirs():
        if (d / f"{stem}.toml").is_file():
            return d / f"{stem}.toml"
    known = sorted({p.stem for d in recipe_dirs() if d.is_dir() for p in d.glob("*.toml")})
    raise ConfigError(f'No recipe "{name_or_path}": not a file, and not a name among {known}')


def load_recipe(name_or_path: str | os.PathLike) -> Recipe:
    """Read and validate a recipe TOML (by path or name)."""
    path = find_recipe(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_recipe(raw, str(path))
