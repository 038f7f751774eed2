"""Degradation identification: calibration, the stored probe, one-encoder-pass inspection, CLI output."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import airnet_restore
from airnet_restore import cli
from airnet_restore.degradations import get_degradation
from airnet_restore.degradations.heldout import ho_noise
from airnet_restore.errors import AirNetError
from airnet_restore.inference import restore, restore_files, restore_tensor
from airnet_restore.inspection import Inspector, calibrate, features
from airnet_restore.inspection.calibrate import degrade_measured, haze_level, noise_level, rain_level
from airnet_restore.inspection.probe import METADATA_KEY, DegradationProbe, type_name
from airnet_restore.loading import ModelDescriptor, inspect, load_model
from airnet_restore.models import AirNet, AirNetConfig
from airnet_restore.weights import save_weights

TINY = AirNetConfig(n_feats=16, n_groups=1, n_blocks=1, enc_channels=(16, 16, 32), dim=32, queue_size=32)
TYPES = ["clean", "noise_any", "rain_any", "haze_any", "haze_any+noise_any"]


def inspector_of(path) -> Inspector:
    """The inspector of the weights file ``path`` (its detectors must fit its encoder)."""
    inspector = load_model(path, device="cpu").inspector()
    assert inspector is not None
    return inspector


def photo(seed: int, size: int = 64) -> np.ndarray:
    """A small textured colour image: smooth gradients, a few edges and blobs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.3 + 0.4 * x, 0.2 + 0.5 * y, 0.5 + 0.3 * np.sin(6 * x + 3 * y + seed)], axis=2)
    for _ in range(4):
        cy, cx, r = [*rng.uniform(0, 1, 2).tolist(), rng.uniform(0.05, 0.2)]
        base[(y - cy) ** 2 + (x - cx) ** 2 < r * r] *= rng.uniform(0.4, 1.2)
    return np.rint(np.clip(base, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny model's weights without prototypes, and a calibrated copy."""
    folder = tmp_path_factory.mktemp("inspect")
    torch.manual_seed(0)
    plain = save_weights(AirNet(TINY), folder / "plain.safetensors")
    photos = folder / "photos"
    photos.mkdir()
    for i in range(4):
        Image.fromarray(photo(i)).save(photos / f"p{i}.png")
    Image.fromarray(photo(9)).save(photos / "val.png")
    report = calibrate(plain, folder / "calibrated.safetensors", photos, types=TYPES, exclude=["val.png"], crops=3, progress=False)
    return plain, report.path, report


def test_calibration_adds_a_versioned_probe_and_keeps_the_tensors(weights):
    plain, calibrated, report = weights
    assert report.samples == 4 * len(TYPES) * 3 and report.photos == 4  # the excluded photo is never used
    with safe_open(str(plain), "pt") as a, safe_open(str(calibrated), "pt") as b:
        assert a.metadata()["sha256"] == b.metadata()["sha256"]
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
        meta = b.metadata()
    probe = DegradationProbe.from_json(meta[METADATA_KEY])
    assert probe.version == 1 and probe.feature == features.FEATURE_SET
    assert probe.families == ["haze", "rain", "noise"]
    assert probe.encoder_sha256 == features.encoder_fingerprint(inspector_of(calibrated).model)
    assert probe.calibration["excluded"] == ["val.png"] and probe.calibration["types"] == TYPES
    assert "haze+noise" in probe.types() and probe.types()[0] == "clean"


def test_calibration_is_deterministic(weights, tmp_path):
    plain, calibrated, _ = weights
    again = calibrate(plain, tmp_path / "again.safetensors", calibrated.parent / "photos", types=TYPES,
                      exclude=["val.png"], crops=3, progress=False).path
    with safe_open(str(calibrated), "pt") as a, safe_open(str(again), "pt") as b:
        assert a.metadata()[METADATA_KEY] == b.metadata()[METADATA_KEY]


def test_inspection_is_one_encoder_pass_no_restorer_and_deterministic(weights, monkeypatch):
    inspector = inspector_of(weights[1])
    calls = {"restorer": 0, "encoder": 0}
    monkeypatch.setattr(inspector.model.R, "forward", lambda *a: calls.__setitem__("restorer", calls["restorer"] + 1))
    pre = inspector.model.E.E.encoder_q.E_pre
    pre.register_forward_hook(lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1))
    image = ho_noise(photo(5), np.random.default_rng(0), 20)
    first, second = inspector.inspect(image).to_dict(), inspector.inspect(image).to_dict()
    assert first == second
    assert calls == {"restorer": 0, "encoder": 2}  # one pass of the first encoder block per inspection
    assert set(first) >= {"file", "type", "confidence", "sigma"} and 0 <= first["confidence"] <= 1


def test_weights_without_prototypes_give_a_clear_error(weights):
    assert load_model(weights[0], device="cpu").inspector() is None
    with pytest.raises(AirNetError, match="no degradation prototypes for this model's encoder: compute them with `airnet inspect"):
        inspect(photo(1), weights[0])
    with pytest.raises(AirNetError, match="no degradation prototypes for this model's encoder"):
        inspect(photo(1), AirNet(TINY).eval())


def test_prototypes_of_other_weights_or_versions_are_refused(weights, tmp_path):
    with safe_open(str(weights[1]), "pt") as f:
        meta = f.metadata()
    probe = DegradationProbe.from_metadata(meta, "w.safetensors")
    torch.manual_seed(1)
    with pytest.raises(AirNetError, match="computed for other weights"):
        Inspector(AirNet(TINY), probe)
    model = inspector_of(weights[1]).model
    assert inspect(photo(2), ModelDescriptor(model, load_model(weights[1]).variant, probe)).type == \
        Inspector(model, probe).inspect(photo(2)).type
    old = json.loads(meta[METADATA_KEY]) | {"version": 0}
    with pytest.raises(AirNetError, match="version 0"):
        DegradationProbe.from_json(json.dumps(old))
    probe.feature = "something-else"
    with pytest.raises(AirNetError, match="recompute them"):
        Inspector(model, probe)


def test_every_input_kind_gives_the_same_answer(weights, tmp_path):
    inspector = inspector_of(weights[1])
    image = photo(7)
    Image.fromarray(image).save(tmp_path / "a.png")
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    results = [inspect(x, inspector).to_dict() for x in (image, Image.fromarray(image), tensor, tmp_path / "a.png")]
    assert all(r == results[0] for r in results)
    assert airnet_restore.inspect is inspect


def test_tiled_statistics_equal_whole_image_statistics(weights, monkeypatch):
    model = inspector_of(weights[1]).model
    x = torch.rand(3, 70, 90)
    whole = features.embed(model, x)
    monkeypatch.setattr(features, "TILE", 32)
    tiled = features.embed(model, x)
    np.testing.assert_allclose(tiled.sums, whole.sums, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(tiled.counts, whole.counts)
    assert whole.counts.sum() == 70 * 90


def test_region_map_covers_the_image(weights):
    result = inspector_of(weights[1]).inspect(photo(3, 150), regions=True)
    regions = result.regions
    assert regions.region == 64 and len(regions.types) == 3 and len(regions.types[0]) == 3
    assert regions.confidence.shape == regions.sigma.shape == (3, 3)


def test_measured_levels_and_stepwise_degradation_match_the_registry():
    clean = photo(2, 128)
    for name in ("haze_any+noise_any", "rain_any+noise_any", "clean"):
        stepwise, levels = degrade_measured(clean, name, np.random.default_rng(4))
        np.testing.assert_array_equal(stepwise, get_degradation(name)(clean, np.random.default_rng(4)))
        assert set(levels) == ({"haze", "rain", "noise"} & set(name.replace("_any", "").split("+")))
    noisy = ho_noise(clean, np.random.default_rng(1), 20)
    assert abs(noise_level(clean, noisy) - 20) < 1.0
    assert noise_level(clean, clean) == 0 and rain_level(clean, clean) == 0
    hazy = np.rint(clean * 0.5 + 0.5 * 230).astype(np.uint8)
    assert abs(haze_level(clean, hazy) - 0.5) < 0.03


def test_type_names_are_canonical():
    assert type_name({"noise", "haze"}) == "haze+noise" and type_name(set()) == "clean"
    assert type_name({"noise", "rain", "blur"}) == "rain+noise+blur"


def test_cli_json_map_and_plot(weights, tmp_path, capsys):
    for i in range(3):
        Image.fromarray(photo(10 + i, 48)).save(tmp_path / f"in{i}.png")
    code = cli.main(["inspect", str(tmp_path / "in*.png"), "--weights", str(weights[1]), "--json", "-q",
                     "--map", str(tmp_path / "maps"), "--plot", str(tmp_path / "plot.png"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    rows = json.loads(out)
    assert [r["file"] for r in rows] == [str(tmp_path / f"in{i}.png") for i in range(3)]
    for r in rows:
        assert isinstance(r["type"], str) and isinstance(r["confidence"], float)
        assert "sigma" in r and (r["sigma"] is None) == ("noise" not in r["type"])
        assert "regions" in r
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [f"in{i}.png.map.png" for i in range(3)]
    assert Image.open(tmp_path / "plot.png").size[0] > 0


def test_cli_errors(weights, tmp_path, capsys):
    assert cli.main(["inspect", "--weights", str(weights[1])]) == 2
    assert "no inputs" in capsys.readouterr().err
    assert cli.main(["inspect", "x.png", "--weights", str(weights[0])]) == 2
    assert "no degradation prototypes for these weights" in capsys.readouterr().err
    assert cli.main(["inspect", "--calibrate", str(weights[0]), str(weights[0])]) == 2
    assert "is the input file" in capsys.readouterr().err


def test_a_loaded_model_finds_the_prototypes_of_its_registered_variant(weights, monkeypatch):
    from types import SimpleNamespace

    from airnet_restore import loading

    fake = SimpleNamespace(name="calibrated", weights_path=lambda: weights[1])
    monkeypatch.setattr(loading, "VARIANTS", {"calibrated": fake, "none": SimpleNamespace(name="none", weights_path=lambda: None)})
    loading.registered_extras.cache_clear()
    try:
        model = inspector_of(weights[1]).model
        assert inspect(photo(4), model).to_dict() == inspector_of(weights[1]).inspect(photo(4)).to_dict()
        assert loading.as_descriptor(model).variant is fake
    finally:
        loading.registered_extras.cache_clear()


def test_restore_prints_what_it_detected(weights, tmp_path, capsys):
    Image.fromarray(photo(20, 48)).save(tmp_path / "a.png")
    assert cli.main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--weights", str(weights[1]), "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'a.png'} -> ") and "(confidence " in lines[0] and "detected: 1 " in lines[-1]
    assert cli.main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "out2"), "--weights", str(weights[0]), "-q"]) == 0
    assert "confidence" not in capsys.readouterr().out  # weights without prototypes: restored, nothing detected


def answering(model: ModelDescriptor, logit: float, **family_logits: float) -> ModelDescriptor:
    """``model`` with its probe changed so every detector answers sigmoid(``logit``) on any image (or sigmoid of
    its own logit, where given by family)."""
    assert model.probe is not None
    detectors = {f: [0.0] * (len(w) - 1) + [family_logits.get(f, logit)] for f, w in model.probe.detectors.items()}
    return dataclasses.replace(model, probe=DegradationProbe(**{**model.probe.__dict__, "detectors": detectors}))


def test_auto_strength_leaves_a_photo_found_clean_as_it_was(weights):
    model = load_model(str(weights[1]), device="cpu")
    image = photo(30, 48)
    network = restore(image, model, postfilter="none")
    assert not np.array_equal(network, image)  # the (random, tiny) network changes it
    clean = answering(model, -40.0)
    assert np.array_equal(restore(image, clean), image)
    assert np.array_equal(restore(image, clean, postfilter="none"), network)
    assert np.array_equal(restore(image, answering(model, 40.0)), network)  # every family surely present: haze, rain too


def test_strength_is_the_fraction_of_the_correction(weights):
    model = load_model(str(weights[1]), device="cpu")
    x = torch.from_numpy(photo(31, 40)).permute(2, 0, 1).float() / 255
    y = restore_tensor(model, x, strength=1.0, anchor=0.0)
    torch.testing.assert_close(restore_tensor(model, x, strength=0.25, anchor=0.0), x + 0.25 * (y - x), atol=1e-6, rtol=0)
    torch.testing.assert_close(restore_tensor(model, x, strength=0.0), x, atol=0, rtol=0)
    plain = load_model(str(weights[0]), device="cpu")  # no prototypes: auto is the network's output
    assert torch.equal(restore_tensor(plain, x), restore_tensor(plain, x, strength=1.0, anchor=0.0))
    for bad in (1.5, -0.1, "high", True):
        with pytest.raises(AirNetError, match="strength must be"):
            restore_tensor(model, x, strength=bad)


def test_an_automatic_anchor_reaches_the_written_pixels(weights, tmp_path):
    """Noise surely present, haze and rain each at even odds: anchor 0.25, and the file written by
    `airnet restore` is the tensor path's blend of the same image."""
    model = answering(load_model(str(weights[1]), device="cpu"), 40.0, haze=0.0, rain=0.0)
    image = photo(35, 48)
    Image.fromarray(image).save(tmp_path / "a.png")
    report = restore_files([tmp_path / "a.png"], tmp_path / "out", model, progress=False)
    blend = report.blends[tmp_path / "a.png"]
    assert blend.strength == pytest.approx(1.0) and blend.anchor == pytest.approx(0.25)
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    expected = np.rint(restore_tensor(model, x, blend=blend).permute(1, 2, 0).numpy() * 255)
    written = np.asarray(Image.open(tmp_path / "out" / "a.png")).astype(float)
    assert np.abs(written - expected).max() <= 1
    network = restore(image, model, strength=1.0, anchor=0.0).astype(float)
    assert np.abs(written - network).max() >= 2  # the anchor changed the output


def test_restore_reports_detection_and_blend(weights, tmp_path, capsys):
    Image.fromarray(photo(32, 48)).save(tmp_path / "a.png")
    report = restore_files([tmp_path / "a.png"], tmp_path / "out", load_model(str(weights[1]), device="cpu"), progress=False)
    found, blend = report.detected[tmp_path / "a.png"], report.blends[tmp_path / "a.png"]
    assert blend.strength == pytest.approx(found.degraded) and 0 <= found.degraded <= 1
    assert blend.anchor == pytest.approx((1 - found.presence["haze"]) * (1 - found.presence["rain"]))
    assert cli.main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "o2"), "--weights", str(weights[1]), "-q",
                     "--strength", "0.5", "--anchor", "0.25"]) == 0
    assert "strength 0.50, anchor 0.25]" in capsys.readouterr().out
    for option in ("--strength", "--anchor"):
        with pytest.raises(SystemExit):
            cli.main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "o3"), option, "2"])
        assert f"{option[2:]} must be 'auto' or a number from 0" in capsys.readouterr().err


