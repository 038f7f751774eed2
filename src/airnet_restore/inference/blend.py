"""How the network's correction reaches the output: its strength, and the input's tones kept.

With ``c = f(x) - x`` the correction of the network ``f`` on the image ``x``, the output is

    x + strength * (c - anchor * G_sigma(c))

``strength`` scales the whole correction; ``anchor`` removes the low-frequency part of it
(``G_sigma``: a Gaussian blur), so the output keeps the input's tones and colours while taking the
network's detail. That is right for corruptions that leave local means alone (zero-mean noise:
a blurred noisy photo is its blurred clean photo, up to a little noise) and wrong for those that
change them (haze lifts and greys the tones; rain brightens), so ``"auto"`` anchors by the
probability that no such corruption is present, judged by the weights' degradation prototypes.
It corrects the small restorers' habit of shifting tones (measured: 2-5 levels darker on most
photos, and much worse on unusual colours; ``benchmarks/README.md``).
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
Strength = Fraction  # the type of the ``strength`` and ``anchor`` options

MEAN_PRESERVING = frozenset({"noise"})  # corruption families that leave an image's local means alone
# Blur of the anchored band, in pixels per unit of estimated noise sigma (0-255 scale), between the
# bounds: less blur keeps more of the input's tones, more blur lets less of its noise back in. Set on
# the training photos and degradation families (noise 15/25/50 and noise_any; not the held-out set).
SIGMA_PER_NOISE_LEVEL = 1 / 8
MIN_SIGMA, MAX_SIGMA = 2.0, 5.0  # 3 x MAX_SIGMA stays inside a tile's context margin (tiling.py)


def check_fraction(name: str, value: object) -> None:
    """Refuse ``value`` for option ``name`` (strength, anchor) unless it is "auto" or a number in [0, 1]."""
    if isinstance(value, str) and value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        meaning = {"strength": "0 (leave the image as it is) to 1 (the network's output as it is)",
                   "anchor": "0 (the network's tones) to 1 (the input's tones)"}[name]
        raise AirNetError(f"{name} must be 'auto' or a number from {meaning}, got {value!r}")


@dataclass(frozen=True)
class Blend:
    """A resolved blend: ``x + strength * (c - anchor * G_sigma(c))`` for the correction ``c``.

    The default is the network's output as it is."""

    strength: float = 1.0
    anchor: float = 0.0
    sigma: float = MIN_SIGMA  # of the Gaussian blur, in pixels

    def __post_init__(self) -> None:
        check_fraction("strength", self.strength)
        check_fraction("anchor", self.anchor)
        if not MIN_SIGMA <= self.sigma <= MAX_SIGMA:
            raise AirNetError(f"blend sigma must be in [{MIN_SIGMA}, {MAX_SIGMA}] pixels, got {self.sigma}")

    def apply(self, network: Forward) -> Forward:
        """``network`` blended: each output from the input and the restored tile, in the input's precision
        (the network is not run at all for strength 0). Per tile, the blur sees the tile's context margin."""
        if self.strength == 0.0:
            return lambda t: t
        if self.strength == 1.0 and self.anchor == 0.0:
            return network

        def forward(t: torch.Tensor) -> torch.Tensor:
            c = network(t).to(t.dtype).clamp(0, 1) - t
            if self.anchor:
                c = c - self.anchor * lowpass(c, self.sigma)
            return t + self.strength * c

        return forward

    def describe(self) -> str:
        """``strength 0.97, anchor 0.81``, as output lines show it."""
        return f"strength {self.strength:.2f}, anchor {self.anchor:.2f}"


def lowpass(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B,C,H,W) ``t`` blurred by a Gaussian of ``sigma`` pixels (3 sigma each side, edges reflected)."""
    radius = min(math.ceil(3 * sigma), min(t.shape[-2:]) - 1)
    if radius < 1:
        return t.mean(dim=(-2, -1), keepdim=True).expand_as(t)
    return gaussian_blur(t, [2 * radius + 1] * 2, [sigma] * 2)


def auto_anchor(found: Inspection) -> float:
    """The probability that no corruption that moves local means (haze, rain, ...) is present."""
    return math.prod(1.0 - p for family, p in found.presence.items() if family not in MEAN_PRESERVING)


def blur_sigma(found: Inspection | None) -> float:
    """The blur for the anchored band: grows with the estimated noise level (fewer leaks back in)."""
    level = found.sigma if found is not None and found.sigma is not None else 0.0
    return min(MAX_SIGMA, max(MIN_SIGMA, level * SIGMA_PER_NOISE_LEVEL))


def resolve_blend(model: object, image: Any, strength: Fraction = "auto", anchor: Fraction = "auto") -> tuple[Blend, Inspection | None]:
    """The blend for ``image``, and the inspection behind it.

    ``strength="auto"`` scales the correction by the probability that the image is degraded at all
    (``Inspection.degraded``), judged from the weights' degradation prototypes on the whole image:
    a photo surely clean comes back nearly unchanged, a surely degraded one gets the whole
    correction, one in between part of it (the blend that minimises the expected squared error if
    the probability is right and the network is right where the image is degraded).
    ``anchor="auto"`` keeps the input's tones by the probability that only mean-preserving
    corruption (noise) is present (``auto_anchor``). Weights without prototypes that fit their
    encoder (the paper's variants, official checkpoints, weights trained further than their
    prototypes, ONNX models) and images under 16 px a side get strength 1 and anchor 0: the
    network's output as is. Numbers are used as given; the image is still inspected where the
    weights allow, so the caller can show what was found.
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
    return Blend(scale, keep, blur_sigma(found)), found
