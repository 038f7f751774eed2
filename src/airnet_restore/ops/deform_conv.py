"""Modulated deformable convolution (DCNv2) behind one switch.

AirNet uses one shape only: 3x3 kernel, stride 1, padding 1, dilation 1, one
offset group, a modulation mask and no bias. Three implementations compute it:

- ``torchvision``: ``torchvision.ops.deform_conv2d``, the reference.
- ``grid_sample``: all nine taps sampled by one ``grid_sample`` call, then one
  1x1 convolution. Pure torch with autograd, so it trains; about 4x faster than
  torchvision for forward+backward on CPU.
- ``numba``: a CPU loop writing the im2col columns (the four bilinear
  neighbours of each tap computed once per pixel, the mask folded into their
  weights, whole channel vectors gathered from a channels-last map), then one
  matrix multiplication. At inference in float32 (output channels a multiple of
  8) sampling and product run fused in one loop, four pixels at a time, without
  columns in memory. Its backward is a second fused loop (columns recomputed,
  not stored) that scatters the input gradient and writes the offset and mask
  gradients, plus two matrix multiplications; training runs both loops serially.

``auto`` picks ``numba`` for CPU tensors (inference and training), ``grid_sample``
on MPS (torchvision has no MPS kernel for this operator) and ``torchvision`` on
CUDA; ``check_impl`` refuses up front a choice the device cannot run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from airnet_restore.constants import IMPLS, Impl
from airnet_restore.errors import AirNetError

# Bound on the im2col buffer of one numba call in training, whatever the image size. Large: every
# switch between numba's and torch's thread pools costs time (much of it on a loaded machine), so a
# training batch of airnet-lite at 96^2 (8 x 96^2 pixels x 9 x 24 floats) is one call.
COLS_BYTES = 64 << 20
# The same bound at inference: small enough that the matrix product reads the columns from the
# last-level cache, not from memory, large enough that the pool switches stay rare (at a megapixel
# and 24 channels, about 9 rows per call).
INFERENCE_COLS_BYTES = 8 << 20


def deform_conv3x3(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    impl: Impl = "auto",
    product: torch.dtype | None = None,
) -> torch.Tensor:
    """DCNv2 of ``x`` (B,C,H,W) with ``offset`` (B,18,H,W), ``mask`` (B,9,H,W), ``weight`` (O,C,3,3).

    Offset channel 2k is the row shift and 2k+1 the column shift of tap k (row-major),
    exactly as torchvision and mmcv read them. Computed in float32 or float64; ``product=torch.bfloat16``
    runs the numba implementation's matrix product in bf16 at inference (the low-precision CPU path: oneDNN,
    AMX where the CPU has it; the sampling stays float32, the result is returned in float32). The others and
    training compute every product in float32.
    """
    if product not in (None, torch.bfloat16):
        raise ValueError(f"the deformable convolution's product runs in float32 or bfloat16, not {product}")
    if impl not in IMPLS:
        raise ValueError(f"unknown deformable-convolution implementation {impl!r}; choose one of {IMPLS}")
    if impl == "auto":
        impl = auto_impl(x.device)
    if impl == "torchvision":
        from torchvision.ops import deform_conv2d  # imported here: 1.8 s of start-up that CPU runs never need

        return deform_conv2d(x, offset, weight, None, stride=1, padding=1, dilation=1, mask=mask)
    if impl == "grid_sample":
        return deform_conv3x3_grid_sample(x, offset, mask, weight)
    return deform_conv3x3_numba(x, offset, mask, weight, product)


def auto_impl(device: torch.device) -> Impl:
    """What ``auto`` runs on ``device``: numba on CPU, grid_sample on MPS, torchvision elsewhere (CUDA)."""
    by_device: dict[str, Impl] = {"cpu": "numba", "mps": "grid_sample"}
    return by_device.get(device.type, "torchvision")


def check_impl(impl: str, device: torch.device) -> None:
    """Refuse, before anything runs, an implementation that ``device`` cannot run (one-line AirNetError)."""
    if impl not in IMPLS:
        raise AirNetError(f"unknown deformable-convolution implementation {impl!r}; choose one of {', '.join(IMPLS)}")
    if impl == "numba" and device.type != "cpu":
        raise AirNetError(f"the numba deformable convolution runs on the CPU only, not on {device}; use dcn 'auto' or 'grid_sample'")
    if impl == "torchvision" and device.type == "mps":
        raise AirNetError("torchvision has no MPS kernel for the deformable convolution; use dcn 'auto' or 'grid_sample'")


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
    x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
    product: torch.dtype | None = None,
) -> torch.Tensor:
    """DCNv2 with the fused numba kernels (CPU, differentiable); ``product``: as in ``deform_conv3x3``.

    Returns a channels-last tensor, which the following convolutions run fastest on.
    """
    if x.device.type != "cpu":
        raise ValueError("the numba deformable convolution runs on CPU tensors only")
    # Decided here: inside ``forward`` grad mode is always off, and ``needs_input_grad`` is true for a
    # module's parameters even under ``torch.no_grad()``, which made inference run the training kernel.
    training = torch.is_grad_enabled() and any(t.requires_grad for t in (x, offset, mask, weight))
    # The backward is float32: training keeps the forward's product in float32 too, so its gradients are exact.
    low = product if not training and x.dtype != torch.float64 else None
    return _NumbaDeformConv.apply(x, offset, mask, weight, training, low)


def _row_blocks(b: int, c: int, h: int, w: int, dtype: torch.dtype, budget: int) -> range:
    """Start rows of the row blocks of one numba call each, whose columns take at most ``budget`` bytes
    (at least one row; the step is the block height)."""
    per_row = b * w * 9 * c * torch.finfo(dtype).bits // 8
    return range(0, h, max(1, min(h, budget // per_row)))


class _NumbaDeformConv(torch.autograd.Function):
    """Forward: im2col kernel + matmul per row block. Backward: the columns are recomputed by the
    backward kernel (nothing but the inputs is saved), so memory stays at one block of columns."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, training: bool,
        product: torch.dtype | None,
    ) -> torch.Tensor:
        from airnet_restore.ops import _numba_kernels as kernels

        ctx.save_for_backward(x, offset, mask, weight)
        xs, off, msk, wt, dtype = _kernel_inputs(x, offset, mask, weight)
        b, c, h, w = x.shape
        o = weight.shape[0]
        out = torch.empty((b, h, w, o), dtype=dtype)
        if not training and product is None and dtype == torch.float32 and o % 8 == 0:
            kernels.set_threads(torch.get_num_threads())
            kernels.fused_kernel(c)(xs, off, msk, _weight_groups(wt).numpy(), out.view(b * h, w * o).numpy())
            return out.permute(0, 3, 1, 2).to(x.dtype)
        # Training runs the serial build: between torch's many short ops of a training step, numba's
        # OpenMP pool beside torch's made whole steps several times slower on a loaded 2-core
        # machine, while the serial kernels take ~0.1 s per layer there (benchmarks/README.md).
        blocks = _row_blocks(b, c, h, w, dtype, COLS_BYTES if training else INFERENCE_COLS_BYTES)
        cols = torch.empty((b, blocks.step * w, 9 * c), dtype=dtype)
        im2col = kernels.im2col_kernel(c, xs.dtype, parallel=not training)
        if not training:
            kernels.set_threads(torch.get_num_threads())
        low = None if product is None else wt.to(product)
        for y0 in blocks:
            n = min(blocks.step, h - y0)
            im2col(xs, off, msk, y0, n, cols.numpy())
            for bi in range(b):
                rows = out[bi].view(h * w, o)[y0 * w : (y0 + n) * w]
                if low is None:
                    torch.mm(cols[bi, : n * w], wt, out=rows)
                else:
                    rows.copy_(torch.mm(cols[bi, : n * w].to(low.dtype), low))
        return out.permute(0, 3, 1, 2).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        from airnet_restore.ops import _numba_kernels as kernels

        x, offset, mask, weight = ctx.saved_tensors
        xs, off, msk, wt, dtype = _kernel_inputs(x, offset, mask, weight)
        b, c, h, w = x.shape
        o = weight.shape[0]
        g = grad_out.detach().to(dtype).permute(0, 2, 3, 1).contiguous()
        grad_x = torch.zeros((b, h, w, c), dtype=dtype)
        grad_offset = torch.empty((b, h, w, 18), dtype=dtype)
        grad_mask = torch.empty((b, h, w, 9), dtype=dtype)
        grad_wt = torch.zeros((9 * c, o), dtype=dtype)
        blocks = _row_blocks(b, c, h, w, dtype, COLS_BYTES)
        cols = torch.empty((b, blocks.step * w, 9 * c), dtype=dtype)
        gcols = torch.empty_like(cols)
        for y0 in blocks:
            n = min(blocks.step, h - y0)
            g_blk = g.view(b, h * w, o)[:, y0 * w : (y0 + n) * w]
            for bi in range(b):
                torch.mm(g_blk[bi], wt.t(), out=gcols[bi, : n * w])
            kernels.backward_deform3x3(xs, off, msk, gcols.numpy(), y0, n, cols.numpy(),
                                       grad_offset.numpy(), grad_mask.numpy(), grad_x.numpy())
            for bi in range(b):
                grad_wt.addmm_(cols[bi, : n * w].t(), g_blk[bi])
        grads = (
            grad_x.permute(0, 3, 1, 2).to(x.dtype),
            grad_offset.permute(0, 3, 1, 2).to(offset.dtype),
            grad_mask.permute(0, 3, 1, 2).to(mask.dtype),
            grad_wt.view(3, 3, c, o).permute(3, 2, 0, 1).to(weight.dtype),
        )
        return (*(grad if needed else None for grad, needed in zip(grads, ctx.needs_input_grad)), None, None)


