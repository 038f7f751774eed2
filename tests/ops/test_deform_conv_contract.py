"""The array-operator contract (tests/contract.py) for each implementation of the deformable convolution.

Every implementation is checked against a float64 DCNv2 written here with plain tensor indexing
(no grid_sample, no torchvision), which is itself checked against the loop-by-loop reference of
tests/ops/test_deform_conv.py. CUDA cases run where CUDA is available; numba's are skipped there.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from airnet_restore.ops.deform_conv import deform_conv3x3
from tests.contract import DEVICES, DTYPES, OperatorContract
from tests.ops.test_deform_conv import bilinear_reference


def dcn_reference(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor) -> Tensor:
    """Modulated deformable 3x3 convolution (stride 1, padding 1, no bias) in float64.

    Tap k = 3i + j of output pixel (r, q) samples the input at (r - 1 + i + offset[2k], q - 1 + j +
    offset[2k + 1]) bilinearly, reading zeros outside the image, and is scaled by mask[k].
    """
    x, offset, mask, weight = (t.double() for t in (x, offset, mask, weight))
    b, c, h, w = x.shape
    taps = torch.arange(9)
    rows = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1) + (taps // 3 - 1).view(1, 9, 1, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w) + (taps % 3 - 1).view(1, 9, 1, 1)
    py = rows + offset[:, 0::2]  # (b, 9, h, w)
    px = cols + offset[:, 1::2]
    y0, x0 = torch.floor(py), torch.floor(px)
    fy, fx = py - y0, px - x0
    flat = x.reshape(b, c, h * w)

    def pixels(yy: Tensor, xx: Tensor) -> Tensor:
        """x at integer positions (b, 9, h, w), zero outside the image: (b, c, 9, h, w)."""
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long().reshape(b, 1, -1).expand(b, c, -1)
        return torch.gather(flat, 2, index).view(b, c, 9, h, w) * inside.unsqueeze(1)

    sampled = (
        ((1 - fy) * (1 - fx)).unsqueeze(1) * pixels(y0, x0)
        + ((1 - fy) * fx).unsqueeze(1) * pixels(y0, x0 + 1)
        + (fy * (1 - fx)).unsqueeze(1) * pixels(y0 + 1, x0)
        + (fy * fx).unsqueeze(1) * pixels(y0 + 1, x0 + 1)
    ) * mask.unsqueeze(1)
    return torch.einsum("ock,bckhw->bohw", weight.reshape(weight.shape[0], c, 9), sampled)


def dcn_inputs(batch: int, dtype: torch.dtype, device: torch.device, seed: int = 0,
               c: int = 3, h: int = 5, w: int = 6, o: int = 4, scale: float = 2.0) -> tuple[Tensor, ...]:
    """Input, offsets (by default of scale 2: many taps fall beyond the border), mask and weight, drawn in float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c, h, w, generator=g, dtype=torch.float64)
    offset = scale * torch.randn(batch, 18, h, w, generator=g, dtype=torch.float64)
    mask = torch.rand(batch, 9, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(o, c, 3, 3, generator=g, dtype=torch.float64) / 4
    return tuple(t.to(device=device, dtype=dtype) for t in (x, offset, mask, weight))


class DeformConvContract(OperatorContract):
    """``deform_conv3x3`` with one implementation (``impl``)."""

    impl = "auto"
    batched = (0, 1, 2)  # the weight is shared by the images

    def operator(self, *inputs: Tensor) -> Tensor:
        return deform_conv3x3(*inputs, impl=self.impl)

    def reference(self, *inputs: Tensor) -> Tensor:
        return dcn_reference(*inputs)

    def make_inputs(self, batch: int, dtype: torch.dtype, device: torch.device, seed: int = 0) -> tuple[Tensor, ...]:
        return dcn_inputs(batch, dtype, device, seed)

    def gradcheck_inputs(self, device: torch.device) -> tuple[Tensor, ...]:
        # 2x3 pixels keep the full Jacobian small; offsets of scale 0.7 keep most taps inside the image
        return dcn_inputs(1, torch.float64, device, seed=1, c=2, h=2, w=3, o=1, scale=0.7)


class TestNumba(DeformConvContract):
    impl = "numba"
    devices = ("cpu",)
    unsupported_reason = "the numba deformable convolution runs on the CPU only"


class TestGridSample(DeformConvContract):
    impl = "grid_sample"


class TestTorchvision(DeformConvContract):
    impl = "torchvision"


IMPLS = [TestNumba, TestGridSample, TestTorchvision]


@pytest.mark.parametrize("where", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contract", IMPLS, ids=lambda k: k.impl)
def test_zero_offsets_and_a_unit_mask_are_a_plain_convolution(contract: type[DeformConvContract],
                                                               dtype: torch.dtype, where: str) -> None:
    device = contract()._device(where)
    x, offset, mask, weight = dcn_inputs(2, dtype, device)
    out = deform_conv3x3(x, torch.zeros_like(offset), torch.ones_like(mask), weight, contract.impl)
    expected = F.conv2d(x, weight, padding=1)
    torch.testing.assert_close(out, expected, **contract()._tol(dtype, device))


def test_the_float64_reference_agrees_with_the_loop_reference() -> None:
    """The vectorised reference above is what the per-pixel loops of tests/ops/test_deform_conv.py compute."""
    inputs = dcn_inputs(2, torch.float64, torch.device("cpu"), seed=3)
    torch.testing.assert_close(dcn_reference(*inputs), bilinear_reference(*inputs), atol=1e-12, rtol=1e-12)
