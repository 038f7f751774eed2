"""The probe on the embedding: one logistic detector per corruption family and ridge level estimates.

A type is a set of families (``haze+noise``); each family has its own detector, trained on
every sample that holds it, alone or mixed, against every sample that does not, so mixtures
need no classes of their own. Noise sigma (0-255) and haze density (1 - mean transmission)
come from ridge regressions on the same features. All of it is a few thousand numbers,
stored as JSON in the weights' safetensors metadata under ``METADATA_KEY``.

A probe may carry a "do no harm" ``Policy``: per family, the detector scores at which the reported
presence is the policy's ``low`` level and 0.5, set from a false-positive budget on clean photos
(``calibrate.fit_policy``). Presence is then that monotone rescaling of the detector's probability,
so a clean photo rarely gets more than ``low`` of the correction. Probes with a policy are version 2;
this version reads 1 and 2.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from airnet_restore.errors import AirNetError

METADATA_KEY = "inspect"
PROBE_VERSION = 2  # written where a probe has a policy; one without is written as version 1
READS = (1, 2)
FAMILIES = ("haze", "rain", "noise")  # the order of families in a type name
CLEAN = "clean"


def type_name(families: set[str] | frozenset[str]) -> str:
    """``{"noise", "haze"}`` -> ``"haze+noise"``; the empty set -> ``"clean"``."""
    known = [f for f in FAMILIES if f in families]
    return "+".join(known + sorted(set(families) - set(FAMILIES))) or CLEAN


@dataclass
class Prediction:
    """What the probe says about one feature vector."""

    type: str
    confidence: float
    presence: dict[str, float]  # probability that each family is present
    sigma: float | None
    haze_density: float | None


@dataclass
class Policy:
    """"Do no harm": per family, the detector logits where presence is ``low`` and where it is 0.5.

    Presence is ``sigmoid(logit(low) + (s - clean) * -logit(low) / (detect - clean))`` for the detector's
    logit ``s`` (of the probability averaged over an image's windows): an affine map in logit space, so it
    stays monotone and keeps rising towards 1 for surely degraded images. An image judged on one window
    (a small crop of flat sky looks hazy) gets ``thresholds``; one judged on ``wide_from`` windows or more
    gets ``wide`` where given (the average of many windows is surer)."""

    low: float  # presence at the clean threshold, e.g. 0.2: at most this much of the correction ...
    budget: float  # ... for all but this share of the clean calibration photos and crops
    thresholds: dict[str, list[float]]  # family -> [clean logit, detect logit], clean < detect
    wide: dict[str, list[float]] = field(default_factory=dict)
    wide_from: int = 2

    def rescale(self, family: str, probability: np.ndarray, windows: int = 1) -> np.ndarray:
        """Presence from the detector's probability averaged over ``windows`` windows (unchanged for a family
        without thresholds)."""
        table = self.wide if windows >= self.wide_from and self.wide else self.thresholds
        if family not in table:
            return probability
        clean, detect = table[family]
        floor = logit(np.asarray(self.low, np.float64))
        return _sigmoid(floor + (logit(probability) - clean) * -floor / (detect - clean))


@dataclass
class DegradationProbe:
    """Standardisation, one logistic detector per family, and ridge regressions for sigma and haze density."""

    families: list[str]
    feature: str  # which embedding statistics (features.FEATURE_SET): refused if the code computes others
    mean: list[float]
    scale: list[float]
    detectors: dict[str, list[float]]  # family -> weights, bias last
    sigma: list[float]  # weights, bias last
    haze: list[float]  # weights, bias last
    encoder_sha256: str = ""  # features.encoder_fingerprint of the weights it was computed for
    calibration: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    policy: Policy | None = None

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(x) - np.asarray(self.mean)) / np.asarray(self.scale)

    def detector_probability(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Each family's detector probability, before the policy, for (N, F) or (F,) features."""
        z = self._standardise(x)
        return {f: _sigmoid(_linear(z, w)) for f, w in self.detectors.items()}

    def _with_policy(self, probs: dict[str, np.ndarray], windows: int = 1) -> dict[str, np.ndarray]:
        return probs if self.policy is None else {f: self.policy.rescale(f, p, windows) for f, p in probs.items()}

    def presence(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Presence of each family (the detector's probability under the policy), for (N, F) or (F,) features."""
        return self._with_policy(self.detector_probability(x))

    def image_probability(self, windows: np.ndarray) -> dict[str, float]:
        """Each family's detector probability for an image: the mean over its (N, F) windows, before the policy."""
        return {f: float(p.mean()) for f, p in self.detector_probability(windows).items()}

    def levels(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(noise sigma 0-255, haze density 0-1) estimates for (N, F) or (F,) features, whether or not detected."""
        z = self._standardise(x)
        return np.clip(_linear(z, self.sigma), 0.0, None), np.clip(_linear(z, self.haze), 0.0, 1.0)

    def predict(self, x: np.ndarray) -> list[Prediction]:
        """A prediction per row of (N, F) or (F,) features."""
        probs = self.presence(x)
        sigma, haze = self.levels(x)
        return [_prediction({f: float(p[i]) for f, p in probs.items()}, float(sigma[i]), float(haze[i])) for i in range(len(sigma))]

    def judge(self, windows: np.ndarray) -> Prediction:
        """One prediction from the (N, F) features of an image's windows: detector probabilities averaged
        (then the policy applied), levels averaged."""
        probs = self._with_policy({f: np.asarray(p) for f, p in self.image_probability(windows).items()}, len(np.atleast_2d(windows)))
        sigma, haze = self.levels(windows)
        return _prediction({f: float(p) for f, p in probs.items()}, float(sigma.mean()), float(haze.mean()))

    def types(self) -> list[str]:
        """Every type the probe can name: each combination of its families."""
        names = {CLEAN}
        for mask in range(1, 2 ** len(self.families)):
            names.add(type_name({f for i, f in enumerate(self.families) if mask >> i & 1}))
        return sorted(names, key=lambda t: (t != CLEAN, t.count("+"), t))

    def to_json(self) -> str:
        """Compact JSON; version 2 where there is a policy (older readers refuse it rather than ignore it), else 1."""
        data = asdict(self)
        if self.policy is None:
            del data["policy"]
        data["version"] = PROBE_VERSION if self.policy is not None else 1
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: str = "weights") -> DegradationProbe:
        try:
            data = json.loads(text)
            version = data.get("version")
            if version not in READS:
                raise AirNetError(
                    f"{source}: degradation prototypes of version {version} (this airnet-restore reads "
                    f"versions {', '.join(map(str, READS))}); recompute them with `airnet inspect --calibrate`"
                )
            policy = data.pop("policy", None)
            if version == 1 and policy is not None:
                raise TypeError("a version-1 probe has no policy")
            return cls(**data, policy=None if policy is None else Policy(**policy))
        except (json.JSONDecodeError, TypeError, AttributeError) as e:
            raise AirNetError(f"{source}: unreadable degradation prototypes in metadata ({e}); recompute them with `airnet inspect --calibrate`") from None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str) -> DegradationProbe:
        """The probe stored with weights; a clear error where there is none."""
        if METADATA_KEY not in metadata:
            raise AirNetError(
                f"{source} holds no degradation prototypes; compute them with "
                f"`airnet inspect --calibrate {source} OUT.safetensors --photos DIR`"
            )
        return cls.from_json(metadata[METADATA_KEY], source)


def _prediction(presence: dict[str, float], sigma: float, haze: float) -> Prediction:
    """Families at probability 0.5 or more are present; confidence = probability of all the decisions taken."""
    present = {f for f, p in presence.items() if p >= 0.5}
    return Prediction(
        type=type_name(present),
        confidence=float(np.prod([max(p, 1.0 - p) for p in presence.values()])),
        presence=presence,
        sigma=sigma if "noise" in present else None,
        haze_density=haze if "haze" in present else None,
    )


def _linear(z: np.ndarray, w: list[float]) -> np.ndarray:
    weights = np.asarray(w)
    return z @ weights[:-1] + weights[-1]


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), finite for p in [0, 1] (clipped 1e-12 from the ends)."""
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    return np.log(p) - np.log1p(-p)


def fit_logistic(z: np.ndarray, target: np.ndarray, l2: float, weight: np.ndarray | None = None) -> list[float]:
    """L2-regularised logistic regression by L-BFGS in float64 (deterministic): weights, bias last.
    ``weight``: per-sample weights (the loss is their weighted mean), default all 1."""
    x = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float64))
    y = torch.from_numpy(np.asarray(target, dtype=np.float64))
    sw = torch.ones_like(y) if weight is None else torch.from_numpy(np.asarray(weight, dtype=np.float64))
    sw = sw / sw.mean()
    w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        logits = x @ w[:-1] + w[-1]
        value = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=sw) + l2 * (w[:-1] ** 2).sum()
        value.backward()
        return value

    opt.step(loss)
    return w.detach().numpy().tolist()


def fit_ridge(z: np.ndarray, target: np.ndarray, l2: float) -> list[float]:
    """Ridge regression (closed form, the bias not penalised): weights, bias last."""
    xa = np.hstack([z, np.ones((len(z), 1))])
    reg = l2 * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(xa.T @ xa + reg, xa.T @ np.asarray(target, np.float64)).tolist()
