"""Hostile cases of ``airnet train``, ``export`` and ``eval``: configs, options, run folders, states (issue 34).

Every refusal here comes before training or export starts, so each case takes a second or two;
a command that wrongly went ahead would train a tiny model on four tiny photos made in the scene.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from tests.hostile.harness import Cases, Result, Scene, bad, cli, refused, tiny_weights

CASES = Cases("config")

TINY_CONFIG = """\
model: {{n_feats: 16, n_groups: 1, n_blocks: 1, enc_channels: [16, 16, 32], dim: 32, queue_per_type: 8}}
data:
  types:
    - {{name: noise25, clean: {photos}}}
    - {{name: rain, clean: {photos}}}
    - {{name: haze, clean: {photos}}}
  patch_size: 32
train: {{epochs: 1, epochs_encoder: 0, iters_per_epoch: 1}}
"""


def photos(scene: Scene) -> Path:
    """Four tiny PNGs in the scene: enough data for the tiny config."""
    folder = scene.root / "photos"
    folder.mkdir(exist_ok=True)
    y, x = np.mgrid[0:48, 0:56]
    for i in range(4):
        Image.fromarray((np.stack([x * 3 + 20 * i, y * 4, (x + y) * 2], axis=2) % 256).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def tiny_config(scene: Scene) -> Path:
    """The smallest training config, on the scene's photos."""
    path = scene.root / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(photos=photos(scene)))
    return path


def train(scene: Scene, *args: object) -> Result:
    """``airnet train ARGS`` of the tiny config into ``scene/run``, every file of the scene protected."""
    config = tiny_config(scene)
    scene.protect()
    return cli("train", config, "--run-dir", scene.root / "run", "-q", *args)


def refused_train(scene: Scene, overrides: list[str], *words: str) -> None:
    """The tiny config with ``--set OVERRIDES`` is refused, naming ``words``, and no run folder is made."""
    result = train(scene, *(a for o in overrides for a in ("--set", o)))
    refused(result, *words)
    if (scene.root / "run").exists():
        bad("a refused config still created the run folder")


# ---- 1. a run folder holding the user's files ------------------------------------------------------
@CASES.add
def run_dir_with_user_files(scene: Scene) -> None:
    config = tiny_config(scene)
    run = scene.root / "mine"
    run.mkdir()
    (run / "config.yaml").write_text("my notes\n")
    (run / "last.safetensors").write_bytes(b"my weights")
    scene.protect()
    refused(cli("train", config, "--run-dir", run, "-q"), "did not write", "--resume")


@CASES.add
def run_dir_is_a_file(scene: Scene) -> None:
    config = tiny_config(scene)
    target = scene.root / "results.txt"
    target.write_text("keep me\n")
    scene.protect()
    refused(cli("train", config, "--run-dir", target, "-q"), "not a folder")


@CASES.add
def run_dir_is_the_config_folder(scene: Scene) -> None:
    config = tiny_config(scene)
    scene.protect()
    refused(cli("train", config, "--run-dir", scene.root, "-q"), "did not write")


# ---- 2. non-finite and out-of-range numbers --------------------------------------------------------
@CASES.add
def infinite_learning_rate(scene: Scene) -> None:
    refused_train(scene, ["train.lr=.inf"], "train.lr", "finite")


@CASES.add
def nan_contrastive_weight(scene: Scene) -> None:
    refused_train(scene, ["train.contrastive_weight=.nan"], "train.contrastive_weight", "finite")


@CASES.add
def learning_rate_of_a_million(scene: Scene) -> None:
    refused_train(scene, ["train.lr=1e6"], "train.lr", "above 0 and at most 1")


@CASES.add
def ema_decay_of_one(scene: Scene) -> None:
    refused_train(scene, ["train.ema=1"], "train.ema", "below 1")


@CASES.add
def negative_seed(scene: Scene) -> None:
    refused_train(scene, ["train.seed=-1"], "train.seed", "from 0")


