"""``latentcache train`` and ``latentcache eval`` through click's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from latentcache.cli.main import cli
from latentcache.cli.train_cmd import parse_model_opts

torch.set_num_threads(1)

SMALL = [
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--model-opt",
    "base_width=4",
    "--resize",
    "8",
    "--crop",
    "6",
]


@pytest.fixture(scope="module")
def cli_run(texture_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(cli, ["train", str(texture_store.path), "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    return result, out


def test_train_prints_one_summary_line_and_writes_the_run(cli_run) -> None:
    result, out = cli_run
    assert f"{out}: 1 epochs, top-1" in result.output
    assert (out / "last.pt").is_file() and (out / "metrics.jsonl").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["model_kwargs"] == {"base_width": 4} and config["command"].startswith(
        "latentcache"
    )


def test_eval_json_prints_one_object_with_fractions(cli_run, texture_store) -> None:
    _, out = cli_run
    result = CliRunner().invoke(
        cli, ["eval", str(out), str(texture_store.path), "--split", "test", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert 0.0 <= report["top1"] <= report["top5"] <= 1.0
    assert set(report["per_class"]) == set(texture_store.classes)
    assert len(report["confusion"]) == len(texture_store.classes)
    assert (out / "eval_test.json").is_file() and (out / "confusion_test.png").is_file()


def test_eval_table_and_unknown_split(cli_run, texture_store) -> None:
    _, out = cli_run
    table = CliRunner().invoke(
        cli, ["eval", str(out), str(texture_store.path), "--checkpoint", "last"]
    )
    assert table.exit_code == 0 and "top-1" in table.output and "brick" in table.output
    bad = CliRunner().invoke(cli, ["eval", str(out), str(texture_store.path), "--split", "valid"])
    assert bad.exit_code == 1 and 'Split "valid" is not in the store' in bad.output


def test_bad_model_and_options_fail_with_one_clear_line(texture_store, tmp_path) -> None:
    runner = CliRunner()
    bad = runner.invoke(
        cli, ["train", str(texture_store.path), "--out", str(tmp_path / "x"), "--model", "resnet9"]
    )
    assert bad.exit_code == 1 and "Unknown classifier" in bad.output and "cresnet39" in bad.output
    assert "Traceback" not in bad.output
    bad_opt = runner.invoke(cli, ["train", str(texture_store.path), "--model-opt", "width"])
    assert bad_opt.exit_code == 2 and "expected KEY=VALUE" in bad_opt.output
    existing = runner.invoke(
        cli, ["train", str(texture_store.path), "--out", str(tmp_path / "x2"), *SMALL]
    )
    again = runner.invoke(
        cli, ["train", str(texture_store.path), "--out", str(tmp_path / "x2"), *SMALL]
    )
    assert existing.exit_code == 0 and again.exit_code == 1 and "--resume" in again.output


def test_parse_model_opts() -> None:
    assert parse_model_opts(
        ("base_width=16", "pretrained=false", 'inputs=["y_hat", "scales_hat"]', "arch=r50")
    ) == {
        "base_width": 16,
        "pretrained": False,
        "inputs": ["y_hat", "scales_hat"],
        "arch": "r50",
    }


def test_the_cli_starts_without_importing_torch() -> None:
    code = "import sys; from latentcache.cli.main import cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
