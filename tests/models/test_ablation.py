"""Paper Table 7 ablations: the ``sft`` and ``dcn`` switches of the DGM."""

import pytest
import torch

from airnet_restore.errors import AirNetError
from airnet_restore.models import AirNet, AirNetConfig
from airnet_restore.weights import build_model, save_weights

SMALL = {"n_feats": 16, "n_groups": 1, "n_blocks": 1, "enc_channels": (16, 16, 32), "dim": 16, "queue_size": 16}


def restorer_keys(config: AirNetConfig) -> list[str]:
    return [k for k in AirNet(config).state_dict() if k.startswith("R.")]


def test_both_switches_on_is_the_default_layout():
    assert AirNetConfig().sft and AirNetConfig().dcn
    assert restorer_keys(AirNetConfig(**SMALL, sft=True, dcn=True)) == restorer_keys(AirNetConfig(**SMALL))


@pytest.mark.parametrize("switch, gone, kept", [("sft", ".sft.", ".dcn."), ("dcn", ".dcn.", ".sft.")])
def test_switching_off_removes_that_part_only(switch, gone, kept):
    keys = restorer_keys(AirNetConfig(**SMALL, **{switch: False}))
    assert not any(gone in k for k in keys) and any(kept in k for k in keys)
    if switch == "dcn":
        assert "R.body.0.body.0.dgm1.conv.weight" in keys  # a plain 3x3 conv in the DCN's place


@pytest.mark.parametrize("flags", [{"sft": False}, {"dcn": False}, {"sft": False, "dcn": False}])
def test_ablations_run_train_and_round_trip_through_weights(flags, tmp_path):
    torch.manual_seed(0)
    model = AirNet(AirNetConfig(**SMALL, **flags))
    restored, _, _ = model.train()(torch.rand(2, 3, 20, 20), torch.rand(2, 3, 20, 20))
    restored.mean().backward()
    assert restored.shape == (2, 3, 20, 20)
    path = save_weights(model.eval(), tmp_path / "ablation.safetensors")
    loaded, _ = build_model(path)
    assert loaded.config == model.config
    x = torch.rand(1, 3, 24, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_without_sft_the_dgm_is_input_plus_dcn():
    torch.manual_seed(0)
    full = AirNet(AirNetConfig(**SMALL)).eval()
    no_sft = AirNet(AirNetConfig(**SMALL, sft=False)).eval()
    no_sft.load_state_dict({k: v for k, v in full.state_dict().items() if ".sft." not in k})
    dgm_full, dgm = full.R.body[0].body[0].dgm1, no_sft.R.body[0].body[0].dgm1
    x, inter = torch.rand(1, 16, 12, 12), torch.rand(1, 16, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(dgm(x, inter), dgm_full(x, inter) - dgm_full.sft(x, inter))


def test_switches_must_be_booleans():
    for name in ("sft", "dcn"):
        with pytest.raises(AirNetError, match=f"{name} must be true or false"):
            AirNetConfig(**{name: "no"})


@pytest.mark.parametrize("switch", ["sft", "dcn"])
def test_presets_turn_one_switch_off(switch):
    from pathlib import Path

    from airnet_restore.train.config import load_config

    config = load_config(Path(__file__).parents[2] / "configs" / f"ablation-no-{switch}.yaml")
    arch = config.model.airnet_config(config.model.queue_per_type * len(config.data.types))
    assert getattr(arch, switch) is False and getattr(arch, {"sft": "dcn", "dcn": "sft"}[switch]) is True
