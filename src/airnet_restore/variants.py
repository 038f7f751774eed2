"""Named model variants as data: each one a descriptor of what a caller must know about the model.

In the manner of spandrel's model descriptor and timm's pretrained config, a ``Variant`` holds the
architecture, where its weights come from and their sha256, the licence, the tasks the weights were
trained for, whether half precision is safe, the smallest input, tiling and memory per pixel.
``loading.load_model`` (whose ``ModelDescriptor`` carries the variant to the tiler and the padding),
``airnet info`` and the ONNX export read these facts here; this module holds data only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from airnet_restore.architecture import AirNetConfig
from airnet_restore.constants import (
    BYTES_PER_PIXEL_PER_CHANNEL,
    DEFAULT_OVERLAP,
    DEFAULT_VARIANT,
    MIN_SIDE,
    bytes_per_pixel_per_channel,
)
from airnet_restore.degradations.general import GENERAL_TYPES
from airnet_restore.errors import AirNetError

if TYPE_CHECKING:
    import torch

OFFICIAL_REPO = "https://github.com/XLearning-SCU/2022-CVPR-AirNet"
OFFICIAL_SOURCE = (
    "the authors' Google Drive folder https://drive.google.com/drive/folders/1DS_iJsP5Epzz78fZRz8lEINcnhBF6Uws "
    f"or Baidu Netdisk https://pan.baidu.com/s/1usrpGA8FIyj1ogsZQE_Emg (password cr7d), linked from {OFFICIAL_REPO}"
)
# The repository's git history holds ckpt/All.pth (not the others); `git hash-object All.pth` prints this id.
ALL_IN_GIT = "; also ckpt/All.pth in that repository's git history (git blob 9eb4389b8e340133841e4f9884e3fabc3a92e3c2)"
OFFICIAL_LICENCE = f"none stated: {OFFICIAL_REPO} has no licence file; ask the authors before redistributing"
BUNDLED_LICENCE = (
    "weights trained on photographs under GPL-2+, LGPL-3, CC-BY-4.0, CC-BY-SA-3.0/4.0, CC0 and public domain; "
    "see assets/CREDITS.md for authors and sources"
)
DCN_FP32 = "deformable convolutions sample in fp32 (under bf16 on a CPU their matrix product runs in bf16)"


def weights_dir() -> Path:
    """Where weights that are not bundled are looked for: ``$AIRNET_WEIGHTS_DIR``, else ``~/.cache/airnet-restore``."""
    return Path(os.environ.get("AIRNET_WEIGHTS_DIR") or Path.home() / ".cache" / "airnet-restore")


def assets_dir() -> Path:
    """Where the files bundled with the package live (weights, haze maps, the sample)."""
    return Path(str(resources.files("airnet_restore") / "assets"))


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Weights:
    """A variant's weight file: its name, where it comes from, and the sha256 of its bytes (None where unknown)."""

    file: str
    source: str
    sha256: str | None = None
    bundled: bool = False


