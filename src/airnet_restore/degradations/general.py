"""The general training family: broad, randomised noise, rain and haze, and the clean image itself.

The paper trains on three noise levels, one rain model and one haze model, and never shows a
clean input; weights trained that way alter good photos and miss rain or haze that looks a
little different. These degradations draw every parameter from wide ranges, mild levels
included, so a model learns both to restore what it has not seen exactly and to leave a good
image alone. All take and return uint8 HxWx3 RGB images and draw everything from ``rng``.
"""

from __future__ import annotations

import cv2
import numpy as np

from airnet_restore.degradations.other import jpeg
from airnet_restore.degradations.weather import depth_proxy, line_kernel

NOISE_SIGMA_MAX = 55.0
# The family's training types, mixtures included (airnet-general's tasks; what calibration covers by default).
GENERAL_TYPES = ("clean", "noise_any", "rain_any", "haze_any", "haze_any+noise_any", "rain_any+noise_any", "haze_any+rain_any")


def identity(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:  # noqa: ARG001
    """The clean image unchanged: teaches the model to leave good photos alone."""
    return clean.copy()


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0, 255)).astype(np.uint8)


def _noise_sigma(rng: np.random.Generator) -> float:
    """Sigma in [0, 55] (0-255 scale), with mild levels as likely as strong ones: uniform in sqrt(sigma)."""
    return float(rng.uniform(0.0, np.sqrt(NOISE_SIGMA_MAX)) ** 2)


