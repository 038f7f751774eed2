import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from airnet_restore import load_model, restore
from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.errors import AirNetError
from airnet_restore.metrics import centre_crop, psnr
from airnet_restore.variants import get_variant, list_variants, sample_image


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
        if variant.weights is None or not variant.weights.bundled:
            continue
        model = load_model(variant.name, device="cpu").network
        assert model.config.n_feats == variant.config.n_feats and model.config.n_groups == variant.config.n_groups


def test_the_default_weights_alter_a_clean_image_less_than_airnet_lite_did():
    """The weights themselves, without the post-filter: ``postfilter="none"`` gives the network's output."""
    import cv2

    noisy = np.asarray(Image.open(sample_image()).convert("RGB"))
    clean = np.ascontiguousarray(cv2.GaussianBlur(noisy, (0, 0), 3)[100:228, 100:228])  # smooth: nothing to restore

    def db(variant: str) -> float:
        out = restore(clean, load_model(variant, device="cpu"), postfilter="none")
        mse = np.mean((out.astype(float) - clean) ** 2)
        return 10 * np.log10(255**2 / max(mse, 1e-10))

    # measured (network alone): airnet-general-v8 43.2 dB, airnet-general-v5 38.5, airnet-general 37.4, airnet-lite 34.3
    assert db(DEFAULT_VARIANT) > db("airnet-lite") + 5


def test_bundled_weights_restore_the_bundled_sample():
    noisy = np.asarray(Image.open(sample_image()).convert("RGB"))
    out = restore(noisy, load_model(DEFAULT_VARIANT, device="cpu"))
    assert out.shape == noisy.shape and out.dtype == np.uint8
    # the sample is a centre crop of scikit-image's coffee (CC0, bundled with scikit-image) with sigma-25 noise
    t = lambda a: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].double() / 255  # noqa: E731
    clean = centre_crop(t(skimage.data.coffee()), 300, 400)
    assert psnr(t(noisy), clean) < 22  # 20.95 dB: the crop matches, and the noise is there
    # measured: airnet-general-v5 +9.6 dB, airnet-general +9.5 dB, airnet-lite +7.5 dB (as `airnet restore` runs them)
    assert psnr(t(out), clean) > psnr(t(noisy), clean) + 8


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


def test_every_variant_carries_a_complete_descriptor():
    import torch

    from airnet_restore.variants import BYTES_PER_PIXEL_PER_CHANNEL, MIN_SIDE, file_sha256

    for v in list_variants():
        facts = v.facts()
        assert v.licence and v.description and facts["licence"] == v.licence, v.name
        assert bool(v.tasks) == (v.weights is not None), v.name  # trained tasks exactly where there are weights
        assert v.min_side == MIN_SIDE and f"{MIN_SIDE}" in facts["min_size"]
        for kind, per_channel in BYTES_PER_PIXEL_PER_CHANNEL.items():
            assert v.bytes_per_pixel(torch.device(kind)) == per_channel * v.config.n_feats
        assert {"tasks", "weights", "sha256", "half_precision", "tiling", "memory_per_pixel", "config"} <= set(facts)
        if v.weights is not None and v.weights.bundled:
            # bundled weights are registered with the sha256 of their bytes, and match it
            assert v.half_safe is True and file_sha256(v.weights_path()) == v.weights.sha256, v.name


OFFICIAL = {"airnet-all": ("All.pth", 1280), "airnet-denoise": ("Denoise.pth", 768),
            "airnet-derain": ("Derain.pth", 256), "airnet-dehaze": ("Dehaze.pth", 256)}


@pytest.mark.parametrize("name", OFFICIAL)
def test_official_checkpoints_are_registered_with_where_to_get_them(name, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRNET_WEIGHTS_DIR", str(tmp_path))
    variant = get_variant(name)
    file, queue = OFFICIAL[name]
    assert variant.weights.file == file and not variant.weights.bundled and variant.config.queue_size == queue
    assert "drive.google.com" in variant.weights.source and "pan.baidu.com" in variant.weights.source
    # no sha256 is published and the files could not be downloaded here: said so, and nothing is checked
    assert variant.weights.sha256 is None and "unknown" in variant.facts()["sha256"]
    assert "no licence file" in variant.licence
    with pytest.raises(AirNetError, match=rf"needs {file}, which is not bundled: get it from .*drive\.google\.com.*put it in {tmp_path}"):
        load_model(name, device="cpu")


def test_an_official_checkpoint_loads_by_name_once_in_the_weights_folder(tmp_path, monkeypatch):
    from tests.conftest import make_tiny

    monkeypatch.setenv("AIRNET_WEIGHTS_DIR", str(tmp_path))
    source = make_tiny()
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, tmp_path / "All.pth")
    model = load_model("airnet-all", device="cpu")
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():  # the same weights; in channels-last (a CPU's inference layout), so summed in another order
        torch.testing.assert_close(model.network(x), source.eval()(x), atol=1e-6, rtol=1e-6)