def test_unreadable_prototypes_leave_the_weights_usable(weights, tmp_path):
    """Prototypes of another version: a warning, and the weights restore as the network (strength 1)."""
    with safe_open(str(weights[1]), "pt") as f:
        meta = f.metadata()
    model = load_model(str(weights[1]), device="cpu")
    stale = save_weights(model.network, tmp_path / "stale.safetensors",
                         metadata={METADATA_KEY: json.dumps(json.loads(meta[METADATA_KEY]) | {"version": 0})})
    with pytest.warns(UserWarning, match="prototypes not used"):
        loaded = load_model(str(stale), device="cpu")
    image = photo(33, 40)
    assert np.array_equal(restore(image, loaded), restore(image, loaded, strength=1.0, anchor=0.0))


def test_auto_strength_on_tiny_images_and_the_models_modes(weights, tmp_path):
    """Images under one statistics cell are too small to judge: "auto" leaves them as they are (issue 34: the
    network alone costs thin textured rows up to 5 dB), a strength restores them; the caller's train mode stays."""
    model = load_model(str(weights[1]), device="cpu")
    for shape in ((1, 1, 3), (1, 40, 3), (15, 64, 3)):
        image = np.full(shape, 128, np.uint8)
        assert np.array_equal(restore(image, model), image)
        assert not np.array_equal(restore(image, model, strength=1.0, anchor=0.0), image)
    Image.fromarray(np.full((1, 40, 3), 90, np.uint8)).save(tmp_path / "auto.png")
    left = restore_files([tmp_path / "auto.png"], tmp_path / "out", model, progress=False)
    assert [(src.name, "too small for the detectors" in w) for src, w in left.warnings] == [("auto.png", True)]
    Image.fromarray(np.full((1, 40, 3), 90, np.uint8)).save(tmp_path / "line.png")
    report = restore_files([tmp_path / "line.png"], tmp_path / "out", model, strength=np.float32(1.0), progress=False)
    assert not report.failed and not report.detected
    model.network.train()
    restore_tensor(model, torch.rand(3, 40, 40))
    assert all(m.training for m in model.network.modules())


