"""The haze map: a small network that dehazes with a smooth per-channel affine map of colour.

Haze is a matter of the whole scene (the airlight, the depth), not of fine detail, so the network sees the
photo shrunk to ``WORK`` pixels on its long side (with its dark channel, the dark channel prior's cue, as a
fourth input) and predicts at a quarter of that resolution, per colour channel, a gain ``a`` and an offset
``b``; upsampled to full size they give ``J = a I + b``. The scattering model ``I = J t + A (1 - t)`` is such a
map with ``a = 1 / t`` and ``b = A (1 - 1 / t)``, and the learnt one also fits haze mixed where light adds up
(after a gamma). Being smooth, the map cannot invent or smooth away detail: every edge of ``J`` is an edge of
``I``. At its start (the head at zero) it is the identity. Weights: ``training/hazemap.py`` (trained on the
training photos' synthetic haze and on clean photos, which it must leave alone); the post-filter's haze band
uses it in place of the dark channel prior where a record names one (``HazeSettings.map``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The long side, in pixels, of the image the network sees.
WORK = 128
# The smallest side of that image: the encoder halves it four times.
MIN_WORK = 16
# The dark channel's window at the working size.
DARK_PATCH = 7
# Bound of the log-gain: a gain between e^-3 and e^3.
MAX_LOG_GAIN = 3.0


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1, inplace=True))


class HazeMap(nn.Module):
    """Encoder (to 1/16) and decoder (to 1/4) over the shrunk image and its dark channel, a global branch
    (the airlight is one colour for the whole scene), and a head giving the log-gain and offset per channel."""

    def __init__(self, widths: tuple[int, int, int, int] = (24, 48, 64, 64)) -> None:
        super().__init__()
        w = widths
        self.e1 = nn.Sequential(_conv(4, w[0]), _conv(w[0], w[0], 2))
        self.e2 = _conv(w[0], w[1], 2)
        self.e3 = _conv(w[1], w[2], 2)
        self.e4 = nn.Sequential(_conv(w[2], w[3], 2), _conv(w[3], w[3]))
        self.glob = nn.Sequential(nn.Linear(w[3], w[3]), nn.LeakyReLU(0.1, inplace=True), nn.Linear(w[3], w[1]))
        self.d3 = _conv(w[3] + w[2], w[2])
        self.d2 = nn.Sequential(_conv(w[2] + w[1], w[1]), _conv(w[1], w[1]))
        self.head = nn.Conv2d(w[1], 6, 3, 1, 1)
        for p in self.head.parameters():  # weight and bias: the identity map
            nn.init.zeros_(p)

    def maps(self, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The gain and offset (each (N,3,h/4,w/4)) for (N,3,h,w) ``small`` in [0, 1]."""
        dark = -F.max_pool2d(-small.amin(1, keepdim=True), DARK_PATCH, 1, DARK_PATCH // 2)
        e1 = self.e1(torch.cat([small, dark], 1))
        e2 = self.e2(e1)
        e3 = self.e3(e2)
        e4 = self.e4(e3)
        g = self.glob(e4.mean((2, 3)))[:, :, None, None]
        d3 = self.d3(torch.cat([F.interpolate(e4, size=e3.shape[-2:], mode="bilinear", align_corners=False), e3], 1))
        d2 = self.d2(torch.cat([F.interpolate(d3, size=e2.shape[-2:], mode="bilinear", align_corners=False), e2], 1)) + g
        raw = self.head(d2)
        return raw[:, :3].clamp(-MAX_LOG_GAIN, MAX_LOG_GAIN).exp(), raw[:, 3:]

    def affine(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The gain and offset at ``image``'s size ((N,3,H,W) in [0, 1]), from the image shrunk to ``WORK``."""
        h, w = image.shape[-2:]
        scale = WORK / max(h, w)
        small = image
        if scale < 1.0:
            small = F.interpolate(image, size=(max(MIN_WORK, round(h * scale)), max(MIN_WORK, round(w * scale))),
                                  mode="area")
        a, b = self.maps(small)
        return (F.interpolate(a, size=(h, w), mode="bilinear", align_corners=False),
                F.interpolate(b, size=(h, w), mode="bilinear", align_corners=False))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` dehazed (not clipped): ``a image + b``."""
        a, b = self.affine(image)
        return a * image + b
