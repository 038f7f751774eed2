"""training/hazemap.py: seeded crops with haze, a few steps, float16 weights that the haze band can load."""

import importlib.util
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from airnet_restore.models.hazemap import HazeMap
from tests.train.test_train import REPO


def load_script():
    spec = importlib.util.spec_from_file_location("hazemap_training", REPO / "training" / "hazemap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # two seeded runs of the script: 10-20 s
def test_the_script_trains_a_map_and_the_same_seed_gives_the_same_weights(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate([(300, 320), (260, 400)]):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    script = load_script()
    outs = []
    for name in ("a.safetensors", "b.safetensors"):
        monkeypatch.setattr(sys, "argv", ["hazemap.py", str(photos), str(tmp_path / name), "--crops", "1", "--steps", "2"])
        script.main()
        outs.append(load_file(str(tmp_path / name)))
    assert outs[0].keys() == HazeMap().state_dict().keys()
    assert all(v.dtype == torch.float16 for v in outs[0].values())
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])
    assert any(bool(outs[0][k].abs().max() > 0) for k in ("head.weight", "head.bias"))  # it moved off the identity
    net = HazeMap()
    net.load_state_dict({k: v.float() for k, v in outs[0].items()})
