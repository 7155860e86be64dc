"""Fine-tune a codec and its classifier for the task (chamain2021's T-FT, C-FT, J-FT).

::

    images (dataset adapter) ─► codec (g_a, h_a, h_s, entropy bottleneck) ─► y-hat, sigma-hat
        (straight-through rounding) ─► classifier ─► CE + beta * rate (+ gamma * distortion)
    ─► codec.pt (new sha256, lineage) + classifier run (last.pt) + summary.json (true bpp)

``run_finetune(FinetuneConfig)`` is the one entry point; ``PRESETS`` holds the papers'
settings. Re-encode the dataset with ``latentcache encode --checkpoint OUT/codec.pt`` and
score the classifier with ``latentcache eval OUT STORE``.
"""

from latentcache.finetune.config import MODES, FinetuneConfig
from latentcache.finetune.loop import run_finetune
from latentcache.finetune.outputs import format_summary
from latentcache.finetune.presets import PRESETS, Preset, get_preset

__all__ = [
    "MODES",
    "PRESETS",
    "FinetuneConfig",
    "Preset",
    "format_summary",
    "get_preset",
    "run_finetune",
]
