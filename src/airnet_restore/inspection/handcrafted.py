"""Hand-crafted, physically motivated statistics of the pixels, beside the encoder's (``features``).

The encoder's map statistics do not separate flat sky, water, thin lines or text from light haze
or rain. These measure the physics directly, per cell of ``CELL`` x ``CELL`` pixels (the encoder's
cells), as sums that any window of cells turns into one vector of scale-robust numbers:

- noise: the fine residual of Immerkaer's 3x3 operator (blind to edges and ramps), whose mean
  magnitude is sqrt(2/pi) * 6 sigma for white noise; sigma is read in the flattest cells (a low
  quantile over cells, so texture does not count), and the share of the residual common to the
  three channels (1/3 for independent noise, 1 for texture);
- haze: dark-channel quantiles (``baselines.dcp.dark_channel``), saturation, local contrast, and
  how the dark channel and the contrast follow brightness across the window;
- rain: thin bright structures (white top-hat), their excess over thin dark ones (black top-hat:
  text and wires are often dark), and how much of their energy survives a line average along one
  of ``ORIENTATIONS`` directions (streaks share one direction, noise and texture do not).

A 1-megapixel image costs about a tenth of a second on one CPU core (OpenCV filters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from airnet_restore.baselines.dcp import dark_channel
from airnet_restore.image_io import to_float
from airnet_restore.inspection.features import CELL, FEATURE_SET, cell_regions, cell_windows

ORIENTATIONS = 8  # line directions, every 180/8 degrees from vertical
VERTICAL = (ORIENTATIONS - 1, 0, 1)  # those within 22.5 degrees of vertical
LINE = 9  # pixels of the line average
TOPHAT = 5  # structuring element of the top-hats: bright or dark structures narrower than this
DARK_PATCH = 15
MOMENTS = 10 + ORIENTATIONS  # g, g^2, dark, sat, |r|, r^2, rbar^2, white^2, black^2, |grad|^2, line energies
NAMES = (
    "noise sigma q10", "noise sigma q25", "noise sigma q50", "common residual, flat cells",
    "dark q10", "dark q50", "dark q90", "brightness q50", "saturation q10", "saturation q50", "saturation q90",
    "contrast q10", "contrast q50", "contrast q90", "corr(dark, brightness)", "corr(contrast, brightness)",
    "white top-hat", "black top-hat", "white/black", "orientation dominance", "line coherence", "line energy",
    "orientation agreement", "gradient q50", "best/perpendicular", "streak spread", "cell dominance q50",
    "vertical share", "vertical/horizontal",
)
HAND_SET = f"hand{MOMENTS}x{len(NAMES)}-o{ORIENTATIONS}-l{LINE}-t{TOPHAT}-d{DARK_PATCH}"
COMBINED_SET = f"{FEATURE_SET}+{HAND_SET}"  # a probe on the encoder's statistics followed by these
EPS = 1e-10
_SIGMA = math.sqrt(math.pi / 2.0) / 6.0 * 255.0  # Immerkaer: sigma (0-255) from the mean |residual| of [0, 1] pixels
_LAPLACE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def line_kernels() -> list[np.ndarray]:
    """``ORIENTATIONS`` normalised ``LINE``-pixel line averages, every 180 / ORIENTATIONS degrees."""
    out = []
    c = LINE // 2
    for k in range(ORIENTATIONS):
        a = math.pi * k / ORIENTATIONS
        kernel = np.zeros((LINE, LINE), np.float32)
        for t in np.linspace(-c, c, 4 * LINE):
            kernel[round(c + t * math.cos(a)), round(c + t * math.sin(a))] = 1.0
        out.append(kernel / kernel.sum())
    return out


_LINES = line_kernels()


@dataclass
class HandGrid:
    """Per-cell sums of the pixel moments: ``sums`` (MOMENTS, Hc, Wc) and pixel ``counts`` (Hc, Wc)."""

    sums: np.ndarray
    counts: np.ndarray

    def features(self) -> np.ndarray:
        """The whole image's vector."""
        return window_features(self.sums.reshape(MOMENTS, -1), self.counts.reshape(-1))

    def window_features(self, window: int, stride: int) -> np.ndarray:
        """Features of the windows ``EmbeddingGrid.window_features`` takes: (N, len(NAMES))."""
        return np.stack([self._box(*box) for box in cell_windows(self.counts.shape, window, stride)])

    def region_features(self, region: int, window: int) -> np.ndarray:
        """Features of the neighbourhoods ``EmbeddingGrid.region_features`` takes: (rows, cols, len(NAMES))."""
        boxes = cell_regions(self.counts.shape, region, window)
        return np.array([[self._box(*box) for box in row] for row in boxes], np.float64)

    def _box(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return window_features(self.sums[:, y0:y1, x0:x1].reshape(MOMENTS, -1), self.counts[y0:y1, x0:x1].reshape(-1))


def _quantiles(v: np.ndarray, qs: tuple[int, ...]) -> list[float]:
    return list(np.percentile(v, qs)) if len(v) else [0.0] * len(qs)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation, 0 where either is constant."""
    if len(a) < 3:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def window_features(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """One vector (``NAMES``) from cell sums (MOMENTS, N) and pixel counts (N,)."""
    keep = counts > 0
    sums, counts = sums[:, keep].astype(np.float64), counts[keep].astype(np.float64)
    cell = sums / counts
    g, g2, dark, sat, r1 = cell[:5]  # per-cell means; the residual's square, the top-hats' are pooled below
    grad = cell[9]
    lines = sums[10:]  # (ORIENTATIONS, N)
    noise = np.log(_SIGMA * r1 + 0.1)
    flat = noise <= np.percentile(noise, 25)
    common = float(sums[6, flat].sum() / (sums[5, flat].sum() + EPS))
    contrast = np.log(np.sqrt(np.maximum(g2 - g * g, 0.0)) / (g + 0.05) + 1e-3)
    total = sums.sum(axis=1) / counts.sum()
    e_white, e_black = total[7], total[8]
    e_lines = lines.sum(axis=1) / counts.sum()
    best = int(np.argmax(e_lines))
    agreement = float(lines[best].sum() / (lines.max(axis=0).sum() + EPS))
    perpendicular = e_lines[(best + ORIENTATIONS // 2) % ORIENTATIONS]
    along = lines[best] / counts  # streak energy per cell along the dominant direction: even for rain, patchy for lines
    dominance = np.log((lines[best] + EPS) / (lines.mean(axis=0) + EPS))
    vertical = e_lines[list(VERTICAL)].mean()  # rain falls within some 45 degrees of vertical; mortar and text run level
    horizontal = e_lines[[(k + ORIENTATIONS // 2) % ORIENTATIONS for k in VERTICAL]].mean()
    return np.array([
        *_quantiles(noise, (10, 25, 50)), common,
        *_quantiles(dark, (10, 50, 90)), float(np.median(g)), *_quantiles(sat, (10, 50, 90)),
        *_quantiles(contrast, (10, 50, 90)), _corr(dark, g), _corr(contrast, g),
        0.5 * math.log(e_white + EPS), 0.5 * math.log(e_black + EPS), math.log((e_white + 1e-7) / (e_black + 1e-7)),
        math.log((e_lines[best] + EPS) / (e_lines.mean() + EPS)), math.log((e_lines[best] + 1e-8) / (e_white + 1e-8)),
        0.5 * math.log(e_lines[best] + EPS), agreement, 0.5 * float(np.median(np.log(grad + EPS))),
        math.log((e_lines[best] + 1e-8) / (perpendicular + 1e-8)),
        math.log((np.percentile(along, 50) + 1e-8) / (np.percentile(along, 90) + 1e-8)), float(np.median(dominance)),
        float(vertical * len(VERTICAL) / (e_lines.sum() + EPS)), math.log((vertical + 1e-8) / (horizontal + 1e-8)),
    ])


def _cells(m: np.ndarray, hc: int, wc: int) -> np.ndarray:
    """Sums of a (H, W) map per ``CELL`` x ``CELL`` cell: (hc, wc)."""
    h, w = m.shape
    padded = np.zeros((hc * CELL, wc * CELL), np.float64)
    padded[:h, :w] = m
    return padded.reshape(hc, CELL, wc, CELL).sum(axis=(1, 3))


def hand_grid(image: torch.Tensor | np.ndarray) -> HandGrid:
    """Cell sums of the hand-crafted moments of one RGB image: a (3,H,W) float tensor in [0, 1], or HxWx3
    pixels (uint8, uint16 or float)."""
    if isinstance(image, torch.Tensor):
        rgb = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    else:
        rgb = to_float(image)
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    h, w = rgb.shape[:2]
    hc, wc = -(-h // CELL), -(-w // CELL)
    g = rgb.mean(axis=2)
    border = cv2.BORDER_REFLECT
    residual = np.stack([cv2.filter2D(rgb[:, :, c], -1, _LAPLACE, borderType=border) for c in range(3)], axis=2)
    hi, lo = rgb.max(axis=2), rgb.min(axis=2)
    kernel = np.ones((TOPHAT, TOPHAT), np.uint8)
    white = cv2.morphologyEx(g, cv2.MORPH_TOPHAT, kernel, borderType=cv2.BORDER_REPLICATE)
    black = cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, kernel, borderType=cv2.BORDER_REPLICATE)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0, borderType=border), cv2.Sobel(g, cv2.CV_32F, 0, 1, borderType=border)
    maps = [
        g, g * g, dark_channel(rgb, DARK_PATCH), (hi - lo) / (hi + 1e-3), np.abs(residual).mean(axis=2),
        (residual * residual).mean(axis=2), residual.mean(axis=2) ** 2, white * white, black * black, gx * gx + gy * gy,
        *(cv2.filter2D(white, -1, k, borderType=border) ** 2 for k in _LINES),
    ]
    ys = np.minimum(np.arange(hc) * CELL + CELL, h) - np.arange(hc) * CELL
    xs = np.minimum(np.arange(wc) * CELL + CELL, w) - np.arange(wc) * CELL
    return HandGrid(np.stack([_cells(m, hc, wc) for m in maps]), np.outer(ys, xs).astype(np.float64))
