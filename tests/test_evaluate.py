import csv
import json

import numpy as np
import pytest
from PIL import Image

from airnet_restore.cli import main
from airnet_restore.errors import AirNetError
from airnet_restore.evaluate import build_tasks
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
    assert methods == {"tiny", "input (identity)", "CBM3D (true sigma)", "dark channel prior"}
    assert {(r["method"], r["task"]) for r in rows if r["method"] == "CBM3D (true sigma)"} == {
        ("CBM3D (true sigma)", f"bsd68 s{s}") for s in (15, 25, 50)}
    assert {r["task"] for r in rows if r["method"] == "dark channel prior"} == {"haze"}
    per_image = list(csv.DictReader((out / "per_image.csv").read_text().splitlines()))
    assert len([r for r in per_image if r["method"] == "tiny"]) == 5 * 2
    data = json.loads((out / "results.json").read_text())
    assert data["average"]["CBM3D (true sigma)"] is None and data["average"]["tiny"] is not None
    cbm3d = float(next(r["psnr"] for r in rows if r["method"] == "CBM3D (true sigma)" and r["task"] == "bsd68 s25"))
    noisy = float(next(r["psnr"] for r in rows if r["method"] == "input (identity)" and r["task"] == "bsd68 s25"))
    assert cbm3d > noisy + 3  # the classical denoiser really denoises
    assert (out / "images" / "tiny" / "rain100l" / "grid_0.png").is_file()


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
    assert json.loads((out / "results.json").read_text())["average"]["tiny"] is not None
    assert main(["eval", "--baselines", "identity"]) == 2
    assert "no test sets" in capsys.readouterr().err
    assert main(["eval", "--weights", str(weights), "--set", f"clean={sets / 'clean'}", "--baselines", "",
                 "--crop", "32", "--out", str(tmp_path / "o2"), "--anchor", "0.5", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "| tiny (anchor 0.5) |" in printed
    assert "`--strength auto --anchor 0.5`; strength auto: " in printed and "anchor auto" not in printed


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
