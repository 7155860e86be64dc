"""A paper's published statement of a gain, carried as data beside its points (``[[claim]]``)."""

from __future__ import annotations

from dataclasses import dataclass

from latentcache.errors import ConfigError

__all__ = ["CLAIM_KEYS", "PAPER_METRICS", "PaperClaim"]

# a paper's published scores, in percent as printed: classification top-1 / top-5,
# segmentation mean IoU (VOC protocol), detection mAP (COCO: 0.5:0.95), mAP at IoU 0.5 and
# few-shot detection's nAP50 (mAP at IoU 0.5 over the novel classes)
PAPER_METRICS = ("top1", "top5", "miou", "map", "map50", "nap50")
CLAIM_KEYS = {"source", "label", "score", "gain", "bpp", "model", "versus"}


@dataclass(frozen=True)
class PaperClaim:
    """A published statement of a gain: ``model`` scores ``gain`` points of ``score`` more
    than ``versus`` at about ``bpp`` (chamain2021 prints no table of accuracies, only these)."""

    source: str  # "chamain2021 section 4.4"
    label: str  # the statement, as the paper words it
    score: str  # one of PAPER_METRICS
    gain: float  # percentage points, as printed
    model: str  # our entry it is about ([[model]] or [[finetune]] name)
    versus: str  # our entry it is measured against
    bpp: float | None = None

    def __post_init__(self) -> None:
        if self.score not in PAPER_METRICS:
            raise ConfigError(f'claim "{self.label}": score should be one of {PAPER_METRICS}')
        if isinstance(self.gain, bool) or not isinstance(self.gain, int | float):
            raise ConfigError(f'claim "{self.label}": gain={self.gain!r}, should be a number')
