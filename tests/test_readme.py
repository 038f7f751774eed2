"""The documented commands, run for real: every shell command and Python example of README.md and docs/ keeps working.

Each fenced block of README.md and of the documentation pages under docs/ is one test case, named
after its page and section. Shell commands run one by one in a sandbox that holds what they name
(small photos in ``photos/``, an official-format ``All.pth``, dataset folders, the configs);
nothing outside the repository is read. Every command needs a plan in ``COMMANDS``: run as
written, run with appended arguments that make it small, or skipped with the reason. A command
without a plan fails the test, as does a plan whose command is gone. Python blocks run as they
are, and a ``print(...)  # e.g. LINE`` must print a line of LINE's form. Blocks with a slow
command are marked slow (``pytest -m slow``), the others docs (``pytest -m docs tests/test_readme.py``);
the default run checks only that every command has a plan.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from airnet_restore.models import AirNet, AirNetConfig

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# The documentation: the README and the site's pages (docs/reliability.md is written by another hand and has no commands yet).
DOCUMENTS = [README, *sorted((REPO / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
VALIDATION = ("Storm.png", "LadyBird.png", "coffee.png", "friends_by_Aitzol_Berasategi.png", "Path.png",
              "Bridge_by_Sander_Klootwijk.png")
ENV = {"P": "photos", "NODE_RANK": "0"}
# One thread per command unless the environment says otherwise: on a busy 2-core machine a second
# thread spins instead of working (a small eval took 136 s with two threads, 17 s with one).
THREADS = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}

# Blocks that are not code, by id.
NOT_CODE = {"readme/restore-images-2": "an example output line", "architecture/the-source-tree": "the source tree"}


@dataclass(frozen=True)
class Plan:
    """How the test runs one README command."""

    extra: str = ""  # appended arguments that make it small
    creates: tuple[str, ...] = ()  # paths the command must write
    skip: str = ""  # why it is not run
    cuda: bool = False  # runs only where CUDA is available
    slow: bool = False  # its block is marked slow
    serves: str = ""  # a server: it runs in the background until the block ends, and this URL must answer


# Train for one step on 32-px crops, validate on 32-px crops.
SMALL = "--set train.epochs=1 --set train.iters_per_epoch=1 --set data.patch_size=32 --set val.crop=32"
# The paper's preset with a tiny model and no data workers.
TINY_AIO = (SMALL + " --set data.workers=0 --set 'model={n_feats: 8, n_groups: 1, n_blocks: 1, "
            "enc_channels: [8, 8, 16], dim: 16, queue_per_type: 4}'")
# The held-out protocol on two of the photos with two quick baselines.
HELDOUT_SMALL = "--include Storm.png,coffee.png --baselines identity,wavelet"
# The presets name the project's own photo folder; the documented runs point them at the user's (photos/).
PHOTOS_LITE = "".join(f" --set data.types.{i}.clean=photos" for i in range(5)) + " --set val.clean=photos"
PHOTOS_GENERAL = "".join(f" --set data.types.{i}.clean=photos" for i in range(8)) + " --set val.clean=photos"

COMMANDS: dict[str, Plan] = {
    # Install and tests (README, docs/index.md)
    "python -m pip install torch --index-url https://download.pytorch.org/whl/cpu": Plan(
        skip="installs torch, which this interpreter has"),
    "python -m pip install -e .": Plan(skip="installs the package, which this interpreter has"),
    'python -m pip install -e ".[test]" && python -m pytest': Plan(
        skip="installs the package and runs the whole suite, this test included"),
    'python -m pip install -e ".[docs]" && mkdocs build --strict': Plan(
        skip="installs the docs extras; CI runs the same build (.ci/run)"),
    # Restoring images (README, docs/restoring.md, docs/post-filter.md, docs/paper.md, docs/gpu.md)
    "airnet restore --sample -o restored": Plan(creates=("restored/sample_noisy.png",)),
    'airnet restore photo.jpg scans/ "shots/**/*.png" -o restored': Plan(creates=("restored/photo.jpg", "restored/a.png")),
    "airnet restore raw16.tif -o out --ext png --suffix _clean": Plan(creates=("out/raw16_clean.png",)),
    "airnet restore scans/ -o out --ext jpg --jpeg-quality 90": Plan(creates=("out/a.jpg", "out/old/b.jpg")),
    "airnet restore big.jpg -o out --device cuda --precision bf16 --tile 512": Plan(cuda=True, creates=("out/big.jpg",)),
    "airnet restore photo.jpg -o official --weights All.pth": Plan(creates=("official/photo.jpg",)),
    "airnet restore photo.jpg -o network --postfilter none": Plan(creates=("network/photo.jpg",)),
    "airnet restore photo.jpg -o unchanged --strength 0": Plan(creates=("unchanged/photo.jpg",)),
    "airnet restore photo.jpg -o denoised --anchor 1": Plan(creates=("denoised/photo.jpg",)),
    "airnet restore photo.jpg -o out": Plan(creates=("out/photo.jpg",)),
    "cp src/airnet_restore/assets/airnet-general-v8.safetensors v8-haze.safetensors": Plan(
        creates=("v8-haze.safetensors",)),
    "python training/store_postfilter.py v8-haze.safetensors --params \"$(python -c 'from airnet_restore.postfilter.params "
    "import PostFilterParams, HazeSettings; print(PostFilterParams(haze=HazeSettings(enabled=True)).to_json())')\"": Plan(),
    "airnet restore hazy.jpg -o out --weights v8-haze.safetensors": Plan(creates=("out/hazy.jpg",)),
    "airnet convert All.pth all.safetensors": Plan(creates=("all.safetensors",)),
    "python benchmarks/hostile_suite.py": Plan(skip="every hostile case; the default test run runs each as a test (tests/hostile)"),
    "python benchmarks/strip_speed.py --length 100000 --thickness 3 --thickness 12": Plan(
        skip="minutes of timing on a quiet machine; its table is on the same page"),
    # ONNX
    'python -m pip install -e ".[onnx]"': Plan(skip="installs the onnx extras, which the test extras include"),
    "airnet export airnet-general-v8.onnx": Plan(creates=("airnet-general-v8.onnx",), slow=True),
    "airnet restore photo.jpg -o out --backend onnxruntime --weights airnet-general-v8.onnx": Plan(
        creates=("out/photo.jpg",)),
    # Web app and HTTP API
    'python -m pip install -e ".[web]"': Plan(skip="installs the web extras, which the test extras include"),
    "airnet serve": Plan(serves="http://127.0.0.1:7860/api/health"),
    "curl -F image=@photo.jpg http://127.0.0.1:7860/api/restore -o photo_restored.png": Plan(
        extra="--fail", creates=("photo_restored.png",)),
    "curl http://127.0.0.1:7860/api/health": Plan(extra="--fail"),
    # Inspection
    "airnet inspect photo.jpg scans/": Plan(),
    "airnet inspect photo.jpg big.jpg noisy.png --json --map maps --plot embedding.png": Plan(
        creates=("maps/photo.jpg.map.png", "maps/noisy.png.map.png", "embedding.png")),
    "airnet inspect --calibrate airnet-general calibrated.safetensors --photos photos/": Plan(
        creates=("calibrated.safetensors",)),
    "airnet inspect photo.jpg scans/ --weights calibrated.safetensors": Plan(),
    # Evaluation
    "airnet eval --weights All.pth --set bsd68=data/test/denoise/bsd68 --set rain100l=data/test/derain/Rain100L "
    "--set sots=data/test/dehaze --out eval/all": Plan(creates=("eval/all/results.md", "eval/all/per_image.csv"),
                                                       slow=True),
    "airnet eval --weights airnet-general-v8 --heldout heldout/ --crop 192 --out reports/heldout-mine": Plan(
        extra=HELDOUT_SMALL, creates=("reports/heldout-mine/results.md",), slow=True),
    "airnet eval --weights airnet-general-v8 --heldout heldout/ --crop 192 --baselines identity --out reports/heldout-quick": Plan(
        extra="--include Storm.png", creates=("reports/heldout-quick/results.md",)),
    # Training
    "airnet train configs/aio.yaml": Plan(extra=TINY_AIO, creates=("runs/aio/last.safetensors",), slow=True),
    "airnet train configs/aio.yaml --set train.epochs=1000 --run-dir runs/aio-1000": Plan(extra=TINY_AIO),
    "airnet train configs/aio.yaml --resume auto": Plan(extra=TINY_AIO + " --set train.epochs=2"),
    "python data/photo_pool.py --split training --split validation": Plan(
        skip="downloads pinned Debian packages and wheels; the sandbox holds a small data/pool instead"),
    "airnet train configs/smoke.yaml --run-dir runs/smoke": Plan(extra=SMALL, creates=("runs/smoke/last.safetensors",)),
    "airnet train configs/smoke.yaml --run-dir runs/smoke --set data.types.0.clean=photos --set data.types.1.clean=photos "
    "--set data.types.2.clean=photos --set val.clean=photos --set \"val.files=[]\"": Plan(
        creates=("runs/smoke/best.safetensors",)),
    "airnet train configs/finetune.yaml --init training/airnet-lite/state.pt --run-dir runs/ft-lite": Plan(
        extra=SMALL, creates=("runs/ft-lite/last.safetensors",), slow=True),
    "airnet train configs/aio.yaml --init All.pth": Plan(extra=SMALL + " --set data.workers=0"),
    "airnet train configs/my.yaml --init airnet-general --init-partial": Plan(creates=("runs/my/last.safetensors",)),
    "airnet data check my_pairs --layout paired": Plan(),
    "airnet train configs/finetune.yaml --set data.types.0.root=my_pairs --run-dir runs/mine": Plan(
        extra=SMALL, slow=True),
    "airnet restore new_photos/ -o restored --weights runs/mine/last.safetensors": Plan(
        creates=("restored/new.png",)),
    # Reproducing the paper
    "airnet data check data/Train/Denoise --layout clean": Plan(),
    "airnet data check data/Train/Derain --layout derain-train": Plan(),
    "airnet data check data/Train/Dehaze --layout dehaze-train": Plan(),
    "airnet data check data/test/derain/Rain100L --layout rain100l": Plan(),
    "airnet data check data/test/dehaze --layout sots": Plan(),
    "airnet train configs/aio.yaml --device cuda --run-dir runs/aio": Plan(
        cuda=True, extra=TINY_AIO, creates=("runs/aio/best.safetensors",)),
    "airnet eval --weights runs/aio/best.safetensors --set bsd68=data/test/denoise/bsd68 --set rain100l=data/test/derain/Rain100L "
    "--set sots=data/test/dehaze --out eval/aio": Plan(
        cuda=True, creates=("eval/aio/results.md",)),
    # Training reports (docs/training-reports.md): the commands behind each release's figures
    "airnet eval --weights airnet-general-v8 --weights airnet-general-v7 --weights airnet-lite --heldout runs/heldout-photos "
    "--crop 192 --device cpu --grid 9 --out reports/heldout-v9": Plan(creates=("reports/heldout-v9/results.md",), slow=True),
    "airnet eval --weights airnet-general-v8 --weights airnet-general-v7 --weights airnet-lite --heldout runs/heldout-photos "
    "--crop 192 --device cpu --grid 9 --out reports/heldout-v8": Plan(creates=("reports/heldout-v8/results.md",), slow=True),
    "airnet eval --weights airnet-general-v7 --weights airnet-general-v5 --weights airnet-lite --heldout runs/heldout-photos "
    "--crop 192 --device cpu --grid 9 --out reports/heldout-v7": Plan(creates=("reports/heldout-v7/results.md",), slow=True),
    "airnet eval --weights airnet-general-v5 --weights airnet-general --weights airnet-lite --heldout runs/heldout-photos "
    "--crop 192 --device cpu --grid 9 --out reports/heldout-v6": Plan(creates=("reports/heldout-v6/results.md",), slow=True),
    "airnet eval --weights airnet-general-v5 --weights airnet-general --weights airnet-lite --heldout runs/heldout-photos "
    "--crop 192 --device cpu --grid 9 --out reports/heldout-v5": Plan(creates=("reports/heldout-v5/results.md",), slow=True),
    "airnet eval --weights airnet-general --weights airnet-lite --heldout runs/heldout-photos --crop 192 "
    "--device cpu --grid 9 --out reports/heldout-v4": Plan(creates=("reports/heldout-v4/results.md",), slow=True),
    "airnet eval --weights airnet-general --weights airnet-lite --heldout runs/heldout-photos --crop 192 "
    "--device cpu --grid 9 --anchor 0 --out reports/heldout-v3": Plan(creates=("reports/heldout-v3/results.md",), slow=True),
    "airnet eval --weights airnet-general --weights airnet-lite --heldout runs/heldout-photos --crop 192 "
    "--device cpu --strength 1 --anchor 0 --out reports/heldout-v2": Plan(creates=("reports/heldout-v2/results.md",), slow=True),
    "airnet eval --weights airnet-lite --set noise15=$P --set noise25=$P --set noise50=$P --set rain=$P --set haze=$P "
    "--include Storm.png,LadyBird.png,coffee.png,friends_by_Aitzol_Berasategi.png,Path.png,"
    "Bridge_by_Sander_Klootwijk.png --crop 512 --grid 6 --out reports/airnet-lite": Plan(
        creates=("reports/airnet-lite/results.md",), slow=True),
    "airnet train configs/lite.yaml --run-dir runs/lite --name airnet-lite": Plan(
        extra=SMALL + PHOTOS_LITE, slow=True),
    "airnet train configs/lite.yaml --run-dir runs/lite --name airnet-lite --resume auto "
    "--set train.lr_joint=2.5e-4 --set train.ema=0.999": Plan(extra=SMALL + PHOTOS_LITE + " --set train.epochs=2"),
    "airnet convert runs/lite/best.safetensors src/airnet_restore/assets/airnet-lite.safetensors --half": Plan(
        creates=("src/airnet_restore/assets/airnet-lite.safetensors",)),
    # GPU and several GPUs
    "python training/sprint.py --config configs/general.yaml --resume training/airnet-general-pool/state.pt "
    "--set 'train.freeze=[encoder]' --set train.lr=1e-4 --set train.lr_joint=1e-4 --minutes 8 "
    "--out OUT --device cuda --name airnet-general --wheels .whl": Plan(
        cuda=True, extra="--minutes 0.1 --set data.patch_size=32 --set val.crop=32" + PHOTOS_GENERAL, creates=("OUT/state.pt",)),
    "PYTHONPATH=src python benchmarks/gpu_check.py OUT --quick": Plan(cuda=True, creates=("OUT/gpu_check.md",)),
    "airnet train configs/aio.yaml --device cuda": Plan(cuda=True, extra=TINY_AIO),
    "torchrun --nproc_per_node=4 -m airnet_restore train configs/aio.yaml": Plan(
        extra=TINY_AIO, slow=True),
    "torchrun --nnodes=2 --node_rank=$NODE_RANK --nproc_per_node=8 --master_addr=HOST0 --master_port=29500 "
    "-m airnet_restore train configs/aio.yaml": Plan(skip="needs two machines, the first reachable as HOST0"),
}


@dataclass(frozen=True)
class Block:
    """One fenced block of README.md."""

    id: str
    lang: str
    text: str

    def commands(self) -> list[str]:
        """Its shell commands: continued lines joined, comments and blank lines dropped."""
        joined = re.sub(r"\s*\\\n\s*", " ", self.text)
        return [c for c in (re.sub(r"(^|\s)#.*$", "", line).strip() for line in joined.splitlines()) if c]

    def plans(self) -> list[tuple[str, Plan | None]]:
        return [(c, COMMANDS.get(c)) for c in self.commands()]


def document_blocks(path: Path) -> list[Block]:
    """The fenced blocks of one document, named ``page/section`` (numbered where a section has several)."""
    page = path.stem.lower()
    found: list[tuple[str, str, str]] = []
    section, lang, body = "top", None, []
    for line in path.read_text().splitlines():
        fence = re.match(r"^```(\S*)\s*$", line)
        if lang is not None:
            if fence and not fence[1]:
                found.append((section, lang, "\n".join(body)))
                lang = None
            else:
                body.append(line)
        elif fence:
            lang, body = fence[1], []
        elif line.startswith("#"):
            section = re.sub(r"[^a-z0-9]+", "-", line.lstrip("#").lower()).strip("-")
    counts = {s: [f[0] for f in found].count(s) for s, _, _ in found}
    seen: dict[str, int] = {}
    blocks = []
    for s, lang, text in found:
        seen[s] = seen.get(s, 0) + 1
        blocks.append(Block(f"{page}/{s}" if counts[s] == 1 else f"{page}/{s}-{seen[s]}", lang, text))
    return blocks


def readme_blocks() -> list[Block]:
    """The fenced blocks of every document."""
    return [b for path in DOCUMENTS for b in document_blocks(path)]


BLOCKS = readme_blocks()
CODE = [b for b in BLOCKS if b.lang in SHELL or b.lang == "python"]


def _param(block: Block):
    """The block as a test case, slow where one of its commands is, else marked docs: CI runs those with
    ``pytest -m docs`` (the README's blocks too: the default run restores the sample in tests/test_variants.py)."""
    slow = any(p is not None and p.slow for _, p in block.plans())
    return pytest.param(block, id=block.id, marks=[pytest.mark.slow] if slow else [pytest.mark.docs])


def test_every_documented_command_has_a_plan():
    """A new command in README.md or docs/ must be run or skipped with a reason here; a plan must name a README command."""
    commands = {c for b in CODE if b.lang in SHELL for c in b.commands()}
    missing = sorted(commands - COMMANDS.keys())
    assert not missing, f"documented commands without a plan in COMMANDS (run, made small, or skipped with a reason): {missing}"
    stale = sorted(COMMANDS.keys() - commands)
    assert not stale, f"plans whose command is no longer in README.md or docs/: {stale}"
    other = {b.id for b in BLOCKS if b not in CODE}
    assert other == NOT_CODE.keys(), f"blocks neither shell nor python: {other}; NOT_CODE lists {set(NOT_CODE)}"


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """A small synthetic RGB photo: gradients, a disc and mild texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    disc = ((y - h / 2) ** 2 + (x - w / 3) ** 2 < (h / 4) ** 2) * 80.0
    img = np.stack([x * 2 + 40 * seed, y * 3, (x + y) + disc], axis=2) + rng.normal(0, 4, (h, w, 3))
    return np.clip(img % 256, 0, 255).astype(np.uint8)


def save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A working folder holding everything the documented commands name; ``photos/`` stands for the user's photos."""
    work = tmp_path / "work"
    photos = work / "photos"
    names = [*VALIDATION, "Aqua.png", "Blinds.png"]
    for i, name in enumerate(names):
        save(photos / name, photo(64, 64, i))
    (photos / "sources.json").write_text(json.dumps({Path(n).stem: {"source": "synthetic", "licence": "CC0"}
                                                     for n in names}))
    shutil.copytree(REPO / "configs", work / "configs")
    shutil.copytree(REPO / "benchmarks", work / "benchmarks")
    for name in ("training/sprint.py", "training/store_postfilter.py", "training/airnet-lite/state.pt",
                 "training/airnet-general-pool/state.pt",
                 "src/airnet_restore/assets/airnet-general-v8.safetensors"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)  # read only: the documented commands copy them
        (work / name).symlink_to(REPO / name)
    # configs/my.yaml of docs/training.md: a model wider than the default, initialised from it where shapes fit.
    (work / "configs" / "my.yaml").write_text(
        "model: {n_feats: 32, n_groups: 3, n_blocks: 3, enc_channels: [24, 64, 128], dim: 128}\n"
        "data: {types: [{name: noise_any, clean: photos}], patch_size: 32}\n"
        "val: {clean: photos, files: [Storm.png], degradations: [noise_any], crop: 32}\n"
        "train: {epochs: 1, iters_per_epoch: 1}\n")
    # noisy.png is really noisy (sigma 25), so the examples that inspect it print what they say they print.
    noisy = photo(128, 160, 3).astype(np.float32) + np.random.default_rng(0).normal(0, 25, (128, 160, 3))
    save(work / "noisy.png", np.clip(noisy, 0, 255).round().astype(np.uint8))
    for name, i in (("photo.jpg", 1), ("big.jpg", 2), ("hazy.jpg", 11), ("scans/a.png", 4), ("scans/old/b.png", 5),
                    ("shots/day1.png", 6), ("shots/x/day2.png", 7), ("new_photos/new.png", 8)):
        save(work / name, photo(48, 64, i))
    cv2.imwrite(str(work / "raw16.tif"), photo(40, 56, 9).astype(np.uint16) * 257)
    torch.manual_seed(0)
    official = AirNet(AirNetConfig(n_feats=8, n_groups=1, n_blocks=1, enc_channels=(8, 8, 16), dim=16, queue_size=16))
    torch.save(official.state_dict(), work / "All.pth")
    data = work / "data"
    for i in range(2):
        clean = photo(64, 64, 10 + i)
        save(data / "Train/Denoise" / f"{i}.png", clean)
        save(data / "Train/Derain/rainy" / f"rain-{i}.png", photo(64, 64, 20 + i))
        save(data / "Train/Derain/gt" / f"norain-{i}.png", clean)
        save(data / "Train/Dehaze/synthetic/part1" / f"{i}_0.8_0.1.png", photo(64, 64, 30 + i))
        save(data / "Train/Dehaze/original" / f"{i}.png", clean)
        save(data / "test/denoise/bsd68" / f"{i}.png", clean)
        save(data / "test/derain/Rain100L/input" / f"{i}.png", photo(64, 64, 20 + i))
        save(data / "test/derain/Rain100L/target" / f"{i}.png", clean)
        save(data / "test/dehaze/input" / f"{i}_0.8_0.1.png", photo(64, 64, 30 + i))
        save(data / "test/dehaze/target" / f"{i}.png", clean)
        save(work / "my_pairs/input" / f"{i}.png", photo(64, 64, 20 + i))
        save(work / "my_pairs/target" / f"{i}.png", clean)
    # The photo pool's training and validation splits, as `python data/photo_pool.py` builds them (smaller).
    for i, name in enumerate(("training/a.png", "training/b.png", "validation/scikit-image-coffee.png",
                              "validation/scipy-face.png")):
        save(data / "pool" / name, photo(64, 64, 40 + i))
    for name in ("Storm.png", "coffee.png"):
        save(work / "runs/heldout-photos" / name, np.asarray(Image.open(photos / name)))
        save(work / "heldout" / name, np.asarray(Image.open(photos / name)))
    return work


def environment() -> dict[str, str]:
    """The commands' environment: README variables, ``python`` and ``airnet`` of this interpreter first on PATH."""
    return {**THREADS, **os.environ, **ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run(args: list[str] | str, cwd: Path) -> str:
    """Run a command (a string goes through bash); it must succeed. Returns its standard output."""
    cmd = ["bash", "-c", args] if isinstance(args, str) else args
    done = subprocess.run(cmd, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{args}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def example_outputs(code: str) -> list[str]:
    """The lines a Python block says it prints: ``print(...)  # e.g. LINE``."""
    return [m[1].strip() for m in re.finditer(r"^\s*print\(.*\)\s*#\s*e\.g\.\s*(.+)$", code, flags=re.M)]


def shape(line: str) -> str:
    """A pattern for lines of ``line``'s form: every number may differ, with as many decimals."""
    parts = re.split(r"(\d+(?:\.\d+)?)", line)
    return "".join(r"\d+" + (r"\.\d{" + str(len(p.split(".")[1])) + "}" if "." in p else "") if i % 2 else re.escape(p)
                   for i, p in enumerate(parts))


def test_shape_tells_the_printed_form():
    assert re.fullmatch(shape("noise (confidence 0.97, sigma 24.6)"), "noise (confidence 0.84, sigma 30.9)")
    assert not re.fullmatch(shape("noise (confidence 0.97, sigma 24.6)"), "noise 0.8412 30.912 None")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except OSError:  # refused, reset, HTTP error, timeout
        return False


@contextmanager
def serving(command: str, cwd: Path, url: str) -> Iterator[None]:
    """Run a server command in the background; enter once ``url`` answers, stop the server on exit."""
    assert not answers(url), f"{url} answers before {command!r} started: the port is taken"
    log = cwd.parent / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=environment(), stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not answers(url):
            assert server.poll() is None, f"{command!r} exited {server.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{url} did not answer within 300 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.parametrize("block", [_param(b) for b in CODE])
def test_readme_block(block: Block, sandbox: Path):
    """Each command of the block succeeds in the sandbox and writes what it should."""
    if block.lang == "python":
        printed = run([sys.executable, "-c", block.text], sandbox).splitlines()
        for example in example_outputs(block.text):
            assert any(re.fullmatch(shape(example), line) for line in printed), \
                f"the example says it prints {example!r}; it printed {printed}"
        return
    skipped = []
    with ExitStack() as servers:
        for command, plan in block.plans():
            assert plan is not None, f"no plan in COMMANDS for the README command {command!r}"
            reason = plan.skip or ("needs CUDA" if plan.cuda and not torch.cuda.is_available() else "")
            if reason:
                skipped.append(f"{command}: {reason}")
                continue
            if plan.serves:
                servers.enter_context(serving(f"{command} {plan.extra}", sandbox, plan.serves))
            else:
                run(f"{command} {plan.extra}", sandbox)
            for path in plan.creates:
                assert (sandbox / path).is_file(), f"{command!r} did not write {path}"
    if len(skipped) == len(block.commands()):
        pytest.skip("; ".join(skipped))
