"""How the network's correction reaches the output: its strength, and how far the input is trusted.

With ``f`` the network and ``c = f(x) - x`` its correction of the image ``x``, the output is

    x + strength * ((1 - anchor) * c + anchor * (W(x - (m(f(x)) - f(x)), f(x)) - x))

``strength`` scales the whole correction. ``anchor`` moves it towards the noise model's estimate
``W``: the input Wiener-filtered in local DCTs for white noise of the estimated sigma, with the
network's output as the pilot, then refined with that estimate as the pilot (``inference/wiener.py``,
``noise_estimate``; the formula shows the first round). That estimate keeps the input's tones and
its detail wherever the pilot finds signal well above the noise, and removes the rest; so it
corrects the small restorers' habits of shifting tones (``benchmarks/anchor.py``: airnet-general
darkens most clean photos by 1-7 levels, some far more) and of leaving noise or smoothing detail.
``m`` is the mean of the output under clipped Gaussian noise of that sigma: noise is brighter than
its image near black and darker near white, and the input is corrected for it first. Noise of
sigma 0 leaves nothing to filter: ``W`` is then the input. Haze and rain change the image in ways
the noise model knows nothing of, so ``"auto"`` anchors by the probability that no such corruption
is present, judged by the weights' degradation prototypes; and where noise is found, also by the
network's output itself (``noise_likeness``): a correction that only removed white noise leaves a
residual ``x - m(f(x))`` whose local means are as weak as white noise's, while a correction of haze,
rain or tones moves them. Where the detectors are unsure, the check decides; where they are sure
that only noise is present (``DETECTORS_SURE``) it can only raise the anchor: a network that
changed the tones of such an image (a retina photo it takes for hazy) is wrong, not the
detectors. It weighs more the stronger the noise (``CHECK_SIGMAS``), where the noise outweighs
the network's other errors; it needs the whole output, so such a blend is settled once the
network has run (``Blend.settle``).

Noise hides haze and rain from the network: where the detectors find either (or any other
corruption outside the noise model) beside noise of sigma over 8, and the check of the network's
output confirms more than noise (the settled anchor at most ``1 - MIXED``), the network runs a
second time, on the noise model's estimate of the image instead of the image (``Blend.first``;
about twice the time, for such images only: ``benchmarks/second_pass_speed.py``). The check
keeps this from photos that only look hazy to the detectors: restoring their denoised estimate
lets the network "dehaze" them (on the training photos one lost 5 dB so).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from airnet_restore.errors import AirNetError
from airnet_restore.inference.tiling import Forward
from airnet_restore.inference.wiener import NEGLIGIBLE_SIGMA, PASSES, wiener

if TYPE_CHECKING:
    from airnet_restore.inspection import Inspection

Fraction = float | Literal["auto"]

# Corruption families the noise model describes: zero-mean noise, which leaves an image's local
# means alone (up to clipping). Every other family a probe was calibrated on, custom ones
# included, is taken to be outside it.
MEAN_PRESERVING = frozenset({"noise"})
# The check of the network's output (anchor "auto" where noise is found): the residual's energy in
# CHECK_WINDOW-px local means, times CHECK_WINDOW^2, over its whole energy is about 1 for white noise;
# up to NOISE_ONLY the correction is taken for noise removal alone, from NOT_NOISE on for something
# else, linearly in between. The check's weight in the anchor rises from 0 to 1 between the two
# sigmas of CHECK_SIGMAS (0-255); below, the network's other errors (tone shifts, lost detail) drown it.
CHECK_WINDOW = 4
NOISE_ONLY, NOT_NOISE = 4.0, 8.0
CHECK_SIGMAS = (8.0, 16.0)
# Where the probability of haze or rain (1 - the anchor: the detectors', then the settled one) reaches
# MIXED beside noise that the check weighs, the noise model's estimate is restored instead of the image.
MIXED = 0.5
# Detectors' anchors from which they are trusted over a check that finds more than noise removal:
# not at all up to the first, fully from the second.
DETECTORS_SURE = (0.7, 0.9)
# The noise model's rounds, as the passes of each at every scale: the first guided by the network's output,
# the second, one more pass, by the first round's whole multi-scale estimate, a better pilot than the small
# network's output (as BM3D's second step is guided by its first). Chosen on the 12 training photos with
# v8's weights (``benchmarks/anchor.py``): +0.13/+0.20/+0.19 dB at sigma 15/25/50, 0.00/-0.02 beside rain/haze;
# a second round of three passes gained as much on noise but lost 0.05-0.12 dB beside rain or haze.
ROUND_PASSES = (PASSES, 1)
MEANINGS = {"strength": "0 (leave the image as it is) to 1 (the network's output as it is)",
            "anchor": "0 (the network's output) to 1 (the noise model's estimate guided by it)",
            "check": "0 (the anchor as it is) to 1 (the anchor from the network's output alone)"}


def check_fraction(name: str, value: object) -> None:
    """Refuse ``value`` for option ``name`` (strength, anchor) unless it is "auto" or a number in [0, 1]."""
    if isinstance(value, str) and value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise AirNetError(f"{name} must be 'auto' or a number from {MEANINGS.get(name, '0 to 1')}, got {value!r}")


@dataclass(frozen=True)
class Blend:
    """A resolved blend: ``x + strength * ((1 - anchor) * c + anchor * (W(...) - x))`` for the correction ``c``
    (module docstring); ``noise``: the noise sigma (0-255 scale) that the noise model ``W`` and ``m`` assume;
    ``check``: the weight that the check of the network's output (``noise_likeness``) will have in the anchor,
    once the network has run (``settle``). A blend with a check is not settled: it is applied in two steps,
    ``estimates`` over the image, then ``settle`` and ``mix``. ``first``: the network is to restore the noise
    model's estimate of the image (guided by its output on the image itself) rather than the image, if the
    settled blend still finds more than noise (``settle``; the pipeline runs it).

    The default is the network's output as it is."""

    strength: float = 1.0
    anchor: float = 0.0
    noise: float = 0.0
    check: float = 0.0
    first: bool = False

    def __post_init__(self) -> None:
        for name in ("strength", "anchor", "check"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise AirNetError(f"{name} must be a number from {MEANINGS[name]} in a Blend "
                                  f"('auto' is resolved by resolve_blend), got {value!r}")
            check_fraction(name, value)
            object.__setattr__(self, name, float(value))
        if isinstance(self.noise, bool) or not isinstance(self.noise, numbers.Real) or not 0.0 <= float(self.noise) <= 255.0:
            raise AirNetError(f"blend noise must be a sigma from 0 to 255, got {self.noise!r}")
        object.__setattr__(self, "noise", float(self.noise))
        if not isinstance(self.first, bool):
            raise AirNetError(f"blend first must be True or False, got {self.first!r}")
        if self.first and self.sigma == 0.0:
            raise AirNetError("blend first restores the noise model's estimate, which needs a noise sigma over 0")

    @property
    def settled(self) -> bool:
        """True when the blend is known before the network runs (no check of its output, no second pass to come)."""
        return (self.check == 0.0 and not self.first) or self.strength == 0.0

    @property
    def sigma(self) -> float:
        """The noise model's sigma on the 0-1 scale; 0 where it is negligible."""
        return self.noise / 255.0 if self.noise / 255.0 >= NEGLIGIBLE_SIGMA else 0.0

    def apply(self, network: Forward) -> Forward:
        """``network`` blended, for a settled blend: each output from the input and the restored tile, in the
        input's precision (the network is not run at all for strength 0). The noise model's finest scale
        sees 28 pixels around each output pixel (four passes of 7): inside a tile's context margin (a quarter
        of the overlap) for overlaps of 112 px or more; at the default 64 its last pass reaches 12 px into the
        faint start of the cross-fade. Its coarser scales see further (``wiener.REACH`` a round), so a tiled image's lowest
        frequencies differ a little from the whole image's (``tests/test_blend.py``: 0.2 grey levels on
        average, 2 at most; no loss measured on photos)."""
        if not self.settled:
            raise AirNetError("this blend checks the network's output or restores twice: apply it with estimates, "
                              "settle and mix")
        if self.strength == 0.0:
            return lambda t: t
        if self.strength == 1.0 and self.anchor == 0.0:
            return network

        def forward(t: torch.Tensor) -> torch.Tensor:
            out = network(t).to(t.dtype).clamp(0, 1)
            return self.mix(t, out, self._estimate(t, out) if self.anchor else out)

        return forward

    def estimates(self, network: Forward) -> Forward:
        """``network`` followed by the noise model: (N,6,H,W), the restored tile and ``W``, in the input's precision."""

        def forward(t: torch.Tensor) -> torch.Tensor:
            out = network(t).to(t.dtype).clamp(0, 1)
            return torch.cat([out, self._estimate(t, out)], 1)

        return forward

    def _estimate(self, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``W``: the noise model's estimate of ``t``, with ``out`` (the network's output) as the first pilot."""
        return noise_estimate(t, out, self.sigma)

    def mix(self, t: torch.Tensor, out: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
        """The blended output from the input ``t``, the network's ``out`` and the noise model's ``estimate``."""
        return t + self.strength * ((1.0 - self.anchor) * (out - t) + self.anchor * (estimate - t))

    def settle(self, sums: torch.Tensor) -> Blend:
        """The blend with the check done: ``sums`` are ``residual_sums`` over the whole image. ``first`` stays
        only where the settled anchor still finds haze or rain (``MIXED``)."""
        if self.settled or sums[3] == 0:  # nothing to check (an image too small for a window): the detectors' anchor
            return Blend(self.strength, self.anchor, self.noise, first=self.first and mixed(self.anchor))
        likeness = noise_likeness(sums)
        sure = ramp(self.anchor, *DETECTORS_SURE)
        checked = sure * max(self.anchor, likeness) + (1.0 - sure) * likeness
        anchor = (1.0 - self.check) * self.anchor + self.check * checked
        return Blend(self.strength, anchor, self.noise, first=self.first and mixed(anchor))

    def describe(self) -> str:
        """``strength 0.97, anchor 0.81``, as output lines show it (``, denoised first`` where ``first``)."""
        return f"strength {self.strength:.2f}, anchor {self.anchor:.2f}" + (", denoised first" if self.first else "")


def noise_estimate(t: torch.Tensor, pilot: torch.Tensor, sigma: float) -> torch.Tensor:
    """The noise model's estimate of (N,C,H,W) ``t`` under white noise of ``sigma`` (0-1 scale): rounds of
    ``wiener`` (``ROUND_PASSES``), the first guided by ``pilot``, each further one by the round before (clipped to
    [0, 1]); each round's input is corrected for the clipping of the noise around its pilot
    (``clipped_noise_mean``)."""
    estimate = pilot
    for done, passes in enumerate(ROUND_PASSES):
        if done:
            estimate = estimate.clamp(0, 1)
        estimate = wiener(t - (clipped_noise_mean(estimate, sigma) - estimate), estimate, sigma, passes)
    return estimate


def residual_sums(t: torch.Tensor, out: torch.Tensor, sigma: float, rows: int | None = None) -> torch.Tensor:
    """For the check of the network's output on (N,3,H,W) ``t`` and ``out``: the sums of the squared residual
    ``t - m(out)`` and of its squared ``CHECK_WINDOW``-px local means, and their counts, in float64 on the CPU.
    ``rows``: only the first ``rows`` rows are counted (and the windows that start in them, which may reach
    into the rows after), so that consecutive bands of rows, each given ``CHECK_WINDOW - 1`` rows more, add
    up to exactly the whole image's sums."""
    rows = t.shape[-2] if rows is None else rows
    residual = (t - clipped_noise_mean(out, sigma)).to("cpu", torch.float64)
    own = residual[..., :rows, :]
    if min(residual.shape[-2:]) >= CHECK_WINDOW:
        local = F.avg_pool2d(residual, CHECK_WINDOW, stride=1)[..., :rows, :]
    else:  # too small for a window: no local means to count
        local = residual[..., :0, :]
    return torch.tensor([own.square().sum().item(), local.square().sum().item(), own.numel(), local.numel()],
                        dtype=torch.float64)


def noise_likeness(sums: torch.Tensor) -> float:
    """How far the residual summed in ``sums`` looks like white noise alone: 1 up to ``NOISE_ONLY``, 0 from ``NOT_NOISE``
    (local means' energy, times ``CHECK_WINDOW``^2, over the whole energy); 1 for a residual of nothing."""
    total, local, n_total, n_local = (float(v) for v in sums)
    if total <= 0.0:
        return 1.0
    ratio = CHECK_WINDOW ** 2 * (local / n_local) / (total / n_total)
    return 1.0 - ramp(ratio, NOISE_ONLY, NOT_NOISE)


def mixed(anchor: float) -> bool:
    """Whether an anchor leaves haze, rain or another corruption beside the noise as likely as ``MIXED`` or more."""
    return 1.0 - anchor >= MIXED


def ramp(value: float, low: float, high: float) -> float:
    """0 up to ``low``, 1 from ``high``, linear in between."""
    return min(1.0, max(0.0, (value - low) / (high - low)))


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
    """The probability that no corruption outside the noise model (haze, rain, ...) is present."""
    return math.prod(1.0 - p for family, p in found.presence.items() if family not in MEAN_PRESERVING)


def resolve_blend(model: object, image: Any, strength: Fraction = "auto", anchor: Fraction = "auto") -> tuple[Blend, Inspection | None]:
    """The blend for ``image``, and the inspection behind it.

    ``strength="auto"`` scales the correction by the probability that the image is degraded at all
    (``Inspection.degraded``), judged from the weights' degradation prototypes on the whole image:
    a photo surely clean comes back nearly unchanged, a surely degraded one gets the whole
    correction, one in between part of it (the blend that minimises the expected squared error if
    the probability is right and the network is right where the image is degraded).
    ``anchor="auto"`` moves towards the noise model's estimate by the probability that only noise
    is present (``auto_anchor``), with the detected noise sigma; where that sigma passes 8, the check
    of the network's output takes a share of the anchor, all of it from sigma 16 (``CHECK_SIGMAS``),
    and the blend is settled once the network has run (``Blend.settle``); where haze or rain is found
    beside such noise (``MIXED``), the network is to restore the noise model's estimate
    (``Blend.first``) if the check confirms it. Weights
    without prototypes that fit their encoder (the paper's variants, official checkpoints,
    weights trained further than their prototypes, ONNX models) get strength 1 and anchor 0: the network's
    output as is; with weights that have them, an image under 16 px a side, too small to judge, gets
    strength 0. Numbers are used as given; the image
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
    # "auto" on an image too small to judge: left as is where the weights could judge a larger one (do no harm:
    # the network costs a thin noisy textured row up to 5 dB at sigma 15, and it would alter a clean one)
    unjudged = 0.0 if inspector is not None else 1.0
    scale = float(strength) if strength != "auto" else found.degraded if found is not None else unjudged
    keep = float(anchor) if anchor != "auto" else auto_anchor(found) if found is not None else 0.0
    noise = min(255.0, max(0.0, found.sigma)) if found is not None and found.sigma is not None else 0.0
    check = ramp(noise, *CHECK_SIGMAS) if anchor == "auto" else 0.0
    first = scale > 0.0 and check > 0.0 and mixed(keep)
    return Blend(scale, keep, noise, check, first), found
