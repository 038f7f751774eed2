"""Statistics of the CBDE degradation map: the embedding that inspection classifies.

The restorer is conditioned on ``inter``, the full-resolution map of the query encoder's
first ResBlock; it is the part of CBDE every weight file holds (inference files drop the
strided blocks and the MLP). One pass of that block gives, per cell of ``CELL`` x ``CELL``
pixels, moment sums of the map ``f`` and of its high-pass part ``d = f - mean3x3(f)``;
any window of cells (the whole image, or a region of the map) turns them into one feature
vector: per channel the mean and spread of ``f``, the energy and tail weight of ``d``, the
balance and coherence of the gradient directions of ``f`` (rain streaks share one
direction), and quantiles of the cells' energy and spread.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from airnet_restore.image_io import to_float
from airnet_restore.models.airnet import AirNet, eval_mode

CELL = 16  # pixels per side of a statistics cell
TILE = 512  # pixels per side of one encoder tile (memory stays bounded on any image size)
HALO = 4  # context around a tile: the block's two 3x3 convs and the 3x3 high-pass need 3
MOMENTS = 7  # sums per channel and cell: f, f^2, d^2, d^4, (df/dx)^2, (df/dy)^2, df/dx df/dy
QUANTILES = (10, 50, 90)
# Names these statistics in a stored probe: a probe computed on other statistics is refused.
FEATURE_SET = f"dmap-moments{MOMENTS}-cell{CELL}-q{'-'.join(map(str, QUANTILES))}"
EPS = 1e-8


@dataclass
class EmbeddingGrid:
    """Per-cell moment sums of the degradation map: ``sums`` (MOMENTS, C, Hc, Wc) and pixel ``counts`` (Hc, Wc)."""

    sums: np.ndarray
    counts: np.ndarray

    @property
    def channels(self) -> int:
        return self.sums.shape[1]

    @property
    def feature_size(self) -> int:
        return feature_size(self.channels)

    def features(self) -> np.ndarray:
        """The whole image's feature vector."""
        return window_features(self.sums.reshape(MOMENTS, self.channels, -1), self.counts.reshape(-1))

    def window_features(self, window: int, stride: int) -> np.ndarray:
        """Features of every ``window`` x ``window``-cell window at steps of ``stride`` cells, the last ones
        flush with the far edges (one window, the whole image, where it is smaller): (N, features)."""
        return np.stack([self._box(*box) for box in cell_windows(self.counts.shape, window, stride)])

    def region_features(self, region: int, window: int) -> np.ndarray:
        """Features of every ``region`` x ``region``-cell block, each computed over the ``window``-cell
        neighbourhood centred on it (clipped at the borders): (rows, cols, features)."""
        boxes = cell_regions(self.counts.shape, region, window)
        return np.array([[self._box(*box) for box in row] for row in boxes], np.float64)

    def _box(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Features of the cells [y0, y1) x [x0, x1)."""
        sums = self.sums[:, :, y0:y1, x0:x1].reshape(MOMENTS, self.channels, -1)
        return window_features(sums, self.counts[y0:y1, x0:x1].reshape(-1))


def cell_windows(shape: tuple[int, int], window: int, stride: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of every ``window``-cell window at steps of ``stride`` cells of a (rows, cols) cell grid,
    the last ones flush with the far edges (the whole grid where it is smaller)."""
    hc, wc = shape
    return [(y, min(hc, y + window), x, min(wc, x + window))
            for y in _starts(hc, window, stride) for x in _starts(wc, window, stride)]


def cell_regions(shape: tuple[int, int], region: int, window: int) -> list[list[tuple[int, int, int, int]]]:
    """Per ``region``-cell block of a (rows, cols) cell grid, the (y0, y1, x0, x1) of the ``window``-cell
    neighbourhood centred on it, clipped at the borders."""
    hc, wc = shape
    pad = (window - region) // 2
    return [[(max(0, r * region - pad), min(hc, r * region + region + pad), max(0, c * region - pad),
              min(wc, c * region + region + pad)) for c in range(-(-wc // region))] for r in range(-(-hc // region))]


def _starts(length: int, window: int, stride: int) -> list[int]:
    """Window starts along one axis: every ``stride``, plus one flush with the end."""
    if length <= window:
        return [0]
    return sorted(set(range(0, length - window + 1, stride)) | {length - window})


def feature_size(channels: int) -> int:
    """Length of the feature vector for a map of ``channels`` channels."""
    return channels * (6 + 2 * len(QUANTILES))


def window_features(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """One feature vector from cell sums (MOMENTS, C, N) and pixel counts (N,)."""
    sums = sums.astype(np.float64)
    counts = counts.astype(np.float64)
    keep = counts > 0
    sums, counts = sums[:, :, keep], counts[keep]
    total = sums.sum(axis=2) / counts.sum()  # (MOMENTS, C): moments over the window
    f1, f2, d2, d4, dx2, dy2, dxy = total
    spread = np.sqrt(np.maximum(f2 - f1 * f1, 0.0))
    cell = sums / counts  # per-cell moments
    cell_energy = 0.5 * np.log(cell[2] + EPS)
    cell_spread = 0.5 * np.log(np.maximum(cell[1] - cell[0] ** 2, 0.0) + EPS)
    return np.concatenate(
        [
            f1,
            np.log(spread + 1e-4),
            0.5 * np.log(d2 + EPS),
            np.log((d4 + EPS) / (d2 * d2 + EPS)),
            np.log((dx2 + EPS) / (dy2 + EPS)),
            np.sqrt((dx2 - dy2) ** 2 + 4 * dxy * dxy) / (dx2 + dy2 + EPS),
            *np.percentile(cell_energy, QUANTILES, axis=1),
            *np.percentile(cell_spread, QUANTILES, axis=1),
        ]
    )


def encoder_fingerprint(model: AirNet) -> str:
    """sha256 of the encoder block the statistics come from (float32 values): a probe fits exactly the
    weights with this fingerprint, whatever their restorer and storage precision."""
    h = hashlib.sha256()
    for name, t in sorted(model.E.E.encoder_q.E_pre.state_dict().items()):
        if t.is_floating_point():
            h.update(name.encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def degradation_map(model: AirNet, x: torch.Tensor) -> torch.Tensor:
    """The map ``inter`` of a (1,3,H,W) batch: the query encoder's first ResBlock only."""
    return model.E.degradation_map(x)


def _cell_sums(f: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Sums per ``CELL`` x ``CELL`` cell of the per-pixel moments inside ``box`` = (top, bottom, left, right)
    of the (1,C,H,W) map ``f``, whose margins around the box are context: (MOMENTS*C, rows, cols).

    The high-pass mean3x3 averages over the pixels inside the map at its borders; d/dx and d/dy are
    differences with the next pixel, so where the map ends they lack the last column (row).
    """
    top, bottom, left, right = box
    rows, cols = -(-(bottom - top) // CELL), -(-(right - left) // CELL)
    d = f - F.avg_pool2d(f, 3, stride=1, padding=1, count_include_pad=False)
    dx = (f[..., :, 1:] - f[..., :, :-1])[..., top:bottom, left:right]
    dy = (f[..., 1:, :] - f[..., :-1, :])[..., top:bottom, left:right]
    f, d2 = f[..., top:bottom, left:right], (d * d)[..., top:bottom, left:right]
    n_rows, n_cols = min(dx.shape[-2], dy.shape[-2]), min(dx.shape[-1], dy.shape[-1])
    products = (f, f * f, d2, d2 * d2, dx * dx, dy * dy, dx[..., :n_rows, :n_cols] * dy[..., :n_rows, :n_cols])

    def cells(m: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(m, CELL, ceil_mode=True, divisor_override=1)[0]
        return F.pad(pooled, (0, cols - pooled.shape[-1], 0, rows - pooled.shape[-2]))

    return torch.cat([cells(m) for m in products])


@torch.no_grad()
def embed(model: AirNet, image: torch.Tensor | np.ndarray) -> EmbeddingGrid:
    """Cell statistics of the degradation map of one RGB image: one encoder pass (in eval mode, the
    model's modes left as they were), tiled. ``image``: a (3,H,W) float tensor in [0, 1], or HxWx3
    pixels (uint8, uint16 or float), of which only one tile at a time becomes float."""
    device = next(model.parameters()).device
    if isinstance(image, np.ndarray):
        h, w = image.shape[:2]
        pixels = image

        def crop(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
            return torch.from_numpy(to_float(pixels[y0:y1, x0:x1])).permute(2, 0, 1).clamp(0, 1)
    else:
        h, w = image.shape[-2:]

        def crop(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
            return image[:, y0:y1, x0:x1]
    hc, wc = -(-h // CELL), -(-w // CELL)
    channels = model.config.enc_channels[0]
    sums = torch.zeros(MOMENTS * channels, hc, wc, dtype=torch.float64)
    step = TILE - TILE % CELL
    for top in range(0, h, step):
        for left in range(0, w, step):
            bottom, right = min(h, top + step), min(w, left + step)
            y0, x0 = max(0, top - HALO), max(0, left - HALO)
            y1, x1 = min(h, bottom + HALO), min(w, right + HALO)
            tile = crop(y0, y1, x0, x1)[None].to(device=device, dtype=torch.float32)
            with eval_mode(model):
                f = degradation_map(model, tile).float()
            cells = _cell_sums(f, (top - y0, bottom - y0, left - x0, right - x0))
            rows, cols = cells.shape[-2:]
            sums[:, top // CELL : top // CELL + rows, left // CELL : left // CELL + cols] = cells.double().cpu()
    ys = np.minimum(np.arange(hc) * CELL + CELL, h) - np.arange(hc) * CELL
    xs = np.minimum(np.arange(wc) * CELL + CELL, w) - np.arange(wc) * CELL
    return EmbeddingGrid(sums.numpy().reshape(MOMENTS, channels, hc, wc), np.outer(ys, xs).astype(np.float64))
