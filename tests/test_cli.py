import os
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

from airnet_restore.cli import main
from airnet_restore.weights import load_state_dict
from tests.conftest import make_tiny


def test_info_lists_the_paper_variant_with_its_counts(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "airnet: restorer 6,290,441 + encoder 1,319,936 x 2 = 8,930,313 parameters" in out


def test_convert_writes_safetensors(tmp_path, capsys):
    src = tmp_path / "All.pth"
    torch.save(OrderedDict(make_tiny().state_dict()), src)
    assert main(["convert", str(src), str(tmp_path / "out.safetensors"), "--half", "--meta", "licence=CC0"]) == 0
    sd, meta = load_state_dict(tmp_path / "out.safetensors")
    assert meta["licence"] == "CC0" and meta["source"] == "All.pth"
    assert sd["R.head.0.weight"].dtype == torch.float16


def test_convert_of_a_bad_file_is_one_clear_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    assert main(["convert", str(bad), str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("airnet convert: error:") and "\n" not in err
    assert not (tmp_path / "o.safetensors").exists()


def test_convert_copies_detectors_to_weights_that_share_their_encoder(tmp_path, capsys):
    """Weights fine-tuned with the encoder frozen keep their detectors: v8's tensors with v9's detectors
    load with v9's probe and post-filter; weights with another encoder are refused in one line."""
    from airnet_restore.loading import load_model
    from airnet_restore.variants import VARIANTS

    out = tmp_path / "grafted.safetensors"
    assert main(["convert", str(VARIANTS["airnet-general-v8"].weights_path()), str(out),
                 "--detectors-from", "airnet-general-v9", "--meta", "variant=grafted"]) == 0
    grafted, v9 = load_model(out, device="cpu"), load_model("airnet-general-v9", device="cpu")
    assert grafted.probe is not None and grafted.probe.to_json() == v9.probe.to_json()
    assert grafted.postfilter.params == v9.postfilter.params and grafted.detects
    assert load_state_dict(out)[1]["variant"] == "grafted"

    tiny = tmp_path / "tiny.pth"
    torch.save(OrderedDict(make_tiny().state_dict()), tiny)
    capsys.readouterr()
    assert main(["convert", str(tiny), str(tmp_path / "t.safetensors"), "--detectors-from", "airnet-general-v9"]) == 2
    err = capsys.readouterr().err.strip()
    assert "another encoder" in err and "\n" not in err and not (tmp_path / "t.safetensors").exists()


def test_module_entry_point_runs_and_its_quick_exit_loses_no_output(capsys):
    """The console script ends the process without tearing the interpreter down (``cli.run``): what the command
    printed into a pipe (block-buffered, as in a user's shell) must still arrive whole."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run([sys.executable, "-m", "airnet_restore", "info"], capture_output=True, text=True, timeout=120,
                            env=env)
    assert main(["info"]) == 0
    assert result.returncode == 0 and "8,930,313" in result.stdout
    assert result.stdout == capsys.readouterr().out


def test_a_reader_that_leaves_early_ends_the_command_quietly_with_sigpipes_status():
    proc = subprocess.Popen([sys.executable, "-m", "airnet_restore", "info"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # before the command has written anything (its start-up alone takes a tenth of a second)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err, err


@pytest.mark.parametrize("argv, quick", [(["info"], True), (["train", "cfg.yaml"], False), (["serve"], False)])
def test_the_console_script_lets_commands_with_workers_or_threads_exit_as_usual(monkeypatch, argv, quick):
    """Training keeps its loader's worker processes and serving its threads until the interpreter exits: those
    two end through ``sys.exit``; the others at once through ``os._exit``, with the command's status."""
    from airnet_restore import cli

    class Ended(Exception):
        pass

    def quick_exit(code):
        raise Ended(code)

    monkeypatch.setattr(cli, "_execute", lambda args: 3)
    monkeypatch.setattr(cli.os, "_exit", quick_exit)
    monkeypatch.setattr(sys, "argv", ["airnet", *argv])
    with pytest.raises(Ended if quick else SystemExit) as ended:
        cli.run()
    assert (ended.value.args[0] if quick else ended.value.code) == 3


def test_the_console_script_keeps_argparses_status():
    bad = subprocess.run([sys.executable, "-m", "airnet_restore", "info", "--bogus"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "unrecognized arguments: --bogus" in bad.stderr


def test_a_too_small_tile_is_refused_before_anything_runs(tmp_path, capsys):
    import pytest

    from airnet_restore.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["restore", "--sample", "-o", str(tmp_path / "out"), "--tile", "16"])
    assert exit_info.value.code == 2
    assert "tile size 16 is too small; use at least 32" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_every_option_of_every_subcommand_has_a_description():
    import argparse

    from airnet_restore.cli import build_parser

    def walk(parser: argparse.ArgumentParser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)
            elif not isinstance(action, argparse._HelpAction):
                yield parser.prog, action

    missing = [f"{prog} {action.option_strings or action.dest}" for prog, action in walk(build_parser()) if not action.help]
    assert not missing, missing


def test_restore_jpeg_quality_is_checked_before_the_model_and_16_to_8_bits_warns(tmp_path, capsys):
    import cv2
    import numpy as np

    from airnet_restore.weights import save_weights

    weights = save_weights(make_tiny(), tmp_path / "tiny.safetensors")
    cv2.imwrite(str(tmp_path / "deep.png"), np.random.default_rng(0).integers(0, 65536, (24, 24, 3), dtype=np.uint16))
    common = [str(tmp_path / "deep.png"), "--weights", str(weights), "--ext", "jpg", "-q"]
    assert main(["restore", *common, "-o", str(tmp_path / "bad"), "--jpeg-quality", "101", "--weights", "missing"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "airnet restore: error: JPEG quality must be a whole number from 1 to 100, got 101"
    assert not (tmp_path / "bad").exists()
    assert main(["restore", *common, "-o", str(tmp_path / "out"), "--jpeg-quality", "60"]) == 0
    captured = capsys.readouterr()
    assert f"warning: {tmp_path / 'deep.png'}: 16-bit input written as 8-bit .jpg; use --ext png or tif" in captured.err
    assert "1 restored, 0 failed" in captured.out and (tmp_path / "out" / "deep.jpg").is_file()


def test_version_prints_the_package_metadata_version(capsys):
    from importlib.metadata import version

    import pytest

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"airnet {version('airnet-restore')}"


def test_restore_postfilter_none_writes_the_network_forward_and_auto_differs_on_a_noisy_photo(tmp_path, capsys):
    """`airnet restore X --postfilter none` is the network's forward on X, exactly as training validation scores it;
    the default (the post-filter) gives something else on a noisy photo (issue 32)."""
    import numpy as np
    from PIL import Image

    from airnet_restore.constants import DEFAULT_VARIANT
    from airnet_restore.image_io import from_float
    from airnet_restore.loading import load_model

    rng = np.random.default_rng(3)
    clean = np.kron(rng.uniform(40, 215, (6, 6, 3)), np.ones((8, 8, 1)))  # flat patches: a photo-like texture
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    for choice in ("none", "auto"):
        assert main(["restore", str(tmp_path / "noisy.png"), "-o", str(tmp_path / choice), "--postfilter", choice, "-q"]) == 0
    network = load_model(DEFAULT_VARIANT, device="cpu").network
    with torch.no_grad():
        forward = network(torch.from_numpy(noisy).permute(2, 0, 1)[None].float() / 255)[0].clamp(0, 1)
    expected = from_float(forward.permute(1, 2, 0).numpy(), np.uint8)
    written = {c: np.asarray(Image.open(tmp_path / c / "noisy.png")) for c in ("none", "auto")}
    assert np.array_equal(written["none"], expected)
    assert np.abs(written["auto"].astype(int) - written["none"]).max() > 2
    assert "noise" in capsys.readouterr().out  # the default judged the photo
    assert main(["restore", str(tmp_path / "noisy.png"), "-o", str(tmp_path / "x"), "--postfilter", "none",
                 "--strength", "0.5", "-q", "--weights", "nowhere.safetensors"]) == 2  # refused before any weights load
    assert "strength and anchor do not apply" in capsys.readouterr().err