def test_the_web_app_restores_and_reports_as_the_cli_does(weights, tmp_path):
    pytest.importorskip("fastapi")
    from airnet_restore.web.app import restore_file

    Image.fromarray(photo(34, 48)).save(tmp_path / "a.png")
    model = load_model(str(weights[1]), device="cpu")
    pixels, header = restore_file(model, tmp_path / "a.png", tmp_path / "web.png", 10_000)
    report = restore_files([tmp_path / "a.png"], tmp_path / "cli", model, progress=False)
    found = report.detected[tmp_path / "a.png"]
    assert pixels == 48 * 48 and json.loads(header)["type"] == found.type
    blend = report.blends[tmp_path / "a.png"]
    assert json.loads(header)["strength"] == pytest.approx(blend.strength, abs=1e-3)
    assert json.loads(header)["anchor"] == pytest.approx(blend.anchor, abs=1e-3)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "web.png")), np.asarray(Image.open(tmp_path / "cli" / "a.png")))


def test_a_probe_on_the_hand_crafted_statistics_too_reads_them_beside_the_encoders(weights):
    from airnet_restore.inspection.handcrafted import COMBINED_SET, NAMES, hand_grid
    from airnet_restore.inspection.inspector import IMAGE_STRIDE_CELLS, IMAGE_WINDOW_CELLS

    base = inspector_of(weights[1])
    extra = len(NAMES)
    noise_column = NAMES.index("noise sigma q25")
    detectors = {f: w[:-1] + [0.0] * extra + w[-1:] for f, w in base.probe.detectors.items()}
    detectors["noise"] = [0.0] * len(base.probe.mean) + [5.0 if k == noise_column else 0.0 for k in range(extra)] + [-10.0]
    probe = dataclasses.replace(
        base.probe, feature=COMBINED_SET, mean=base.probe.mean + [0.0] * extra, scale=base.probe.scale + [1.0] * extra,
        detectors=detectors, sigma=base.probe.sigma[:-1] + [0.0] * extra + base.probe.sigma[-1:],
        haze=base.probe.haze[:-1] + [0.0] * extra + base.probe.haze[-1:])
    inspector = Inspector(base.model, probe)
    clean, noisy = photo(4, 80), ho_noise(photo(4, 80), np.random.default_rng(0), 25)
    windows = np.hstack([features.embed(base.model, torch.from_numpy(noisy).permute(2, 0, 1).float() / 255)
                         .window_features(IMAGE_WINDOW_CELLS, IMAGE_STRIDE_CELLS),
                         hand_grid(noisy).window_features(IMAGE_WINDOW_CELLS, IMAGE_STRIDE_CELLS)])
    result = inspector.inspect(noisy, regions=True)
    assert result.presence == pytest.approx(probe.judge(windows).presence)
    assert "noise" in result.type and "noise" not in inspector.inspect(clean).type  # 5 log(sigma) - 10: noise from sigma 7
    assert result.features.shape == (len(probe.mean),) and result.regions.confidence.shape == (2, 2)
    with pytest.raises(AirNetError, match="hand-crafted"):
        inspector.region_map(inspector.embed(noisy))
