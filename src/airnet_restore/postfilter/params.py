"""The post-filter's tuned numbers as data: one frozen record, stored in each weights file's metadata.

The numbers were chosen with a given network's outputs (``benchmarks/anchor.py``); weights that
carry none get ``PostFilterParams()``, the values chosen with airnet-general-v8. Tuning and tests
build other records (``dataclasses.replace``) and pass them; nothing rewrites module globals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from airnet_restore.constants import HAZE_MAPS
from airnet_restore.errors import AirNetError, first_line

# The weights metadata key that holds the record as JSON.
METADATA_KEY = "postfilter"
# The record's optional fields: bands added after the first records were stored.
BANDS = frozenset({"haze", "rain"})


@dataclass(frozen=True)
class WienerSettings:
    """The noise model's Wiener filter in local DCTs (``postfilter/wiener.py``): ``patch`` x ``patch`` DCTs at
    steps of ``stride`` px, ``passes`` passes at each of ``levels`` + 1 scales (each coarser by 2x2 blocks).
    Chosen on training photos (``benchmarks/anchor.py``: one pass 0.4-0.8 dB worse than three at sigma 15-50,
    a fourth adds at most 0.05; three coarser scales +0.29/+0.53/+0.80 dB over one, a fifth at most +0.04)."""

    patch: int = 8
    stride: int = 2
    passes: int = 3
    levels: int = 3

    def __post_init__(self) -> None:
        _check_int("wiener patch", self.patch, 2, 32)
        _check_int("wiener stride", self.stride, 1, self.patch)
        if self.patch % self.stride:
            raise AirNetError(f"wiener stride must divide the patch ({self.patch}), got {self.stride}")
        _check_int("wiener passes", self.passes, 1, 8)
        _check_int("wiener levels", self.levels, 0, 6)

    def reach(self, passes: int) -> int:
        """How far (px) one output pixel of a call of ``passes`` passes sees at most: ``patch - 1`` pixels a pass
        at each scale, twice as far at each coarser one, plus the 2x2 averaging and the bilinear upsampling (a
        pixel each)."""
        return sum(((self.patch - 1) * passes + 2) * 2**level for level in range(self.levels + 1))

    @property
    def alignment(self) -> int:
        """Offsets that keep every scale's patch grid where the whole image has it: a crop that starts at a
        multiple of this is filtered as the whole image is, up to ``reach`` from its edges."""
        return self.stride * 2**self.levels


@dataclass(frozen=True)
class HazeSettings:
    """The haze band (``postfilter/haze.py``): a physically based dehaze of the stage's output where the
    detectors find haze. With ``c`` the confidence, ``ramp(p_haze, *sure)``, the transmission of the scattering
    model ``I = J t + A (1 - t)`` (``A`` the atmospheric light from the brightest ``light_fraction`` of the
    dark channel; ``t = 1 - omega * dark(I / A)`` over ``patch`` px, refined by the guided filter of ``radius``
    px and ``eps``) is bounded below by ``1 - c * (1 - floor)``: an unsure call can only lighten haze a little.
    The check: ``c`` is scaled by ``ramp(median dark channel of the input, *hazy_dark)`` (a photo whose dark
    channel is mostly black had no haze to remove) and halved until at most ``max_clipped`` of the pixels are
    newly clipped. ``others``: ``c`` is scaled by the probability that no other family but noise (rain) is
    present, to this power (0: not). ``noise_sigmas``: ``c`` falls from 1 to 0 between these detected noise sigmas (0-255).
    ``map``: the name of a bundled haze map (``models/hazemap.py``, ``HAZE_MAPS``) to dehaze with in place of the
    scattering model: the output moves towards the map's ``a I + b`` of the input by ``c`` (``omega``, ``radius``,
    ``eps``, ``light_fraction`` and ``floor`` are the prior's and unused then); "" (the default): the prior.
    ``enabled``: False leaves the stage as it was without the band."""

    enabled: bool = False
    sure: tuple[float, float] = (0.1, 0.4)
    floor: float = 0.1
    omega: float = 0.8
    patch: int = 15
    radius: int = 60
    eps: float = 1e-3
    light_fraction: float = 0.001
    hazy_dark: tuple[float, float] = (0.25, 0.45)
    max_clipped: float = 0.02
    others: float = 1.0
    noise_sigmas: tuple[float, float] = (8.0, 16.0)
    map: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise AirNetError(f"haze enabled must be true or false, got {self.enabled!r}")
        if not isinstance(self.map, str) or (self.map and self.map not in HAZE_MAPS):
            known = ", ".join(sorted(HAZE_MAPS)) or "none"
            raise AirNetError(f"haze map must be \"\" (the dark channel prior) or a bundled haze map ({known}), got {self.map!r}")
        _check_pair("haze sure", self.sure, 0.0, 1.0)
        _check_pair("haze hazy_dark", self.hazy_dark, 0.0, 1.0)
        _check_pair("haze noise_sigmas", self.noise_sigmas, 0.0, 255.0)
        for name, value, low, high in (("floor", self.floor, 0.01, 1.0), ("omega", self.omega, 0.0, 1.0),
                                       ("eps", self.eps, 1e-8, 1.0), ("light_fraction", self.light_fraction, 1e-5, 0.5),
                                       ("max_clipped", self.max_clipped, 0.0, 1.0),
                                       ("others", self.others, 0.0, 8.0)):
            _check_pair(f"haze {name}", (value, value), low, high, strict=False)
        _check_int("haze patch", self.patch, 1, 101)
        _check_int("haze radius", self.radius, 1, 1000)


@dataclass(frozen=True)
class RainSettings:
    """The rain band (``postfilter/rain.py``): where the detectors find rain, the thin bright structures that the
    network removed and the blend kept are removed too. With ``c`` the band's confidence, ``ramp(p_rain,
    *sure)``, the output ``o`` becomes ``o - c * max(0, d - box(d))`` for ``d = o - f(x)`` (what the blend kept
    of the input against the network's output) and ``box`` the mean over ``window`` x ``window`` px: streaks
    are thin and brighter than what lies behind them, so only the positive, fine part of ``d`` is taken, never
    the network's tone shifts or its smoothing of dark detail. ``noise_sigmas``: ``c`` falls from 1 to 0
    between these detected noise sigmas (0-255: noise hides rain from the detectors, and the fine part of ``d``
    is then noise as much as rain). ``denoised``: where noise is found, the detectors judge rain again on the
    noise model's estimate of the image, and that judgement takes the share of ``c`` that noise took from the
    first, as ``ramp(p_rain, *denoised_sure)``, falling from 1 to 0 between the sigmas ``strong_sigmas``.
    ``elongated``: once the network has run, the shape of what it removed judges the band too (``rain.elongation``:
    how much more of the fine bright part of ``x - f(x)`` survives averaging along a near-vertical line of ``line``
    px than across it): ``c`` is scaled by ``ramp(elongation, *elongation_gate)`` and is at least
    ``ramp(elongation, *elongation_sure)`` (less where noise is found). ``enabled``: False leaves the stage as it
    was without the band."""

    enabled: bool = False
    sure: tuple[float, float] = (0.015, 0.15)
    window: int = 15
    noise_sigmas: tuple[float, float] = (8.0, 16.0)
    denoised: bool = False
    denoised_sure: tuple[float, float] = (0.15, 0.6)
    strong_sigmas: tuple[float, float] = (25.0, 50.0)
    elongated: bool = False
    elongation_gate: tuple[float, float] = (2.0, 3.0)
    elongation_sure: tuple[float, float] = (2.5, 3.5)
    line: int = 15

    def __post_init__(self) -> None:
        for name in ("enabled", "denoised", "elongated"):
            if not isinstance(getattr(self, name), bool):
                raise AirNetError(f"rain {name} must be true or false, got {getattr(self, name)!r}")
        _check_pair("rain sure", self.sure, 0.0, 1.0)
        _check_pair("rain noise_sigmas", self.noise_sigmas, 0.0, 255.0)
        _check_pair("rain denoised_sure", self.denoised_sure, 0.0, 1.0)
        _check_pair("rain strong_sigmas", self.strong_sigmas, 0.0, 255.0)
        _check_pair("rain elongation_gate", self.elongation_gate, 0.0, 100.0)
        _check_pair("rain elongation_sure", self.elongation_sure, 0.0, 100.0)
        _check_int("rain window", self.window, 3, 255)
        _check_int("rain line", self.line, 3, 63)
        if self.window % 2 == 0:
            raise AirNetError(f"rain window must be odd (a window centred on its pixel), got {self.window}")


@dataclass(frozen=True)
class PostFilterParams:
    """Every tuned number of the post-filter (``postfilter/stage.py`` says what each one does).

    ``rounds``: the noise model's rounds, as passes at every scale: the first guided by the network's output,
    each further one by the round before (+0.13/+0.20/+0.19 dB at sigma 15/25/50 for ``(3, 1)`` over ``(3,)``).
    ``check_window``, ``noise_only``, ``not_noise``: the check of the network's output (the residual's energy in
    ``check_window``-px local means over its whole energy, times ``check_window``^2, is about 1 for white noise;
    up to ``noise_only`` the correction is noise removal alone, from ``not_noise`` something else).
    ``check_sigmas``: the check's weight in the anchor rises from 0 to 1 between these sigmas (0-255).
    ``mixed``: haze or rain as likely as this beside checked noise: the noise model's estimate is restored.
    ``detectors_sure``: anchors from which the detectors are trusted over a check that finds more than noise.
    ``haze``, ``rain``: the haze and rain bands (``HazeSettings``, ``RainSettings``); a stored record without
    them gets their default settings (the band off).
    """

    wiener: WienerSettings = field(default_factory=WienerSettings)
    rounds: tuple[int, ...] = (3, 1)
    check_window: int = 4
    noise_only: float = 4.0
    not_noise: float = 8.0
    check_sigmas: tuple[float, float] = (8.0, 16.0)
    mixed: float = 0.5
    detectors_sure: tuple[float, float] = (0.7, 0.9)
    haze: HazeSettings = field(default_factory=HazeSettings)
    rain: RainSettings = field(default_factory=RainSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.wiener, WienerSettings):
            raise AirNetError(f"post-filter wiener must be WienerSettings, got {type(self.wiener).__name__}")
        if not isinstance(self.haze, HazeSettings):
            raise AirNetError(f"post-filter haze must be HazeSettings, got {type(self.haze).__name__}")
        if not isinstance(self.rain, RainSettings):
            raise AirNetError(f"post-filter rain must be RainSettings, got {type(self.rain).__name__}")
        if not isinstance(self.rounds, tuple) or not 1 <= len(self.rounds) <= 4:
            raise AirNetError(f"post-filter rounds must be a tuple of 1-4 pass counts, got {self.rounds!r}")
        for passes in self.rounds:
            _check_int("post-filter round passes", passes, 1, 8)
        _check_int("post-filter check_window", self.check_window, 2, 64)
        _check_pair("noise_only/not_noise", (self.noise_only, self.not_noise), 0.0, 1e6)
        _check_pair("check_sigmas", self.check_sigmas, 0.0, 255.0)
        _check_pair("detectors_sure", self.detectors_sure, 0.0, 1.0)
        _check_pair("mixed", (self.mixed, self.mixed), 0.0, 1.0, strict=False)

    @property
    def reach(self) -> int:
        """How far (px) the noise model's estimate of one pixel sees: every round's reach added up."""
        return sum(self.wiener.reach(passes) for passes in self.rounds)

    @property
    def context(self) -> int:
        """The margin a crop needs so that its centre is filtered as in the whole image: ``reach`` rounded up to
        the Wiener filter's alignment."""
        align = self.wiener.alignment
        return -(-self.reach // align) * align

    def to_json(self) -> str:
        """The record as JSON, for a weights file's metadata."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "weights") -> PostFilterParams:
        """The record stored as JSON; a one-line ``AirNetError`` naming ``source`` for anything else (unknown or
        missing fields, wrong types, values out of range). Records written before the haze or the rain band existed
        hold no ``haze`` or ``rain``, and either may leave out settings: those get the band's defaults."""
        try:
            data = json.loads(text)
            names = {f.name for f in fields(cls)}
            if not isinstance(data, dict) or not names - BANDS <= set(data) <= names:
                raise ValueError(f"expected the fields {', '.join(f.name for f in fields(cls))}")
            wiener = data.pop("wiener")
            if not isinstance(wiener, dict) or set(wiener) != {f.name for f in fields(WienerSettings)}:
                raise ValueError(f"expected wiener with {', '.join(f.name for f in fields(WienerSettings))}")
            haze = _band(data.pop("haze", {}), "haze", HazeSettings)
            rain = _band(data.pop("rain", {}), "rain", RainSettings)
            pairs = ("rounds", "check_sigmas", "detectors_sure")
            values: dict[str, Any] = {k: tuple(v) if k in pairs else v for k, v in data.items()}
            return cls(wiener=WienerSettings(**wiener), haze=haze, rain=rain, **values)
        except (ValueError, TypeError, AirNetError) as e:
            raise AirNetError(f"{source}: unreadable post-filter parameters ({first_line(e)})") from None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str = "weights") -> PostFilterParams:
        """The record a weights file's metadata holds; the default record where it holds none."""
        return cls.from_json(metadata[METADATA_KEY], source) if METADATA_KEY in metadata else cls()


