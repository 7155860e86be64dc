"""Moved to :mod:`latentcache.images` (shared by datasets, pipeline and codec); re-exported
here for code written against the old location."""

from latentcache.images import DEFAULT_MAX_PIXELS, LoadedImage, header_size, load_image

__all__ = ["DEFAULT_MAX_PIXELS", "LoadedImage", "load_image", "header_size"]
