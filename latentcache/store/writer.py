"""Owning an output folder while a store is written: lock, plan, per-shard commits, resume.

::

    <out>/.latentcache/lock              flock'd by the one encoder writing here
    <out>/.latentcache/plan.json         settings hash, codec sha256, index sha256, per-split shapes
    <out>/.latentcache/commits/<split>-<index>.json   one per finished shard (atomic)
    <out>/zarr/ , <out>/wds/             the data
    <out>/manifest.json                  written last: the store is finished

A shard counts as done only once its commit record exists, so a crash or ``kill -9`` leaves
at most unreferenced shard files that the resumed run rewrites. The lock is an OS file lock:
it disappears with the process that held it, so a killed encoder never blocks its resume.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

from latentcache.errors import StoreExistsError, StoreLockedError
from latentcache.store.manifest import MANIFEST_NAME, write_json_atomic

__all__ = ["STATE_DIR", "StoreWriter", "commit_path"]

STATE_DIR = ".latentcache"


def commit_path(store_path: Path, split: str, index: int) -> Path:
    return store_path / STATE_DIR / "commits" / f"{split}-{index:06d}.json"


class StoreWriter:
    """Context manager: take the folder's lock, decide fresh / resume / refuse, commit shards."""

    def __init__(self, path: str | os.PathLike, plan: dict, overwrite: bool = False):
        self.path = Path(path)
        self.plan = plan
        self.overwrite = overwrite
        self._lock_fd: int | None = None
        self.resumed = False

    def __enter__(self) -> StoreWriter:
        state = self.path / STATE_DIR
        if self.path.exists() and not state.is_dir() and any(self.path.iterdir()):
            # --overwrite replaces stores only: it never empties an arbitrary folder
            raise StoreExistsError(
                f"{self.path} exists and is not a latentcache store; choose another --out"
            )
        state.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._prepare()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._unlock()

    def _lock(self) -> None:
        fd = os.open(self.path / STATE_DIR / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(
                f"another encoder is writing {self.path} (its lock is held); wait for it or pick another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _prepare(self) -> None:
        plan_file = self.path / STATE_DIR / "plan.json"
        finished = (self.path / MANIFEST_NAME).exists()
        old = json.loads(plan_file.read_text()) if plan_file.is_file() else None
        if self.overwrite:
            self._clear()
        elif finished:
            raise StoreExistsError(
                f"{self.path} already holds a finished store; pass --overwrite to replace it"
            )
        elif old is not None and old != self.plan:
            changed = sorted(k for k in set(old) | set(self.plan) if old.get(k) != self.plan.get(k))
            raise StoreExistsError(
                f"{self.path} holds an unfinished store made with other settings ({', '.join(changed)} differ); "
                "re-run the original command to resume it, or pass --overwrite"
            )
        self.resumed = old is not None and not self.overwrite
        (self.path / STATE_DIR / "commits").mkdir(exist_ok=True)
        write_json_atomic(plan_file, self.plan)

    def _clear(self) -> None:
        for child in self.path.iterdir():
            if child.name == STATE_DIR:
                for sub in child.iterdir():
                    if sub.name != "lock":
                        shutil.rmtree(sub) if sub.is_dir() else sub.unlink()
            elif child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()

    def committed(self) -> dict[tuple[str, int], dict]:
        out = {}
        for f in sorted((self.path / STATE_DIR / "commits").glob("*.json")):
            rec = json.loads(f.read_text())
            out[(rec["split"], rec["index"])] = rec
        return out
