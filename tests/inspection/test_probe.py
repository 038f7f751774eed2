"""The probe's "do no harm" policy: the presence rescaling, its place in a judgement, and its storage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from airnet_restore.errors import AirNetError
from airnet_restore.inspection.probe import DegradationProbe, Policy, fit_logistic, logit

F = 4  # features of the synthetic probes


def synthetic_probe(policy: Policy | None = None) -> DegradationProbe:
    """A probe whose haze logit is the first feature, rain's the second and noise's the third."""
    detectors = {f: [1.0 if i == k else 0.0 for i in range(F)] + [0.0] for k, f in enumerate(("haze", "rain", "noise"))}
    return DegradationProbe(
        families=["haze", "rain", "noise"], feature="test", mean=[0.0] * F, scale=[1.0] * F, detectors=detectors,
        sigma=[0.0] * F + [10.0], haze=[0.0] * F + [0.5], policy=policy,
    )


POLICY = Policy(low=0.2, budget=0.05, thresholds={"haze": [1.0, 3.0], "rain": [2.0, 2.5]})


def test_rescale_puts_the_clean_threshold_at_low_and_the_detect_threshold_at_one_half():
    p = 1 / (1 + np.exp(-np.array([1.0, 3.0, 5.0, -4.0])))
    haze = POLICY.rescale("haze", p)
    np.testing.assert_allclose(haze[:2], [0.2, 0.5], atol=1e-9)
    assert haze[2] > 0.7 and haze[3] < 0.01  # still rising above, still falling below
    assert np.all(np.diff(POLICY.rescale("rain", np.linspace(0.01, 0.99, 50))) > 0)
    np.testing.assert_array_equal(POLICY.rescale("noise", p), p)  # no thresholds: unchanged


def test_judge_averages_the_detectors_then_applies_the_policy():
    windows = np.array([[3.0, 0.0, -5.0, 0.0], [-1.0, 0.0, 5.0, 0.0]])
    plain, guarded = synthetic_probe(), synthetic_probe(POLICY)
    raw = plain.image_probability(windows)
    assert raw == pytest.approx({"haze": (1 / (1 + np.exp(-3)) + 1 / (1 + np.e)) / 2, "rain": 0.5, "noise": 0.5})
    judged = guarded.judge(windows).presence
    assert judged["haze"] == pytest.approx(float(POLICY.rescale("haze", np.asarray(raw["haze"]))))
    assert judged["noise"] == pytest.approx(0.5) and judged["rain"] < 0.2  # rain's 0.5 is under its clean threshold
    assert guarded.judge(windows[:1]).presence == pytest.approx({f: float(v[0]) for f, v in guarded.presence(windows[:1]).items()})


def test_an_image_judged_on_many_windows_gets_the_wide_thresholds():
    policy = Policy(low=0.2, budget=0.05, thresholds={"haze": [3.0, 4.0]}, wide={"haze": [0.0, 1.0]}, wide_from=3)
    probe = synthetic_probe(policy)
    window = np.array([[1.0, 0.0, 0.0, 0.0]])
    assert probe.judge(window).presence["haze"] < 0.2  # one window: a small crop, under its clean threshold
    assert probe.judge(np.repeat(window, 2, axis=0)).presence["haze"] < 0.2
    assert probe.judge(np.repeat(window, 3, axis=0)).presence["haze"] == pytest.approx(0.5)  # the wide detect threshold
    assert probe.presence(np.repeat(window, 3, axis=0))["haze"] == pytest.approx([probe.judge(window).presence["haze"]] * 3)


def test_a_probe_with_a_policy_is_version_2_and_round_trips():
    text = synthetic_probe(POLICY).to_json()
    data = json.loads(text)
    assert data["version"] == 2 and data["policy"]["thresholds"]["haze"] == [1.0, 3.0]
    back = DegradationProbe.from_json(text)
    assert back.policy == POLICY and back.to_json() == text


def test_a_probe_without_a_policy_stays_version_1():
    data = json.loads(synthetic_probe().to_json())
    assert data["version"] == 1 and "policy" not in data
    assert DegradationProbe.from_json(json.dumps(data)).policy is None


@pytest.mark.parametrize("change, message", [
    ({"version": 3}, "version 3"),
    ({"version": 1, "policy": {"low": 0.2, "budget": 0.05, "thresholds": {}}}, "unreadable"),
    ({"policy": {"low": 0.2}}, "unreadable"),
])
def test_unreadable_policies_and_versions_are_refused(change, message):
    data = {**json.loads(synthetic_probe(POLICY).to_json()), **change}
    with pytest.raises(AirNetError, match=message):
        DegradationProbe.from_json(json.dumps(data))


def test_logit_is_finite_at_the_ends():
    assert np.isfinite(logit(np.array([0.0, 1.0]))).all()
    assert logit(np.array(0.5)) == pytest.approx(0.0)


def test_sample_weights_count_like_repeated_samples():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((40, 3))
    y = (z[:, 0] + 0.5 * rng.standard_normal(40) > 0).astype(float)
    weight = np.where(np.arange(40) < 10, 3.0, 1.0)
    repeated = np.concatenate([z[:10], z[:10], z])
    target = np.concatenate([y[:10], y[:10], y])
    np.testing.assert_allclose(fit_logistic(z, y, 1e-3, weight), fit_logistic(repeated, target, 1e-3), atol=1e-5)