@CASES.add
def init_weights_holding_nan(scene: Scene) -> None:
    from airnet_restore.weights import save_weights
    from tests.conftest import make_tiny

    model = make_tiny()
    model.R.head[0].weight.data[0, 0, 0, 0] = float("nan")
    weights = save_weights(model, scene.root / "nan.safetensors")
    refused_train(scene, [f"train.init={weights}"], "NaN")


# ---- 3. absurd sizes ------------------------------------------------------------------------------
@CASES.add
def patch_size_of_a_million(scene: Scene) -> None:
    refused_train(scene, ["data.patch_size=1000000"], "data.patch_size", "16 to 512")


@CASES.add
def zero_and_huge_counts(scene: Scene) -> None:
    for override, words in (("data.per_type=0", ("data.per_type", "1 to 64")), ("train.epochs=-1", ("train.epochs", "from 1")),
                            ("train.iters_per_epoch=10000000000", ("train.iters_per_epoch",)),
                            ("data.workers=1000", ("data.workers", "0 to 64")), ("model.queue_per_type=0", ("queue_per_type",)),
                            ("model.n_feats=100000", ("n_feats", "1 to 256")), ("val.crop=1", ("val.crop", "16 to"))):
        refused_train(scene, [override], *words)


# ---- 4. --set with Python objects -----------------------------------------------------------------
@CASES.add
def set_python_object(scene: Scene) -> None:
    refused_train(scene, ["description=!!python/object/apply:os.system ['touch hacked']"], "override", "not valid YAML")
    if Path("hacked").exists() or (scene.root / "hacked").exists():
        bad("a --set value ran a command")


# ---- 5. configs that are not YAML, or YAML bombs ---------------------------------------------------
@CASES.add
def png_as_config(scene: Scene) -> None:
    png = photos(scene) / "p0.png"
    scene.protect()
    refused(cli("train", png, "--run-dir", scene.root / "run", "-q"), "not a text file")


@CASES.add
def billion_laughs(scene: Scene) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(9)]
    bomb = scene.root / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    refused(cli("train", bomb, "--run-dir", scene.root / "run", "-q"), "aliases")
    if time.monotonic() - start > 10:
        bad(f"the YAML bomb took {time.monotonic() - start:.0f} s to refuse")


@CASES.add
def recursive_alias_and_deep_nesting(scene: Scene) -> None:
    (scene.root / "loop.yaml").write_text("a: &a [*a]\n")
    refused(cli("train", scene.root / "loop.yaml", "-q", "--run-dir", scene.root / "run"), "alias")
    (scene.root / "deep.yaml").write_text("[" * 50_000)
    refused(cli("train", scene.root / "deep.yaml", "-q", "--run-dir", scene.root / "run"), "deep")


@CASES.add
def huge_config(scene: Scene) -> None:
    big = scene.root / "big.yaml"
    big.write_text("description: " + "x" * (3 << 20) + "\n")
    refused(cli("train", big, "--run-dir", scene.root / "run", "-q"), "too large")


@CASES.add
def empty_missing_and_folder_configs(scene: Scene) -> None:
    (scene.root / "empty.yaml").write_text("")
    refused(cli("train", scene.root / "empty.yaml", "-q", "--run-dir", scene.root / "run"), "empty")
    refused(cli("train", scene.root / "nowhere.yaml", "-q", "--run-dir", scene.root / "run"), "not found")
    refused(cli("train", scene.root, "-q", "--run-dir", scene.root / "run"), "is a folder")


# ---- wrong types and unknown keys -----------------------------------------------------------------
@CASES.add
def wrong_types(scene: Scene) -> None:
    for override, words in (("train.lr=[1, 2]", ("train.lr", "number")), ('train.channels_last="maybe"', ("channels_last", "boolean")),
                            ("train.epochs=true", ("train.epochs", "integer")), ("train.lr=true", ("train.lr", "boolean")),
                            ("data.types=5", ("data.types", "list")), ("model=[1]", ("model",))):
        refused_train(scene, [override], *words)


