"""How the network's correction reaches the output: its strength, and the input's tones kept.

With ``c = f(x) - x`` the correction of the network ``f`` on the image ``x``, the output is

    x + strength * (c - anchor * G(m(x + c) - x))

``strength`` scales the whole correction. ``anchor`` drops the low frequencies of the difference
between the input and the network's output as the noise would have left it (``m``: the mean of
the output under clipped Gaussian noise of the estimated sigma; ``G``: a Gaussian blur), so the
output keeps the input's tones and colours while taking the network's detail. Noise leaves an
image's local means alone except where it is clipped at black and white, which ``m`` accounts
for (without noise, ``m(x + c) - x = c``). Haze and rain change the tones themselves, so
``"auto"`` anchors by the probability that no such corruption is present, judged by the weights'
degradation prototypes. It corrects the small restorers' habit of shifting tones
(``benchmarks/anchor.py``: airnet-general darkens most clean photos by 1-7 levels, some far more).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torchvision.transforms.v2.functional import gaussian_blur

from airnet_restore.errors import AirNetError
from airnet_restore.inference.tiling import Forward

if TYPE_CHECKING:
    from airnet_restore.inspection import Inspection

Fraction = float | Literal["auto"]

# Corruption families that leave an image's local means alone (up to clipping). Every other
# family a probe was calibrated on, custom ones included, is taken to move them.
MEAN_PRESERVING = frozenset({"noise"})
# Blur of the anchored band, in pixels per unit of noise sigma (0-255 scale), between the bounds:
# less blur keeps more of the input's tones, more lets less of its noise back in. Chosen on the
# training photos and families, not the held-out set (benchmarks/anchor.py, benchmarks/README.md).
SIGMA_PER_NOISE_LEVEL = 1 / 8
MIN_SIGMA, MAX_SIGMA = 2.0, 5.0
# The blur reaches 3 x MAX_SIGMA = 15 px: inside a tile's context margin (a quarter of the
# overlap) for tile overlaps of 60 px or more (the default is 64), where tiling leaves it exact.
MEANINGS = {"strength": "0 (leave the image as it is) to 1 (the network's output as it is)",
            "anchor": "0 (the network's tones) to 1 (the input's tones)"}


def check_fraction(name: str, value: object) -> None:
    """Refuse ``value`` for option ``name`` (strength, anchor) unless it is "auto" or a number in [0, 1]."""
    if isinstance(value, str) and value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise AirNetError(f"{name} must be 'auto' or a number from {MEANINGS.get(name, '0 to 1')}, got {value!r}")


@dataclass(frozen=True)
class Blend:
    """A resolved blend: ``x + strength * (c - anchor * G(m(x + c) - x))`` for the correction ``c``;
    ``noise``: the noise sigma (0-255 scale) that ``m`` clips and the blur widens with.

    The default is the network's output as it is."""

    strength: float = 1.0
    anchor: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        for name in ("strength", "anchor"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise AirNetError(f"{name} must be a number from {MEANINGS[name]} in a Blend "
                                  f"('auto' is resolved by resolve_blend), got {value!r}")
            check_fraction(name, value)
            object.__setattr__(self, name, float(value))
        if isinstance(self.noise, bool) or not isinstance(self.noise, numbers.Real) or not 0.0 <= float(self.noise) <= 255.0:
            raise AirNetError(f"blend noise must be a sigma from 0 to 255, got {self.noise!r}")
        object.__setattr__(self, "noise", float(self.noise))

    @property
    def sigma(self) -> float:
        """The blur of the anchored band, in pixels: wider for stronger noise (less of it leaks back)."""
        return min(MAX_SIGMA, max(MIN_SIGMA, self.noise * SIGMA_PER_NOISE_LEVEL))

    def apply(self, network: Forward) -> Forward:
        """``network`` blended: each output from the input and the restored tile, in the input's precision
        (the network is not run at all for strength 0)."""
        if self.strength == 0.0:
            return lambda t: t
        if self.strength == 1.0 and self.anchor == 0.0:
            return network

        def forward(t: torch.Tensor) -> torch.Tensor:
            out = network(t).to(t.dtype).clamp(0, 1)
            c = out - t
            if self.anchor:
                c = c - self.anchor * lowpass(clipped_noise_mean(out, self.noise / 255.0) - t, self.sigma)
            return t + self.strength * c

        return forward

    def describe(self) -> str:
        """``strength 0.97, anchor 0.81``, as output lines show it."""
        return f"strength {self.strength:.2f}, anchor {self.anchor:.2f}"


def lowpass(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B,C,H,W) ``t`` blurred by a Gaussian of ``sigma`` pixels (3 sigma each side, edges reflected;
    less along a side too short for it)."""
    rx, ry = (min(math.ceil(3 * sigma), n - 1) for n in (t.shape[-1], t.shape[-2]))
    return gaussian_blur(t, [2 * rx + 1, 2 * ry + 1], [sigma, sigma]) if rx or ry else t


def clipped_noise_mean(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[clip(y + sigma Z, 0, 1)] for Z standard normal: what noise of ``sigma`` (0-1 scale) leaves of
    the local mean of ``y``, brighter near black and darker near white; ``y`` itself for sigma 0."""
    if sigma <= 0:
        return y
    a, b = -y / sigma, (1 - y) / sigma
    cdf_a, cdf_b = (0.5 * (1 + torch.erf(v / math.sqrt(2))) for v in (a, b))
    pdf_a, pdf_b = (torch.exp(-0.5 * v * v) / math.sqrt(2 * math.pi) for v in (a, b))
    return y * (cdf_b - cdf_a) + sigma * (pdf_a - pdf_b) + (1 - cdf_b)


def auto_anchor(found: Inspection) -> float:
    """The probability that no corruption that moves local means (haze, rain, ...) is present."""
    return math.prod(1.0 - p for family, p in found.presence.items() if family not in MEAN_PRESERVING)


def resolve_blend(model: object, image: Any, strength: Fraction = "auto", anchor: Fraction = "auto") -> tuple[Blend, Inspection | None]:
    """The blend for ``image``, and the inspection behind it.

    ``strength="auto"`` scales the correction by the probability that the image is degraded at all
    (``Inspection.degraded``), judged from the weights' degradation prototypes on the whole image:
    a photo surely clean comes back nearly unchanged, a surely degraded one gets the whole
    correction, one in between part of it (the blend that minimises the expected squared error if
    the probability is right and the network is right where the image is degraded).
    ``anchor="auto"`` keeps the input's tones by the probability that only mean-preserving
    corruption (noise) is present (``auto_anchor``), with the detected noise sigma. Weights
    without prototypes that fit their encoder (the paper's variants, official checkpoints,
    weights trained further than their prototypes, ONNX models) and images under 16 px a side
    get strength 1 and anchor 0: the network's output as is. Numbers are used as given; the image
    is still inspected where the weights allow, so the caller can show what was found.
    ``image``: a (3,H,W) float tensor in [0, 1] or HxWx3 pixels (uint8, uint16 or float).
    """
    from airnet_restore.inspection import model_inspector

    check_fraction("strength", strength)
    check_fraction("anchor", anchor)
    inspector = model_inspector(model)
    try:
        found = inspector.inspect(image) if inspector is not None else None
    except AirNetError:  # too small to inspect: restored as the network does
        found = None
    scale = float(strength) if strength != "auto" else found.degraded if found is not None else 1.0
    keep = float(anchor) if anchor != "auto" else auto_anchor(found) if found is not None else 0.0
    noise = min(255.0, max(0.0, found.sigma)) if found is not None and found.sigma is not None else 0.0
    return Blend(scale, keep, noise), found
