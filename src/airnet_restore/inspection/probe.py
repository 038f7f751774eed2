"""The probe on the embedding: one logistic detector per corruption family and ridge level estimates.

A type is a set of families (``haze+noise``); each family has its own detector, trained on
every sample that holds it, alone or mixed, against every sample that does not, so mixtures
need no classes of their own. Noise sigma (0-255) and haze density (1 - mean transmission)
come from ridge regressions on the same features. All of it is a few thousand numbers,
stored as JSON in the weights' safetensors metadata under ``METADATA_KEY``.
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
PROBE_VERSION = 1
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
    version: int = PROBE_VERSION

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(x) - np.asarray(self.mean)) / np.asarray(self.scale)

    def presence(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Probability that each family is present, for (N, F) or (F,) features."""
        z = self._standardise(x)
        return {f: _sigmoid(_linear(z, w)) for f, w in self.detectors.items()}

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
        """One prediction from the (N, F) features of an image's windows: presence and levels averaged."""
        probs = self.presence(windows)
        sigma, haze = self.levels(windows)
        return _prediction({f: float(p.mean()) for f, p in probs.items()}, float(sigma.mean()), float(haze.mean()))

    def types(self) -> list[str]:
        """Every type the probe can name: each combination of its families."""
        names = {CLEAN}
        for mask in range(1, 2 ** len(self.families)):
            names.add(type_name({f for i, f in enumerate(self.families) if mask >> i & 1}))
        return sorted(names, key=lambda t: (t != CLEAN, t.count("+"), t))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: str = "weights") -> DegradationProbe:
        try:
            data = json.loads(text)
            version = data.get("version")
            if version != PROBE_VERSION:
                raise AirNetError(
                    f"{source}: degradation prototypes of version {version} (this airnet-restore reads "
                    f"version {PROBE_VERSION}); recompute them with `airnet inspect --calibrate`"
                )
            return cls(**data)
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


def fit_logistic(z: np.ndarray, target: np.ndarray, l2: float) -> list[float]:
    """L2-regularised logistic regression by L-BFGS in float64 (deterministic): weights, bias last."""
    x = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float64))
    y = torch.from_numpy(np.asarray(target, dtype=np.float64))
    w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        logits = x @ w[:-1] + w[-1]
        value = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + l2 * (w[:-1] ** 2).sum()
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
