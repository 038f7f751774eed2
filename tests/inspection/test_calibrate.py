"""Fitting the "do no harm" policy, weighting clean samples, and writing a probe into weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from airnet_restore.errors import AirNetError
from airnet_restore.inspection.calibrate import (
    CalibrationSet,
    _balance,
    clean_thresholds,
    detect_threshold,
    false_positive_share,
    fit_policy,
    fit_probe,
    image_scores,
    write_probe,
)
from airnet_restore.inspection.probe import METADATA_KEY, DegradationProbe, Policy, logit
from airnet_restore.models import AirNet
from airnet_restore.weights import save_weights
from tests.conftest import TINY
from tests.inspection.test_probe import POLICY, synthetic_probe


def test_clean_thresholds_keep_every_view_within_the_budget_and_spend_it_where_it_helps():
    rng = np.random.default_rng(0)
    views = {"whole": rng.normal(0, 1, (40, 3)), "crops": rng.normal(0.5, 1, (200, 3))}
    t = clean_thresholds(views, 0.05)
    for scores in views.values():
        assert np.mean((scores > t).any(axis=1)) <= 0.05
    np.testing.assert_allclose(t, np.concatenate(list(views.values())).max(axis=0))  # nothing to let through: the highest
    hazy = [rng.normal(1.5, 0.3, 50), np.array([]), np.array([])]
    spent = clean_thresholds(views, 0.05, hazy)
    assert spent[0] < t[0] and np.all(spent[1:] == t[1:])  # all of the budget to haze, the only family with images
    assert max(np.mean((s > spent).any(axis=1)) for s in views.values()) <= 0.05


def test_false_positive_share_counts_per_image_per_photo_or_weighted():
    exceed = np.array([True, True, True, False, False, True])
    photos = ["a", "a", "a", "b", "c", "c"]
    assert false_positive_share(exceed) == pytest.approx(4 / 6)
    assert false_positive_share(exceed, photos, "photo") == pytest.approx(2 / 3)  # a and c, b stays clean
    assert false_positive_share(exceed, photos, "weighted") == pytest.approx((1 + 0 + 0.5) / 3)
    grid = np.stack([exceed, ~exceed], axis=1)  # two threshold choices side by side
    np.testing.assert_allclose(false_positive_share(grid, photos, "photo"), [2 / 3, 2 / 3])
    with pytest.raises(AirNetError, match="photo"):
        false_positive_share(exceed, None, "photo")
    with pytest.raises(AirNetError, match="count"):
        false_positive_share(exceed, photos, "crop")


def test_clean_thresholds_per_photo_let_one_photo_take_the_budget_where_per_image_cannot():
    rng = np.random.default_rng(3)
    crops = rng.normal(0, 1, (100, 3))
    crops[:8, 0] = rng.uniform(4.0, 5.0, 8)  # 8 crops of one photo ("brick") score high for family 0
    views = {"whole": rng.normal(-3, 0.5, (100, 3)), "crops": crops}  # the candidates: the pooled 95-100th percentiles
    photos = {"whole": [f"w{k}" for k in range(100)], "crops": ["brick"] * 8 + [f"p{k // 4}" for k in range(92)]}
    rainy = [rng.uniform(3.0, 4.5, 50), np.array([]), np.array([])]
    per_image = clean_thresholds(views, 0.05, rainy)
    per_photo = clean_thresholds(views, 0.05, rainy, photos=photos, count="photo")
    weighted = clean_thresholds(views, 0.05, rainy, photos=photos, count="weighted")
    assert per_image[0] >= np.sort(crops[:8, 0])[2]  # per image at most 5 of the 8 crops may be over
    assert per_photo[0] < per_image[0] and weighted[0] < per_image[0]
    for t in (per_photo, weighted):
        over = (crops > t).any(axis=1)
        assert np.mean(over) > 0.05 and set(np.array(photos["crops"])[over]) == {"brick"}  # one photo in 24
        assert not (views["whole"] > t).any()
    assert clean_thresholds(views, 0.05, rainy, photos=photos, count="view") == pytest.approx(per_image)


def test_detect_threshold_separates_the_labels_above_the_clean_threshold():
    scores = np.array([-3.0, -2.0, -1.0, 0.0, 2.5, 3.0, 4.0, 9.0])
    present = np.array([0, 0, 0, 0, 1, 1, 1, -1])
    t = detect_threshold(scores, present, clean=0.0)
    assert t == pytest.approx(1.5)  # the middle of 0.5-2.5, where every absent is below and every present at or above
    assert detect_threshold(scores, present, clean=3.0) == pytest.approx(3.75)  # at least 0.5 above; the middle of equal ones
    assert detect_threshold(scores, np.zeros(8, int), clean=1.0) == pytest.approx(1.0 - float(logit(np.asarray(0.2))))


def test_fit_policy_leaves_clean_images_under_low_presence_and_judges_wide_images_apart():
    rng = np.random.default_rng(1)
    probe = synthetic_probe()
    clean = {"whole": [rng.normal(0, 1, (3, 4)) for _ in range(40)], "crops": [rng.normal(0, 1.5, (1, 4)) for _ in range(60)]}
    hazy = [rng.normal(0, 1, (2, 4)) + np.array([8.0, 0, 0, 0]) for _ in range(30)]
    labelled = clean["whole"] + hazy
    present = np.array([[0, 0, 0]] * 40 + [[1, 0, 0]] * 30)
    policy = fit_policy(probe, clean, labelled, present, budget=0.05, low=0.2)
    assert set(policy.thresholds) == {"haze", "rain", "noise"} and policy.low == 0.2 and policy.budget == 0.05
    guarded = DegradationProbe(**{**probe.__dict__, "policy": policy})
    for images in clean.values():
        degraded = np.array([max(guarded.judge(w).presence.values()) for w in images])
        assert np.mean(degraded > 0.2) <= 0.05
    assert np.mean([guarded.judge(w).presence["haze"] >= 0.5 for w in hazy]) > 0.9
    assert policy.wide_from == 2 and policy.wide and policy.wide != policy.thresholds  # 3 windows: "whole" is wide
    with pytest.raises(AirNetError, match="budget"):
        fit_policy(probe, clean, labelled, present, budget=0.0)
    with pytest.raises(AirNetError, match="single window"):
        fit_policy(probe, {"whole": clean["whole"]}, labelled, present)
    names = {"whole": [f"p{k}" for k in range(40)], "crops": [f"p{k // 2}" for k in range(60)]}
    per_photo = fit_policy(probe, clean, labelled, present, photos=names, count="photo")
    assert per_photo.wide == policy.wide  # whole photos: one image a photo, the same count
    with pytest.raises(AirNetError, match="photo"):
        fit_policy(probe, clean, labelled, present, count="photo")
    with pytest.raises(AirNetError, match="count"):
        fit_policy(probe, clean, labelled, present, photos=names, count="crop")


def test_image_scores_are_the_logits_of_the_window_average():
    windows = [np.array([[2.0, 0, 0, 0], [-2.0, 0, 0, 0]]), np.array([[0.0, 1.0, 0, 0]])]
    scores = image_scores(synthetic_probe(POLICY), windows)  # before the policy
    np.testing.assert_allclose(scores, [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], atol=1e-9)


def _samples(rng: np.random.Generator, clean: int = 30) -> CalibrationSet:
    names = ["clean"] * clean + ["noise25"] * 30
    x = rng.normal(0, 1, (clean + 30, 5))
    x[clean:, 0] += 1.0
    levels = [{}] * clean + [{"noise": 25.0}] * 30
    return CalibrationSet(x, names, levels, ["p.png"] * (clean + 30))


def test_fit_probe_balances_present_and_absent_samples():
    samples = _samples(np.random.default_rng(2), clean=90)
    plain = fit_probe(samples, l2=1e-3)
    balanced = fit_probe(samples, l2=1e-3, clean_share=0.5)  # no other family: clean samples take all of the absent half
    assert plain.families == balanced.families == ["noise"]
    noisy = balanced.presence(samples.features)["noise"][90:].mean()
    assert noisy > plain.presence(samples.features)["noise"][90:].mean()  # 90 clean against 30 noisy no longer outvote
    assert balanced.presence(samples.features)["noise"][:90].mean() < 0.5 < noisy


def test_balance_weighs_each_group_by_its_share():
    target = np.array([1, 1, 0, 0, 0, 0, -1])
    clean = np.array([False, False, True, True, True, False, False])
    w = _balance(target, clean, 0.8)
    np.testing.assert_allclose(w, [0.25, 0.25, 0.4 / 3, 0.4 / 3, 0.4 / 3, 0.1, 0.0])


def test_write_probe_keeps_the_tensors_and_stores_the_policy(tmp_path):
    torch.manual_seed(0)
    src = save_weights(AirNet(TINY), tmp_path / "plain.safetensors", metadata={"variant": "old"})
    probe = DegradationProbe(**{**synthetic_probe().__dict__, "policy": Policy(0.2, 0.05, {"haze": [0.0, 1.0]})})
    dst = tmp_path / "new.safetensors"
    write_probe(src, dst, probe, {"variant": "new"})
    with safe_open(str(src), "pt") as a, safe_open(str(dst), "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
        meta = b.metadata()
    assert meta["variant"] == "new" and json.loads(meta[METADATA_KEY])["version"] == 2
    assert DegradationProbe.from_metadata(meta, str(dst)).policy == probe.policy