_Band = TypeVar("_Band", HazeSettings, RainSettings)


def _band(data: object, name: str, kind: type[_Band]) -> _Band:
    """A band's settings from their JSON object (any subset of the fields; lists become pairs, for the fields
    whose default is a pair)."""
    known = {f.name for f in fields(kind)}
    if not isinstance(data, dict) or not set(data) <= known:
        raise ValueError(f"expected {name} with some of {', '.join(sorted(known))}")
    defaults = kind()
    pairs = {k for k in known if isinstance(getattr(defaults, k), tuple)}
    values: dict[str, Any] = {k: tuple(v) if k in pairs and isinstance(v, list) else v for k, v in data.items()}
    return kind(**values)


def ramp(value: float, low: float, high: float) -> float:
    """0 up to ``low``, 1 from ``high``, linear in between: how the stage reads a (low, high) pair of its
    parameters (``check_sigmas``, ``detectors_sure``, the haze band's ``sure`` and ``noise_sigmas``, ...)."""
    return min(1.0, max(0.0, (value - low) / (high - low)))


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AirNetError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _check_pair(name: str, pair: object, low: float, high: float, strict: bool = True) -> None:
    """``pair`` is two finite numbers in [low, high], the first below the second (``strict``)."""
    ok = (isinstance(pair, tuple) and len(pair) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pair))
    if not ok or not (low <= pair[0] <= high and low <= pair[1] <= high) or (strict and not pair[0] < pair[1]):  # type: ignore[index]
        raise AirNetError(f"post-filter {name} must be two numbers from {low:g} to {high:g}, the first below the "
                          f"second, got {pair!r}")