@CASES.add
def unknown_keys(scene: Scene) -> None:
    refused_train(scene, ["train.learning_rate=1e-4"], "train.learning_rate", "not permitted")
    refused_train(scene, ["data.types.7.clean=x"], "no such place")


# ---- 6. training states that are not whole --------------------------------------------------------
@CASES.add
def resume_state_with_only_its_format(scene: Scene) -> None:
    import torch

    from airnet_restore.train.checkpoint import FORMAT

    state = scene.root / "state.pt"
    torch.save({"format": FORMAT}, state)
    refused(train(scene, "--resume", state), "incomplete training state")


@CASES.add
def resume_truncated_state(scene: Scene) -> None:
    import io

    import torch

    from airnet_restore.train.checkpoint import FORMAT

    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "model": {"w": torch.zeros(1000)}}, buffer)
    state = scene.root / "state.pt"
    state.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    refused(train(scene, "--resume", state), "not a readable training state")


@CASES.add
def init_from_a_photo_or_a_text_file(scene: Scene) -> None:
    png = photos(scene) / "p1.png"
    refused(train(scene, "--init", png), "weights")
    notes = scene.root / "notes.pt"
    notes.write_text("not a checkpoint\n")
    refused(train(scene, "--init", notes), "notes.pt")


# ---- 7. export targets ----------------------------------------------------------------------------
@CASES.add
def export_into_proc(scene: Scene) -> None:
    start = time.monotonic()
    refused(cli("export", "/proc/airnet-hostile/x.onnx", "--weights", tiny_weights()), "cannot write")
    if time.monotonic() - start > 10:
        bad("the unwritable target was found only after the export's work")


@CASES.add
def export_over_the_weights_or_a_folder(scene: Scene) -> None:
    weights = scene.root / "mine.safetensors"
    weights.write_bytes(tiny_weights().read_bytes())
    scene.protect()
    refused(cli("export", weights, "--weights", weights), ".onnx")
    (scene.root / "out.onnx").mkdir()
    refused(cli("export", scene.root / "out.onnx", "--weights", weights), "is a folder")
    refused(cli("export", weights / "x.onnx", "--weights", weights), "not a folder")


# ---- 8. eval options ------------------------------------------------------------------------------
@CASES.add
def eval_numbers_out_of_range(scene: Scene) -> None:
    clean = photos(scene)
    scene.protect()
    base = ("eval", "--set", f"clean={clean}", "--baselines", "dcp", "-q", "--out", scene.root / "eval")
    for option, value, word in (("--seed", -1, "seed"), ("--seed", 2**40, "seed"), ("--crop", -5, "crop"), ("--crop", 0, "crop"),
                                ("--crop-border", -1, "crop_border"), ("--grid", -1, "grid"), ("--tile-overlap", -3, "tile_overlap")):
        refused(cli(*base, option, value), word, "from")
    refused(cli(*base, "--tile", 64, "--tile-overlap", 40), "half the tile")
    if (scene.root / "eval").exists():
        bad("a refused eval wrote its output folder")


@CASES.add
def eval_out_is_a_file(scene: Scene) -> None:
    clean = photos(scene)
    out = scene.root / "results"
    out.write_text("mine\n")
    scene.protect()
    refused(cli("eval", "--set", f"clean={clean}", "--baselines", "dcp", "-q", "--out", out), "not a folder")


# ---- 9. a run folder that cannot be written -------------------------------------------------------
@CASES.add
def run_dir_on_an_unwritable_file_system(scene: Scene) -> None:
    config = tiny_config(scene)
    scene.protect()
    refused(cli("train", config, "--run-dir", "/proc/airnet-hostile-run", "-q"), "/proc/airnet-hostile-run", "cannot")
