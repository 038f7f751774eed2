"""Modulated deformable convolution (DCNv2) behind one switch.

AirNet uses one shape only: 3x3 kernel, stride 1, padding 1, dilation 1, one
offset group, a modulation mask and no bias. Three implementations compute it:

- ``torchvision``: ``torchvision.ops.deform_conv2d``, the reference.
- ``grid_sample``: all nine taps sampled by one ``grid_sample`` call, then one
  1x1 convolution. Pure torch with autograd, so it trains; about 4x faster than
  torchvision for forward+backward on CPU.
- ``numba``: a fused CPU loop writing the im2col columns (the four bilinear
  neighbours of each tap computed once per pixel, the mask folded into their
  weights, whole channel vectors gathered from a channels-last map), then one
  matrix multiplication. Inference only (no autograd).

``auto`` picks ``numba`` for CPU tensors that need no gradient, ``grid_sample``
for CPU training and ``torchvision`` on other devices.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d as _tv_deform_conv2d

Impl = Literal["auto", "torchvision", "grid_sample", "numba"]
IMPLS: tuple[str, ...] = ("auto", "torchvision", "grid_sample", "numba")

# Output pixels per numba call: bounds the im2col buffer to
# BLOCK_PIXELS * 9 * C floats (9 MB at C=64) whatever the image size.
BLOCK_PIXELS = 4096


def deform_conv3x3(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    impl: Impl = "auto",
) -> torch.Tensor:
    """DCNv2 of ``x`` (B,C,H,W) with ``offset`` (B,18,H,W), ``mask`` (B,9,H,W), ``weight`` (O,C,3,3).

    Offset channel 2k is the row shift and 2k+1 the column shift of tap k (row-major),
    exactly as torchvision and mmcv read them. Always computed in float32 or float64.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown deformable-convolution implementation {impl!r}; choose one of {IMPLS}")
    if impl == "auto":
        impl = _choose(x, offset, mask, weight)
    if impl == "torchvision":
        return _tv_deform_conv2d(x, offset, weight, None, stride=1, padding=1, dilation=1, mask=mask)
    if impl == "grid_sample":
        return deform_conv3x3_grid_sample(x, offset, mask, weight)
    return deform_conv3x3_numba(x, offset, mask, weight)


def _choose(*tensors: torch.Tensor) -> str:
    x = tensors[0]
    if x.device.type != "cpu":
        return "torchvision"
    if x.shape[-1] < 2 or x.shape[-2] < 2:
        return "torchvision"
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "grid_sample"
    return "numba"


def deform_conv3x3_grid_sample(
    x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """DCNv2 as one bilinear ``grid_sample`` over all taps and a 1x1 convolution (differentiable)."""
    b, c, h, w = x.shape
    if h < 2 or w < 2:
        raise ValueError("grid_sample deformable convolution needs H, W >= 2")
    dtype, device = x.dtype, x.device
    ky, kx = torch.meshgrid(
        torch.arange(-1, 2, device=device, dtype=dtype), torch.arange(-1, 2, device=device, dtype=dtype), indexing="ij"
    )
    ys = torch.arange(h, device=device, dtype=dtype).view(1, 1, h, 1)
    xs = torch.arange(w, device=device, dtype=dtype).view(1, 1, 1, w)
    off = offset.view(b, 9, 2, h, w)
    py = ys + ky.reshape(1, 9, 1, 1) + off[:, :, 0]
    px = xs + kx.reshape(1, 9, 1, 1) + off[:, :, 1]
    # align_corners=True maps -1 and 1 to the centres of the first and last pixel.
    grid = torch.stack((px * (2.0 / (w - 1)) - 1.0, py * (2.0 / (h - 1)) - 1.0), dim=-1)
    sampled = F.grid_sample(
        x, grid.view(b, 9 * h, w, 2), mode="bilinear", padding_mode="zeros", align_corners=True
    ).view(b, c, 9, h, w)
    sampled = sampled * mask.view(b, 1, 9, h, w)
    return F.conv2d(sampled.view(b, c * 9, h, w), weight.reshape(weight.shape[0], c * 9, 1, 1))


def deform_conv3x3_numba(
    x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """DCNv2 forward with a fused numba im2col and one matmul (CPU, no autograd).

    Returns a channels-last tensor, which the following convolutions run fastest on.
    """
    if x.device.type != "cpu":
        raise ValueError("the numba deformable convolution runs on CPU tensors only")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, offset, mask, weight)):
        raise RuntimeError("the numba deformable convolution has no backward; use impl='grid_sample' to train")
    from airnet_restore.ops import _numba_kernels as kernels

    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    b, c, h, w = x.shape
    o = weight.shape[0]
    with torch.no_grad():
        # Channels-last views: free when the tensors already are channels-last.
        xs = x.to(dtype).permute(0, 2, 3, 1).contiguous().numpy()
        off = offset.to(dtype).permute(0, 2, 3, 1).numpy()
        msk = mask.to(dtype).permute(0, 2, 3, 1).numpy()
        # (O, C, 3, 3) -> (9*C, O) with tap-major rows, matching the column layout.
        wt = weight.to(dtype).permute(2, 3, 1, 0).reshape(9 * c, o).contiguous()
        out = torch.empty((b, h, w, o), dtype=dtype)
        rows = max(1, min(h, BLOCK_PIXELS // w))
        cols = torch.empty((rows * w, 9 * c), dtype=dtype)
        cols_np = cols.numpy()
        kernels.set_threads(torch.get_num_threads())
        for bi in range(b):
            out_b = out[bi].view(h * w, o)
            for y0 in range(0, h, rows):
                n = min(rows, h - y0)
                kernels.im2col_deform3x3(xs[bi], off[bi], msk[bi], y0, n, cols_np)
                torch.mm(cols[: n * w], wt, out=out_b[y0 * w : (y0 + n) * w])
    return out.permute(0, 3, 1, 2).to(x.dtype)
