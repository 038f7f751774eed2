"""Hostile inputs, continued (issue 13, items 8, 9, 10 and 12): lying weight configs, convert
targets, a full disk during training and truncated files in a dataset. Each ends in a one-line
``AirNetError`` (exit 2 from the CLI), never a traceback, an allocation bomb or a wrong "OK"."""

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import airnet_restore.train.checkpoint as checkpoint
import airnet_restore.weights as weights
from airnet_restore.cli import main
from airnet_restore.data.check import check_data
from airnet_restore.errors import AirNetError
from airnet_restore.models import AirNetConfig
from airnet_restore.train.checkpoint import latest_state, load_state
from airnet_restore.weights import build_model, save_weights
from tests.conftest import TINY, make_tiny
from tests.hostile.test_restore import _truncated, needs_mounts, noise, save, sha

REPO = Path(__file__).resolve().parents[2]


def _train(tmp_path: Path, *overrides: str) -> int:
    """``airnet train`` of the smoke preset on two small photos, into ``tmp_path / "run"``."""
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    for i in range(2):
        save(photos / f"p{i}.png", noise((40, 40, 3)))
    sets = [f"data.types.{i}.clean={photos}" for i in range(3)] + [
        f"val.clean={photos}", "val.files=[p0.png]", "val.crop=32", "val.every=100", *overrides]
    return main(["train", str(REPO / "configs" / "smoke.yaml"), "--run-dir", str(tmp_path / "run"), "-q",
                 *(a for s in sets for a in ("--set", s))])


# ---- 8. weights whose config metadata lies: refused before the model is allocated ------------

def _with_config(path: Path, config: object) -> Path:
    """Rewrite the config metadata of a safetensors file (the tensors and their checksum stay)."""
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    save_file(load_file(str(path)), str(path), metadata={**meta, "config": json.dumps(config)})
    return path


