import pytest
import torch
import torch.nn.functional as F

from airnet_restore.ops.deform_conv import deform_conv3x3
from tests.conftest import cpu_only, tol

IMPLS = ["torchvision", "grid_sample", "numba"]


def bilinear_reference(x, offset, mask, weight):
    """Independent DCNv2 by explicit loops over pixels and taps (float64, small inputs only)."""
    b, c, h, w = x.shape
    out = torch.zeros(b, weight.shape[0], h, w, dtype=torch.float64)
    x = x.double()

    def pixel(bi, yy, xx):
        if 0 <= yy < h and 0 <= xx < w:
            return x[bi, :, yy, xx]
        return torch.zeros(c, dtype=torch.float64)

    for bi in range(b):
        for r in range(h):
            for q in range(w):
                cols = []
                for k in range(9):
                    py = r - 1 + k // 3 + float(offset[bi, 2 * k, r, q])
                    px = q - 1 + k % 3 + float(offset[bi, 2 * k + 1, r, q])
                    if py <= -1 or py >= h or px <= -1 or px >= w:
                        v = torch.zeros(c, dtype=torch.float64)
                    else:
                        y0, x0 = int(torch.floor(torch.tensor(py))), int(torch.floor(torch.tensor(px)))
                        ly, lx = py - y0, px - x0
                        v = ((1 - ly) * (1 - lx) * pixel(bi, y0, x0) + (1 - ly) * lx * pixel(bi, y0, x0 + 1)
                             + ly * (1 - lx) * pixel(bi, y0 + 1, x0) + ly * lx * pixel(bi, y0 + 1, x0 + 1))
                    cols.append(v * float(mask[bi, k, r, q]))
                col = torch.stack(cols, dim=1)  # (C, 9)
                out[bi, :, r, q] = (weight.double().reshape(weight.shape[0], c, 9) * col).sum(dim=(1, 2))
    return out


def random_case(b=2, c=8, h=9, w=11, o=6, scale=2.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, dtype=dtype)
    offset = torch.randn(b, 18, h, w, generator=g, dtype=dtype) * scale
    mask = torch.rand(b, 9, h, w, generator=g, dtype=dtype)
    weight = torch.randn(o, c, 3, 3, generator=g, dtype=dtype) / 8
    return x, offset, mask, weight


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_offset_half_mask_is_half_a_convolution(impl):
    x, _, _, weight = random_case()
    offset = torch.zeros(2, 18, 9, 11)
    mask = torch.full((2, 9, 9, 11), 0.5)
    out = deform_conv3x3(x, offset, mask, weight, impl)
    torch.testing.assert_close(out, 0.5 * F.conv2d(x, weight, padding=1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_matches_independent_bilinear_reference(impl):
    # Offsets of scale 3 on a 6x7 map push many samples beyond the border.
    x, offset, mask, weight = random_case(b=1, c=4, h=6, w=7, o=3, scale=3.0, seed=1)
    out = deform_conv3x3(x, offset, mask, weight, impl)
    ref = bilinear_reference(x, offset, mask, weight)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["grid_sample", "numba"])
@pytest.mark.parametrize("shape", [(1, 16, 17, 23), (2, 64, 32, 31), (1, 5, 2, 3)])
def test_matches_torchvision_forward(impl, shape, device):
    cpu_only(impl, device)
    b, c, h, w = shape
    x, offset, mask, weight = random_case(b, c, h, w, o=c, scale=4.0, seed=2)
    weight = weight * (8 / (3 * c**0.5))  # the model's init scale: outputs of order 1
    ref = deform_conv3x3(x, offset, mask, weight, "torchvision")
    out = deform_conv3x3(*(t.to(device) for t in (x, offset, mask, weight)), impl).cpu()
    torch.testing.assert_close(out, ref, **tol(device, 1e-5))


def test_numba_float64_is_exact():
    x, offset, mask, weight = random_case(dtype=torch.float64, scale=3.0, seed=3)
    ref = deform_conv3x3(x, offset, mask, weight, "torchvision")
    out = deform_conv3x3(x, offset, mask, weight, "numba")
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)


def test_grid_sample_gradients_match_torchvision(device):
    tensors = random_case(b=2, c=6, h=8, w=9, o=5, scale=2.5, seed=4, dtype=torch.float64)
    grads = {}
    for impl, where in (("torchvision", torch.device("cpu")), ("grid_sample", device), ("torchvision on device", device)):
        leaves = [t.to(where).requires_grad_(True) for t in tensors]
        out = deform_conv3x3(*leaves, impl=impl.split()[0])
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=where).view_as(out)).sum().backward()
        grads[impl] = [t.grad.cpu() for t in leaves]
    for impl in ("grid_sample", "torchvision on device"):
        for name, a, b in zip(("input", "offset", "mask", "weight"), grads["torchvision"], grads[impl]):
            torch.testing.assert_close(b, a, atol=1e-8, rtol=1e-7, msg=f"{impl}: gradient of {name} differs")


