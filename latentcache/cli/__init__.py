"""The command line: a thin layer that turns options into configs and calls ``run_*`` functions.

Nothing here imports torch or compressai at module level: ``latentcache --help`` stays fast.
"""
