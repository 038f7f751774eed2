"""Training validation scores exactly what ``airnet eval`` scores on the same weights and settings."""

import json

import numpy as np
import pytest

from airnet_restore.cli import main
from airnet_restore.evaluate import build_tasks
from airnet_restore.metrics import get_protocol
from airnet_restore.train.loop import build_val_tasks
from tests.train.test_train import SMOKE, smoke_config

TASKS = ("noise25", "rain", "haze")


def test_validation_psnr_printed_by_train_equals_airnet_eval(photos, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "eval"
    sets = [f"val.clean={photos}", "val.files=[p0.png, p2.png]", "val.crop=40", "val.seed=3", f"val.degradations=[{', '.join(TASKS)}]"]
    overrides = [f"data.types.{i}.clean={photos}" for i in range(3)] + sets + [
        "train.epochs=1", "train.epochs_encoder=0", "train.iters_per_epoch=2", "train.ema=0.5", "val.every=1"]
    assert main(["train", str(SMOKE), "--run-dir", str(run), "--device", "cpu", *(a for o in overrides for a in ("--set", o))]) == 0
    printed = capsys.readouterr().out
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    validation = [r for r in logged if r.get("event") == "validation"][-1]

    args = ["eval", "--weights", str(run / "best.safetensors"), "--include", "p0.png,p2.png", "--crop", "40", "--seed", "3",
            "--baselines", "", "--device", "cpu", "--out", str(out), "-q"]
    assert main([*args, *(a for t in TASKS for a in ("--set", f"{t}={photos}"))]) == 0
    results = json.loads((out / "results.json").read_text())
    for task in TASKS:
        row = results["scores"]["best (network)"][task]
        assert {k: row[k] for k in ("psnr", "ssim")} == {"psnr": validation[f"{task}/psnr"], "ssim": validation[f"{task}/ssim"]}
    assert results["average"]["best (network)"]["psnr"] == validation["mean/psnr"]
    scores = ", ".join(f"{t} {results['scores']['best (network)'][t]['psnr']:.2f}" for t in TASKS)
    assert f"validation PSNR (dB) after epoch 1: {scores}, mean {results['average']['best (network)']['psnr']:.2f}" in printed


def test_validation_pairs_are_the_eval_pairs_degraded_after_cropping(photos):
    config = smoke_config(photos, "val.crop=24", "val.seed=5", "val.files=[p1.png]")
    tasks = build_val_tasks(config)
    assert [t.label for t in tasks] == ["noise25", "rain", "haze"]
    for task in tasks:
        (expected,) = build_tasks(task.label, photos, get_protocol("airnet"), crop=24, include=["p1.png"], seed=5)
        assert task.degraded[0].shape == (16, 16, 3)  # 24 px centre crop, then the protocol's multiple of 16
        assert np.array_equal(task.degraded[0], expected.degraded[0]) and np.array_equal(task.clean[0], expected.clean[0])
    other_seed = build_tasks("noise25", photos, get_protocol("airnet"), crop=24, include=["p1.png"], seed=6)[0]
    assert not np.array_equal(other_seed.degraded[0], tasks[0].degraded[0])


def test_missing_validation_file_names_the_folder(photos):
    from airnet_restore.errors import AirNetError

    with pytest.raises(AirNetError, match=f"files not found in {photos}: nope.png"):
        build_val_tasks(smoke_config(photos, "val.files=[nope.png]"))


@pytest.mark.parametrize(("iters", "expected_step"), [(1, 1), (2, 1)])
def test_a_stopped_run_validates_where_it_stands_once(photos, tmp_path, iters, expected_step):
    """Stopped at the end of an epoch just validated, the run does not score the same weights again;
    stopped within an epoch, it still validates where it stands."""
    run = tmp_path / "run"
    overrides = [f"data.types.{i}.clean={photos}" for i in range(3)] + [
        f"val.clean={photos}", "val.files=[p0.png]", "val.crop=32", "val.degradations=[noise25]", "val.every=1",
        "train.epochs=3", "train.epochs_encoder=0", f"train.iters_per_epoch={iters}", "train.max_minutes=1e-9"]
    assert main(["train", str(SMOKE), "--run-dir", str(run), "--device", "cpu", *(a for o in overrides for a in ("--set", o))]) == 0
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if r.get("event") == "validation"] == [expected_step]
    assert [r for r in logged if r.get("event") == "stopped"]
