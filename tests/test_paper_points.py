"""Paper points carry any task's published scores (top-1/top-5, mIoU, mAP) as data."""

from __future__ import annotations

import pytest

from latentcache.errors import ConfigError
from latentcache.recipes.spec import PAPER_METRICS, PaperPoint, parse_recipe


def _raw(**paper) -> dict:
    point = {"source": "torfason2018 Table 2", "label": "row", "model": "cresnet51-d"} | paper
    return {
        "name": "t",
        "dataset": {"name": "voc"},
        "codec": {"qualities": [3]},
        "model": [{"model": "cresnet51-d"}],
        "paper": [point],
    }


def test_a_segmentation_point_carries_miou():
    recipe = parse_recipe(_raw(bpp=0.635, miou=62.86))
    (point,) = recipe.papers
    assert point.scores() == {"miou": 62.86} and point.top1 is None
    again = type(recipe).from_dict(recipe.to_dict())
    assert again.papers == recipe.papers
    assert set(PAPER_METRICS) >= {"top1", "top5", "miou", "map"}


@pytest.mark.parametrize(
    ("paper", "message"),
    [
        ({"bpp": 0.3}, r"no published score; give one of \('top1', 'top5', 'miou'"),
        ({"miou": 162.0}, r"miou=162.0, should be in \[0, 100\]"),
        ({"map": "high"}, r"map=high, should be in \[0, 100\]"),
        ({"iou": 50.0}, r"Unknown keys \['iou'\] .*'miou'"),
    ],
)
def test_bad_points_name_the_value_and_the_valid_range(paper, message):
    with pytest.raises(ConfigError, match=message):
        parse_recipe(_raw(**paper))


def test_classification_points_are_unchanged():
    p = PaperPoint("s Table 1", "r", "resnet50", top1=71.06, top5=89.96)
    assert p.scores() == {"top1": 71.06, "top5": 89.96}


def test_detection_points_and_statements():
    """Detection points carry the eval results' keys (map, map_50); a finding without an
    absolute number is a statement, and a point with neither is refused."""
    recipe = parse_recipe(_raw(bpp=1.0, map=52.8, map_50=80.3))
    assert recipe.papers[0].scores() == {"map": 52.8, "map_50": 80.3}
    said = parse_recipe(_raw(bpp=0.08, statement="J-FT gains 7.1 points over T-FT")).papers[0]
    assert said.scores() == {} and said.statement.startswith("J-FT")
    with pytest.raises(ConfigError, match=r"Unknown keys \['map50'\]"):
        parse_recipe(_raw(map50=80.3))
    with pytest.raises(ConfigError, match="statement should be text"):
        parse_recipe(_raw(statement=7.1))