@dataclass(frozen=True)
class Variant:
    """A named model: its architecture and the facts a caller needs to use its weights."""

    name: str
    config: AirNetConfig
    description: str
    licence: str
    tasks: tuple[str, ...] = ()  # what the weights were trained for (degradation names where registered)
    training_data: str = "none"
    weights: Weights | None = None
    half_safe: bool | None = None  # fp16/bf16 restore measured against fp32; None: not measured
    half_note: str = "not measured"
    min_side: int = MIN_SIDE

    def bytes_per_pixel(self, device: torch.device) -> int:
        """Peak bytes one pixel takes in an inference forward on ``device`` (sizes tiles)."""
        return bytes_per_pixel_per_channel(device.type) * self.config.n_feats

    def weights_path(self) -> Path | None:
        """The weight file if it is here (bundled, or put in ``weights_dir()``), else None."""
        if self.weights is None:
            return None
        folder = assets_dir() if self.weights.bundled else weights_dir()
        path = folder / self.weights.file
        return path if path.is_file() else None

    def checked_weights(self) -> Path:
        """The weight file, its sha256 checked where known; else a one-line ``AirNetError`` saying where to get it."""
        if self.weights is None:
            raise AirNetError(f"variant {self.name!r} ships without weights; pass a weights file "
                              f"(official .pth or our .safetensors) instead")
        path = self.weights_path()
        if path is None:
            raise AirNetError(f"variant {self.name!r} needs {self.weights.file}, which is not bundled: get it from "
                              f"{self.weights.source}, then put it in {weights_dir()} or pass its path")
        if self.weights.sha256 and file_sha256(path) != self.weights.sha256:
            raise AirNetError(f"{path}: sha256 differs from {self.name}'s registered {self.weights.sha256[:16]}...: "
                              f"the file is corrupt or another file; get it again from {self.weights.source}")
        return path

    def facts(self) -> dict[str, str]:
        """The descriptor as text, for ``airnet info`` and the ONNX metadata."""
        w = self.weights
        memory = ", ".join(f"{t} {bytes_per_pixel_per_channel(t) * self.config.n_feats:,} B" for t in BYTES_PER_PIXEL_PER_CHANNEL)
        return {
            "name": self.name,
            "description": self.description,
            "licence": self.licence,
            "tasks": ", ".join(self.tasks) or "none (no weights)",
            "training": self.training_data,
            "weights": "none" if w is None else f"{w.file}: {w.source}",
            "sha256": "none" if w is None else w.sha256 or "unknown (not published), not checked",
            "half_precision": f"{_safety(self.half_safe)}: {self.half_note}; {DCN_FP32}",
            "min_size": f"{self.min_side}: reflect-pad smaller sides to {self.min_side} px and crop the output back",
            "tiling": f"the restorer is local, so tiles are sound: overlap tiles by {DEFAULT_OVERLAP} px and "
            "cross-fade the overlaps (as `airnet restore` does); memory grows with tile area",
            "memory_per_pixel": f"{memory} at inference (peak, per pixel of a tile)",
            "config": json.dumps(self.config.to_dict()),
        }

    def summary(self) -> str:
        """What ``airnet info`` prints: sizes, where the weights are, and the descriptor."""
        n_r, n_e, n_all = parameter_counts(self.config)
        path = self.weights_path()
        found = f"here: {path}" if path else "not bundled, not found" if self.weights else "none"
        default = " (default)" if self.name == DEFAULT_VARIANT else ""
        lines = [f"{self.name}{default}: restorer {n_r:,} + encoder {n_e:,} x 2 = {n_all:,} parameters; weights {found}",
                 f"    {self.description}"]
        skip = {"name", "description", "config"}
        lines += [f"    {k.replace('_', ' ')}: {v}" for k, v in self.facts().items() if k not in skip]
        return "\n".join(lines)


def parameter_counts(config: AirNetConfig) -> tuple[int, int, int]:
    """Parameters of the restorer, of one encoder (query or key) and of the whole model, counted from the
    config's layer sizes without building the model (building the paper's took 0.2 s of ``airnet info``); the
    queue and the BatchNorm statistics are buffers, not parameters. tests/test_info.py checks these against
    ``AirNet(config)``."""
    def conv(i: int, o: int, k: int, bias: bool = True) -> int:
        return i * o * k * k + (o if bias else 0)

    c, inter = config.n_feats, config.enc_channels[0]
    dgm = (conv(c, c, 3, False) + conv(c + inter, 27, 3) if config.dcn else conv(c, c, 3, False))
    dgm += 2 * (conv(inter, c, 1, False) + conv(c, c, 1, False)) if config.sft else 0
    block = 2 * dgm + 2 * conv(c, c, 3)
    group = config.n_blocks * block + conv(c, c, 3)
    restorer = conv(3, c, 3) + config.n_groups * group + conv(c, c, 3) + conv(c, 3, 3)

    def res_block(i: int, o: int) -> int:  # two 3x3 convs and a 1x1 shortcut, no bias, each with a BatchNorm
        return conv(i, o, 3, False) + conv(o, o, 3, False) + conv(i, o, 1, False) + 3 * 2 * o

    c0, c1, c2 = config.enc_channels
    encoder = res_block(3, c0) + res_block(c0, c1) + res_block(c1, c2) + conv(c2, config.dim, 1) + conv(config.dim, config.dim, 1)  # the MLP's two Linears
    return restorer, encoder, restorer + 2 * encoder


def _safety(safe: bool | None) -> str:
    return {True: "safe", False: "unsafe", None: "unknown"}[safe]


