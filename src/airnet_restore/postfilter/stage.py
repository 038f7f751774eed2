"""The post-filter stage: how the network's correction reaches the output, its strength, and how far the input is trusted.

With ``f`` the network and ``c = f(x) - x`` its correction of the image ``x``, the output is

    x + strength * ((1 - anchor) * c + anchor * (W(x - (m(f(x)) - f(x)), f(x)) - x))

``strength`` scales the whole correction. ``anchor`` moves it towards the noise model's estimate
``W``: the input Wiener-filtered in local DCTs for white noise of the estimated sigma, with the
network's output as the pilot, then refined with that estimate as the pilot (``postfilter/wiener.py``,
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
that only noise is present (``detectors_sure``) it can only raise the anchor: a network that
changed the tones of such an image (a retina photo it takes for hazy) is wrong, not the
detectors. It weighs more the stronger the noise (``check_sigmas``), where the noise outweighs
the network's other errors; it needs the whole output, so such a blend is settled once the
network has run (``Blend.settle``).

Noise hides haze and rain from the network: where the detectors find either (or any other
corruption outside the noise model) beside noise of sigma over 8, and the check of the network's
output confirms more than noise (the settled anchor at most ``1 - mixed``), the network runs a
second time, on the noise model's estimate of the image instead of the image (``Blend.first``;
about twice the time, for such images only: ``benchmarks/second_pass_speed.py``). The check
keeps this from photos that only look hazy to the detectors: restoring their denoised estimate
lets the network "dehaze" them (on the training photos one lost 5 dB so).

The haze band (``postfilter/haze.py``, settings ``params.haze``): where the detectors find haze (under
``strength`` and ``anchor`` "auto" only), the finished output is dehazed with the atmospheric scattering
model, its transmission bounded below by the detectors' confidence, or moved by that confidence towards a
haze map's dehazing of the input, and the result checked (``Blend.haze``:
the band's confidence; 0, the default where no haze is found, costs nothing). The rain band
(``postfilter/rain.py``, settings ``params.rain``): where the detectors find rain (under the same condition), the
thin bright structures that the network removed and the blend kept are removed from the mixed output too
(``Blend.rain``: the band's confidence); where noise hides rain from the detectors, they judge the noise model's
estimate of the image too once it is known (``Blend.rejudge``, ``finish``'s ``judge``); and without much noise,
the shape of what the network removed judges the band too once its output is known (``Blend.shape``:
``rain.elongation``, long thin parallel streaks against texture).

The stage's numbers are ``PostFilterParams`` (``postfilter/params.py``), read from the weights
file. The pipeline calls it in three steps, without knowing what is inside: ``PostFilter.plan``
(the blend, from what the detectors found), ``Blend.uses_network`` / ``Blend.as_is`` (whether
the network runs, and whether its output is the result), and ``PostFilter.finish`` (the output
bands, from the input and the network's whole output). The noise model sees ``params.context``
pixels around each pixel, so ``finish`` filters the image in crops with that much context: the
result is the same whether the network ran tiled or whole, and whatever the image's size.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from airnet_restore.errors import AirNetError
from airnet_restore.postfilter.haze import dehaze_tensor, haze_confidence
from airnet_restore.postfilter.params import PostFilterParams, ramp
from airnet_restore.postfilter.rain import (
    denoised_confidence,
    denoised_weight,
    elongation,
    rain_confidence,
    remove_streaks,
    shape_confidence,
)
from airnet_restore.postfilter.wiener import NEGLIGIBLE_SIGMA, wiener

if TYPE_CHECKING:
    from airnet_restore.inspection.results import Inspection

Fraction = float | Literal["auto"]
Choice = Literal["auto", "none"]
# (y, x, height, width) -> the (1,3,height,width) crop of an image at those pixels, float in [0, 1]
Crop = Callable[[int, int, int, int], torch.Tensor]

# Corruption families the noise model describes: zero-mean noise, which leaves an image's local
# means alone (up to clipping). Every other family a probe was calibrated on, custom ones
# included, is taken to be outside it.
MEAN_PRESERVING = frozenset({"noise"})
CHOICES = ("auto", "none")
MEANINGS = {"strength": "0 (leave the image as it is) to 1 (the network's output as it is)",
            "anchor": "0 (the network's output) to 1 (the noise model's estimate guided by it)",
            "check": "0 (the anchor as it is) to 1 (the anchor from the network's output alone)",
            "haze": "0 (no haze band) to 1 (the haze band's transmission bound at its floor)",
            "rain": "0 (no rain band) to 1 (every thin bright structure the network removed, removed)"}
# Rows at a time in which the output is mixed and the check's sums are taken: memory, not quality.
MIX_ROWS = 256


def check_fraction(name: str, value: object) -> None:
    """Refuse ``value`` for option ``name`` (strength, anchor) unless it is "auto" or a number in [0, 1]."""
    if isinstance(value, str) and value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise AirNetError(f"{name} must be 'auto' or a number from {MEANINGS.get(name, '0 to 1')}, got {value!r}")


def check_choice(postfilter: object) -> None:
    """Refuse a ``postfilter`` other than "auto" (the stage) or "none" (the network's output exactly)."""
    if not isinstance(postfilter, str) or postfilter not in CHOICES:
        raise AirNetError(f"postfilter must be 'auto' (the default) or 'none' (the network's output), got {postfilter!r}")


@dataclass(frozen=True)
class Blend:
    """A resolved blend: ``x + strength * ((1 - anchor) * c + anchor * (W(...) - x))`` for the correction ``c``
    (module docstring); ``noise``: the noise sigma (0-255 scale) that the noise model ``W`` and ``m`` assume;
    ``check``: the weight that the check of the network's output (``noise_likeness``) will have in the anchor,
    once the network has run (``settle``). ``first``: the network is to restore the noise model's estimate of
    the image (guided by its output on the image itself) rather than the image, if the settled blend still
    finds more than noise. ``haze``: the haze band's confidence (``postfilter/haze.py``; 0: no band; once
    finished, the confidence its check left). ``rain``: the rain band's confidence (``postfilter/rain.py``; 0: no
    band). ``rejudge``: the rain band is to judge the noise model's estimate of the image too, once it is known
    (``PostFilter.finish``; ``rain.denoised_confidence``). ``shape``: the rain band is to judge the shape of what
    the network removed too, once its output is known (``rain.elongation``, ``rain.shape_confidence``).
    ``params``: the stage's numbers.

    The default is the network's output as it is."""

    strength: float = 1.0
    anchor: float = 0.0
    noise: float = 0.0
    check: float = 0.0
    first: bool = False
    params: PostFilterParams = field(default_factory=PostFilterParams, repr=False)
    haze: float = 0.0
    rain: float = 0.0
    rejudge: bool = False
    shape: bool = False

    def __post_init__(self) -> None:
        for name in ("strength", "anchor", "check", "haze", "rain"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise AirNetError(f"{name} must be a number from {MEANINGS[name]} in a Blend "
                                  f"('auto' is resolved by PostFilter.plan), got {value!r}")
            check_fraction(name, value)
            object.__setattr__(self, name, float(value))
        if isinstance(self.noise, bool) or not isinstance(self.noise, numbers.Real) or not 0.0 <= float(self.noise) <= 255.0:
            raise AirNetError(f"blend noise must be a sigma from 0 to 255, got {self.noise!r}")
        object.__setattr__(self, "noise", float(self.noise))
        for name in ("first", "rejudge", "shape"):
            if not isinstance(getattr(self, name), bool):
                raise AirNetError(f"blend {name} must be True or False, got {getattr(self, name)!r}")
        if self.first and self.sigma == 0.0:
            raise AirNetError("blend first restores the noise model's estimate, which needs a noise sigma over 0")
        if not isinstance(self.params, PostFilterParams):
            raise AirNetError(f"blend params must be PostFilterParams, got {type(self.params).__name__}")

    @property
    def settled(self) -> bool:
        """True when the blend is known before the network runs (no check of its output, no second pass to come)."""
        return (self.check == 0.0 and not self.first) or self.strength == 0.0

    @property
    def uses_network(self) -> bool:
        """Whether the network runs at all (not for strength 0: the output is the input)."""
        return self.strength > 0.0

    @property
    def as_is(self) -> bool:
        """Whether the output is the network's output exactly (strength 1, anchor 0, nothing to check, no haze
        or rain band, nothing to judge once the network has run)."""
        return (self.settled and self.strength == 1.0 and self.anchor == 0.0 and self.haze == 0.0
                and self.rain == 0.0 and not self.rejudge and not self.shape)

    @property
    def sigma(self) -> float:
        """The noise model's sigma on the 0-1 scale; 0 where it is negligible."""
        return self.noise / 255.0 if self.noise / 255.0 >= NEGLIGIBLE_SIGMA else 0.0

    def mix(self, t: torch.Tensor, out: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
        """The blended output from the input ``t``, the network's ``out`` and the noise model's ``estimate``."""
        return t + self.strength * ((1.0 - self.anchor) * (out - t) + self.anchor * (estimate - t))

    def settle(self, sums: torch.Tensor) -> Blend:
        """The blend with the check done: ``sums`` are ``residual_sums`` over the whole image. ``first`` stays
        only where the settled anchor still finds haze or rain (``params.mixed``)."""
        p = self.params
        if self.settled or sums[3] == 0:  # nothing to check (an image too small for a window): the detectors' anchor
            return replace(self, check=0.0, first=self.first and mixed(self.anchor, p))
        likeness = noise_likeness(sums, p)
        sure = ramp(self.anchor, *p.detectors_sure)
        checked = sure * max(self.anchor, likeness) + (1.0 - sure) * likeness
        anchor = (1.0 - self.check) * self.anchor + self.check * checked
        return replace(self, anchor=anchor, check=0.0, first=self.first and mixed(anchor, p))

    def describe(self) -> str:
        """``strength 0.97, anchor 0.81``, as output lines show it (``, denoised first`` where ``first``;
        ``, dehazed 0.80`` and ``, streaks 0.60`` where the haze and rain bands work)."""
        return (f"strength {self.strength:.2f}, anchor {self.anchor:.2f}" + (", denoised first" if self.first else "")
                + (f", streaks {self.rain:.2f}" if self.rain > 0.0 else "")
                + (f", dehazed {self.haze:.2f}" if self.haze > 0.0 else ""))


@dataclass(frozen=True)
class PostFilter:
    """The post-filter stage of one weights file: plans each image's blend from what the detectors found, and
    finishes the output from the input and the network's output."""

    params: PostFilterParams = field(default_factory=PostFilterParams)

    def plan(self, found: Inspection | None, strength: Fraction = "auto", anchor: Fraction = "auto",
             detectors: bool = True) -> Blend:
        """The blend for an image the detectors judged as ``found`` (None: not judged).

        ``strength="auto"`` scales the correction by the probability that the image is degraded at all
        (``Inspection.degraded``): a photo surely clean comes back nearly unchanged, a surely degraded one
        gets the whole correction, one in between part of it (the blend that minimises the expected squared
        error if the probability is right and the network is right where the image is degraded).
        ``anchor="auto"`` moves towards the noise model's estimate by the probability that only noise is
        present (``auto_anchor``), with the detected noise sigma; where that sigma passes the first of
        ``check_sigmas``, the check of the network's output takes a share of the anchor, all of it from the
        second, and the blend is settled once the network has run (``Blend.settle``); where haze or rain is
        found beside such noise (``mixed``), the network is to restore the noise model's estimate
        (``Blend.first``) if the check confirms it. ``detectors``: whether the weights have detectors; with
        them, an image they could not judge (too small) gets strength 0 under auto (do no harm: the network
        costs a thin noisy textured row up to 5 dB at sigma 15, and it would alter a clean one); without
        them, strength 1 and anchor 0 (the network's output as is). Numbers are used as given. Where both are
        "auto", the haze and rain bands' confidences come from the haze and rain probabilities and sigma
        (``haze_confidence``, ``rain_confidence``), and where noise hides rain from the detectors, the rain band is
        to judge the noise model's estimate too (``Blend.rejudge``), where it does not, the shape of what the
        network removed (``Blend.shape``); a knob set by hand turns the bands off, so the knobs mean what they say."""
        check_fraction("strength", strength)
        check_fraction("anchor", anchor)
        p = self.params
        unjudged = 0.0 if detectors else 1.0
        scale = float(strength) if strength != "auto" else found.degraded if found is not None else unjudged
        keep = float(anchor) if anchor != "auto" else auto_anchor(found) if found is not None else 0.0
        noise = min(255.0, max(0.0, found.sigma)) if found is not None and found.sigma is not None else 0.0
        check = ramp(noise, *p.check_sigmas) if anchor == "auto" else 0.0
        first = scale > 0.0 and check > 0.0 and mixed(keep, p)
        haze = rain = 0.0
        rejudge = shape = False
        if found is not None and strength == "auto" and anchor == "auto" and scale > 0.0:
            haze = haze_confidence(found.presence, found.sigma, p.haze)
            rain = rain_confidence(found.presence, found.sigma, p.rain)
            rejudge = denoised_weight(noise, p.rain) > 0.0
            shape = p.rain.enabled and p.rain.elongated and ramp(noise, *p.rain.noise_sigmas) < 1.0
        return Blend(scale, keep, noise, check, first, params=p, haze=haze, rain=rain, rejudge=rejudge, shape=shape)

    def finish(self, blend: Blend, source: Crop, out: torch.Tensor, restore: Callable[[Crop], torch.Tensor],
               tile: int, judge: Callable[[torch.Tensor], Inspection | None] | None = None
               ) -> tuple[Blend, Iterator[tuple[int, torch.Tensor]]]:
        """The settled blend and the output's bands of ``MIX_ROWS`` rows, from the input (``source``) and the
        network's whole (1,3,H,W) output ``out`` (clipped to [0, 1]; overwritten where the network runs twice).
        The check's sums are taken band by band over the whole image; the noise model's estimate is computed in
        crops of ``tile`` pixels a side with ``params.context`` pixels around them (``noise_estimate_crops``), so
        it equals the whole image's; where the settled blend says ``first``, ``restore`` (the network over a whole image given by
        its crops) restores that estimate in place of the input. Where the blend is to judge the shape of what the
        network removed (``Blend.shape``), the elongation of its first output's thin bright part sets the rain
        band's confidence anew (``rain.shape_confidence``). Where the blend has a rain band, the mixed output
        loses its thin bright streaks (``rain.remove_streaks``, each band of rows with the rows around it that the
        band's window sees); where it is to judge the noise model's estimate (``Blend.rejudge``), ``judge`` (the
        detectors) does so, and the settled blend carries the band's confidence from every judgement. Where it has
        a haze band, the whole mixed output is dehazed (``haze.dehaze_tensor``, the whole input as the check's
        reference) and the settled blend carries the confidence its check left."""
        height, width = out.shape[-2:]
        settled = blend if blend.settled else blend.settle(image_residual_sums(source, out, blend.sigma, blend.params))
        estimate = None
        if settled.anchor > 0.0 and settled.sigma > 0.0:
            estimate = noise_estimate_crops(source, out, settled.sigma, settled.params, tile)
        if settled.shape:
            rain = shape_confidence(settled.rain, elongation(source, out, settled.params.rain), settled.noise,
                                    settled.params.rain)
            settled = replace(settled, rain=rain)
        if settled.first and estimate is not None:
            whole = estimate

            def denoised(y: int, x: int, th: int, tw: int) -> torch.Tensor:
                return whole[:, :, y : y + th, x : x + tw].clamp(0, 1)

            out.copy_(restore(denoised).clamp(0, 1))
        if settled.rejudge and estimate is not None and judge is not None:
            found = judge(estimate[0].clamp(0, 1))
            if found is not None:
                rain = settled.rain + denoised_confidence(found.presence, settled.noise, settled.params.rain)
                settled = replace(settled, rain=min(1.0, rain))

        def output_rows(y: int, rows: int) -> torch.Tensor:
            """The mixed output of rows [y, y + rows), the rain band's streaks removed."""
            t = source(y, 0, rows, width).to(out)
            part = out[:, :, y : y + rows]
            result = settled.mix(t, part, estimate[:, :, y : y + rows] if estimate is not None else t)
            return remove_streaks(result, part, settled.rain, settled.params.rain)

        if settled.haze > 0.0:
            t = source(0, 0, height, width).to(out)
            finished, used = dehaze_tensor(output_rows(0, height), t, settled.haze, settled.params.haze)
            settled = replace(settled, haze=used)
            return settled, ((y, finished[:, :, y : y + MIX_ROWS]) for y in range(0, height, MIX_ROWS))

        halo = settled.params.rain.window // 2 if settled.rain > 0.0 else 0

        def bands() -> Iterator[tuple[int, torch.Tensor]]:
            for y in range(0, height, MIX_ROWS):
                top, bottom = max(0, y - halo), min(height, y + MIX_ROWS + halo)
                yield y, output_rows(top, bottom - top)[:, :, y - top : y - top + min(MIX_ROWS, height - y)]

        return settled, bands()


def noise_estimate(t: torch.Tensor, pilot: torch.Tensor, sigma: float, params: PostFilterParams) -> torch.Tensor:
    """The noise model's estimate of (N,C,H,W) ``t`` under white noise of ``sigma`` (0-1 scale): rounds of
    ``wiener`` (``params.rounds``), the first guided by ``pilot``, each further one by the round before (clipped
    to [0, 1]); each round's input is corrected for the clipping of the noise around its pilot
    (``clipped_noise_mean``)."""
    estimate = pilot
    for done, passes in enumerate(params.rounds):
        if done:
            estimate = estimate.clamp(0, 1)
        estimate = wiener(t - (clipped_noise_mean(estimate, sigma) - estimate), estimate, sigma, params.wiener, passes)
    return estimate


def noise_estimate_crops(source: Crop, pilot: torch.Tensor, sigma: float, params: PostFilterParams,
                         tile: int) -> torch.Tensor:
    """``noise_estimate`` of the image given by its crops (``source``), guided by the whole (1,3,H,W) ``pilot``,
    computed ``tile`` pixels at a time (a multiple of the filter's alignment) with ``params.context`` pixels of
    the image around each: the same estimate as the whole image's, in bounded memory."""
    align = params.wiener.alignment
    step = max(align, tile // align * align)
    context = params.context
    height, width = pilot.shape[-2:]
    result = torch.empty_like(pilot)
    for y in range(0, height, step):
        for x in range(0, width, step):
            y0, x0 = max(0, y - context), max(0, x - context)
            y1, x1 = min(height, y + step + context), min(width, x + step + context)
            t = source(y0, x0, y1 - y0, x1 - x0).to(pilot)
            estimate = noise_estimate(t, pilot[:, :, y0:y1, x0:x1], sigma, params)
            result[:, :, y : y + step, x : x + step] = estimate[:, :, y - y0 : y - y0 + step, x - x0 : x - x0 + step]
    return result


def residual_sums(t: torch.Tensor, out: torch.Tensor, sigma: float, window: int, rows: int | None = None) -> torch.Tensor:
    """For the check of the network's output on (N,3,H,W) ``t`` and ``out``: the sums of the squared residual
    ``t - m(out)`` and of its squared ``window``-px local means, and their counts, in float64 on the CPU.
    ``rows``: only the first ``rows`` rows are counted (and the windows that start in them, which may reach
    into the rows after), so that consecutive bands of rows, each given ``window - 1`` rows more, add
    up to exactly the whole image's sums."""
    rows = t.shape[-2] if rows is None else rows
    residual = (t - clipped_noise_mean(out, sigma)).to("cpu", torch.float64)
    own = residual[..., :rows, :]
    if min(residual.shape[-2:]) >= window:
        local = F.avg_pool2d(residual, window, stride=1)[..., :rows, :]
    else:  # too small for a window: no local means to count
        local = residual[..., :0, :]
    return torch.tensor([own.square().sum().item(), local.square().sum().item(), own.numel(), local.numel()],
                        dtype=torch.float64)


def image_residual_sums(source: Crop, out: torch.Tensor, sigma: float, params: PostFilterParams) -> torch.Tensor:
    """``residual_sums`` over the whole image given by its crops and the network's whole ``out``, band by band."""
    height, width = out.shape[-2:]
    reach = MIX_ROWS + params.check_window - 1  # each band's local means may reach into the next band's rows
    return torch.stack([residual_sums(source(y, 0, min(reach, height - y), width).to(out), out[:, :, y : y + reach],
                                      sigma, params.check_window, MIX_ROWS)
                        for y in range(0, height, MIX_ROWS)]).sum(0)


def noise_likeness(sums: torch.Tensor, params: PostFilterParams) -> float:
    """How far the residual summed in ``sums`` looks like white noise alone: 1 up to ``noise_only``, 0 from
    ``not_noise`` (local means' energy, times ``check_window``^2, over the whole energy); 1 for a residual of
    nothing."""
    total, local, n_total, n_local = (float(v) for v in sums)
    if total <= 0.0:
        return 1.0
    ratio = params.check_window ** 2 * (local / n_local) / (total / n_total)
    return 1.0 - ramp(ratio, params.noise_only, params.not_noise)


def mixed(anchor: float, params: PostFilterParams) -> bool:
    """Whether an anchor leaves haze, rain or another corruption beside the noise as likely as ``mixed`` or more."""
    return 1.0 - anchor >= params.mixed


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
