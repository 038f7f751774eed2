from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from airnet_restore.errors import AirNetError
from airnet_restore.models import AirNet, AirNetConfig
from airnet_restore.models.encoder import MoCo
from tests.conftest import TINY, cpu_only, make_tiny, tol

SNAPSHOT = Path(__file__).with_name("airnet_state_dict.txt")


def test_default_parameter_counts_are_the_papers():
    model = AirNet()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.R) == 6_290_441
    assert count(model.E.E.encoder_q) == 1_319_936
    assert count(model.E.E.encoder_k) == 1_319_936
    assert count(model) == 8_930_313
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 7_610_377


def test_default_state_dict_matches_the_official_key_table():
    sd = AirNet().state_dict()
    assert len(sd) == 584
    assert sd["E.E.queue"].shape == (256, 1280)
    lines = [line.split() for line in SNAPSHOT.read_text().splitlines() if not line.startswith("#")]
    expected = [(k, shape, dtype) for k, shape, dtype in lines]
    actual = [(k, "x".join(map(str, v.shape)) or "()", str(v.dtype).replace("torch.", "")) for k, v in sd.items()]
    assert actual == expected


def test_eval_forward_equals_the_full_official_eval_forward(tiny_model, device):
    tiny_model.eval().to(device)
    x = torch.rand(1, 3, 24, 20, device=device)
    with torch.no_grad():
        out = tiny_model(x)
        # Official eval: the whole query encoder runs, its inter feeds the restorer.
        fea, inter = tiny_model.E(x, x)
        full = tiny_model.R(x, inter)
    assert fea.shape == (1, TINY.enc_channels[2])
    torch.testing.assert_close(out, full, rtol=0, atol=0)


def test_eval_runs_only_what_the_output_needs(tiny_model):
    tiny_model.eval()
    called = []
    for name in ("E.E.encoder_q.E", "E.E.encoder_q.mlp", "E.E.encoder_k"):
        tiny_model.get_submodule(name).register_forward_hook(lambda *a, n=name: called.append(n))
    with torch.no_grad():
        tiny_model(torch.rand(1, 3, 16, 16))
    assert called == []


@pytest.mark.parametrize("impl", ["torchvision", "grid_sample", "numba"])
def test_arbitrary_sizes_keep_their_size(tiny_model, impl, device):
    cpu_only(impl, device)
    tiny_model.eval().set_dcn_impl(impl).to(device)
    with torch.no_grad():
        out = tiny_model(torch.rand(2, 3, 37, 53, device=device))
    assert out.shape == (2, 3, 37, 53)


def test_dcn_implementations_agree_on_the_whole_model(tiny_model, device):
    tiny_model.eval()
    x = torch.rand(1, 3, 29, 31)
    with torch.no_grad():
        ref = tiny_model.set_dcn_impl("torchvision")(x)
        impls = ("torchvision", "grid_sample") if device.type != "cpu" else ("grid_sample", "numba")
        outs = {impl: tiny_model.to(device).set_dcn_impl(impl)(x.to(device)).cpu() for impl in impls}
    for impl, out in outs.items():
        torch.testing.assert_close(out, ref, **tol(device, 1e-5), msg=f"{impl} differs from torchvision on the CPU")


def test_dcn_at_initialisation_is_half_a_convolution():
    layer = AirNet(TINY).R.body[0].body[0].dgm1.dcn
    x, inter = torch.rand(1, 16, 12, 12), torch.rand(1, 16, 12, 12)
    torch.testing.assert_close(layer(x, inter), 0.5 * F.conv2d(x, layer.weight, padding=1), atol=1e-6, rtol=1e-5)


