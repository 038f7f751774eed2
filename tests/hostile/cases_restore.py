"""Hostile cases: shapes and contents that a restorer could make worse (issue 34)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.hostile.harness import Cases, Scene, bad, cli, tiny_weights

CASES = Cases("restore")


def noisy_row(height: int, width: int) -> np.ndarray:
    """A smooth gradient row with sigma-25 noise."""
    rng = np.random.default_rng(600)
    clean = np.broadcast_to(np.linspace(40, 210, width)[None, :, None], (height, width, 3))
    return np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).round().astype(np.uint8)


@CASES.add
def a_1x600_noisy_row_is_never_made_worse(scene: Scene) -> None:
    """Too small for the detectors: the default writes it as it is, and says so."""
    row = noisy_row(1, 600)
    Image.fromarray(row).save(scene.root / "row.png")
    scene.protect()
    result = cli("restore", scene.root / "row.png", "-o", scene.root / "out", "-q")
    out = np.asarray(Image.open(scene.root / "out" / "row.png"))
    if result.code != 0 or not np.array_equal(out, row):
        bad(f"the row was changed by the default (exit {result.code})")
    if "too small for the detectors" not in result.err:
        bad(f"leaving it as it is was not said: {result.err}")


@CASES.add
def thin_strips_of_every_orientation_keep_their_shape(scene: Scene) -> None:
    for shape in ((1, 300), (300, 1), (3, 2000), (2000, 3), (1, 1)):
        Image.fromarray(noisy_row(*shape)).save(scene.root / f"s{shape[0]}x{shape[1]}.png")
    scene.protect()
    result = cli("restore", scene.root, "-o", scene.root / "out", "--weights", tiny_weights(), "--strength", "1", "-q")
    if result.code != 0:
        bad(f"a strip failed: {result.err}")
    for shape in ((1, 300), (300, 1), (3, 2000), (2000, 3), (1, 1)):
        out = np.asarray(Image.open(scene.root / "out" / f"s{shape[0]}x{shape[1]}.png"))
        if out.shape != (*shape, 3):
            bad(f"{shape} came back as {out.shape}")
