"""Fine-tuning config validation, the paper presets and the CLI (errors in one line)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from latentcache.errors import ConfigError
from latentcache.finetune import PRESETS, FinetuneConfig, get_preset
from latentcache.finetune.presets import CHAMAIN2021_POINTS


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(mode="decoder"), "mode"),
        (dict(mode="joint", classifier=None), "--classifier"),
        (dict(mode="task", classifier=None), "--classifier"),
        (dict(mode="codec", classifier=None, beta=0.0), "beta > 0 or gamma > 0"),
        (dict(beta=-1.0), "beta"),
        (dict(epochs=0), "epochs"),
        (dict(scales_repr="int4"), "scales_repr"),
        (dict(classifier_optimizer="rmsprop"), "classifier_optimizer"),
    ],
)
def test_config_errors_name_the_value(bad, match) -> None:
    base = dict(dataset="demo", out="x", classifier="runs/c")
    with pytest.raises(ConfigError, match=match):
        FinetuneConfig(**{**base, **bad})


def test_config_round_trips_json() -> None:
    config = FinetuneConfig(dataset="demo", out="x", classifier="r", beta=0.3, codec_epochs=2)
    assert FinetuneConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.codec_trains_in(1) and not config.codec_trains_in(2)
    # BatchNorm statistics: fixed while the codec trains, updated in the classifier-only epoch
    assert not config.bn_updates_in(1) and config.bn_updates_in(2)
    assert FinetuneConfig(dataset="d", out="x", classifier="r", mode="task").bn_updates_in(0)
    assert not config.replace(classifier_bn="fixed").bn_updates_in(2)
    assert not config.replace(mode="codec").bn_updates_in(2)


def test_presets_carry_the_papers_settings() -> None:
    assert CHAMAIN2021_POINTS == ((1, 1.0), (2, 0.6675), (4, 0.3186), (4, 0.1))
    for q, beta in CHAMAIN2021_POINTS:
        cft, jft = (
            PRESETS[f"chamain2021-cft-q{q}-b{beta:g}"],
            PRESETS[f"chamain2021-jft-q{q}-b{beta:g}"],
        )
        assert cft.options | {"quality": q} == cft.options and cft.options["beta"] == beta
        assert cft.options["lr"] == jft.options["lr"] == 1e-4
        assert cft.options["epochs"] == 6 and jft.options["codec_epochs"] == 5
    assert get_preset("gupta2024-joint").options["mode"] == "joint"
    control = get_preset("torfason2018-control")
    assert control.then_train == "scratch"
    FinetuneConfig(dataset="demo", out="x", **control.options)  # no classifier needed
    with pytest.raises(ConfigError, match="Available"):
        get_preset("chamain2022")
    for preset in PRESETS.values():  # every preset makes a valid config
        options = {k: v for k, v in preset.options.items() if k != "quality"}
        FinetuneConfig(dataset="demo", out="x", classifier="r", **options)


def test_cli_lists_presets_and_reports_errors_in_one_line(tmp_path) -> None:
    from latentcache.cli.main import cli

    runner = CliRunner()
    listed = runner.invoke(cli, ["finetune", "--list-presets"])
    assert listed.exit_code == 0 and "chamain2021-jft-q4-b0.1" in listed.output
    bad = runner.invoke(
        cli, ["finetune", "--dataset", "demo", "--preset", "nope", "--out", str(tmp_path / "o")]
    )
    assert bad.exit_code != 0 and "Unknown preset" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(cli, ["finetune", "--dataset", "demo", "--out", str(tmp_path / "o")])
    assert missing.exit_code != 0 and "--classifier" in missing.output
