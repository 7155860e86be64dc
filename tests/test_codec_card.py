"""The card states what the codec is (issue 13): labels from the weights, one-line load errors.

Through the CLI (CliRunner): a quality label that contradicts the weights' widths is refused, a
``codec train`` checkpoint's own quality, λ and lineage reach the card, a conflicting flag is
refused naming both values, every malformed checkpoint is one line naming the file and the
reason, and ``eval`` / ``train --resume`` on a folder that is not a run are one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import make_tiny_model, write_texture_folder

from latentcache.cli.main import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def one_line_error(res, *needles) -> str:
    """The CLI failed with exactly one line (no traceback) containing every needle."""
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    text = res.output.strip()
    assert text.count("\n") == 0, text
    for needle in needles:
        assert str(needle) in text, text
    return text


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_texture_folder(tmp_path_factory.mktemp("img"), per_class=2, size=64)


@pytest.fixture(scope="module")
def q3_widths_file(tmp_path_factory) -> Path:
    """A real (untrained, update()d) bmshj2018-hyperprior at quality 1-5 widths N=128, M=192,
    saved as a plain state dict: the issue's ``codec_q3.pt``."""
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    model = ScaleHyperprior(128, 192)
    model.update(force=True)
    path = tmp_path_factory.mktemp("q3") / "codec_q3.pt"
    torch.save(model.state_dict(), path)
    return path


def encode(images: Path, out: Path, *codec_args):
    return run(
        "encode", "-d", "imagefolder", "--data-root", images, "--out", out, "--workers", "0",
        "--format", "zarr", *codec_args,
    )  # fmt: skip


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# ---------------------------------------------------------------- plain state dicts


def test_quality_that_contradicts_the_widths_is_refused(images, q3_widths_file, tmp_path):
    res = encode(images, tmp_path / "o", "--checkpoint", q3_widths_file, "--quality", "8")
    one_line_error(
        res, q3_widths_file, "N=128, M=192", "quality 8 has N=192, M=320", "qualities 1-5"
    )
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_quality_matching_the_widths_is_recorded_as_the_users(images, q3_widths_file, tmp_path):
    res = encode(images, tmp_path / "o", "--checkpoint", q3_widths_file, "--quality", "3")
    assert res.exit_code == 0, res.output
    c = manifest(tmp_path / "o")["codec"]
    assert (c["quality"], c["quality_source"], c["lambda"]) == (3, "user", None)
    assert (c["N"], c["M"], c["source"], c["checkpoint"]) == (128, 192, "checkpoint", "codec_q3.pt")
    card = run("inspect", tmp_path / "o").output
    assert "quality 3" in card and "given by the user" in card and "lambda unknown" in card


def test_no_quality_for_a_plain_state_dict_is_unknown(images, tiny_checkpoint, tmp_path):
    res = encode(images, tmp_path / "o", "--checkpoint", tiny_checkpoint)
    assert res.exit_code == 0, res.output
    c = manifest(tmp_path / "o")["codec"]
    assert (c["quality"], c["quality_source"], c["N"], c["M"]) == (None, "unknown", 16, 24)


