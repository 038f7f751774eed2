"""Device checks that need no GPU: implementation choice per device, up-front refusals, tensors on the model's device."""

import pytest
import torch

from airnet_restore import loading
from airnet_restore.constants import IMPLS
from airnet_restore.errors import AirNetError
from airnet_restore.ops.deform_conv import auto_impl, check_impl, deform_conv3x3
from airnet_restore.weights import load_into
from tests.conftest import TINY, make_tiny


def test_auto_picks_an_implementation_the_device_has():
    assert auto_impl(torch.device("cpu")) == "numba"
    assert auto_impl(torch.device("cuda", 0)) == "torchvision"
    assert auto_impl(torch.device("mps")) == "grid_sample"  # torchvision has no MPS kernel for this operator


@pytest.mark.parametrize(
    "impl,where,message",
    [
        ("numba", "cuda:0", "numba deformable convolution runs on the CPU only, not on cuda:0"),
        ("numba", "mps", "runs on the CPU only"),
        ("torchvision", "mps", "torchvision has no MPS kernel"),
        ("cudnn", "cpu", "unknown deformable-convolution implementation 'cudnn'"),
    ],
)
def test_impossible_choices_are_refused(impl, where, message):
    with pytest.raises(AirNetError, match=message):
        check_impl(impl, torch.device(where))


# What each device runs: check_impl must accept exactly these and refuse the rest.
RUNNABLE = {
    "cpu": {"auto", "torchvision", "grid_sample", "numba"},
    "cuda": {"auto", "torchvision", "grid_sample"},
    "mps": {"auto", "grid_sample"},
}


def accepted(device: torch.device) -> set[str]:
    """The implementations ``check_impl`` lets through on ``device``."""
    ok = set()
    for impl in IMPLS:
        try:
            check_impl(impl, device)
        except AirNetError:
            continue
        ok.add(impl)
    return ok


@pytest.mark.parametrize("where", RUNNABLE)
def test_exactly_the_choices_a_device_runs_pass_and_auto_is_one_of_them(where):
    device = torch.device(where)
    assert accepted(device) == RUNNABLE[where]
    assert auto_impl(device) in RUNNABLE[where]


@pytest.mark.parametrize("impl", sorted(RUNNABLE["cpu"]))
def test_every_choice_passed_on_the_cpu_really_runs_there(impl):
    x, weight = torch.rand(1, 2, 5, 6), torch.rand(3, 2, 3, 3)
    offset, mask = torch.zeros(1, 18, 5, 6), torch.ones(1, 9, 5, 6)
    out = deform_conv3x3(x, offset, mask, weight, impl)
    torch.testing.assert_close(out, torch.nn.functional.conv2d(x, weight, padding=1), atol=1e-5, rtol=1e-5)


def test_load_model_refuses_numba_on_cuda_before_reading_weights(monkeypatch):
    monkeypatch.setattr(loading, "resolve_device", lambda spec: torch.device("cuda"))
    monkeypatch.setattr(loading, "build_model", lambda path: pytest.fail("weights read before the device check"))
    with pytest.raises(AirNetError, match=r"numba .* CPU only"):
        loading.load_model("airnet-lite", device="cuda", dcn_impl="numba")


def test_a_resized_queue_is_created_on_the_model_device():
    sd = make_tiny().state_dict()
    sd["E.E.queue"] = torch.randn(TINY.dim, 48)  # another training batch: another queue length, on the CPU
    model = load_into(make_tiny().to("meta"), sd)
    assert model.E.E.queue.shape == (TINY.dim, 48) and model.E.E.queue.device.type == "meta"


def test_a_model_loaded_for_the_cpu_runs_channels_last(tmp_path):
    """``load_model`` puts a CPU network's weights in channels-last (``inference_layout``): its convolutions then
    answer channels-last, as the fused deformable convolution does, instead of mixing layouts in every sum."""
    from airnet_restore.weights import save_weights

    source = make_tiny()
    net = loading.load_model(save_weights(source, tmp_path / "tiny.safetensors"), device="cpu").network
    weights = [p for p in net.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    x = torch.rand(1, 3, 20, 24).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert net.R.head(x).is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(net(x), source.eval()(x), atol=1e-6, rtol=1e-6)
