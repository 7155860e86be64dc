"""Owning an output folder while a store is written: lock, plan, run token, fenced commits, resume.

::

    <out>/.latentcache/lock              flock'd (exclusive) by the one driver writing here
    <out>/.latentcache/fence             flock'd shared by each shard commit, exclusive by a
                                         driver taking the store over (token change)
    <out>/.latentcache/plan.json         settings hash, codec sha256, index sha256, per-split
                                         shapes, and the current run token
    <out>/.latentcache/commits/<split>-<index>.json   one per finished shard (atomic)
    <out>/zarr/ , <out>/wds/             the data
    <out>/manifest.json                  written last: the store is finished

A shard counts as done only once its commit record exists, so a crash or ``kill -9`` leaves
at most unreferenced shard files (and temporary files, removed when the next run takes the
store over) that the resumed run rewrites. The lock is an OS file lock: it disappears with the
process that held it, so a killed encoder never blocks its resume.

**Fencing.** Workers write and commit on their own, and a worker can outlive its driver (a
cluster worker whose client died, a retry of a task of an earlier run). Each run gets a fresh
random token, written into ``plan.json``; every task carries its run's token, and
:func:`fenced_commit` checks it *before* writing any file of the shard, under a shared lock on
``fence`` held until the commit record is written. A driver switches the token under the
exclusive lock, so it waits for commits already in flight (they finish whole, and count as
resumed shards) and every later commit of an earlier run is refused before it writes a byte.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from latentcache.errors import StaleRunError, StoreExistsError, StoreLockedError
from latentcache.store.manifest import MANIFEST_NAME, write_json_atomic
from latentcache.store.wds_store import WDS_DIR
from latentcache.store.zarr_store import ZARR_DIR

__all__ = [
    "STATE_DIR",
    "StoreWriter",
    "commit_path",
    "current_run_token",
    "fenced_commit",
    "remove_temporary_files",
]

logger = logging.getLogger(__name__)
STATE_DIR = ".latentcache"
RUN_TOKEN = "run_token"
_KEEP = ("lock", "fence")  # the state files --overwrite keeps (others may hold locks on them)
_TEMPORARY = re.compile(r"^\..+\.tmp$|\.[0-9a-f]{32}\.partial$")  # ours; zarr LocalStore's


def commit_path(store_path: Path, split: str, index: int) -> Path:
    return store_path / STATE_DIR / "commits" / f"{split}-{index:06d}.json"


def current_run_token(store_path: Path) -> str | None:
    """The token of the run that owns ``store_path`` now (None before any run)."""
    try:
        return json.loads((store_path / STATE_DIR / "plan.json").read_text()).get(RUN_TOKEN)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def fenced_commit(store_path: Path, run_token: str) -> Iterator[None]:
    """Hold the fence (shared) while one shard's files and commit record are written.

    Raises :class:`StaleRunError`, before anything is written, when ``run_token`` is no longer
    the store's current run token.
    """
    with _flock(store_path / STATE_DIR / "fence", fcntl.LOCK_SH):
        current = current_run_token(store_path)
        if current != run_token:
            raise StaleRunError(
                f"refusing a commit into {store_path} from run {run_token[:8]}: "
                f"the store now belongs to run {(current or 'none')[:8]}"
            )
        yield


class StoreWriter:
    """Context manager: take the folder's lock, decide fresh / resume / refuse, own the store.

    ``run_token``: this run's fresh token (in ``plan.json``); tasks pass it to
    :func:`fenced_commit`.
    """

    def __init__(self, path: str | os.PathLike, plan: dict, overwrite: bool = False):
        self.path = Path(path)
        self.plan = plan
        self.overwrite = overwrite
        self._lock_fd: int | None = None
        self.resumed = False
        self.run_token = secrets.token_hex(16)

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
            with self._fence_exclusive():
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

    @contextlib.contextmanager
    def _fence_exclusive(self) -> Iterator[None]:
        """Wait for commits in flight (of an earlier run's workers), then keep new ones out."""
        fence = self.path / STATE_DIR / "fence"
        try:
            with _flock(fence, fcntl.LOCK_EX | fcntl.LOCK_NB):
                yield
            return
        except BlockingIOError:
            logger.info("waiting for a worker of an earlier run to finish writing its shard")
        with _flock(fence, fcntl.LOCK_EX):
            yield

    def _prepare(self) -> None:
        plan_file = self.path / STATE_DIR / "plan.json"
        finished = (self.path / MANIFEST_NAME).exists()
        old = json.loads(plan_file.read_text()) if plan_file.is_file() else None
        if old is not None:
            old.pop(RUN_TOKEN, None)
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
        write_json_atomic(plan_file, {**self.plan, RUN_TOKEN: self.run_token})
        removed = remove_temporary_files(self.path)
        if removed:
            logger.info("removed %d temporary files left by an interrupted run", removed)

    def _clear(self) -> None:
        for child in self.path.iterdir():
            if child.name == STATE_DIR:
                for sub in child.iterdir():
                    if sub.name not in _KEEP:
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


def remove_temporary_files(store_path: Path) -> int:
    """Delete the temporary files an interrupted writer left (``.<name>.<pid>.tmp``, zarr's
    ``<name>.<uuid>.partial``); call only while no writer of the store can be running."""
    n = 0
    for top in (store_path / STATE_DIR, store_path / ZARR_DIR, store_path / WDS_DIR):
        if not top.is_dir():
            continue
        for f in top.rglob("*"):
            if _TEMPORARY.search(f.name) and f.is_file():
                f.unlink()
                n += 1
    return n
