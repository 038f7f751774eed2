from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from airnet_restore import load_model, restore
from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.errors import AirNetError
from airnet_restore.metrics import psnr
from airnet_restore.variants import get_variant, list_variants, sample_image

COFFEE = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "coffee.png"


def test_registry_is_data_and_names_are_unique():
    names = [v.name for v in list_variants()]
    assert names[:2] == ["airnet", "airnet-lite"] and len(set(names)) == len(names)
    assert get_variant("airnet").weights_path() is None
    with pytest.raises(AirNetError, match="unknown model variant"):
        get_variant("airnet-xxl")
    with pytest.raises(AirNetError, match="neither a registered variant"):
        load_model("airnet-xxl")


def test_every_bundled_variant_ships_weights_that_match_its_config():
    assert get_variant(DEFAULT_VARIANT).weights_path() is not None, "the default variant must ship its weights"
    for variant in list_variants():
        if variant.weights is None:
            continue
        model = load_model(variant.name, device="cpu")
        assert model.config.n_feats == variant.config.n_feats and model.config.n_groups == variant.config.n_groups


def test_the_default_alters_a_clean_image_less_than_airnet_lite_did():
    import cv2

    noisy = np.asarray(Image.open(sample_image()).convert("RGB"))
    clean = np.ascontiguousarray(cv2.GaussianBlur(noisy, (0, 0), 3)[100:228, 100:228])  # smooth: nothing to restore

    def db(variant: str) -> float:
        out = restore(clean, load_model(variant, device="cpu")).astype(float)
        return 10 * np.log10(255**2 / np.mean((out - clean) ** 2))

    assert db(DEFAULT_VARIANT) > db("airnet-lite") + 2  # measured: 37.4 vs 34.3 dB


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
        # measured: airnet-general +3.6 dB, airnet-lite +7.5 dB (the cost of v2 leaving clean photos alone)
        assert psnr(t(out), t(clean)) > psnr(t(noisy), t(clean)) + 3
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
