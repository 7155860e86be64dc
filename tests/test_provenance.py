"""Recorded commands re-run as written: each of encode, train, finetune and run records a
command (manifest, config.json, finetune.json, run.json) that, parsed back through the CLI,
resolves to the same config; real tiny runs on real images, paths with spaces.
And a store with one class stops training with one line."""

from __future__ import annotations

import json
import shlex

import click
import pytest
from click.testing import CliRunner
from conftest import encode_with_tiny_checkpoint, make_tiny_model, write_texture_folder
from recipe_toml import eval_table, head, latent_model, write_recipe

from latentcache.cli.finetune_cmd import finetune_config
from latentcache.cli.main import cli
from latentcache.cli.recipe_cmd import run_options
from latentcache.cli.store_cmd import encode_config
from latentcache.cli.train_cmd import train_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def parse(words: list[str]) -> click.Context:
    """The context ``latentcache WORDS...`` parses to, without running the command."""
    assert words[0] == "latentcache"
    group = click.Context(cli, info_name="latentcache")
    command = cli.get_command(group, words[1])
    return command.make_context(words[1], words[2:], parent=group)


def invoke(words: list[str]) -> None:
    result = CliRunner().invoke(cli, words[1:])
    assert result.exit_code == 0, result.output


def as_json(value) -> dict:
    return json.loads(json.dumps(value, default=str))


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """A folder with a space in its name, the textures and the tiny codec saved there."""
    from latentcache.codec.load import save_codec_checkpoint
    from latentcache.codec.spec import CodecSpec

    root = tmp_path_factory.mktemp("prov") / "my folder"
    root.mkdir()
    images = write_texture_folder(root / "tex", per_class=4, size=64)
    codec = save_codec_checkpoint(root / "tiny codec.pt", make_tiny_model(), CodecSpec(quality=1))
    return root, images, codec


@pytest.fixture(scope="module")
def encoded(places):
    root, images, codec = places
    words = ["latentcache", "encode", "-d", "imagefolder", "--data-root", str(images),
             "--checkpoint", str(codec), "--format", "zarr", "--shard-size", "4",
             "--workers", "0", "--out", str(root / "a store")]  # fmt: skip
    invoke(words)
    manifest = json.loads((root / "a store" / "manifest.json").read_text())
    return words, manifest


def test_encode_records_a_command_that_resolves_to_the_same_config(encoded):
    words, manifest = encoded
    recorded = manifest["command"]
    again = encode_config(parse(shlex.split(recorded)))
    assert again == encode_config(parse(words))
    assert again.command == recorded  # the re-run records the same command


def test_train_records_the_store_and_each_repeated_option(encoded, places, tmp_path):
    root = places[0]
    store = str(root / "a store")
    words = ["latentcache", "train", store, "--model-opt", "base_width=4",
             "--model-opt", 'inputs=["y_hat"]', "--epochs", "1", "--batch-size", "4",
             "--resize", "8", "--crop", "6", "--no-flip", "--device", "cpu",
             "--out", str(tmp_path / "a run"), "-v"]  # fmt: skip
    invoke(words)
    recorded_config = json.loads((tmp_path / "a run" / "config.json").read_text())
    recorded = recorded_config.pop("command")
    recorded_config.pop("initialised_from")
    parts = shlex.split(recorded)
    assert parts[-1] == store and parts.count("--model-opt") == 2 and "()" not in recorded
    again = train_config(parse(parts)).to_dict()
    assert again.pop("command") == recorded
    assert as_json(again) == recorded_config


def test_finetune_records_a_command_that_resolves_to_the_same_config(places, tmp_path):
    root, images, codec = places
    out = tmp_path / "fine tuned"
    words = ["latentcache", "finetune", "-d", "imagefolder", "--data-root", str(images),
             "--checkpoint", str(codec), "--mode", "codec", "--beta", "1", "--epochs", "1",
             "--max-batches", "1", "--batch-size", "2", "--device", "cpu", "--no-amp",
             "--out", str(out)]  # fmt: skip
    invoke(words)
    recorded_config = json.loads((out / "finetune.json").read_text())
    recorded = recorded_config["command"]
    assert "--no-amp" in shlex.split(recorded)
    assert as_json(finetune_config(parse(shlex.split(recorded))).to_dict()) == recorded_config


def test_run_records_a_command_that_resolves_to_the_same_options(places, tmp_path):
    root, images, codec = places
    toml = head("prov", "provenance", images, codec) + latent_model() + eval_table()
    recipe_path = root / "a recipe.toml"
    write_recipe(recipe_path, toml)
    out = tmp_path / "a run"
    words = ["latentcache", "run", str(recipe_path), "--out", str(out), "--only", "encode",
             "--seeds", "0"]  # fmt: skip
    result = CliRunner().invoke(cli, words[1:])
    assert result.exit_code == 1  # --only encode: the stages after it are not run
    recorded = json.loads((out / "run.json").read_text())["command"]
    recipe, options = run_options(parse(shlex.split(recorded)))
    first_recipe, first_options = run_options(parse(words))
    assert (recipe.to_dict(), options) == (first_recipe.to_dict(), first_options)
    assert options.command == recorded
    manifest = json.loads(
        (out / "stages" / "encode-q1-mse" / "store" / "manifest.json").read_text()
    )
    assert manifest["command"] == recorded  # the stores a run makes name it


def test_a_store_with_one_class_stops_training_in_one_line(tmp_path):
    images = write_texture_folder(tmp_path / "tex", per_class=3, size=64)
    for cls in ("grass", "gravel"):
        for f in (images / cls).iterdir():
            f.unlink()
        (images / cls).rmdir()
    _, store = encode_with_tiny_checkpoint(tmp_path, images)
    result = CliRunner().invoke(cli, ["train", str(store), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: store {store} has 1 class (brick); classification needs at least 2"]
