"""The task interface and its registry (see the package docstring for the whole picture)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["TASKS", "Task", "register_task", "get_task", "store_task"]


class Task:
    """Defaults are classification's: no target arrays or members, a label per image.

    Store hooks (encode and read, no torch): :meth:`read_targets`, :meth:`zarr_arrays`,
    :meth:`wds_members`, :meth:`parse_members`, :meth:`read_member`, :meth:`target_file`.
    Training hooks (torch): :meth:`target_layout`, :meth:`collate_targets`,
    :meth:`targets_to`, :meth:`map_targets`, :meth:`forward`, :meth:`loss`, :meth:`hits`,
    :meth:`eval_loss`, :meth:`make_meter`; ``default_model``
    names a model of ``latentcache.train.models`` registered with ``task=name``. Report hook:
    :meth:`report_section` (what the eval pictures and the recipe report show for this task).
    """

    name = ""
    labelled = True  # one class label per image (``label`` / ``.cls``); else -1
    default_model = ""
    member_suffixes: tuple[str, ...] = ()  # WebDataset members besides the common ones
    target_names: tuple[str, ...] = ()  # arrays read_targets returns (Zarr arrays of that name)
    pads_latents = False  # batches of mixed latent sizes: zero-padded (else resized)
    # per-sample targets of varying length (detection's boxes): name -> (dtype, tail shape);
    # Zarr keeps them ragged through offsets, as the bitstreams (store/zarr_ragged.py)
    ragged_targets: dict[str, tuple[str, tuple[int, ...]]] = {}
    score_key = "top1"  # the summary key that picks best.pt
    score_label = "top-1"  # its name in one-line summaries
    record_keys: tuple[str, ...] = ("top1", "top5", "loss")  # summary keys in metrics.jsonl
    min_classes = 1  # the fewest classes a store of this task can train a model on

    def manifest_entry(self, options: Mapping | None = None) -> dict:
        """The manifest's ``task`` object; ``options``: the dataset index's options."""
        return {"name": self.name}

    # ---------------------------------------------------------------- store

    def read_targets(self, target: str | None, root: Path, image_hw: tuple[int, int]) -> dict:
        """A sample's targets at encode time from its dataset ``target`` file (relative to
        ``root``); ``image_hw``: the decoded image's (H, W). Raises SampleError."""
        return {}

    def zarr_arrays(self, image_hw: tuple[int, int]) -> dict[str, tuple]:
        """name -> (row shape, dtype, fill value, compressors) of per-sample target arrays,
        for a split whose largest image is ``image_hw``."""
        return {}

    def wds_members(self, targets: Mapping[str, np.ndarray]) -> dict[str, bytes]:
        """WebDataset members (suffix -> bytes) holding ``targets``."""
        return {}

    def parse_members(
        self, raw: Mapping[str, bytes], image_hw: tuple[int, int], max_hw: tuple[int, int]
    ) -> dict[str, np.ndarray]:
        """Targets from a raw WebDataset sample, checked (hostile input): ValueError."""
        return {}

    def target_file(self, targets: Mapping[str, np.ndarray]) -> tuple[str, bytes] | None:
        """(suffix, bytes) of ``targets`` as one file of the kind the task's datasets hold
        (what :meth:`read_targets` reads back), for images written out with their targets;
        None where they are not one file. By default the one WebDataset member, if one."""
        members = self.wds_members(targets)
        return next(iter(members.items())) if len(members) == 1 else None

    def read_member(
        self, raw: Mapping[str, bytes], name: str, image_hw: tuple[int, int], max_hw
    ) -> np.ndarray:
        """Target ``name`` of a raw sample as the loader reads it, checked as in
        :meth:`parse_members` (a task whose target is stored twice reads its faster copy)."""
        return self.parse_members(raw, image_hw, max_hw)[name]

    # ---------------------------------------------------------------- training

    target_keys: tuple[str, ...] = ("label",)  # batch tensors the training device needs

    def targets_to(self, batch: dict, device) -> dict:
        """The batch's target entries on ``device`` (non-blocking copies of
        :attr:`target_keys`); a task whose targets are not one tensor each moves them itself."""
        return {k: batch[k].to(device, non_blocking=True) for k in self.target_keys}

    def forward(self, model, xs: list, targets, train: bool):
        """The model's outputs for inputs ``xs`` (training: what :meth:`loss` takes;
        evaluation: what the meter takes). A detector takes its targets too."""
        out = model(*xs)
        return out if train else out.float()

    def eval_loss(self, outputs, targets) -> float | None:
        """The evaluation loss of one batch (None where evaluation gives no loss)."""
        return float(self.loss(outputs, targets))

    def target_layout(self, latent_hw: tuple[int, int]) -> dict[str, tuple]:
        """name -> (row shape, dtype) of the batch tensors :meth:`collate_targets` fills in
        place for latents padded to ``latent_hw``: the loader hands them over as ``out``
        (recycled shared memory) and ``--cache`` counts their bytes. {}: none (the task
        allocates what it returns, and is called without ``out``)."""
        return {}

    def collate_targets(self, rows: list[dict], latent_hw: tuple[int, int], out=None) -> dict:
        """Batch tensors of the targets (``rows``: per sample ``label``, ``image_size``,
        ``canvas_offset`` and the :attr:`target_names` targets: :attr:`ragged_targets` as
        arrays, image-shaped ones as the loader's ``ImageTarget``, whose ``decode_into(view)``
        writes the target at the image's size into a window of ``out``), for latents padded
        to ``latent_hw``.
        ``out``: the :meth:`target_layout` tensors, uninitialised (every element is to be
        written), or None to allocate them. Only tasks with ``pads_latents`` are asked."""
        raise NotImplementedError

    def map_targets(self, batch: dict, params, crop: int | None, latent_hw) -> object:
        """The batch's targets after the latents' crop and flip: ``params`` = per-sample
        (top, left, flipped) in latent cells (top/left None: flip only; ``params`` None:
        nothing done), ``crop`` the crop's size in cells, ``latent_hw`` the latents'
        (h, w) before it (targets beyond theirs are padding)."""
        return batch["label"]

    def loss(self, logits, targets, label_smoothing: float = 0.0):
        import torch.nn.functional as F

        return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)

    def hits(self, logits, targets) -> tuple:
        """(correct, counted) for the training accuracy (device tensors, no sync)."""
        return (logits.argmax(1) == targets).sum(), targets.numel()

    def headline(self, result: Mapping) -> tuple[str, Mapping]:
        """An evaluation's one-line figures and its per-class values (for ``eval``)."""
        line = f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  n={result['count']}"
        return line, result["per_class"]

    def make_meter(self, num_classes: int):
        """A meter with ``update(logits, targets, loss)``, ``all_reduce()`` and
        ``summary(classes)`` (its keys include :attr:`score_key`)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- report

    def report_section(self):
        """This task's :class:`latentcache.report.sections.ReportSection`: the scores its
        rate plot draws against bpp, and its picture sheet (None: no pictures)."""
        from latentcache.report.sections import CLASSIFICATION

        return CLASSIFICATION


TASKS: dict[str, Task] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    if not cls.name or cls.name in TASKS:
        raise ValueError(f'Task "{cls.name}" is unnamed or already registered')
    TASKS[cls.name] = cls()
    return cls


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f'Unknown task "{name}". Available: {sorted(TASKS)}')
    return TASKS[name]


def store_task(manifest: Mapping) -> Task:
    """The task of a store from its manifest (stores before tasks: classification)."""
    from latentcache.errors import StoreCorruptError

    name = (manifest.get("task") or {}).get("name", "classification")
    if name not in TASKS:
        raise StoreCorruptError(
            f"manifest.json: task {name!r} is not one this latentcache reads ({sorted(TASKS)})"
        )
    return TASKS[name]
