from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from airnet_restore import load_model, restore
from airnet_restore.errors import AirNetError
from airnet_restore.metrics import psnr
from airnet_restore.variants import DEFAULT_VARIANT, get_variant, list_variants, sample_image

COFFEE = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "coffee.png"


def test_registry_is_data_and_names_are_unique():
    names = [v.name for v in list_variants()]
    assert names[:2] == ["airnet", "airnet-lite"] and len(set(names)) == len(names)
    assert get_variant("airnet").weights_path() is None
    with pytest.raises(AirNetError, match="unknown model variant"):
        get_variant("airnet-xxl")
    with pytest.raises(AirNetError, match="neither a registered variant"):
        load_model("airnet-xxl")


def test_default_variant_ships_weights_that_match_its_config():
    variant = get_variant(DEFAULT_VARIANT)
    assert variant.weights_path() is not None, "the default variant must ship its weights"
    model = load_model(DEFAULT_VARIANT, device="cpu")
    assert model.config.n_feats == variant.config.n_feats and model.config.n_groups == variant.config.n_groups


def test_bundled_weights_restore_the_bundled_sample():
    noisy = np.asarray(Image.open(sample_image()).convert("RGB"))
    out = restore(noisy, load_model(DEFAULT_VARIANT, device="cpu"))
    assert out.shape == noisy.shape and out.dtype == np.uint8
    # the sample is a centre crop of coffee (CC0) with sigma-25 noise: compare with the clean crop
    if COFFEE.is_file():
        clean = np.asarray(Image.open(COFFEE).convert("RGB"))
        top, left = (clean.shape[0] - 300) // 2, (clean.shape[1] - 400) // 2
        clean = clean[top : top + 300, left : left + 400]
        t = lambda a: torch.from_numpy(a.copy()).permute(2, 0, 1)[None].double() / 255  # noqa: E731
        assert psnr(t(out), t(clean)) > psnr(t(noisy), t(clean)) + 4
    else:
        assert np.abs(out.astype(int) - noisy).mean() > 3


def test_quickstart_command_restores_the_sample(tmp_path, capsys):
    from airnet_restore.cli import main

    assert main(["restore", "--sample", "-o", str(tmp_path / "restored"), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"-> {tmp_path / 'restored' / 'sample_noisy.png'}" in out and "1 restored, 0 failed" in out
    assert (tmp_path / "restored" / "sample_noisy.png").is_file()


def test_restore_without_inputs_is_an_error(tmp_path, capsys):
    from airnet_restore.cli import main

    assert main(["restore", "-o", str(tmp_path)]) == 2
    assert "no inputs" in capsys.readouterr().err
