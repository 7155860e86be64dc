"""latentcache: compute the codec once, train many times.

Importing the package is cheap: torch and compressai load only when a function that needs
them is called (see :mod:`latentcache.api`).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
