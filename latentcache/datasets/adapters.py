"""Imports every adapter module so that their @register_dataset decorators run."""

from latentcache.datasets import imagefolder  # noqa: F401
