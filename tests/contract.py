"""A reusable contract for array operators, in the spirit of kornia's ``BaseTester``.

Subclass ``OperatorContract`` in a test module as ``Test<Name>``, and give it the operator
(``operator``), a float64 reference (``reference``) and its inputs (``make_inputs``). pytest then
runs every check below on each device (CUDA cases are parametrized and skipped where there is no
CUDA, or where the subclass's ``devices`` leave CUDA out) and both float dtypes:

- the output's dtype and device follow the input's, and the output matches the float64
  reference, for batches of 1 and 2;
- a batch of two gives the two images run one at a time;
- non-contiguous inputs (transposed and strided views) and channels-last inputs give the result
  of their contiguous copies;
- ``torch.autograd.gradcheck`` in float64 on a tiny case, where the operator is differentiable (the
  full Jacobian: fast mode let a 1% error in one input's gradient through).

Checks that only one operator has (an identity it must reduce to, say) stay in its own test module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import pytest
import torch
from torch import Tensor

from tests.conftest import TF32_TOL

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=CUDA)]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]


def transposed_view(t: Tensor) -> Tensor:
    """``t`` stored with its last two axes swapped: a non-contiguous view holding the same values."""
    return t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() >= 2 else t


def strided_view(t: Tensor) -> Tensor:
    """``t`` as every other column of a tensor twice as wide: a non-contiguous view of the same values."""
    if t.dim() == 0:
        return t
    wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
    wide[..., ::2] = t
    return wide[..., ::2]


def channels_last(t: Tensor) -> Tensor:
    """A 4-D ``t`` in channels-last memory order (other tensors as they are)."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


LAYOUTS: dict[str, Callable[[Tensor], Tensor]] = {
    "transposed": transposed_view,
    "strided": strided_view,
    "channels_last": channels_last,
}


class OperatorContract:
    """What every array operator promises. Subclasses (``Test<Name>``) supply the operator and its data."""

    #: device types the operator runs on; the others are skipped with ``unsupported_reason``
    devices: Sequence[str] = ("cpu", "cuda")
    unsupported_reason: str = "the operator does not run on this device"
    #: whether to run gradcheck (a differentiable operator must pass it)
    differentiable: bool = True
    #: tolerance (atol and rtol) against the float64 reference, per dtype; CUDA float32 gets at least TF32's
    tolerance: ClassVar[dict[torch.dtype, float]] = {torch.float32: 1e-5, torch.float64: 1e-10}
    #: tolerance between an input layout and its contiguous copy, per dtype
    layout_tolerance: ClassVar[dict[torch.dtype, float]] = {torch.float32: 1e-6, torch.float64: 1e-12}
    #: positions of the inputs that carry the batch axis (None: all); the others (weights) are shared
    batched: tuple[int, ...] | None = None

    def operator(self, *inputs: Tensor) -> Tensor:
        """The operator under test."""
        raise NotImplementedError

    def reference(self, *inputs: Tensor) -> Tensor:
        """The same result computed independently in float64 (inputs are float64 CPU tensors)."""
        raise NotImplementedError

    def make_inputs(self, batch: int, dtype: torch.dtype, device: torch.device, seed: int = 0) -> tuple[Tensor, ...]:
        """Small random inputs with ``batch`` images; the same values whatever ``dtype`` (drawn in float64)."""
        raise NotImplementedError

    def gradcheck_inputs(self, device: torch.device) -> tuple[Tensor, ...]:
        """A tiny float64 case for gradcheck (by default ``make_inputs`` with one image)."""
        return self.make_inputs(1, torch.float64, device, seed=1)

    def _device(self, where: str) -> torch.device:
        if where not in self.devices:
            pytest.skip(self.unsupported_reason)
        return torch.device(where)

    def _tol(self, dtype: torch.dtype, device: torch.device) -> dict[str, float]:
        value = self.tolerance[dtype]
        if device.type == "cuda" and dtype == torch.float32:
            value = max(value, TF32_TOL)
        return {"atol": value, "rtol": value}

    @pytest.mark.parametrize("where", DEVICES)
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("batch", [1, 2])
    def test_output_follows_the_input_dtype_and_matches_the_float64_reference(
        self, batch: int, dtype: torch.dtype, where: str
    ) -> None:
        device = self._device(where)
        inputs = self.make_inputs(batch, dtype, device)
        out = self.operator(*inputs)
        assert out.dtype == dtype and out.device.type == device.type
        assert out.shape[0] == batch
        expected = self.reference(*(t.detach().cpu().double() for t in inputs))
        torch.testing.assert_close(out.detach().cpu().double(), expected, **self._tol(dtype, device))

    @pytest.mark.parametrize("where", DEVICES)
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_a_batch_of_two_is_its_images_one_at_a_time(self, dtype: torch.dtype, where: str) -> None:
        device = self._device(where)
        inputs = self.make_inputs(2, dtype, device)
        together = self.operator(*inputs)
        alone = [self.operator(*(self._item(inputs, k, i) for k in range(len(inputs)))) for i in range(2)]
        tol = self.layout_tolerance[dtype]
        torch.testing.assert_close(together, torch.cat(alone), atol=tol, rtol=tol)

    def _item(self, inputs: tuple[Tensor, ...], k: int, i: int) -> Tensor:
        """Input ``k`` for image ``i`` alone: its slice ``i`` if it carries the batch axis, else itself."""
        return inputs[k][i : i + 1] if self.batched is None or k in self.batched else inputs[k]

    @pytest.mark.parametrize("where", DEVICES)
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("layout", list(LAYOUTS))
    def test_non_contiguous_and_channels_last_inputs_give_the_contiguous_result(
        self, layout: str, dtype: torch.dtype, where: str
    ) -> None:
        device = self._device(where)
        inputs = self.make_inputs(2, dtype, device)
        changed = tuple(LAYOUTS[layout](t) for t in inputs)
        assert not changed[0].is_contiguous(), f"the {layout} view of the first input is contiguous: nothing tested"
        for before, after in zip(inputs, changed):
            assert torch.equal(before, after)
        tol = self.layout_tolerance[dtype]
        torch.testing.assert_close(self.operator(*changed), self.operator(*inputs), atol=tol, rtol=tol)

    @pytest.mark.parametrize("where", DEVICES)
    def test_gradcheck_in_float64(self, where: str) -> None:
        if not self.differentiable:
            pytest.skip("the operator is not differentiable")
        device = self._device(where)
        leaves = tuple(t.detach().clone().requires_grad_(True) for t in self.gradcheck_inputs(device))
        assert torch.autograd.gradcheck(self.operator, leaves)
