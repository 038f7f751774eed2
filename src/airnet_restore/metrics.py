"""PSNR and SSIM in torch, and the two protocols papers use.

- ``airnet`` (AirNet, PromptIR and their successors): RGB, floats clipped to [0, 1],
  data_range 1, SSIM with a 7x7 uniform window and sample covariance averaged over
  channels (scikit-image's defaults), both images centre-cropped to multiples of 16,
  per-image scores averaged.
- ``basicsr`` (the SR/denoising literature): Y channel of BT.601 (16-235), SSIM with an
  11x11 Gaussian window (sigma 1.5, population covariance), ``crop_border`` pixels removed.

Scores are computed in float64 and agree with scikit-image (tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from airnet_restore.errors import AirNetError


def centre_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centre ``height`` x ``width`` window of (..., H, W), whole axes where shorter: top/left lose
    floor(excess/2), the rest comes off bottom/right."""
    h, w = x.shape[-2:]
    top, left = max(0, (h - height) // 2), max(0, (w - width) // 2)
    return x[..., top : top + height, left : left + width]


def crop_to_multiple(x: torch.Tensor, base: int = 16) -> torch.Tensor:
    """Centre-crop (..., H, W) to multiples of ``base``."""
    h, w = x.shape[-2:]
    return centre_crop(x, h - h % base, w - w % base)


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma in [16/255, 235/255] of RGB in [0, 1] (MATLAB's rgb2ycbcr, as BasicSR)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR of (B, C, H, W) tensors; identical images give +inf."""
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _window(kind: str, device: torch.device) -> torch.Tensor:
    if kind == "uniform7":
        return torch.full((7, 7), 1.0 / 49, dtype=torch.float64, device=device)
    if kind == "gaussian11":
        t = torch.arange(-5, 6, dtype=torch.float64, device=device)
        g = torch.exp(-(t**2) / (2 * 1.5**2))
        g = g / g.sum()
        return g[:, None] * g[None, :]
    raise ValueError(f"unknown SSIM window {kind!r}")


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window: str = "uniform7") -> torch.Tensor:
    """Per-image SSIM of (B, C, H, W) tensors, channels averaged, over the valid window positions.

    ``uniform7`` uses sample covariance (N/(N-1)), as scikit-image's default; ``gaussian11``
    the population covariance of Wang et al.
    """
    a, b = a.double(), b.double()
    win = _window(window, a.device)
    k = win.shape[0]
    if min(a.shape[-2:]) < k:
        raise AirNetError(f"images of {tuple(a.shape[-2:])} are smaller than the {k}x{k} SSIM window")
    c = a.shape[1]
    weight = win.expand(c, 1, k, k)

    def filt(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, groups=c)

    cov_norm = k * k / (k * k - 1.0) if window == "uniform7" else 1.0
    ux, uy = filt(a), filt(b)
    vx = cov_norm * (filt(a * a) - ux * ux)
    vy = cov_norm * (filt(b * b) - uy * uy)
    vxy = cov_norm * (filt(a * b) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(2).mean(dim=2).mean(dim=1)


@dataclass(frozen=True)
class Protocol:
    """How a paper scores: colour space, crop, SSIM window."""

    name: str
    description: str
    y_channel: bool = False
    crop_base: int | None = None
    crop_border: int = 0
    window: str = "uniform7"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double().clamp(0, 1)
        if self.crop_base:
            x = crop_to_multiple(x, self.crop_base)
        if self.y_channel:
            x = rgb_to_y(x)
        if self.crop_border:
            x = x[..., self.crop_border : -self.crop_border, self.crop_border : -self.crop_border]
        return x

    def score(self, restored: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image (PSNR, SSIM) of (B, 3, H, W) or (3, H, W) RGB tensors in [0, 1]."""
        if restored.shape != clean.shape:
            raise AirNetError(f"restored {tuple(restored.shape)} and clean {tuple(clean.shape)} differ in shape")
        if restored.dim() == 3:
            restored, clean = restored[None], clean[None]
        r, c = self.prepare(restored), self.prepare(clean)
        return psnr(r, c), ssim(r, c, window=self.window)


PROTOCOLS = {
    "airnet": Protocol("airnet", "RGB, [0,1] floats, x16 centre crop, SSIM 7x7 uniform (skimage default), per-image mean",
                       crop_base=16),
    "basicsr": Protocol("basicsr", "Y (BT.601), SSIM 11x11 Gaussian sigma 1.5, crop_border 0, per-image mean",
                        y_channel=True, window="gaussian11"),
}


def get_protocol(name: str, crop_border: int = 0) -> Protocol:
    if name not in PROTOCOLS:
        raise AirNetError(f"unknown metric protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    p = PROTOCOLS[name]
    if crop_border and name == "basicsr":
        p = replace(p, crop_border=crop_border, description=p.description.replace("crop_border 0", f"crop_border {crop_border}"))
    return p


def average(values: list[float]) -> float:
    """Arithmetic mean over images, as the paper's AverageMeter: one identical pair (PSNR inf) makes it inf."""
    return math.fsum(values) / len(values) if values else float("nan")