def test_training_forward_logits_queue_and_momentum(tiny_model):
    tiny_model.train()
    moco = tiny_model.E.E
    q_before = [p.detach().clone() for p in moco.encoder_q.parameters()]
    k_before = [p.detach().clone() for p in moco.encoder_k.parameters()]
    with torch.no_grad():  # make the query encoder differ from the key encoder
        for p in moco.encoder_q.parameters():
            p.add_(0.1)
    queue_before = moco.queue.clone()
    xq, xk = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    restored, logits, labels = tiny_model(xq, xk)
    assert restored.shape == xq.shape
    assert logits.shape == (4, 1 + TINY.queue_size)
    assert labels.dtype == torch.long and (labels == 0).all()
    assert int(moco.queue_ptr) == 4
    # key <- m * key + (1 - m) * query
    for pk, kb, qb in zip(moco.encoder_k.parameters(), k_before, q_before):
        torch.testing.assert_close(pk, TINY.m * kb + (1 - TINY.m) * (qb + 0.1))
    assert not torch.equal(moco.queue[:, :4], queue_before[:, :4])
    assert torch.equal(moco.queue[:, 4:], queue_before[:, 4:])
    torch.testing.assert_close(moco.queue[:, :4].norm(dim=0), torch.ones(4))
    # logits: positive column is q.k / T; the gradient reaches the query encoder and restorer
    (F.cross_entropy(logits, labels) + restored.abs().mean()).backward()
    assert moco.encoder_q.E_pre.backbone[0].weight.grad is not None
    assert tiny_model.R.head[0].weight.grad is not None
    assert all(p.grad is None for p in moco.encoder_k.parameters())


def test_queue_pointer_wraps():
    model = make_tiny()
    model.train()
    for _ in range(TINY.queue_size // 4 + 1):
        with torch.no_grad():
            model(torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8))
    assert int(model.E.E.queue_ptr) == 4


def test_training_forward_requires_a_key_crop(tiny_model):
    tiny_model.train()
    with pytest.raises(ValueError, match="x_key"):
        tiny_model(torch.rand(1, 3, 8, 8))


def test_config_validation_and_round_trip():
    assert AirNetConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(AirNetError, match="n_feats"):
        AirNetConfig(n_feats=0)
    with pytest.raises(AirNetError, match="unknown keys"):
        AirNetConfig.from_dict({"width": 3})


def test_dcn_runs_in_float32_under_autocast(tiny_model, monkeypatch):
    """The deformable convolutions sample in float32 under any autocast; under bf16 autocast on a CPU their
    matrix product is asked for in bf16 (the low-precision path; training keeps it float32 inside the op)."""
    import airnet_restore.models.dcn as dcn_module

    seen = []
    real = dcn_module.deform_conv3x3

    def spy(x, offset, mask, weight, impl, product=None):
        seen.append(({t.dtype for t in (x, offset, mask, weight)}, product))
        return real(x, offset, mask, weight, impl, product)

    monkeypatch.setattr(dcn_module, "deform_conv3x3", spy)
    tiny_model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        restored, _, _ = tiny_model(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16))
    restored.float().mean().backward()
    assert seen and all(s == ({torch.float32}, torch.bfloat16) for s in seen)
    assert tiny_model.R.body[0].body[0].dgm1.dcn.weight.grad is not None
    tiny_model.eval()
    for precision, product in ((None, None), (torch.float16, None), (torch.bfloat16, torch.bfloat16)):
        seen.clear()
        with torch.no_grad(), torch.autocast("cpu", dtype=precision or torch.float32, enabled=precision is not None):
            tiny_model(torch.rand(1, 3, 16, 16))
        assert seen and all(s == ({torch.float32}, product) for s in seen)


def test_global_residual_adds_the_input_and_keeps_the_checkpoint_layout():
    small = {"n_feats": 8, "n_groups": 1, "n_blocks": 1, "enc_channels": (8, 16, 32), "dim": 16, "queue_size": 16}
    torch.manual_seed(0)
    direct = AirNet(AirNetConfig(**small)).eval()
    residual = AirNet(AirNetConfig(**small, global_residual=True)).eval()
    residual.load_state_dict(direct.state_dict())
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        torch.testing.assert_close(residual(x), direct(x) + x)
    with pytest.raises(AirNetError, match="global_residual"):
        AirNetConfig(global_residual="yes")


def test_enqueue_wraps_around_the_queue_end():
    """A CPU state (batch 8) resumed on a GPU (batch 32) goes on from a pointer that is no multiple of 32:
    the keys wrap to the queue's start and the pointer moves on modulo K."""
    moco = MoCo(channels=(8, 16, 32), dim=16, K=96)
    moco.queue_ptr[0] = 88
    untouched = moco.queue[:, 24:88].clone()
    keys = torch.randn(32, 16)
    moco.enqueue(keys)
    assert int(moco.queue_ptr) == 24
    assert torch.equal(moco.queue[:, 88:], keys[:8].T) and torch.equal(moco.queue[:, :24], keys[8:].T)
    assert torch.equal(moco.queue[:, 24:88], untouched)
    with pytest.raises(ValueError, match="divisible"):
        moco.enqueue(torch.randn(7, 16))

