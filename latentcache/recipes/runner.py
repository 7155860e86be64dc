"""``run_recipe``: execute a recipe's stage graph, reusing every stage whose key is unchanged.

::

    Recipe ─► build_stages ─► preflight: dataset listed? codec weights there? options valid?
                                  │ anything missing: say what and where to get it, stop (no work)
                                  ▼
              for each stage (dependencies first):
                key = sha256(kind, config, input identities)
                dependency failed ─► blocked (says which and why)
                stage.json has this key ─► cached (no work)
                --dry-run ─► "would run";  outside --only ─► not run
                else run it ─► stage.json (identity of its output: manifest / checkpoint sha256)
              ─► run.json (what ran, what was reused, seconds)

Layout of ``out``: ``recipe.json``, ``run.json``, ``stages/<stage id>/``, ``report/``.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from latentcache.errors import ConfigError, DatasetNotFoundError, WeightsNotFoundError
from latentcache.recipes.cache import read_record, stage_key, write_record
from latentcache.recipes.spec import Recipe
from latentcache.recipes.stages import KINDS, Stage, StageContext, build_stages

__all__ = ["RunOptions", "StageOutcome", "RunReport", "run_recipe", "RecipeMissingError"]

logger = logging.getLogger(__name__)


class RecipeMissingError(ConfigError):
    """Something a recipe needs is missing (dataset, codec weights, a training option)."""


@dataclass(frozen=True)
class RunOptions:
    """How to run a recipe. ``force``/``only``: stage kinds (``train``) or stage ids."""

    out: str
    dry_run: bool = False
    force: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    seeds: tuple[int, ...] | None = None
    data_root: str | None = None
    command: str = ""  # the command line that re-runs it; "": rendered from these options


@dataclass
class StageOutcome:
    id: str
    kind: str
    status: str  # cached | ran | failed | blocked | would run | not run
    key: str | None = None
    seconds: float = 0.0
    reason: str = ""


@dataclass
class RunReport:
    recipe: str
    out: str
    command: str = ""
    outcomes: list[StageOutcome] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missing and not any(
            o.status in ("failed", "blocked") for o in self.outcomes
        )

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


def _matches(stage: Stage, selectors: tuple[str, ...]) -> bool:
    return any(stage.kind == s or stage.id == s or stage.id.startswith(s + "-") for s in selectors)


def _check_selectors(stages: list[Stage], selectors: tuple[str, ...], option: str) -> None:
    for s in selectors:
        if not any(_matches(st, (s,)) for st in stages):
            raise ConfigError(
                f'{option} "{s}" names no stage; use a kind {list(KINDS)} or a stage id '
                f"such as {[st.id for st in stages[:3]]}"
            )


def stage_dir(out: Path, stage: Stage) -> Path:
    return out / "report" if stage.kind == "report" else out / "stages" / stage.id


# ---------------------------------------------------------------- preflight


def _codec_available(spec) -> str | None:
    """Why ``spec``'s weights cannot be loaded without a download, or None."""
    from latentcache.codec.load import DEMO_CODEC_PATH, zoo_cache_file, zoo_url

    if spec.source == "zoo" and not zoo_cache_file(spec).is_file():
        return (
            f"codec {spec.arch} q{spec.quality} {spec.metric}: weights not cached, expected "
            f"{zoo_cache_file(spec)}; get them from {zoo_url(spec)} (downloaded by a run when online)"
        )
    path = Path(spec.checkpoint) if spec.source == "checkpoint" else DEMO_CODEC_PATH
    if spec.source != "zoo" and not path.is_file():
        return f"codec {spec.arch} q{spec.quality}: checkpoint not found at {path}"
    return None