def describe(name: str, config: AirNetConfig, metadata: Mapping[str, str]) -> Variant:
    """The descriptor of a weights file that is no registered variant, from what its metadata says."""
    try:
        types = json.loads(metadata.get("training", "{}"))["config"]["data"]["types"]
        tasks = tuple(dict.fromkeys(t.get("degradation") or t["name"] for t in types))
    except (ValueError, KeyError, TypeError):
        tasks = ()
    return Variant(name=name, config=config, description=metadata.get("description", ""),
                   licence=metadata.get("licence", "unspecified"), tasks=tasks,
                   training_data=metadata.get("training_data", metadata.get("source", "unknown")))


# CPU-sized architecture: 24 channels, 3 groups x 3 blocks (467 k parameters needed at inference).
LITE = AirNetConfig(n_feats=24, n_groups=3, n_blocks=3, enc_channels=(24, 64, 128), dim=128)
PAPER_NOISE = ("noise15", "noise25", "noise50")
TRAINING_PHOTOS = "34 real photographs (the earlier training set, assets/CREDITS.md; 6 more for validation), degraded on the fly"
POOL_LICENCE = ("weights trained on photographs in the public domain or under CC0-1.0, CC-BY-2.0/3.0/4.0, CC-BY-SA-3.0/4.0, "
                "GPL-2+, LGPL-2.1+ and LGPL-3.0; see assets/CREDITS.md for authors and sources")
POOL_PHOTOS = ("the 34 earlier photographs, then the photo pool's 178 training photographs (Debian packages and the "
               "scikit-image, matplotlib, scikit-learn and scipy wheels; data/README.md), degraded on the fly")


def _official(name: str, file: str, queue: int, tasks: tuple[str, ...], data: str, what: str, source: str) -> Variant:
    """An official checkpoint of the authors: the paper's architecture with a queue of ``queue`` keys."""
    return Variant(
        name=name,
        config=AirNetConfig(queue_size=queue),
        description=f"the authors' official {file} ({what}), about 37 MB; loaded unchanged, never downloaded by this project.",
        licence=OFFICIAL_LICENCE,
        tasks=tasks,
        training_data=data,
        weights=Weights(file, source),
    )