def test_auto_trains_with_the_numba_kernel_on_cpu():
    x, offset, mask, weight = random_case(seed=5)
    weight.requires_grad_(True)
    out = deform_conv3x3(x, offset, mask, weight, "auto")
    assert out.grad_fn is not None and "Numba" in type(out.grad_fn).__name__
    out.sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def _grads(impl, tensors, seed=0):
    leaves = [t.clone().requires_grad_(True) for t in tensors]
    out = deform_conv3x3(*leaves, impl=impl)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    (out * g).sum().backward()
    return [out.detach()] + [t.grad for t in leaves]


@pytest.mark.parametrize(
    "case",
    [
        {"b": 2, "c": 6, "h": 8, "w": 9, "o": 5, "scale": 2.5, "seed": 4},
        {"b": 1, "c": 5, "h": 7, "w": 3, "o": 4, "scale": 4.0, "seed": 6},  # odd sizes, many samples beyond the border
        {"b": 1, "c": 3, "h": 1, "w": 1, "o": 2, "scale": 1.0, "seed": 7},  # a single pixel
        {"b": 3, "c": 4, "h": 13, "w": 11, "o": 3, "scale": 0.0, "seed": 8},  # integer positions
    ],
)
def test_numba_gradients_match_torchvision(case):
    tensors = random_case(dtype=torch.float64, **case)
    ref = _grads("torchvision", tensors)
    got = _grads("numba", tensors)
    for name, a, b in zip(("output", "input", "offset", "mask", "weight"), ref, got):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-10, msg=f"{name} differs")


def test_numba_gradients_over_several_row_blocks_match_float32(monkeypatch):
    import airnet_restore.ops.deform_conv as dc

    monkeypatch.setattr(dc, "COLS_BYTES", 2 * 9 * 8 * 4 * 17 * 3)  # 3 rows of 17 pixels per call
    tensors = random_case(b=2, c=8, h=10, w=17, o=6, scale=3.0, seed=9)
    ref = _grads("grid_sample", tensors)
    got = _grads("numba", tensors)
    for name, a, b in zip(("output", "input", "offset", "mask", "weight"), ref, got):
        torch.testing.assert_close(b, a, atol=2e-4, rtol=1e-4, msg=f"{name} differs")


@pytest.mark.parametrize("grad", [False, True])
def test_numba_inference_uses_the_parallel_kernel_even_with_parameters(monkeypatch, grad):
    """A module's weight requires grad under ``torch.no_grad()`` too: inference must still run the parallel
    kernel over cache-sized row blocks, training the serial one (a model's forward ran the training kernel)."""
    import airnet_restore.ops._numba_kernels as kernels
    import airnet_restore.ops.deform_conv as dc

    chosen = []
    real = kernels.im2col_kernel
    monkeypatch.setattr(kernels, "im2col_kernel", lambda c, dtype, parallel: chosen.append(parallel) or real(c, dtype, parallel))
    monkeypatch.setattr(dc, "INFERENCE_COLS_BYTES", 9 * 8 * 4 * 17 * 2)  # 2 rows of 17 pixels per call
    x, offset, mask, weight = random_case(b=1, c=8, h=10, w=17, o=6, scale=3.0, seed=13)
    weight.requires_grad_(True)
    with torch.set_grad_enabled(grad):
        out = deform_conv3x3(x, offset, mask, weight, "numba")
    assert chosen == [not grad]
    torch.testing.assert_close(out.detach(), deform_conv3x3(x, offset, mask, weight.detach(), "grid_sample"),
                               atol=2e-5, rtol=1e-5)