BAD_CONFIGS = {
    "text width": ({"n_feats": "abc"}, "n_feats must be an integer from 1 to 256, got 'abc'"),
    "float queue 1e9": ({"queue_size": 1e9}, "queue_size must be an integer from 1 to 65,536, got 1000000000.0"),
    "int queue 1e9": ({"queue_size": 10**9}, "queue_size must be an integer from 1 to 65,536, got 1000000000"),
    "fractional width": ({"n_feats": 16.5}, "n_feats must be an integer"),
    "boolean depth": ({"n_blocks": True}, "n_blocks must be an integer"),
    "negative dim": ({"dim": -3}, "dim must be an integer from 1 to 1,024, got -3"),
    "text channel": ({"enc_channels": [16, "x", 32]}, "enc_channels must be three integers"),
    "two channels": ({"enc_channels": [16, 16]}, "enc_channels must be three integers"),
    "text momentum": ({"m": "abc"}, "m must be a number from 0 to 1"),
    "zero temperature": ({"T": 0}, "T must be a number above 0"),
    "not a mapping": ([1, 2], "expected a mapping of keys to values, got list"),
    "more groups than the tensors": ({"n_groups": 16}, "says n_groups=16 but the tensors hold 1"),
    "wider than the tensors": ({"n_feats": 256}, "says n_feats=256 but the tensors hold 16"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_a_lying_config_in_weights_is_refused_before_allocating(tmp_path, monkeypatch, case):
    change, message = BAD_CONFIGS[case]
    config = change if isinstance(change, list) else {**TINY.to_dict(), **change}
    path = _with_config(save_weights(make_tiny(), tmp_path / "w.safetensors"), config)

    def never(*args, **kwargs):
        raise AssertionError("the model was allocated from a bad config")

    monkeypatch.setattr(weights, "AirNet", never)
    with pytest.raises(AirNetError, match=re.escape(message)) as e:
        build_model(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_config_bounds_hold_for_every_caller():
    """One set of bounds: weights metadata, training configs and the API all pass through it."""
    with pytest.raises(AirNetError, match="model config: n_groups must be an integer from 1 to 16, got 17"):
        AirNetConfig(n_groups=17)
    assert AirNetConfig(enc_channels=[8, 8, 8]).enc_channels == (8, 8, 8)


def test_a_training_config_of_absurd_size_is_one_line(tmp_path, capsys):
    assert _train(tmp_path, "model.n_feats=100000") == 2
    assert "n_feats must be an integer from 1 to 256, got 100000" in capsys.readouterr().err


# ---- 9. convert: folders, names and the source itself ----------------------------------------

def test_convert_into_a_folder_writes_the_sources_name_there(tmp_path, capsys):
    src = save_weights(make_tiny(), tmp_path / "tiny.safetensors")
    (tmp_path / "out").mkdir()
    assert main(["convert", str(src), str(tmp_path / "out")]) == 0
    assert str(tmp_path / "out" / "tiny.safetensors") in capsys.readouterr().out
    assert build_model(tmp_path / "out" / "tiny.safetensors")[0].config == TINY


def test_convert_to_a_pth_name_is_refused_and_writes_nothing(tmp_path, capsys):
    src = save_weights(make_tiny(), tmp_path / "tiny.safetensors")
    assert main(["convert", str(src), str(tmp_path / "tiny.pth")]) == 2
    err = capsys.readouterr().err
    assert "convert writes safetensors" in err and err.count("\n") == 1 and not (tmp_path / "tiny.pth").exists()


def test_convert_onto_its_own_source_is_refused(tmp_path, capsys):
    """A full training file converted into its own folder would lose its training state."""
    src = save_weights(make_tiny(), tmp_path / "tiny.safetensors", full=True)
    digest = sha(src)
    assert main(["convert", str(src), str(tmp_path)]) == 2
    assert "is the source file" in capsys.readouterr().err and sha(src) == digest


# ---- 10. a full or read-only disk during training ---------------------------------------------

def _full_after(real, good: int):
    """An ``atomic_write`` whose writes after the first ``good`` fill the disk half-way through."""
    calls = []

    def write(path, writer):
        calls.append(path)
        if len(calls) <= good:
            return real(path, writer)

        def half_then_full(tmp):
            tmp.write_bytes(b"half a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

        return real(path, half_then_full)

    return write


def test_a_full_disk_while_training_is_one_line_and_keeps_the_last_state(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(checkpoint, "atomic_write", _full_after(checkpoint.atomic_write, good=1))
    code = _train(tmp_path, "train.epochs=2", "train.epochs_encoder=1", "train.iters_per_epoch=1", "train.checkpoint_every=1")
    run = tmp_path / "run"
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "state-e00002-i00000.pt: cannot write the training state: No space left on device" in err
    kept = latest_state(run)
    assert kept.name == "state-e00001-i00000.pt" and load_state(kept)["epoch"] == 1
    assert not [p for p in (run / "checkpoints").iterdir() if p.suffix == ".part"]


def test_a_full_disk_while_exporting_weights_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "atomic_write", _full_after(weights.atomic_write, good=0))
    with pytest.raises(AirNetError, match=re.escape("last.safetensors: cannot write: No space left on device")):
        save_weights(make_tiny(), tmp_path / "last.safetensors")
    assert list(tmp_path.iterdir()) == []


@needs_mounts
@pytest.mark.parametrize("what", ["state", "weights"])
def test_a_real_full_disk_is_named_not_hidden_by_the_serialiser(tmp_path, what):
    """torch.save and safetensors' writer report ENOSPC as 'unexpected pos' or their own error type."""
    write = {"state": "from airnet_restore.train.checkpoint import save_state; save_state(out / 's.pt', {'w': big})",
             "weights": "from airnet_restore.weights import save_weights; from tests.conftest import make_tiny; "
                        "save_weights(make_tiny(), out / 'w.safetensors')"}[what]
    code = (f"import torch; from pathlib import Path; out = Path('{tmp_path / 'full'}'); big = torch.zeros(100000)\n"
            f"from airnet_restore.errors import AirNetError\ntry:\n    {write}\nexcept AirNetError as e:\n    print(e)")
    (tmp_path / "full").mkdir()
    cmd = f"mount -t tmpfs -o size=16k tmpfs {tmp_path / 'full'} && {sys.executable} -c \"{code}\"; ls -a {tmp_path / 'full'}"
    result = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert "cannot write" in result.stdout and "No space left on device" in result.stdout, result.stdout + result.stderr
    assert ".part" not in result.stdout


# ---- 12. data check decodes every file ---------------------------------------------------------

@pytest.mark.parametrize("name", ["truncated.jpg", "truncated.png"])
def test_data_check_decodes_every_file_fully(tmp_path, capsys, name):
    """PIL's verify() reads a JPEG's header only: a half JPEG passed as 'OK: usable'."""
    save(tmp_path / "good.png", noise((64, 64, 3)))
    _truncated(Path(name).suffix)(tmp_path / name)
    (tmp_path / f"whole{Path(name).suffix}").unlink()
    report = check_data(tmp_path)
    assert not report.usable and [p.name for p, _ in report.unreadable] == [name]
    assert report.unreadable[0][1].startswith("corrupt or truncated image")
    assert main(["data", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / name}: corrupt or truncated" in out and "NOT USABLE" in out
