"""``restore_tensor`` leaves the caller's model as it found it and keeps the image on its device."""

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from airnet_restore.inference.pipeline import _padding, _pixel_crop, _tensor_crop, restore_tensor
from airnet_restore.inference.tiling import run_tiled
from tests.conftest import tol


def test_the_model_keeps_its_modes_layout_and_statistics(tiny_model, device):
    model = tiny_model.to(device).train()
    model.E.E.encoder_q.eval()  # mixed modes come back as they were
    modes = {name: m.training for name, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(0)).to(device)
    out = restore_tensor(model, x, tile=None)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(p.is_contiguous() for p in model.parameters())  # not turned channels-last
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # BatchNorm statistics untouched
    assert out.device == x.device and out.dtype == x.dtype
    with torch.no_grad():
        expected = model.eval()(x[None]).clamp(0, 1)[0]
    assert_close(out, expected, **tol(device, 1e-5))


def test_tiles_come_back_to_the_image_device():
    # the meta device stands in for a GPU here: no data, but every tensor's device is tracked
    image = torch.empty(1, 3, 70, 90, device="meta")
    seen = []

    def forward(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.device.type)
        return t * 2

    out = run_tiled(forward, image, torch.device("meta"), tile=32, overlap=8)
    assert out.device.type == "meta" and out.shape == image.shape and set(seen) == {"meta"}


@pytest.mark.parametrize("h,w", [(1, 1), (1, 40), (2, 5), (3, 31), (31, 33), (40, 40)])
def test_padded_crops_are_numpys_reflect_padding_on_any_device(h, w):
    a = torch.rand(3, h, w)
    rows, cols = _padding(h, w, 32)
    expected = np.pad(a.numpy(), ((0, 0), rows, cols), mode="reflect")
    ph, pw = expected.shape[1:]
    for crop in (_tensor_crop(a, 32), _pixel_crop(a.permute(1, 2, 0).numpy(), 32)):
        assert np.array_equal(crop(0, 0, ph, pw)[0].numpy(), expected)
        assert np.array_equal(crop(ph // 3, pw // 2, ph - ph // 3, 3)[0].numpy(), expected[:, ph // 3 :, pw // 2 : pw // 2 + 3])
    assert _tensor_crop(a.to("meta"), 32)(0, 0, ph, pw).device.type == "meta"