def _general(name: str, description: str, step: int, sha256: str, half_note: str, run: str = "training/airnet-general",
             data: str = TRAINING_PHOTOS, licence: str = BUNDLED_LICENCE) -> Variant:
    """A bundled release of airnet-general's training (the run folder ``run``): the EMA weights of ``step``."""
    return Variant(
        name=name,
        config=LITE,
        description=description,
        licence=licence,
        tasks=GENERAL_TYPES,
        training_data=data,
        weights=Weights(f"{name}.safetensors", f"bundled with airnet-restore ({run}, step {step})",
                        sha256, bundled=True),
        half_safe=True,
        half_note=half_note,
    )


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            name="airnet",
            config=AirNetConfig(),
            description="the paper's architecture (CVPR 2022): 5 groups x 5 blocks at 64 channels, 8.93 M parameters. "
            "No weights are bundled: load the official All.pth (airnet-all) or train your own.",
            licence="MIT (the code; no weights)",
        ),
        Variant(
            name="airnet-lite",
            config=LITE,
            description="a narrower, shallower AirNet for CPUs (the default until v2), trained by this project on "
            "real photographs with the paper's noise (sigma 15/25/50), one rain and one haze model; strong on "
            "Gaussian noise, but it darkens clean photos and does not remove rain unlike its training rain.",
            licence=BUNDLED_LICENCE,
            tasks=(*PAPER_NOISE, "rain", "haze"),
            training_data=TRAINING_PHOTOS,
            weights=Weights("airnet-lite.safetensors", "bundled with airnet-restore (training/airnet-lite)",
                            "d73be4a32429aad7b163fb29236fd9778c1d5b55fff451e051d007f8ecb6c16a", bundled=True),
            half_safe=True,
            half_note="the bundled sample restored in fp16/bf16 is 77.5/57.8 dB from fp32 (H100), 79.2/59.0 dB (CPU)",
        ),
        _general("airnet-general", "airnet-lite's architecture trained further on the general family (clean photos, "
                 "noise of any level and form, randomised rain and haze, mixtures): the default of `airnet restore` in "
                 "v2-v4; much gentler on clean photos and better on unseen rain than airnet-lite.", 2640,
                 "b620c31e8379ce3d6f1cf21d19de555ef9e85beb5d912b2c8622a05f487f4198",
                 "the bundled sample restored in fp16/bf16 is 79.3/58.6 dB from fp32 (CPU); trained with bf16 autocast"),
        _general("airnet-general-v5", "airnet-general trained 1,360 steps further on a CPU with three noise slots in "
                 "eight (EMA weights of step 4000): the default of `airnet restore` in v5-v6; better on unseen rain and "
                 "clean photos than airnet-general, within 0.2 dB on noise.", 4000,
                 "48a028856f586ff84816213223a07e9c5c896944dd63fe9afd708e6491b2f444",
                 "the bundled sample restored in fp16/bf16 is 79.3/59.1 dB from fp32 by the network alone, "
                 "95.0/73.6 dB with the default blend (CPU)"),
        _general("airnet-general-v7", "airnet-general-v5 trained 1,680 steps further on a CPU (EMA weights of step "
                 "5680, the best validation yet): the default of `airnet restore` from v7; better on noise and rain than "
                 "airnet-general-v5, a little worse on haze.", 5680,
                 "c2cbae029c0b4515520fa059b29d4c3f8a3f63bf3a5d201eb18af7c663cc0c68",
                 "the bundled sample restored in fp16/bf16 is 79.3/58.5 dB from fp32 by the network alone, "
                 "103.5/81.3 dB with the default blend (CPU)"),
        _general("airnet-general-v8", "airnet-general-v7's training continued 1,820 steps on a CPU, the last 992 "
                 "with a second haze+noise slot and haze also mixed in light (EMA weights of step 7500): the default of "
                 "`airnet restore` from v8; better on dense haze and haze with noise than airnet-general-v7, a little worse on "
                 "light noise.", 7500,
                 "e39d22932a55dc6ba79d01c30730f158e7c2de21166d3221ea9ab2416dd1b2d8",
                 "the bundled sample restored in fp16/bf16 is 79.3/58.0 dB from fp32 by the network alone, "
                 "103.4/79.5 dB with the default blend (CPU)"),
        _general("airnet-general-v9", "airnet-general-v8's network unchanged, with detectors recalibrated on the photo pool "
                 "(178 training photos; thresholds from a do-no-harm policy chosen on the 45 validation photos: at most 5 % "
                 "of clean validation photos and crops get more than 0.2 of the correction; benchmarks/detector_policy.py, "
                 "reports/detectors): far fewer clean photos touched than v8 (held-out: 18 % against 78 %), more "
                 "light rain and haze missed. Opt-in until it beats v8 on both held-out sets.", 7500,
                 "68c1966a06a9f11363b2bb3ffad4e7c8177764c8addd99dc61f3fb1cb135bb4c",
                 "the network is airnet-general-v8's: the bundled sample restored in fp16/bf16 is 79.3/58.0 dB from fp32 by "
                 "the network alone (CPU)"),
        _general("airnet-general-v10", "airnet-general-v8's network trained 2,500 steps further on the photo pool's 178 "
                 "training photos (encoder frozen; EMA weights), with airnet-general-v9's detectors and a post-filter that "
                 "checks the network's output unless the detectors are all but sure: on held-out photos far fewer clean "
                 "photos touched than v8 (2 of 41 below 40 dB against 14) and better on noise and haze, but less rain "
                 "removed (v9's detectors miss light rain). Opt-in until it beats v8 on both held-out sets.", 2500,
                 "9db72d7548a8f6c198bfa5997aba02edb912c31398c4745fd5e5d246f1a63476",
                 "the bundled sample restored in fp16/bf16 is 79.2/59.5 dB from fp32 by the network alone, "
                 "106.3/86.3 dB with the default blend (CPU)", run="training/airnet-general-pool", data=POOL_PHOTOS, licence=POOL_LICENCE),
        _general("airnet-general-v11", "airnet-general-v10 (network, detectors, post-filter) with the post-filter's rain "
                 "band on: where the detectors find rain, the thin bright streaks that the network removed are removed from "
                 "the blended output too (postfilter/rain.py): on validation photos +1.6 dB over the input on held-out-style "
                 "rain against v10's +0.6, two more clean crops that the detectors take for rain smoothed "
                 "(reports/rain/README.md). Opt-in until it beats v8 on both held-out sets.", 2500,
                 "4742bb7e6f2c140f5572a05996de67d7f5235740b1f812cb8729737dc4411c83",
                 "the network is airnet-general-v10's: the bundled sample restored in fp16/bf16 is 79.2/59.5 dB from fp32 by "
                 "the network alone (CPU)", run="training/airnet-general-pool", data=POOL_PHOTOS, licence=POOL_LICENCE),
        _general("airnet-general-v12", "airnet-general-v11 (network, detectors, post-filter) with the rain band judging "
                 "rain beside noise too: where noise is found, the detectors judge the noise model's estimate of the image "
                 "again, which noise does not hide rain in (postfilter/rain.py): on validation photos rain+noise +4.06 dB "
                 "over the input against v11's +3.68, noise-only photos within 0.6 dB of v11's "
                 "(reports/rain/README.md). Opt-in until it beats v8 on both held-out sets.", 2500,
                 "a6b40ac5110eb35a413519c880a96b2a892f6895ce74653eefaba00cc714adaa",
                 "the network is airnet-general-v10's: the bundled sample restored in fp16/bf16 is 79.2/59.5 dB from fp32 by "
                 "the network alone (CPU)", run="training/airnet-general-pool", data=POOL_PHOTOS, licence=POOL_LICENCE),
        _general("airnet-general-v13", "airnet-general-v12 (network, detectors, post-filter) with the rain band judging "
                 "the shape of what the network removed too: where it is not elongated along a near-vertical line (texture, "
                 "not streaks) the detectors' call of rain is dropped, where it clearly is the band works even if the "
                 "detectors found no rain (postfilter/rain.py): on validation photos rain +2.28 dB over the input (median "
                 "+2.22) against v12's +1.61 (+1.10), one clean crop fewer below 35 dB "
                 "(reports/rain/README.md). Opt-in until it beats v8 on both held-out sets.", 2500,
                 "53e8483b768e390d71a16d343f149b71839ae4ba6e2ccdbed194343765056911",
                 "the network is airnet-general-v10's: the bundled sample restored in fp16/bf16 is 79.2/59.5 dB from fp32 by "
                 "the network alone (CPU)", run="training/airnet-general-pool", data=POOL_PHOTOS, licence=POOL_LICENCE),
        _general("airnet-general-v14", "airnet-general-v8 (network, detectors, post-filter) with the haze band on, "
                 "dehazing with the bundled haze map (models/hazemap.py, a small network trained on the photo pool's "
                 "synthetic haze) in place of the dark channel prior: where the detectors find haze, the output moves "
                 "towards the map of the input by the band's confidence (postfilter/haze.py). On validation photos "
                 "held-out-style haze 18.01 dB against v8's 16.61 and the dark channel prior's 16.03, but clean photos with real "
                 "haze of their own are dehazed too (worst clean crop 18.7 dB, v8 25.6) (reports/haze-map/README.md). "
                 "Opt-in until it beats v8 on both held-out sets.", 7500,
                 "e3df9b97e3941f713feb29eaa86c5f51b85942c4ff507488ba37461dccd49e57",
                 "the network is airnet-general-v8's: the bundled sample restored in fp16/bf16 is 79.3/58.0 dB from fp32 by "
                 "the network alone (CPU)"),
        _official("airnet-all", "All.pth", 5 * 256, (*PAPER_NOISE, "rain", "haze"),
                  "BSD400 + WED (noise), Rain100L training set (rain), RESIDE OTS (haze)",
                  "the paper's all-in-one model, the one for unknown corruption", OFFICIAL_SOURCE + ALL_IN_GIT),
        _official("airnet-denoise", "Denoise.pth", 3 * 256, PAPER_NOISE, "BSD400 + WED", "Gaussian noise only",
                  OFFICIAL_SOURCE),
        _official("airnet-derain", "Derain.pth", 256, ("rain",), "Rain100L training set (200 images)",
                  "Rain100L-style rain only", OFFICIAL_SOURCE),
        _official("airnet-dehaze", "Dehaze.pth", 256, ("haze",), "RESIDE OTS", "SOTS-style haze only", OFFICIAL_SOURCE),
    )
}


def sample_image() -> Path:
    """The bundled sample: a noisy (sigma 25) crop of scikit-image's CC0 'coffee' photograph."""
    return assets_dir() / "sample_noisy.png"


def list_variants() -> list[Variant]:
    """All registered variants, in registration order."""
    return list(VARIANTS.values())


def get_variant(name: str) -> Variant:
    """The registered variant ``name``; an unknown name is an ``AirNetError`` listing them."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise AirNetError(f"unknown model variant {name!r}; registered: {', '.join(VARIANTS)}") from None