def test_numba_bf16_product_at_inference_only():
    """The low-precision CPU path: the product in bf16 stays within bf16's error of float32 (and differs from
    it: bf16 really ran); with gradients wanted, the product stays float32 (exact gradients)."""
    x, offset, mask, weight = random_case(b=1, c=16, h=12, w=13, o=8, scale=2.0, seed=14)
    exact = deform_conv3x3(x, offset, mask, weight, "numba")
    low = deform_conv3x3(x, offset, mask, weight, "numba", product=torch.bfloat16)
    assert low.dtype == torch.float32 and not torch.equal(low, exact)
    torch.testing.assert_close(low, exact, atol=0.05 * exact.abs().max().item(), rtol=0.02)
    weight.requires_grad_(True)
    trained = deform_conv3x3(x, offset, mask, weight, "numba", product=torch.bfloat16)
    assert torch.equal(trained.detach(), deform_conv3x3(x, offset, mask, weight, "numba").detach())
    torch.testing.assert_close(trained.detach(), exact, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        deform_conv3x3(x, offset, mask, weight, "numba", product=torch.float16)


@pytest.mark.parametrize(("c", "o", "w"), [(16, 16, 23), (5, 8, 3), (24, 24, 1), (8, 40, 6), (12, 48, 9)])
def test_numba_fused_inference_matches_torchvision(monkeypatch, c, o, w):
    """At inference in float32 with output channels a multiple of 8, sampling and product run in the fused
    kernel: every group width (one, two or three vectors of a 24-channel group, one or two groups) and rows
    whose pixel count is not a multiple of the kernel's four, against torchvision."""
    import airnet_restore.ops._numba_kernels as kernels

    used = []
    real = kernels.fused_kernel
    monkeypatch.setattr(kernels, "fused_kernel", lambda ch: used.append(ch) or real(ch))
    x, offset, mask, weight = random_case(b=2, c=c, h=7, w=w, o=o, scale=3.0, seed=15)
    weight = weight * (8 / (3 * c**0.5))
    with torch.no_grad():
        out = deform_conv3x3(x, offset, mask, weight.requires_grad_(True), "numba")
    assert used == [c] and out.shape == (2, o, 7, w)
    torch.testing.assert_close(out, deform_conv3x3(x, offset, mask, weight.detach(), "torchvision"), atol=1e-5, rtol=1e-5)


def test_numba_fused_inference_leaves_other_shapes_to_im2col(monkeypatch):
    """Output channels that are not a multiple of 8, float64 and training keep the im2col kernel."""
    import airnet_restore.ops._numba_kernels as kernels

    monkeypatch.setattr(kernels, "fused_kernel", lambda ch: pytest.fail("fused kernel used"))
    x, offset, mask, weight = random_case(b=1, c=8, h=5, w=6, o=6, seed=16)
    ref = deform_conv3x3(x, offset, mask, weight, "torchvision")
    torch.testing.assert_close(deform_conv3x3(x, offset, mask, weight, "numba"), ref, atol=1e-5, rtol=1e-5)
    x, offset, mask, weight = random_case(b=1, c=8, h=5, w=6, o=8, seed=16, dtype=torch.float64)
    deform_conv3x3(x, offset, mask, weight, "numba")
    deform_conv3x3(x.float(), offset.float(), mask.float(), weight.float().requires_grad_(True), "numba")


def test_numba_fused_inference_samples_zero_for_nan_offsets():
    x, offset, mask, weight = random_case(c=8, o=16, seed=12)
    offset[:, :, 2:5, 3:6] = float("nan")
    offset[:, 0, 6:, :] = 1e9
    with torch.no_grad():
        out = deform_conv3x3(x, offset, mask, weight, "numba")
    clean = offset.nan_to_num(nan=-1e9)
    torch.testing.assert_close(out, deform_conv3x3(x, clean, mask, weight, "torchvision"), atol=1e-5, rtol=1e-5)


def test_numba_passes_gradcheck():
    leaves = [t.requires_grad_(True) for t in random_case(b=2, c=3, h=4, w=5, o=2, scale=2.0, seed=10,
                                                          dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda *t: deform_conv3x3(*t, impl="numba"), leaves)


def test_numba_backward_skips_gradients_nobody_needs():
    x, offset, mask, weight = random_case(seed=11)
    weight.requires_grad_(True)
    deform_conv3x3(x, offset, mask, weight, "numba").sum().backward()
    assert x.grad is None and weight.grad is not None


def test_nan_offsets_sample_zero_instead_of_reading_outside_the_image():
    x, offset, mask, weight = random_case(seed=12)
    offset[:, :, 2:5, 3:6] = float("nan")
    leaves = [t.requires_grad_(True) for t in (x, offset, mask, weight)]
    out = deform_conv3x3(*leaves, impl="numba")
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


def test_unknown_impl_is_rejected():
    with pytest.raises(ValueError, match="unknown deformable"):
        deform_conv3x3(*random_case(), impl="cuda-magic")


def test_f32x8_vectors_load_multiply_add_and_store_and_refuse_other_arrays():
    """The eight-float intrinsics the fused kernel is built on: acc + s * v lane by lane; float64 or strided
    arrays are refused when the caller compiles, not read as float32."""
    import numba
    import numpy as np

    from airnet_restore.ops._simd import fma8, load8, store8, zero8

    @numba.njit
    def axpy(s, v, out):
        store8(out, 1, fma8(s, load8(v, 2), fma8(np.float32(1.0), load8(v, 0), zero8())))

    v, out = np.arange(10, dtype=np.float32), np.zeros(9, dtype=np.float32)
    axpy(np.float32(0.5), v, out)
    assert out[0] == 0 and np.array_equal(out[1:], v[:8] + 0.5 * v[2:10])
    with pytest.raises((TypeError, numba.core.errors.TypingError), match="contiguous 1-d float32"):
        axpy(np.float32(0.5), v.astype(np.float64), out)
    with pytest.raises((TypeError, numba.core.errors.TypingError), match="contiguous 1-d float32"):
        axpy(np.float32(0.5), np.arange(20, dtype=np.float32)[::2], out)
