"""The files of a run folder, written by rank 0 only.

::

    RUN_DIR/config.json        the resolved TrainConfig + ``initialised_from``
            metrics.jsonl      one JSON line per epoch (kept up to the resumed epoch)
            last.pt, best.pt   checkpoints (atomic), with config, codec, classes, stats, init
            curves.png, eval_<split>.json, confusion_<split>.png   at the end
"""

from __future__ import annotations

import json
from pathlib import Path

from latentcache.train.checkpoint import save_checkpoint
from latentcache.train.metrics import ClassificationMeter

__all__ = ["RunFiles"]


class RunFiles:
    """Writes one run folder; ``record`` is what every checkpoint carries besides weights."""

    def __init__(self, out: Path, config: dict, record: dict) -> None:
        self.out, self.config, self.record = Path(out), config, record

    def start(self, start_epoch: int) -> None:
        """config.json, and metrics.jsonl cut back to the epoch a resumed run starts after."""
        self.out.mkdir(parents=True, exist_ok=True)
        doc = {**self.config, "initialised_from": self.record["initialised_from"]}
        (self.out / "config.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
        metrics = self.out / "metrics.jsonl"
        kept = []
        if start_epoch and metrics.exists():
            kept = [
                line
                for line in metrics.read_text().splitlines()
                if line and json.loads(line)["epoch"] <= start_epoch
            ]
        metrics.write_text("".join(line + "\n" for line in kept))

    def end_epoch(self, metrics: dict, training_state: dict, is_best: bool) -> None:
        """Append the epoch's metrics line; save last.pt (and best.pt)."""
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics, sort_keys=True) + "\n")
        state = {**training_state, **self.record, "config": self.config}
        save_checkpoint(self.out / "last.pt", state)
        if is_best:
            save_checkpoint(self.out / "best.pt", state)

    def finish(
        self, meter: ClassificationMeter | None, classes: list[str], split: str | None
    ) -> None:
        """Training curves; the last epoch's evaluation as JSON and its confusion matrix
        (tasks whose meter has one)."""
        from latentcache.report.training import plot_confusion_matrix, plot_training_curves

        plot_training_curves(self.out / "metrics.jsonl", self.out / "curves.png")
        if meter is None:
            return
        summary = meter.summary(classes) | {"split": split, "checkpoint": "last.pt"}
        (self.out / f"eval_{split}.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
        if "confusion" in summary:
            plot_confusion_matrix(
                summary["confusion"], classes, self.out / f"confusion_{split}.png"
            )
