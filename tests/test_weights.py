import json
import pickle
import zipfile
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file

from airnet_restore.errors import AirNetError
from airnet_restore.models import AirNet
from airnet_restore.weights import build_model, convert, infer_config, load_state_dict, save_weights
from tests.conftest import TINY, make_tiny


def official_state_dict(model: AirNet) -> OrderedDict:
    """What the official train.py writes: a bare OrderedDict of tensors, float32 and int64."""
    return OrderedDict((k, v.clone()) for k, v in model.state_dict().items())


def outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_official_pth_loads_strictly_and_gives_the_same_output(tmp_path, tiny_model):
    path = tmp_path / "All.pth"
    torch.save(official_state_dict(tiny_model), path)
    loaded, metadata = build_model(path)
    assert metadata == {}
    assert loaded.config == TINY
    x = torch.rand(1, 3, 20, 20)
    torch.testing.assert_close(outputs(loaded, x), outputs(tiny_model, x), rtol=0, atol=0)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_module_prefix_and_another_queue_size_load(tmp_path, tiny_model):
    sd = official_state_dict(tiny_model)
    sd["E.E.queue"] = torch.nn.functional.normalize(torch.randn(TINY.dim, 3 * 8), dim=0)  # batch 3 -> K = 24 here
    prefixed = OrderedDict((f"module.{k}", v) for k, v in sd.items())
    path = tmp_path / "Denoise.pth"
    torch.save(prefixed, path)
    loaded, _ = build_model(path)
    assert loaded.E.E.queue.shape == (TINY.dim, 24)
    assert loaded.E.E.K == 24
    assert torch.equal(loaded.E.E.queue, sd["E.E.queue"])


def test_paper_config_is_inferred_from_an_official_state_dict():
    sd = AirNet().state_dict()
    sd["E.E.queue"] = torch.zeros(256, 256)  # Derain.pth: batch 1
    config = infer_config(sd)
    assert (config.n_feats, config.n_groups, config.n_blocks, config.enc_channels, config.dim) == (64, 5, 5, (64, 128, 256), 256)
    assert config.queue_size == 256


def test_a_wrong_checkpoint_names_the_mismatched_keys(tmp_path, tiny_model):
    sd = official_state_dict(tiny_model)
    del sd["R.tail.0.bias"]
    sd["R.head.0.weight"] = torch.zeros(16, 1, 3, 3)
    sd["extra.thing"] = torch.zeros(1)
    with pytest.raises(AirNetError) as e:
        from airnet_restore.weights import load_into

        load_into(make_tiny(), sd)
    msg = str(e.value)
    assert "missing: R.tail.0.bias" in msg
    assert "unexpected: extra.thing" in msg
    assert "wrong shape: R.head.0.weight (file (16, 1, 3, 3), model (16, 3, 3, 3))" in msg


def test_not_an_airnet_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(AirNetError, match="not an AirNet checkpoint"):
        build_model(path)


class Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_objects_are_refused_without_executing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"R.head.0.weight": Boom()}, f)
    torch_zip = tmp_path / "evil2.pth"
    torch.save({"R.head.0.weight": torch.zeros(1), "x": Boom()}, torch_zip)
    for p in (path, torch_zip):
        with pytest.raises(AirNetError, match=r"refused|not a readable"):
            load_state_dict(p)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_corrupt_files_are_clear_errors(tmp_path, content):
    for suffix in (".pth", ".safetensors"):
        path = tmp_path / f"bad{suffix}"
        path.write_bytes(content)
        with pytest.raises(AirNetError, match="not a readable"):
            load_state_dict(path)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(AirNetError, match="not found"):
        load_state_dict(tmp_path / "nope.pth")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(AirNetError, match="unknown weights format"):
        load_state_dict(tmp_path / "w.onnx")


@pytest.mark.parametrize("full", [False, True])
def test_safetensors_round_trip_is_exact(tmp_path, tiny_model, full):
    path = save_weights(tiny_model, tmp_path / "w.safetensors", full=full, metadata={"licence": "CC0", "training": {"steps": 3}})
    sd, meta = load_state_dict(path)
    own = tiny_model.state_dict()
    if full:
        assert set(sd) == set(own)
    else:
        assert all(k.startswith(("R.", "E.E.encoder_q.E_pre.")) for k in sd)
        assert "E.E.encoder_k.mlp.0.weight" not in sd
    for k, v in sd.items():
        assert torch.equal(v, own[k]), k
    assert meta["licence"] == "CC0" and json.loads(meta["training"]) == {"steps": 3}
    assert json.loads(meta["config"]) == TINY.to_dict()
    loaded, _ = build_model(path)
    x = torch.rand(1, 3, 18, 22)
    torch.testing.assert_close(outputs(loaded, x), outputs(tiny_model, x), rtol=0, atol=0)
    assert not list(tmp_path.glob("*.part"))


def test_half_precision_weights_load_as_float32(tmp_path, tiny_model):
    path = save_weights(tiny_model, tmp_path / "h.safetensors", half=True)
    sd, _ = load_state_dict(path)
    assert sd["R.head.0.weight"].dtype == torch.float16
    loaded, _ = build_model(path)
    assert loaded.R.head[0].weight.dtype == torch.float32
    x = torch.rand(1, 3, 16, 16)
    assert (outputs(loaded, x) - outputs(tiny_model, x)).abs().max() < 5e-3


def test_tampered_safetensors_fail_the_checksum(tmp_path, tiny_model):
    path = save_weights(tiny_model, tmp_path / "w.safetensors")
    sd, meta = load_state_dict(path)
    sd["R.tail.0.bias"] = sd["R.tail.0.bias"] + 1
    save_file(sd, str(path), metadata=meta)
    with pytest.raises(AirNetError, match="checksum"):
        load_state_dict(path)


def test_convert_keeps_only_inference_keys(tmp_path, tiny_model):
    src = tmp_path / "All.pth"
    torch.save(official_state_dict(tiny_model), src)
    dst = convert(src, tmp_path / "all.safetensors")
    sd, meta = load_state_dict(dst)
    assert meta["contents"] == "inference" and meta["source"] == "All.pth"
    assert "E.E.queue" not in sd and "E.E.encoder_q.E.0.backbone.0.weight" not in sd
    full = convert(src, tmp_path / "full.safetensors", full=True)
    assert "E.E.queue" in load_state_dict(full)[0]
    assert zipfile.is_zipfile(src)