def _weight_groups(wt: torch.Tensor) -> torch.Tensor:
    """The (9*C, O) weight matrix as ``fused_kernel`` reads it: groups of ``FUSED_GROUP`` output channels,
    zero-padded, each flattened row-major."""
    from airnet_restore.ops._numba_kernels import FUSED_GROUP

    k, o = wt.shape
    n = -(-o // FUSED_GROUP)
    padded = wt.new_zeros((k, n * FUSED_GROUP))
    padded[:, :o] = wt
    return padded.view(k, n, FUSED_GROUP).permute(1, 0, 2).reshape(n, k * FUSED_GROUP)


def _kernel_inputs(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> tuple:
    """Channels-last numpy views of the inputs (copied only when not channels-last already), the
    weight as a (9*C, O) matrix with tap-major rows matching the column layout, and the dtype."""
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    xs = x.detach().to(dtype).permute(0, 2, 3, 1).contiguous().numpy()
    off = offset.detach().to(dtype).permute(0, 2, 3, 1).numpy()
    msk = mask.detach().to(dtype).permute(0, 2, 3, 1).numpy()
    c, o = x.shape[1], weight.shape[0]
    wt = weight.detach().to(dtype).permute(2, 3, 1, 0).reshape(9 * c, o).contiguous()
    return xs, off, msk, wt, dtype
