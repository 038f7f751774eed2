import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from airnet_restore.cli import main
from airnet_restore.errors import AirNetError
from airnet_restore.evaluate import Spread, Task, build_tasks, evaluate, heldout_sets, is_harmed, model_rows
from airnet_restore.metrics import get_protocol
from airnet_restore.weights import save_weights
from tests.conftest import make_tiny


@pytest.fixture
def sets(tmp_path):
    y, x = np.mgrid[0:40, 0:50]
    img = (np.stack([x * 4, y * 5, (x + y) * 2], axis=2) % 256).astype(np.uint8)
    for folder in ("clean", "rain/input", "rain/target"):
        (tmp_path / folder).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.roll(img, 7 * i, axis=1)).save(tmp_path / "clean" / f"{i}.png")
        Image.fromarray(np.roll(img, 7 * i, axis=1)).save(tmp_path / "rain" / "target" / f"{i}.png")
        Image.fromarray(np.clip(np.roll(img, 7 * i, axis=1).astype(int) + 40, 0, 255).astype(np.uint8)).save(tmp_path / "rain" / "input" / f"{i}.png")
    return tmp_path


def test_noise_sets_follow_the_official_protocol(sets):
    tasks = build_tasks("bsd68", sets / "clean", get_protocol("airnet"))
    assert [t.label for t in tasks] == ["bsd68 s15", "bsd68 s25", "bsd68 s50"]
    assert tasks[0].clean[0].shape == (32, 48, 3)  # cropped to multiples of 16 before the noise
    again = build_tasks("bsd68", sets / "clean", get_protocol("airnet"))
    assert all(np.array_equal(a, b) for t1, t2 in zip(tasks, again) for a, b in zip(t1.degraded, t2.degraded))


def test_missing_dataset_says_which_folder(tmp_path):
    with pytest.raises(AirNetError, match=r"folder not found: .*input \(it must contain"):
        build_tasks("rain100l", tmp_path / "Rain100L", get_protocol("airnet"))
    with pytest.raises(AirNetError, match="unknown test set"):
        build_tasks("imagenet", tmp_path, get_protocol("airnet"))