# ---------------------------------------------------------------- latentcache checkpoints


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real ``latentcache codec train`` checkpoint: quality 5 (its λ), ms-ssim, N=16, M=16."""
    root = tmp_path_factory.mktemp("trained")
    photos = write_texture_folder(root / "photos", per_class=1, size=192)
    out = root / "ft.pt"
    args = ["codec", "train", "--images", photos / "brick", "--quality", "5"]
    args += ["--metric", "ms-ssim", "--N", "16", "--M", "16", "--crop", "192", "--batch-size", "1"]
    res = run(*args, "--steps", "1", "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_codec_train_checkpoint_labels_reach_the_card(images, trained, tmp_path):
    res = encode(images, tmp_path / "o", "--checkpoint", trained)  # no --quality / --metric
    assert res.exit_code == 0, res.output
    c = manifest(tmp_path / "o")["codec"]
    assert (c["quality"], c["metric"], c["quality_source"]) == (5, "ms-ssim", "checkpoint")
    assert c["lambda"] == 31.73 and (c["N"], c["M"]) == (16, 16) and c["lineage"] is None
    card = run("inspect", tmp_path / "o").output
    assert "quality 5 (ms-ssim)" in card and "recorded in the checkpoint" in card
    assert "lambda 31.73" in card and c["weights_sha256"] in card


@pytest.mark.parametrize(
    ("flag", "value", "recorded"),
    [("--quality", "8", "5"), ("--metric", "mse", "ms-ssim")],
)
def test_conflicting_flag_is_refused_naming_both(images, trained, tmp_path, flag, value, recorded):
    res = encode(images, tmp_path / "o", "--checkpoint", trained, flag, value)
    one_line_error(res, trained, f"records {flag[2:]} {recorded}, but {flag[2:]} {value} was")


def test_conflicting_arch_is_refused_naming_both(images, trained, tmp_path):
    args = ["codec", "eval", "--images", images, "--checkpoint", trained, "--out", tmp_path / "r"]
    res = run(*args, "--arch", "mbt2018-mean")
    one_line_error(res, "records arch bmshj2018-hyperprior, but arch mbt2018-mean was asked")


def test_mbt2018_mean_checkpoint_encodes_and_its_card_says_what_a_reader_gets(images, tmp_path):
    """A mean-scale codec recorded in a checkpoint: encoded, its card names its latents; a
    z_hat store (σ̂ from h_s alone) is refused up front in one line."""
    from compressai.models import MeanScaleHyperprior

    from latentcache.codec.load import save_codec_checkpoint
    from latentcache.codec.spec import CodecSpec

    model = MeanScaleHyperprior(16, 24)
    path = save_codec_checkpoint(tmp_path / "m.pt", model, CodecSpec(arch="mbt2018-mean"))
    res = encode(images, tmp_path / "a", "--checkpoint", path)
    assert res.exit_code == 0, res.output
    card = manifest(tmp_path / "a")
    assert card["inputs"] == ["y_hat", "scales_hat", "means_hat"]
    assert card["latents"]["decoded_y_hat"] == "y_hat + means_hat (float32 add)"
    shown = run("inspect", tmp_path / "a")
    assert "means_hat" in shown.output and "y_hat + means_hat" in shown.output, shown.output
    bad = encode(images, tmp_path / "b", "--checkpoint", path, "--scales", "z_hat")
    one_line_error(bad, "mbt2018-mean (mean-scale) does not do")
    assert not (tmp_path / "b").exists()


def test_agreeing_flag_is_accepted(images, trained, tmp_path):
    res = encode(images, tmp_path / "o", "--checkpoint", trained, "--quality", "5")
    assert res.exit_code == 0, res.output
    assert manifest(tmp_path / "o")["codec"]["quality_source"] == "checkpoint"


def test_fine_tuned_lineage_and_lambda_reach_the_card(images, tmp_path):
    from latentcache.codec.load import save_codec_checkpoint
    from latentcache.codec.spec import CodecSpec

    lineage = {"parent_weights_sha256": "ab" * 32, "mode": "codec", "beta": 0.1, "gamma": 0.0}
    lineage["epochs"] = 3
    path = save_codec_checkpoint(
        tmp_path / "ft.pt", make_tiny_model(), CodecSpec(quality=2), lmbda=0.004, lineage=lineage
    )
    res = encode(images, tmp_path / "o", "--checkpoint", path)
    assert res.exit_code == 0, res.output
    c = manifest(tmp_path / "o")["codec"]
    assert c["lineage"] == lineage and c["lambda"] == 0.004 and c["quality"] == 2
    card = run("inspect", tmp_path / "o").output
    assert f"fine-tuned from weights sha256 {'ab' * 32}" in card
    assert "mode codec, beta 0.1, gamma 0.0, epochs 3" in card


def test_demo_codec_label_is_its_own(images, tmp_path):
    one_line_error(encode(images, tmp_path / "o", "--codec", "demo", "-q", "8"), "quality 3")


# ---------------------------------------------------------------- malformed checkpoints


def _state_dict(**changes):
    sd = dict(make_tiny_model().state_dict())
    for k, v in changes.items():
        if v is None:
            sd.pop(k)
        else:
            sd[k] = v
    return sd


class NotWeights:  # pickled by torch.save; a safe load refuses it
    pass


MALFORMED = {
    "text": (None, "not a PyTorch file"),
    "list": ([torch.zeros(2)], "holds a list, not a state dict"),
    "dict": ({"epoch": 3, "best": 0.5}, "not a state dict (names -> tensors): 'epoch' holds a value of type int"),
    "pickle": ({"w": NotWeights()}, "holds Python objects that a safe load"),
    "missing": (_state_dict(**{"h_s.4.weight": None}), "missing 1 keys of bmshj2018-hyperprior: h_s.4.weight"),
    "shapes": (
        _state_dict(**{"h_a.0.weight": torch.zeros(16, 20, 3, 3)}),
        "the weights' widths are N=16, M=24 (g_a.0, g_a.6), and h_a.0.weight is (16, 20, 3, 3) "
        "where bmshj2018-hyperprior with N=16, M=24 expects (16, 24, 3, 3)",
    ),
    "tables": ("untrained", "run model.update(force=True)"),
    "truncated": ("truncated", "damaged or truncated PyTorch file"),
}  # fmt: skip


def _write_malformed(kind: str, path: Path) -> None:
    obj = MALFORMED[kind][0]
    if kind == "text":
        path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    elif obj == "untrained":
        from compressai.models import ScaleHyperprior

        torch.save(ScaleHyperprior(16, 24).state_dict(), path)  # trained, never update()d
    elif obj == "truncated":
        torch.save(make_tiny_model().state_dict(), path)
        path.write_bytes(path.read_bytes()[:4000])
    else:
        torch.save(obj, path)


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_checkpoint_is_one_line(images, tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    _write_malformed(kind, path)
    text = one_line_error(encode(images, tmp_path / "o", "--checkpoint", path), MALFORMED[kind][1])
    assert str(path) in text
    if kind == "tables":
        assert "`latentcache codec train`" in text


def test_mean_scale_weights_say_which_arch_they_fit(images, tmp_path):
    from compressai.models import MeanScaleHyperprior

    model = MeanScaleHyperprior(16, 24)
    model.update(force=True)
    torch.save(model.state_dict(), tmp_path / "msh.pt")
    res = encode(
        images,
        tmp_path / "o",
        "--checkpoint",
        tmp_path / "msh.pt",
        "--arch",
        "bmshj2018-hyperprior",
    )
    one_line_error(res, "shapes don't fit bmshj2018-hyperprior", "the weights fit mbt2018-mean")
    res = encode(images, tmp_path / "p", "--checkpoint", tmp_path / "msh.pt")  # recognised
    assert res.exit_code == 0, res.output
    assert manifest(tmp_path / "p")["codec"]["arch"] == "mbt2018-mean"


# ---------------------------------------------------------------- zoo, run folders


def test_zoo_labels_come_from_the_zoo_file(tmp_path, monkeypatch, q3_widths_file):
    """A zoo file in torch hub's cache (offline): its quality names it; λ is CompressAI's."""
    from latentcache.codec.load import load_codec, zoo_cache_file
    from latentcache.codec.spec import CodecSpec

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("LATENTCACHE_OFFLINE", "1")
    spec = CodecSpec(quality=3)
    zoo_cache_file(spec).parent.mkdir(parents=True)
    zoo_cache_file(spec).write_bytes(q3_widths_file.read_bytes())
    ident = load_codec(spec).identity()
    assert (ident["quality"], ident["quality_source"], ident["lambda"]) == (3, "zoo", 0.0067)
    assert (ident["source"], ident["N"], ident["M"]) == ("zoo", 128, 192)


def test_width_table_is_compressais():
    from compressai.zoo.image import cfgs

    from latentcache.codec.spec import ARCHITECTURES

    for arch, table in ARCHITECTURES.items():
        assert table == {q: (nm[0], nm[-1]) for q, nm in cfgs[arch].items()}  # cheng: N = M
    assert {"bmshj2018-factorized", "mbt2018", "cheng2020-attn"} <= set(ARCHITECTURES)


def test_eval_on_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("not a run")
    one_line_error(run("eval", tmp_path, tmp_path), "No best.pt or last.pt in", str(tmp_path))


def test_train_resume_on_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "photo.png").write_bytes(b"x")
    res = run("train", tmp_path, "--out", tmp_path / "run", "--resume")
    one_line_error(res, "is not a training run", str(tmp_path / "run"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"quality": 11}, 'records an invalid label: Invalid quality "11"'),
        ({"lineage": {"parent_weights_sha256": torch.zeros(2)}}, "lineage is not a dict of plain"),
        ({"lambda": [0.1]}, "its lambda is a list"),
    ],
)
def test_hostile_checkpoint_records_are_one_line(images, tmp_path, extra, message):
    from latentcache.codec.load import CHECKPOINT_FORMAT

    payload = {"format": CHECKPOINT_FORMAT, "arch": "bmshj2018-hyperprior", "quality": 2}
    payload |= {"state_dict": make_tiny_model().state_dict(), **extra}
    torch.save(payload, tmp_path / "bad.pt")
    one_line_error(encode(images, tmp_path / "o", "--checkpoint", tmp_path / "bad.pt"), message)


def test_card_of_a_store_older_than_provenance_says_so():
    from latentcache.store.card import format_codec

    old = {"arch": "bmshj2018-hyperprior", "quality": 8, "metric": "mse", "source": "checkpoint"}
    old |= {"checkpoint": "c.pt", "weights_sha256": "0" * 64, "N": 128, "M": 192}
    text = "\n".join(format_codec(old))
    assert "quality 8 (mse), N=128 M=192" in text and "predates codec provenance" in text
    assert "lambda unknown" in text and "lineage" not in text
