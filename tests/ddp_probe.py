"""Run under torchrun by tests/test_train_runs.py: the real Trainer takes one DDP step on
the CPU (gloo); each rank then saves its weights and the crops its own augmentation seed
draws for one batch that every rank reads identically.

    python -m torch.distributed.run --nproc-per-node 2 tests/ddp_probe.py STORE OUT
"""

from __future__ import annotations

import sys

import torch

from latentcache.train import TrainConfig
from latentcache.train.checkpoint import unwrap_model
from latentcache.train.distributed import resolve_device, setup_distributed, teardown_distributed
from latentcache.train.loop import Trainer


def main(store: str, out: str) -> None:
    torch.set_num_threads(1)
    config = TrainConfig(
        store=store, out=f"{out}/run", model="cresnet39", model_kwargs={"base_width": 4},
        epochs=1, batch_size=4, resize=8, crop=6, max_batches=1, progress=False, device="cpu",
    )  # fmt: skip
    device = resolve_device("cpu")
    dist = setup_distributed(device)
    try:
        trainer = Trainer(config, device, dist)
        rows = trainer.data.store.zarr_split("train").read(0, 4)
        batch = {k: torch.from_numpy(rows[k]) for k in ("y_hat", "scales_hat", "label")}
        xs, _ = trainer.prepare(batch, True, trainer.augment_generator(0))
        trainer.fit()
        # parameters (BatchNorm's running statistics are per rank until DDP's next forward
        # broadcasts rank 0's; checkpoints hold rank 0's)
        params = {k: p.detach() for k, p in unwrap_model(trainer.model).named_parameters()}
        torch.save({"crops": xs[0], "params": params}, f"{out}/rank{dist.rank}.pt")
    finally:
        teardown_distributed()


if __name__ == "__main__":
    main(*sys.argv[1:3])
