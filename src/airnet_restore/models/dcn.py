"""DCN layer: a modulated deformable convolution whose offsets and mask come from the degradation map."""

from __future__ import annotations

import math

import torch
from torch import nn

from airnet_restore.constants import Impl
from airnet_restore.ops.deform_conv import deform_conv3x3


class DCNLayer(nn.Module):
    """DCNv2 3x3 conv (no bias) with offsets and mask predicted from ``cat[x, inter]``.

    Official name ``DCN_layer``. ``conv_offset_mask`` outputs 27 channels: 0-17 are the
    offsets (passed unchanged, interleaved row/column per tap), 18-26 the mask logits.
    It is zero-initialised, so at start the layer equals 0.5 x an ordinary convolution.
    """

    def __init__(self, channels: int, inter_channels: int, dcn_impl: Impl = "auto") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        self.conv_offset_mask = nn.Conv2d(channels + inter_channels, 27, 3, padding=1, bias=True)
        self.dcn_impl: Impl = dcn_impl
        bound = 1.0 / math.sqrt(channels * 9)
        nn.init.uniform_(self.weight, -bound, bound)
        for p in self.conv_offset_mask.parameters():  # weight and bias
            nn.init.zeros_(p)

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        om = self.conv_offset_mask(torch.cat([x, inter], dim=1))
        # On a CPU (channels-last: ``inference_layout``, training's default) the mask logits are a strided slice of
        # ``om``; a dense copy first makes the sigmoid vectorize (12 against 31 ms a megapixel: benchmarks/README.md).
        # Decided by the device, not by om's strides: a shape-dependent branch would fix the batch size in an export.
        logits = om[:, 18:].contiguous(memory_format=torch.channels_last) if om.device.type == "cpu" else om[:, 18:]
        offset, mask = om[:, :18], torch.sigmoid(logits)
        # DCN sampling in fp32 (fp64 in a float64 model): no half-precision deformable kernel exists, and
        # torchvision casts it on CUDA anyway. Under bf16 autocast on a CPU its matrix product runs in bf16
        # (the low-precision CPU path, ``deform_conv3x3``).
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        cpu_bf16 = (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                    and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = deform_conv3x3(x.to(dtype), offset.to(dtype), mask.to(dtype), self.weight.to(dtype), self.dcn_impl,
                                 torch.bfloat16 if cpu_bf16 else None)
        return out.to(x.dtype)
