"""The GPU sprint command, run on the CPU with a tiny config: it trains for its budget and hands back the files."""

import importlib.util
import json

from airnet_restore.weights import build_model, save_weights
from tests.train.test_init import trained_like
from tests.train.test_train import REPO, SMOKE


def load_sprint():
    spec = importlib.util.spec_from_file_location("sprint", REPO / "training" / "sprint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sprint_trains_within_its_budget_and_hands_back_state_weights_and_log(photos, tmp_path):
    init = save_weights(trained_like(), tmp_path / "w.safetensors", full=True)
    out = tmp_path / "out"
    sets = [a for i in range(3) for a in ("--set", f"data.types.{i}.clean={photos}")]
    sets += ["--set", f"val.clean={photos}", "--set", "val.files=[p0.png]", "--set", "val.crop=32"]
    args = ["--config", str(SMOKE), "--init", str(init), "--minutes", "0.05", "--out", str(out), "--device", "cpu",
            "--no-gpu-overrides", "--name", "tiny", "--set", "train.iters_per_epoch=1000", *sets]
    assert load_sprint().main(args) == 0
    summary = json.loads((out / "sprint.json").read_text())
    assert summary["steps_after"] > 0 and summary["minutes"] < 1.0
    assert {p.name for p in out.iterdir()} == {"state.pt", "best.safetensors", "last.safetensors", "log.jsonl", "sprint.json"}
    _, meta = build_model(out / "best.safetensors")
    assert json.loads(meta["training"])["steps"] == summary["steps_after"]
    # it can continue from the state it handed back
    assert load_sprint().main([*args[:2], "--resume", str(out / "state.pt"), *args[4:]]) == 0
    assert json.loads((out / "sprint.json").read_text())["steps_before"] == summary["steps_after"]
