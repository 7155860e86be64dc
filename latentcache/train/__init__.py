"""Train and evaluate classifiers on latent stores, never running the codec.

::

    store ─► data (Zarr | WebDataset streams) ─► augment (shared crop/flip) ─► models
          ─► loop (run_training: DDP, AMP, checkpoints, metrics.jsonl) ─► evaluate_run

Importing this package imports torch; the CLI imports it only inside its commands.
"""

from latentcache.train.config import TrainConfig
from latentcache.train.evaluate import evaluate_run
from latentcache.train.loop import run_training
from latentcache.train.models import create_classifier, list_classifiers

__all__ = ["TrainConfig", "run_training", "evaluate_run", "create_classifier", "list_classifiers"]
