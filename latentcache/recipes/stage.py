"""A node of a recipe's stage graph: its id, kind, resolved config, dependencies and the
function that runs it, and the context that function receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["KINDS", "Stage", "StageContext"]

KINDS = ("encode", "decode", "train", "eval", "report", "finetune")


@dataclass
class StageContext:
    """What a stage's function sees: its folder, its dependencies' records, shared state."""

    dir: Path
    deps: dict[str, dict]  # dependency stage id -> its record (result, identity)
    resume: bool  # an unfinished run of the same key is in dir
    shared: dict  # loaded codecs, the dataset index, source bytes per image
    meta: dict = field(default_factory=dict)  # setting and seed of this stage


@dataclass
class Stage:
    id: str
    kind: str
    config: dict
    deps: tuple[str, ...]
    run: Callable[[StageContext], dict]
    meta: dict = field(default_factory=dict)
    external: dict = field(default_factory=dict)  # input identities not from stages
    problem: str | None = None  # why this stage cannot run (found before any work)
