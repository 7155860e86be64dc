"""Recipes: one declarative TOML file per experiment (``pipelines/``), run as a cached stage
graph encode -> [decode] -> train -> eval -> report.

>>> from latentcache.recipes import RunOptions, load_recipe, run_recipe
>>> report = run_recipe(load_recipe("demo"), RunOptions(out="runs/demo"))
"""

from latentcache.recipes.runner import RecipeMissingError, RunOptions, RunReport, run_recipe
from latentcache.recipes.spec import Recipe, find_recipe, load_recipe

__all__ = [
    "Recipe",
    "RunOptions",
    "RunReport",
    "RecipeMissingError",
    "find_recipe",
    "load_recipe",
    "run_recipe",
]