@pytest.mark.slow  # about 14 s: the whole eval command with baselines (CI runs -m slow)
def test_end_to_end_eval_writes_tables(sets, tmp_path, capsys):
    weights = save_weights(make_tiny(), tmp_path / "tiny.safetensors")
    out = tmp_path / "out"
    code = main([
        "eval", "--weights", str(weights), "--set", f"bsd68={sets / 'clean'}", "--set", f"rain100l={sets / 'rain'}",
        "--set", f"haze={sets / 'clean'}", "--out", str(out), "--grid", "1", "-q",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| method | bsd68 s15 | bsd68 s25 | bsd68 s50 | rain100l | haze | average |" in printed
    assert "protocol `airnet`" in printed
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    methods = {r["method"] for r in rows}
    assert methods == {"tiny (network)", "tiny (+post-filter)", "input (identity)", "CBM3D (true sigma)", "dark channel prior"}
    assert {(r["method"], r["task"]) for r in rows if r["method"] == "CBM3D (true sigma)"} == {
        ("CBM3D (true sigma)", f"bsd68 s{s}") for s in (15, 25, 50)}
    assert {r["task"] for r in rows if r["method"] == "dark channel prior"} == {"haze"}
    per_image = list(csv.DictReader((out / "per_image.csv").read_text().splitlines()))
    assert len([r for r in per_image if r["method"] == "tiny (network)"]) == 5 * 2
    assert {int(r["harmed"]) for r in per_image if r["method"] == "input (identity)"} == {0}  # the input is its own baseline
    data = json.loads((out / "results.json").read_text())
    assert data["average"]["CBM3D (true sigma)"] is None and data["average"]["tiny (+post-filter)"] is not None
    assert set(data["scores"]["tiny (network)"]["haze"]) >= {"median_psnr", "worst_image", "worst_psnr", "harmed", "images"}
    cbm3d = float(next(r["psnr"] for r in rows if r["method"] == "CBM3D (true sigma)" and r["task"] == "bsd68 s25"))
    noisy = float(next(r["psnr"] for r in rows if r["method"] == "input (identity)" and r["task"] == "bsd68 s25"))
    assert cbm3d > noisy + 3  # the classical denoiser really denoises
    assert (out / "images" / "tiny__network" / "rain100l" / "grid_0.png").is_file()


def test_clean_set_is_a_column_where_the_identity_does_not_apply(sets):
    from airnet_restore.evaluate import baseline_methods, evaluate

    (task,) = build_tasks("clean", sets / "clean", get_protocol("airnet"))
    assert task.kind == "clean" and task.sigma is None
    assert all(np.array_equal(d, c) for d, c in zip(task.degraded, task.clean))
    report = evaluate([task], baseline_methods(["identity", "cbm3d", "dcp"]), get_protocol("airnet"), progress=False)
    assert list(report.scores) == ["dark channel prior"]  # identity would be inf; true sigma 0 is no task
    assert "| dark channel prior | " in report.markdown() and np.isfinite(report.scores["dark channel prior"]["clean"][0])


def test_heldout_kinds_pick_the_baselines(sets):
    from airnet_restore.evaluate import BASELINES, baseline_methods, heldout_sets

    names = [n for n, _ in heldout_sets(sets / "clean")]
    assert names == ["clean", "ho_noise15", "ho_noise25", "ho_noise50", "ho_rain", "ho_haze", "ho_haze_noise", "ho_rain_noise"]
    tasks = {t.label: t for n in names for t in build_tasks(n, sets / "clean", get_protocol("airnet"))}
    assert (tasks["ho_noise25"].kind, tasks["ho_noise25"].sigma) == ("noise", 25.0)
    assert (tasks["ho_haze_noise"].kind, tasks["ho_haze_noise"].sigma) == ("haze+noise", 15.0)
    applies = {key: [label for label, t in tasks.items() if BASELINES[key][2](t)] for key in BASELINES}
    assert applies["identity"] == names[1:]
    assert applies["cbm3d"] == ["ho_noise15", "ho_noise25", "ho_noise50", "ho_haze_noise", "ho_rain_noise"]
    assert applies["nlm"] == applies["wavelet"] == applies["cbm3d-est"] == ["clean", *applies["cbm3d"]]
    assert applies["dcp"] == ["clean", "ho_haze", "ho_haze_noise"] and applies["wavelet+dcp"] == ["ho_haze_noise"]
    assert len(baseline_methods(["all"])) == len(BASELINES)


def test_heldout_preset_from_the_cli(sets, tmp_path, capsys):
    weights = save_weights(make_tiny(), tmp_path / "tiny.safetensors")
    out = tmp_path / "out"
    code = main(["eval", "--weights", str(weights), "--heldout", str(sets / "clean"), "--baselines", "identity",
                 "--crop", "32", "--out", str(out), "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| method | clean | ho_noise15 | ho_noise25 | ho_noise50 | ho_rain | ho_haze | ho_haze_noise | ho_rain_noise |" in printed
    assert "| input (identity) | - |" in printed
    assert "### ho_rain (2 photos)" in printed and "| method | mean | median | SSIM | worst photo | harmed |" in printed
    assert json.loads((out / "results.json").read_text())["average"]["tiny (network)"] is not None
    assert main(["eval", "--baselines", "identity"]) == 2
    assert "no test sets" in capsys.readouterr().err
    assert main(["eval", "--weights", str(weights), "--set", f"clean={sets / 'clean'}", "--baselines", "",
                 "--crop", "32", "--out", str(tmp_path / "o2"), "--anchor", "0.5", "-q"]) == 0
    printed = capsys.readouterr().out
    scores = json.loads((tmp_path / "o2" / "results.json").read_text())["scores"]
    assert list(scores) == ["tiny (network)", "tiny (+post-filter, anchor 0.5)"]
    assert scores["tiny (network)"]["clean"]["psnr"] != scores["tiny (+post-filter, anchor 0.5)"]["clean"]["psnr"]
    assert "`(+post-filter)` restores as `airnet restore` does with `--strength auto --anchor 0.5`; strength auto: " in printed
    assert "anchor auto" not in printed


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--seed", "-1", "seed must be an integer from 0 to 4,294,967,295, got -1"),
        ("--crop", "0", "crop must be an integer from 16 to 65,536, got 0"),
        ("--crop-border", "-2", "crop_border must be an integer from 0 to 1,024, got -2"),
        ("--grid", "-1", "grid must be an integer from 0 to 1,000,000, got -1"),
        ("--tile-overlap", "-3", "tile_overlap must be an integer from 0 to 1,024, got -3"),
    ],
)
def test_options_out_of_range_are_one_line_before_any_work(sets, tmp_path, capsys, option, value, message):
    out = tmp_path / "out"
    assert main(["eval", "--set", f"clean={sets / 'clean'}", "--baselines", "dcp", "-q", "--out", str(out), option, value]) == 2
    assert capsys.readouterr().err == f"airnet eval: error: {message}\n"
    assert not out.exists()
    with pytest.raises(AirNetError, match="seed must be an integer from 0"):
        build_tasks("bsd68", sets / "clean", get_protocol("airnet"), seed=-1)


def test_an_output_folder_that_is_a_file_is_refused_first(sets, tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("mine\n")
    assert main(["eval", "--set", f"clean={sets / 'clean'}", "--baselines", "dcp", "-q", "--out", str(out)]) == 2
    assert f"output folder {out}: {out} is not a folder" in capsys.readouterr().err
    assert out.read_text() == "mine\n"


def test_harm_is_more_than_half_a_decibel_below_the_input_or_under_40_db_on_a_clean_photo():
    assert not is_harmed(24.5, 25.0) and is_harmed(24.49, 25.0) and not is_harmed(20.0, 15.0)
    assert is_harmed(39.99, math.inf) and not is_harmed(40.0, math.inf) and not is_harmed(math.inf, math.inf)
    spread = Spread.of(["a", "b", "c", "d"], [30.0, 24.6, 24.4, 39.9], [25.0, 25.0, 25.0, 25.0])
    assert spread == Spread(images=4, median_psnr=27.3, worst_image="c", worst_psnr=24.4, harmed=1)
    assert Spread.of(["a", "b", "c"], [39.99, 41.0, math.inf], [math.inf] * 3).harmed == 1


def _level(k: float) -> float:
    """PSNR (dB) of an image off its reference by k levels everywhere."""
    return 20 * math.log10(255 / k)


def test_spread_of_a_constructed_evaluation(tmp_path):
    """A method that lands a known number of levels off each reference: every statistic is known."""
    ref = np.full((32, 32, 3), 100, np.uint8)
    noisy = Task("noisy", ["a.png", "b.png"], [ref + 8, ref + 4], [ref, ref], kind="noise")  # inputs 30.07, 36.09 dB
    clean = Task("clean", ["a.png", "b.png"], [ref.copy(), ref.copy()], [ref, ref], kind="clean")
    offsets = {("noisy", 0): 3, ("noisy", 1): 6, ("clean", 0): 2, ("clean", 1): 3}  # outputs 38.59, 32.57; 42.11, 38.59 dB

    def method(degraded: np.ndarray, task: Task) -> np.ndarray:
        i = next(i for i, d in enumerate(task.degraded) if d is degraded)
        return (ref.astype(np.float64) + offsets[task.label, i]) / 255.0

    report = evaluate([noisy, clean], {"m": (method, lambda _t: True)}, get_protocol("airnet"), progress=False)
    s = report.spreads["m"]
    assert s["noisy"].worst_image == "b.png" and s["noisy"].worst_psnr == pytest.approx(_level(6), abs=1e-4)
    assert s["noisy"].harmed == 1  # b: 3.5 dB worse than its input; a: better
    assert s["noisy"].median_psnr == pytest.approx((_level(3) + _level(6)) / 2, abs=1e-4)
    assert (s["clean"].worst_image, s["clean"].harmed) == ("b.png", 1)  # b under 40 dB, a above
    assert [r["harmed"] for r in report.per_image] == [0, 1, 0, 1]
    assert float(report.per_image[0]["input_psnr"]) == pytest.approx(_level(8), abs=1e-4)
    assert report.per_image[2]["input_psnr"] == "inf"
    md = report.markdown()
    assert "### noisy (2 photos)" in md and f"| b.png {_level(6):.2f} | 1/2 |" in md
    report.write(tmp_path)
    row = next(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))
    assert (row["task"], row["worst_image"], row["harmed"], row["images"]) == ("noisy", "b.png", "1", "2")


def test_two_rows_per_weights_the_first_is_the_network_alone(tiny_model):
    rows = model_rows("tiny", tiny_model, {"anchor": 0.5}, "+post-filter, anchor 0.5", tile=None)
    assert list(rows) == ["tiny (network)", "tiny (+post-filter, anchor 0.5)"]
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    task = Task("noise", ["x.png"], [image], [image], kind="noise")
    network, post = (fn(image, task) for fn, _ in rows.values())
    with torch.no_grad():
        alone = tiny_model.eval()(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0).clamp(0, 1)
    assert np.array_equal(network, alone[0].permute(1, 2, 0).numpy())
    assert not np.allclose(post, network, atol=1e-3)  # the anchor reaches the post-filter row only


def test_heldout_takes_one_pool_split_and_names_the_builder(tmp_path, capsys):
    pool = tmp_path / "pool"
    (pool / "heldout").mkdir(parents=True)
    assert heldout_sets(pool / "heldout")[0] == ("clean", str(pool / "heldout"))
    with pytest.raises(AirNetError, match=r"give one split, e.g. --heldout .*heldout$"):
        heldout_sets(pool)
    with pytest.raises(AirNetError, match=r"held-out folder not found: .*`python data/photo_pool.py --split heldout`"):
        heldout_sets(tmp_path / "missing")
    assert main(["eval", "--heldout", str(tmp_path / "missing"), "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python data/photo_pool.py --split heldout" in err