def noise_field(clean: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """A float noise field of overall strength ``sigma`` in one of three forms, drawn from ``rng``.

    - i.i.d. Gaussian per pixel and channel (the paper's model);
    - Poisson-Gaussian: variance a * x + b, signal-dependent as from a real sensor;
    - channel-correlated and slightly blurred, as left by demosaicing and colour conversion.
    """
    h, w, c = clean.shape
    kind = int(rng.integers(0, 3))
    n = rng.standard_normal((h, w, c))
    if kind == 1:
        x = clean.astype(np.float64) / 255.0
        shot = float(rng.uniform(0.3, 1.0))  # share of the variance that depends on the signal
        # At mid grey (x = 0.5) the standard deviation is sigma.
        scale = np.sqrt(shot * x / 0.5 + (1.0 - shot))
        return sigma * scale * n
    if kind == 2:
        mix = np.eye(c) + float(rng.uniform(0.3, 0.9)) * (np.ones((c, c)) - np.eye(c))
        n = n @ mix.T
        blur = float(rng.uniform(0.0, 0.8))
        if blur > 0.3:
            n = cv2.GaussianBlur(n, (0, 0), blur, borderType=cv2.BORDER_REFLECT)
        return sigma * n / max(float(n.std()), 1e-8)
    return sigma * n


def noise_any(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise of any level in [0, 55] and any of three forms, rounded to uint8; JPEG afterwards one time in four."""
    noisy = _to_uint8(clean.astype(np.float64) + noise_field(clean, rng, _noise_sigma(rng)))
    if rng.random() < 0.25:
        noisy = jpeg(noisy, rng, quality=int(rng.integers(60, 96)))
    return noisy


def _streaks(h: int, w: int, rng: np.random.Generator, angle: float) -> np.ndarray:
    """One layer of rain streaks in [0, 1]: random seeds smeared along ``angle`` and softened."""
    length = int(rng.integers(6, 61))
    width = int(rng.integers(1, 4))
    coverage = float(rng.uniform(0.02, 0.18))  # share of pixels a streak would cover before overlaps
    density = coverage / (length * width)
    seeds: np.ndarray = (rng.random((h, w)) < density).astype(np.float32) * rng.uniform(0.3, 1.0, (h, w)).astype(np.float32)
    if width > 1:
        seeds = cv2.dilate(seeds, np.ones((width, width), np.uint8))
    layer = cv2.filter2D(seeds, -1, line_kernel(length, angle, 1), borderType=cv2.BORDER_REFLECT)
    soften = float(rng.uniform(0.3, 1.5))
    layer = cv2.GaussianBlur(layer, (0, 0), soften, borderType=cv2.BORDER_REFLECT)
    peak = float(np.percentile(layer[layer > 0], 99)) if np.any(layer > 0) else 1.0
    return np.clip(layer / max(peak, 1e-6), 0, 1)


def _segments(h: int, w: int, rng: np.random.Generator, angle: float) -> np.ndarray:
    """One layer of rain drawn streak by streak, in [0, 1]: each its own length (8-70 px), thickness,
    opacity (0.15-0.9) and a slant near ``angle``; sparse or dense, softened. Unlike ``_streaks`` nothing is
    normalised, so faint streaks stay faint."""
    coverage = float(rng.uniform(0.01, 0.12))
    mean_length = float(rng.uniform(12, 45))
    count = int(coverage * h * w / mean_length) + 1
    layer = np.zeros((h, w), np.float32)
    for _ in range(count):
        x, y = float(rng.uniform(-0.1, 1.1)) * w, float(rng.uniform(-0.1, 1.1)) * h
        length = float(np.clip(rng.normal(mean_length, 0.35 * mean_length), 8, 70))
        a = np.radians(angle + float(rng.normal(0.0, 4.0)))
        dx, dy = 0.5 * length * np.sin(a), 0.5 * length * np.cos(a)
        thickness = int(rng.choice([1, 1, 1, 2, 2, 3]))
        alpha = float(rng.uniform(0.15, 0.9))
        cv2.line(layer, (round(x - dx), round(y - dy)), (round(x + dx), round(y + dy)), alpha, thickness, cv2.LINE_AA)
    return cv2.GaussianBlur(layer, (0, 0), float(rng.uniform(0.3, 1.2)), borderType=cv2.BORDER_REFLECT)


def rain_any(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rain as a randomised family: one to three streak layers, each either smeared seeds (length 6-60 px,
    width 1-3, density, softness and brightness random) or streaks drawn one by one with their own opacity;
    angles near one common direction; added or screened, with an optional bright veil of rain mist."""
    h, w = clean.shape[:2]
    base_angle = float(rng.uniform(-40, 40))
    rain = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        angle = base_angle + float(rng.uniform(-8, 8))
        if rng.random() < 0.5:
            layer = _streaks(h, w, rng, angle) * float(rng.uniform(0.25, 0.8))
        else:
            layer = _segments(h, w, rng, angle) * float(rng.uniform(0.6, 1.0))
        rain = np.maximum(rain, layer)
    x = clean.astype(np.float32) / 255.0
    tint = 1.0 - float(rng.uniform(0.0, 0.15)) * rng.random(3).astype(np.float32)  # slightly coloured streaks
    r = rain[:, :, None] * tint
    out = x + r if rng.random() < 0.5 else 1.0 - (1.0 - x) * (1.0 - r)  # additive or screen blend
    if rng.random() < 0.3:
        veil = float(rng.uniform(0.03, 0.2))
        out = out * (1.0 - veil) + veil * float(rng.uniform(0.7, 1.0))
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)


def _smooth_field(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field in [0, 1]: low-resolution noise upsampled (clouds, uneven fog)."""
    gh, gw = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    field = cv2.resize(rng.random((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return (field - field.min()) / max(float(np.ptp(field)), 1e-6)


def haze_depth(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A relative depth in [0, 1] from one of several proxies, mixed at random."""
    h, w = clean.shape[:2]
    proxies = [
        depth_proxy(clean),  # vertical ramp + brightness and saturation cues
        np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None].repeat(w, axis=1),  # pure vertical ramp
        _smooth_field(h, w, rng),  # no scene cue at all
        np.ones((h, w), np.float32),  # uniform: distant scene or flat fog
    ]
    weights = rng.dirichlet(np.ones(len(proxies)))
    depth: np.ndarray = sum((float(k) * p for k, p in zip(weights, proxies)), np.zeros((h, w), np.float32))
    return (depth - depth.min()) / max(float(np.ptp(depth)), 1e-6) if np.ptp(depth) > 0.05 else np.ones((h, w))


def haze_any(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Haze as a family: I = J t + A (1 - t), t = exp(-beta d) with depth from several proxies,
    beta 0.1-2.0 (mild more likely), a slightly coloured airlight, and density that may vary across the image.

    Half the samples mix in the stored (gamma-encoded) values, as most dehazing datasets do; the other
    half mix where light adds up, in values decoded by a power of 1.8-2.4 (scattering is linear in
    light: the same transmission then veils dark regions far more)."""
    h, w = clean.shape[:2]
    depth = 0.2 + 0.8 * haze_depth(clean, rng)
    beta = 0.1 + 1.9 * float(rng.random()) ** 1.5  # 0.1-2.0, mild densities more likely
    if rng.random() < 0.5:
        beta_map = beta * (0.5 + _smooth_field(h, w, rng))  # non-uniform density
    else:
        beta_map = np.full((h, w), beta)
    t = np.exp(-beta_map * depth)[:, :, None]
    a = np.clip(float(rng.uniform(0.65, 1.0)) * (1.0 + rng.uniform(-0.06, 0.06, 3)), 0, 1)
    gamma = 1.0 if rng.random() < 0.5 else float(rng.uniform(1.8, 2.4))
    out = (clean.astype(np.float64) / 255.0) ** gamma * t + a**gamma * (1.0 - t)
    return np.rint(np.clip(out, 0, 1) ** (1.0 / gamma) * 255).astype(np.uint8)
