"""Latent stores: Zarr v3 and WebDataset layouts, the manifest, readers and verification."""

from latentcache.store.reader import LatentStore, ZarrSplit, open_store

__all__ = ["LatentStore", "ZarrSplit", "open_store"]
