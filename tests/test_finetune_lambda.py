"""`finetune` of a plain CompressAI state dict (weights only: no recorded λ, quality or
metric): λ is required only where it is used (γ > 0), and with --quality it is CompressAI's
table value, recorded with the new codec. Real tiny codecs, real images, the CLI."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from click.testing import CliRunner
from conftest import make_tiny_model

from latentcache.cli.main import cli
from latentcache.codec.load import load_codec
from latentcache.codec.spec import CodecSpec, lambda_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def plain_tiny(tmp_path_factory):
    """The tiny codec's state dict alone, as CompressAI's own training script saves it."""
    path = tmp_path_factory.mktemp("plain") / "tiny-state-dict.pt"
    torch.save(make_tiny_model().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def plain_q3(tmp_path_factory):
    """A state dict with CompressAI's quality-3 widths (N=128, M=192), untrained."""
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    model = ScaleHyperprior(128, 192)
    model.update(force=True)
    path = tmp_path_factory.mktemp("plain") / "q3-state-dict.pt"
    torch.save(model.state_dict(), path)
    return path


def _finetune(checkpoint, data_root, out, *extra):
    args = ["finetune", "-d", "imagefolder", "--data-root", data_root, "--checkpoint", checkpoint,
            "--mode", "codec", "--beta", "1", "--epochs", "1", "--max-batches", "1",
            "--batch-size", "2", "--device", "cpu", "--out", out, *extra]  # fmt: skip
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_gamma_0_needs_no_lambda(plain_tiny, texture_root, tmp_path):
    result = _finetune(plain_tiny, texture_root, tmp_path / "o", "--gamma", "0")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert (summary["lambda"], summary["lambda_source"]) == (None, "unused (gamma 0)")


def test_gamma_above_0_with_quality_takes_compressais_table_and_records_it(
    plain_q3, texture_root, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="latentcache.finetune.parts")
    out = tmp_path / "o"
    result = _finetune(plain_q3, texture_root, out, "--quality", "3", "--gamma", "1")
    assert result.exit_code == 0, result.output
    assert lambda_for("mse", 3) == 0.0067
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lambda ")]
    assert said == ["lambda 0.0067: CompressAI's table for mse quality 3"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["lambda"], summary["lambda_source"]) == (0.0067, said[0][15:])
    new = load_codec(CodecSpec(source="checkpoint", checkpoint=str(out / "codec.pt")))
    assert new.lmbda == 0.0067 and new.spec.quality == 3  # recorded with the new codec


def test_gamma_above_0_without_lambda_or_quality_refuses_in_one_line(
    plain_tiny, texture_root, tmp_path
):
    result = _finetune(plain_tiny, texture_root, tmp_path / "o", "--gamma", "1")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--lambda" in errors[0] and "--quality" in errors[0], errors
    assert "Traceback" not in result.output and "lmbda" not in result.output
    assert not (tmp_path / "o").exists()  # refused before any work


def test_compressais_mse_lambdas_are_the_librarys_own():
    """The MSE row of the table is the list CompressAI's variable-rate model trains with."""
    from compressai.models.vbr import ScaleHyperpriorVbr

    from latentcache.codec.spec import LAMBDAS

    assert list(LAMBDAS["mse"]) == ScaleHyperpriorVbr(N=8, M=8).lmbda
