"""The post-filter's numbers as data (``postfilter/params.py``): stored with the weights, read from them."""

from __future__ import annotations

import dataclasses
import json

import pytest

from airnet_restore.errors import AirNetError
from airnet_restore.loading import as_descriptor, load_model
from airnet_restore.postfilter import METADATA_KEY, PostFilterParams, WienerSettings
from airnet_restore.weights import save_weights
from tests.conftest import make_tiny


def test_the_record_round_trips_through_json_and_refuses_anything_else():
    own = PostFilterParams(wiener=WienerSettings(patch=6, passes=2), rounds=(2,), check_sigmas=(5.0, 9.0), mixed=0.4)
    assert PostFilterParams.from_json(own.to_json()) == own
    assert PostFilterParams.from_metadata({}) == PostFilterParams()  # weights without a record: the defaults
    data = json.loads(own.to_json())
    for broken in ({**data, "extra": 1}, {k: v for k, v in data.items() if k != "mixed"}, {**data, "mixed": "half"},
                   {**data, "rounds": [0]}, {**data, "check_sigmas": [9.0, 5.0]}, {**data, "wiener": {"patch": 8}}, [1, 2]):
        with pytest.raises(AirNetError, match=r"w\.safetensors: unreadable post-filter parameters"):
            PostFilterParams.from_json(json.dumps(broken), "w.safetensors")
    with pytest.raises(AirNetError, match="unreadable"):
        PostFilterParams.from_json("{not json", "w")
    for bad in ({"rounds": ()}, {"check_window": 1}, {"detectors_sure": (0.9, 0.7)}, {"noise_only": float("nan")}):
        with pytest.raises(AirNetError):
            PostFilterParams(**bad)
    with pytest.raises(AirNetError, match="wiener stride"):
        WienerSettings(stride=9)


def test_the_context_covers_the_reach_on_the_filters_grid():
    p = PostFilterParams()
    assert p.reach == p.wiener.reach(3) + p.wiener.reach(1)
    assert p.context >= p.reach and p.context % p.wiener.alignment == 0 and p.wiener.alignment == 16
    coarser = dataclasses.replace(p, wiener=WienerSettings(levels=4))
    assert coarser.context > p.context  # a coarser scale sees twice as far


def test_load_model_reads_the_parameters_its_weights_file_holds(tmp_path):
    own = PostFilterParams(rounds=(3,), mixed=0.7)
    path = save_weights(make_tiny(), tmp_path / "own.safetensors", metadata={METADATA_KEY: own.to_json()})
    loaded = load_model(path, device="cpu")
    assert loaded.postfilter.params == own and loaded.probe is None and not loaded.detects
    plain = load_model(save_weights(make_tiny(), tmp_path / "plain.safetensors"), device="cpu")
    assert plain.postfilter.params == PostFilterParams()
    assert as_descriptor(loaded) is loaded and as_descriptor(loaded.network).postfilter.params == PostFilterParams()
    broken = save_weights(make_tiny(), tmp_path / "broken.safetensors", metadata={METADATA_KEY: '{"rounds": [3]}'})
    with pytest.raises(AirNetError, match=r"broken\.safetensors: unreadable post-filter parameters"):
        load_model(broken, device="cpu")


def test_the_bundled_default_carries_its_detectors_and_parameters():
    from airnet_restore.constants import DEFAULT_VARIANT

    loaded = load_model(DEFAULT_VARIANT, device="cpu")
    assert loaded.detects and loaded.min_side == 32 and loaded.variant.name == DEFAULT_VARIANT
    assert loaded.postfilter.params == PostFilterParams()  # stored in the file or the defaults: the numbers tuned for it
    assert as_descriptor(loaded.network).probe == loaded.probe  # a bare network finds its registered variant's detectors
