"""The array-operator contract (tests/contract.py) for the noise model's Wiener filter.

The reference is written here independently of ``postfilter/wiener.py``: patch by patch with scipy's
orthonormal DCT, in numpy float64, for one pass at one scale (``WienerSettings(levels=0, passes=1)``); the
multi-scale, multi-pass filter is a composition of that step (tested in test_wiener.py).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
from scipy.fft import dctn, idctn
from torch import Tensor

from airnet_restore.errors import AirNetError
from airnet_restore.postfilter import WienerSettings
from airnet_restore.postfilter.wiener import wiener
from tests.contract import OperatorContract

SIGMA = 0.1
ONE_STEP = WienerSettings(patch=8, stride=2, passes=1, levels=0)
OPPONENT = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [1.0, -2.0, 1.0]])
OPPONENT /= np.linalg.norm(OPPONENT, axis=1, keepdims=True)


def wiener_step_reference(noisy: np.ndarray, pilot: np.ndarray, sigma: float, patch: int = 8, stride: int = 2) -> np.ndarray:
    """One empirical Wiener step on (C,H,W) float64 arrays (C = 3: in the opponent colour space, the brightness's
    patch means kept): every ``patch`` x ``patch`` window at steps of ``stride`` over the reflect-padded image is
    shrunk in the DCT by the pilot's P^2 / (P^2 + sigma^2), and the windows are averaged with weights
    1 / (sigma^2 * sum of squared gains)."""
    c, h, w = noisy.shape
    mix = OPPONENT if c == 3 else np.eye(c)
    extra_h, extra_w = (-(h + patch - 2)) % stride, (-(w + patch - 2)) % stride
    pad = ((0, 0), (patch - 1, patch - 1 + extra_h), (patch - 1, patch - 1 + extra_w))
    y = np.pad(np.einsum("ij,jhw->ihw", mix, noisy), pad, mode="reflect")
    p = np.pad(np.einsum("ij,jhw->ihw", mix, pilot), pad, mode="reflect")
    num, den = np.zeros_like(y), np.zeros_like(y)
    for plane in range(c):
        for top in range(0, y.shape[1] - patch + 1, stride):
            for left in range(0, y.shape[2] - patch + 1, stride):
                window = np.s_[plane, top : top + patch, left : left + patch]
                coefficients, guide = dctn(y[window], norm="ortho"), dctn(p[window], norm="ortho")
                gain = guide**2 / (guide**2 + sigma**2)
                if plane == 0 or c != 3:
                    gain[0, 0] = 1.0
                weight = 1.0 / (sigma**2 * np.sum(gain**2) + 1e-12)
                num[window] += weight * idctn(gain * coefficients, norm="ortho")
                den[window] += weight
    estimate = (num / den)[:, patch - 1 : patch - 1 + h, patch - 1 : patch - 1 + w]
    return np.einsum("ji,jhw->ihw", mix, estimate)


class TestWienerStep(OperatorContract):
    """``wiener(noisy, pilot, sigma, settings)`` for one pass at one scale."""

    # an inference stage that works in place (test_the_filter_carries_no_gradient)
    differentiable = False
    tolerance: ClassVar[dict[torch.dtype, float]] = {torch.float32: 2e-5, torch.float64: 1e-10}
    layout_tolerance: ClassVar[dict[torch.dtype, float]] = {torch.float32: 1e-6, torch.float64: 1e-12}

    def operator(self, noisy: Tensor, pilot: Tensor) -> Tensor:
        return wiener(noisy, pilot, SIGMA, ONE_STEP)

    def reference(self, noisy: Tensor, pilot: Tensor) -> Tensor:
        return torch.from_numpy(np.stack([wiener_step_reference(n.numpy(), p.numpy(), SIGMA)
                                          for n, p in zip(noisy, pilot)]))

    def make_inputs(self, batch: int, dtype: torch.dtype, device: torch.device, seed: int = 0) -> tuple[Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        clean = torch.rand(batch, 3, 12, 14, generator=g, dtype=torch.float64)
        noisy = clean + SIGMA * torch.randn(clean.shape, generator=g, dtype=torch.float64)
        return noisy.to(device=device, dtype=dtype), clean.to(device=device, dtype=dtype)


def test_the_filter_carries_no_gradient_and_leaves_its_inputs_alone():
    """The filter works in place on its own temporaries only: inputs that ask for gradients come back unchanged
    and the output is a plain tensor (no graph kept for a stage nothing trains through)."""
    noisy, pilot = (t.requires_grad_(True) for t in TestWienerStep().make_inputs(1, torch.float64, torch.device("cpu")))
    before = noisy.detach().clone(), pilot.detach().clone()
    out = wiener(noisy, pilot, SIGMA, WienerSettings(levels=1), passes=2)
    assert not out.requires_grad
    assert torch.equal(noisy.detach(), before[0]) and torch.equal(pilot.detach(), before[1])


def test_the_full_filter_is_its_steps_composed_at_one_scale():
    """Two passes at one scale: the second step guided by the first's output."""
    noisy, pilot = TestWienerStep().make_inputs(1, torch.float64, torch.device("cpu"))
    first = wiener_step_reference(noisy[0].numpy(), pilot[0].numpy(), SIGMA)
    second = wiener_step_reference(noisy[0].numpy(), first, SIGMA)
    out = wiener(noisy, pilot, SIGMA, WienerSettings(levels=0), passes=2)[0].numpy()
    np.testing.assert_allclose(out, second, atol=1e-10, rtol=0)


def test_every_stride_that_divides_the_patch_matches_the_reference_and_others_are_refused():
    """The patches' weights are summed on the patch grid (a box of ``patch / stride`` grid steps), which needs the
    stride to divide the patch; a stride that does not is refused when the settings are made."""
    noisy, pilot = TestWienerStep().make_inputs(1, torch.float64, torch.device("cpu"))
    for stride in (1, 4):
        out = wiener(noisy, pilot, SIGMA, WienerSettings(patch=8, stride=stride, passes=1, levels=0))[0].numpy()
        np.testing.assert_allclose(out, wiener_step_reference(noisy[0].numpy(), pilot[0].numpy(), SIGMA, stride=stride),
                                   atol=1e-10, rtol=0)
    with pytest.raises(AirNetError, match="divide the patch"):
        WienerSettings(patch=8, stride=3)