def test_a_registered_sha256_is_checked_at_load(tmp_path, monkeypatch):
    from airnet_restore.variants import Variant, Weights, file_sha256
    from airnet_restore.weights import save_weights
    from tests.conftest import TINY, make_tiny

    monkeypatch.setenv("AIRNET_WEIGHTS_DIR", str(tmp_path))
    path = save_weights(make_tiny(), tmp_path / "tiny.safetensors")
    good = Variant("tiny", TINY, "a test model", "CC0", ("noise25",), weights=Weights(path.name, "the test", file_sha256(path)))
    assert good.checked_weights() == path
    bad = Variant("tiny", TINY, "a test model", "CC0", ("noise25",), weights=Weights(path.name, "the test", "0" * 64))
    with pytest.raises(AirNetError, match="sha256 differs from tiny's registered 0000000000000000"):
        bad.checked_weights()


def test_info_prints_every_descriptor(capsys):
    from airnet_restore.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for v in list_variants():
        assert f"{v.name}" in out
    assert out.count("licence: ") == out.count("memory per pixel: ") == len(list_variants())
    assert "All.pth: the authors' Google Drive folder" in out and "sha256: unknown (not published)" in out
    assert f"sha256: {get_variant('airnet-lite').weights.sha256}" in out


def test_export_metadata_is_the_descriptor():
    from airnet_restore.export import descriptor
    from airnet_restore.variants import describe

    lite = get_variant("airnet-lite")
    meta = descriptor("airnet-lite", lite.config, {"validation": "{}"}, "fp32", lite)
    assert meta["sha256"] == lite.weights.sha256 and meta["tasks"] == "noise15, noise25, noise50, rain, haze"
    assert meta["half_precision"].startswith("safe") and meta["licence"] == lite.licence
    training = '{"config": {"data": {"types": [{"name": "noise25"}, {"name": "n2", "degradation": "noise25"}, {"name": "rain"}]}}}'
    mine = describe("mine", lite.config, {"licence": "CC0", "training": training})
    assert mine.tasks == ("noise25", "rain") and mine.licence == "CC0" and mine.weights is None


def test_v10_carries_v9s_detectors_and_its_post_filter_record_but_for_the_check():
    """airnet-general-v10 (training/airnet-general-pool/RUNS.md): v9's probe unchanged, v9's post-filter numbers
    but ``detectors_sure`` (0.98, 0.99), so the check of the network's output decides unless the detectors are
    all but sure."""
    import dataclasses

    v9, v10 = load_model("airnet-general-v9", device="cpu"), load_model("airnet-general-v10", device="cpu")
    assert v10.probe is not None and v10.probe.to_json() == v9.probe.to_json()
    assert v10.postfilter.params == dataclasses.replace(v9.postfilter.params, detectors_sure=(0.98, 0.99))
    assert v10.postfilter.params != v9.postfilter.params


@pytest.mark.parametrize(("base", "name", "band", "settings"), [
    ("airnet-general-v10", "airnet-general-v11", "rain", {"enabled": True}),  # the rain band on, its chosen settings
    ("airnet-general-v11", "airnet-general-v12", "rain", {"enabled": True, "denoised": True}),  # judging the denoised image too
    ("airnet-general-v12", "airnet-general-v13", "rain", {"enabled": True, "denoised": True, "elongated": True}),  # and the shape
    ("airnet-general-v8", "airnet-general-v14", "haze",  # the haze map
     {"enabled": True, "map": "hazemap-v1", "max_clipped": 1.0, "sure": (0.3, 0.7)}),
])
def test_a_post_filter_release_is_its_base_with_one_band_changed(base, name, band, settings):
    """airnet-general-v11 to -v13 (reports/rain/README.md) and -v14 (reports/haze-map/README.md): their base's tensors,
    probe and post-filter record, one band's settings changed as listed (the rest that band's defaults), which the base
    did not have."""
    import dataclasses

    from airnet_restore.postfilter.params import HazeSettings, RainSettings
    from airnet_restore.weights import load_state_dict

    kind = {"rain": RainSettings, "haze": HazeSettings}[band]
    old, new = load_model(base, device="cpu"), load_model(name, device="cpu")
    assert new.probe is not None and new.probe.to_json() == old.probe.to_json()
    assert new.postfilter.params == dataclasses.replace(old.postfilter.params, **{band: kind(**settings)})
    assert getattr(old.postfilter.params, band) != getattr(new.postfilter.params, band)
    mine, _ = load_state_dict(get_variant(base).weights_path())
    theirs, _ = load_state_dict(get_variant(name).weights_path())
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
