"""Fixtures of the training tests."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def photos(tmp_path):
    """Four small synthetic 'photos' in a folder: enough for every training test."""
    folder = tmp_path / "photos"
    folder.mkdir()
    y, x = np.mgrid[0:48, 0:56]
    for i in range(4):
        img = np.stack([x * 3 + 20 * i, y * 4, (x + y) * 2], axis=2) % 256
        Image.fromarray(img.astype(np.uint8)).save(folder / f"p{i}.png")
    return folder