def _load_codecs(recipe: Recipe, dry_run: bool, missing: list[str]) -> dict:
    from latentcache.codec.load import load_codec
    from latentcache.recipes.configs import codec_spec

    codecs = {}
    for setting in recipe.settings:
        spec = codec_spec(recipe, setting)
        why = _codec_available(spec)
        if why and (dry_run or spec.source != "zoo"):
            missing.append(why)
            continue
        try:
            codecs[setting.name] = load_codec(spec)
        except (WeightsNotFoundError, ConfigError) as exc:
            missing.append(str(exc))
    return codecs


def preflight(recipe: Recipe, stages: list[Stage], dry_run: bool) -> tuple[dict, list[str]]:
    """Everything the stages share (codecs, dataset index), and what is missing."""
    from latentcache.datasets import build_index

    missing: list[str] = []
    shared: dict = {"codecs": {}, "index": None}
    try:
        index = build_index(recipe.dataset, recipe.data_root, **recipe.dataset_options)
        shared["index"] = index
        sizes = [os.path.getsize(index.root / s.path) for s in index.samples]
        shared["source_bytes_per_image"] = sum(sizes) / max(len(sizes), 1)
    except (DatasetNotFoundError, ConfigError) as exc:
        missing.append(f"dataset: {exc}")
    shared["codecs"] = _load_codecs(recipe, dry_run, missing)
    problems: dict[str, list[str]] = {}
    for s in stages:
        if s.problem:
            problems.setdefault(s.problem, []).append(s.id)
    missing += [f"{why} (stages {', '.join(ids)})" for why, ids in problems.items()]
    return shared, missing


def _externals(stage: Stage, shared: dict) -> dict | None:
    """The stage's non-stage input identities; None when one is unknown (missing input)."""
    out = {}
    for name in stage.external:
        if name == "codec_sha256":
            codec = shared["codecs"].get(f"q{stage.meta['quality']}-{stage.meta['metric']}")
            out[name] = codec.weights_sha256 if codec else None
        elif name == "dataset_index_sha256":
            out[name] = shared["index"].sha256() if shared["index"] is not None else None
    return None if any(v is None for v in out.values()) else out


# ---------------------------------------------------------------- the run


class _Runner:
    def __init__(self, recipe: Recipe, stages: list[Stage], options: RunOptions, shared: dict):
        self.recipe, self.stages, self.options, self.shared = recipe, stages, options, shared
        self.out = Path(options.out)
        self.records: dict[str, dict] = {}
        self.outcomes: dict[str, StageOutcome] = {}

    def step(self, stage: Stage) -> StageOutcome:
        blocked = [
            d for d in stage.deps if self.outcomes[d].status in ("failed", "blocked", "not run")
        ]
        if blocked:
            d = self.outcomes[blocked[0]]
            why = f"needs {d.id}, which {'was not run (outside --only)' if d.status == 'not run' else d.status}"
            return StageOutcome(stage.id, stage.kind, "blocked", reason=why)
        pending = [d for d in stage.deps if d not in self.records]
        externals = _externals(stage, self.shared)
        if pending or externals is None:
            return StageOutcome(stage.id, stage.kind, "would run", reason="after its inputs")
        inputs = {d: self.records[d]["identity"] for d in stage.deps} | externals
        key = stage_key(stage.kind, stage.config, inputs)
        folder = stage_dir(self.out, stage)
        record = read_record(folder)
        forced = _matches(stage, self.options.force)
        if record and record.get("status") == "done" and record.get("key") == key and not forced:
            self.records[stage.id] = record
            return StageOutcome(stage.id, stage.kind, "cached", key)
        if self.options.only and not _matches(stage, self.options.only):
            return StageOutcome(stage.id, stage.kind, "not run", key, reason="outside --only")
        if self.options.dry_run:
            return StageOutcome(
                stage.id, stage.kind, "would run", key, reason="forced" if forced else ""
            )
        resume = bool(record and record.get("status") == "running" and record.get("key") == key)
        return self._execute(stage, folder, key, inputs, resume)

    def _execute(self, stage: Stage, folder: Path, key: str, inputs: dict, resume: bool):
        if not resume and folder.exists():
            shutil.rmtree(folder)  # a stale output of another key: this run's own folder
        base = {
            "id": stage.id,
            "kind": stage.kind,
            "key": key,
            "config": stage.config,
            "inputs": inputs,
        }
        write_record(folder, base | {"status": "running"})
        # dependency folders from this run's --out (a moved run folder keeps working)
        deps = {d: self.records[d] | {"dir": str(self.out / "stages" / d)} for d in stage.deps}
        ctx = StageContext(folder, deps, resume, self.shared, stage.meta)
        logger.info("running %s%s", stage.id, " (resuming)" if resume else "")
        start = time.perf_counter()
        try:
            result = stage.run(ctx)
        except Exception as exc:  # the stage's dependents stop; finished stages stay
            seconds = time.perf_counter() - start
            reason = f"{type(exc).__name__}: {exc}"
            logger.error("%s failed: %s", stage.id, reason)
            logger.debug("%s failed", stage.id, exc_info=True)
            write_record(folder, base | {"status": "failed", "reason": reason, "seconds": seconds})
            return StageOutcome(stage.id, stage.kind, "failed", key, seconds, reason)
        seconds = time.perf_counter() - start
        record = base | {
            "status": "done",
            "seconds": seconds,
            "identity": result.pop("identity"),
            "result": result,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_record(folder, record)
        self.records[stage.id] = record
        return StageOutcome(stage.id, stage.kind, "ran", key, seconds)

    def run(self) -> list[StageOutcome]:
        for stage in self.stages:
            self.outcomes[stage.id] = self.step(stage)
        return list(self.outcomes.values())


def _write_run_files(out: Path, recipe: Recipe, report: RunReport) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=1, sort_keys=True))
    summary = asdict(report) | {"ok": report.ok}
    (out / "run.json").write_text(json.dumps(summary, indent=1, sort_keys=True))


def run_command(recipe: Recipe, options: RunOptions) -> str:
    """The `latentcache run` command line equivalent to ``options`` (for runs started from
    Python; the CLI records its own)."""
    words = ["latentcache", "run", "--out", options.out]
    words += ["--dry-run"] if options.dry_run else []
    words += [w for s in options.force for w in ("--force", s)]
    words += [w for s in options.only for w in ("--only", s)]
    if options.seeds is not None:
        words += ["--seeds", ",".join(map(str, options.seeds))]
    if options.data_root is not None:
        words += ["--data-root", options.data_root]
    source = recipe.source or recipe.name
    return shlex.join(words + (["--"] if source.startswith("-") else []) + [source])


def run_recipe(recipe: Recipe, options: RunOptions) -> RunReport:
    """Run (or, with ``dry_run``, plan) ``recipe`` into ``options.out``.

    Raises :class:`RecipeMissingError` before any work when an input is missing (a dry run
    returns them in ``report.missing`` instead).
    """
    start = time.perf_counter()
    if options.seeds is not None:
        recipe = recipe.replace(seeds=tuple(options.seeds))
    if options.data_root is not None:
        recipe = recipe.replace(data_root=options.data_root)
    stages = build_stages(recipe, Path(options.out))
    _check_selectors(stages, options.force, "--force")
    _check_selectors(stages, options.only, "--only")
    shared, missing = preflight(recipe, stages, options.dry_run)
    shared["command"] = options.command or run_command(recipe, options)
    report = RunReport(recipe.name, options.out, shared["command"], missing=missing)
    if missing and not options.dry_run:
        raise RecipeMissingError(
            f"recipe {recipe.name} cannot run; missing:\n  " + "\n  ".join(missing)
        )
    if not options.dry_run:
        _write_run_files(Path(options.out), recipe, report)  # recipe.json: the report reads it
    report.outcomes = _Runner(recipe, stages, options, shared).run()
    report.seconds = time.perf_counter() - start
    if not options.dry_run:
        _write_run_files(Path(options.out), recipe, report)
    return report
