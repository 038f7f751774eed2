import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from airnet_restore.cli import main
from airnet_restore.train import Trainer, load_config, lr_at
from airnet_restore.train.config import TrainSection
from airnet_restore.weights import build_model

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.yaml"


def smoke_config(photos, *extra):
    overrides = [f"data.types.{i}.clean={photos}" for i in range(3)] + [f"val.clean={photos}", "val.files=[p0.png]", "val.crop=32"]
    return load_config(SMOKE, [*overrides, *extra])


def r_params(trainer):
    return {k: v.clone() for k, v in trainer.model.R.state_dict().items()}


def test_warm_up_leaves_the_restorer_alone_and_the_joint_phase_learns(photos, tmp_path):
    config = smoke_config(photos, "train.epochs=1", "train.epochs_encoder=1", "train.iters_per_epoch=4")
    trainer = Trainer(config, tmp_path / "run", progress=False)
    before = r_params(trainer)
    enc_before = trainer.model.E.E.encoder_q.E_pre.backbone[0].weight.clone()
    trainer.run()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.R.state_dict().items())
    assert not torch.equal(enc_before, trainer.model.E.E.encoder_q.E_pre.backbone[0].weight)

    config = smoke_config(photos, "train.epochs=6", "train.epochs_encoder=0", "train.iters_per_epoch=8", "train.lr_joint=2e-3",
                          "train.lr=2e-3", "val.every=100", "data.types=[{name: noise25, clean: " + str(photos) + "}]")
    trainer = Trainer(config, tmp_path / "run2", progress=False)
    trainer.run()
    steps = [json.loads(line) for line in (tmp_path / "run2" / "log.jsonl").read_text().splitlines()]
    l1 = [s["l1"] for s in steps if "l1" in s]
    assert len(l1) >= 4
    assert l1[-1] < 0.5 * l1[0], l1  # first logged step vs the last
    assert not all(torch.equal(before[k], v) for k, v in trainer.model.R.state_dict().items())


def test_interrupt_and_resume_is_bit_identical(photos, tmp_path):
    extra = ("train.epochs=3", "train.epochs_encoder=1", "train.iters_per_epoch=3", "val.every=2", "train.ema=0.9")
    straight = Trainer(smoke_config(photos, *extra), tmp_path / "a", progress=False)
    straight.run()

    first = Trainer(smoke_config(photos, *extra), tmp_path / "b", progress=False)
    original_step = first.train_step

    def step_then_stop(batch):
        out = original_step(batch)
        if first.global_step == 4:  # mid-epoch 2
            first.stop_requested = True
        return out

    first.train_step = step_then_stop
    first.run()
    assert (first.epoch, first.iteration) == (1, 2)
    resumed = Trainer(smoke_config(photos, *extra), tmp_path / "b", resume="auto", progress=False)
    assert (resumed.epoch, resumed.iteration) == (1, 2)
    resumed.run()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert all(torch.equal(v, resumed.ema.shadow[k]) for k, v in straight.ema.shadow.items())
    # exported weights are ready for airnet restore
    _, meta = build_model(tmp_path / "b" / "last.safetensors")
    assert json.loads(meta["training"])["steps"] == 9


def test_lr_schedule_matches_the_paper_table():
    t = TrainSection()
    table = {0: 1e-3, 60: 1e-3, 61: 1e-4, 101: 1e-4, 102: 1e-4, 225: 1e-4, 226: 5e-5, 350: 5e-5, 351: 2.5e-5,
             475: 2.5e-5, 476: 1.25e-5, 601: 6.25e-6, 726: 3.125e-6, 851: 1.5625e-6, 976: 7.8125e-7, 999: 7.8125e-7}
    for epoch, lr in table.items():
        assert lr_at(epoch, t) == pytest.approx(lr), epoch


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.lr=-1", "config key 'train.lr'"),
        ("train.precision=fp64", "config key 'train.precision'"),
        ("train.amp=fp64", "train.amp, the old name of train.precision, must be none, fp16 or bf16, got 'fp64'"),
        ("model.n_feats=0", "model config: n_feats must be an integer from 1 to 256, got 0"),
        ("data.types.0.name=snow", "unknown degradation 'snow'"),
        ("train.learning_rate=1", "config key 'train.learning_rate': Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_a_clear_error_and_leaves_no_run_folder(tmp_path, capsys, override, message):
    run = tmp_path / "run"
    assert main(["train", str(SMOKE), "--set", override, "--run-dir", str(run)]) == 2
    assert message in capsys.readouterr().err
    assert not run.exists()


def test_missing_data_folder_leaves_no_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", str(SMOKE), "--set", f"data.types.0.clean={tmp_path}/nowhere", "--run-dir", str(run)])
    assert code == 2 and "folder not found" in capsys.readouterr().err
    assert not run.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, photos: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    config = smoke_config(Path(photos), "train.epochs=2", "train.epochs_encoder=1", "train.iters_per_epoch=2", "val.every=1")
    trainer = Trainer(config, Path(out) / f"run{rank}", device="cpu", progress=False)
    trainer.run()
    torch.save(trainer.model.state_dict(), Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # about 20 s: two processes train end to end (CI runs -m slow)
def test_two_process_gloo_ddp_keeps_replicas_and_queues_identical(photos, tmp_path):
    mp.start_processes(_ddp_worker, args=(_free_port(), str(photos), str(tmp_path)), nprocs=2, start_method="spawn")
    s0, s1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k in s0:
        if "running_" in k or "num_batches" in k:
            continue  # per-rank BatchNorm statistics on CPU (no SyncBatchNorm with gloo)
        assert torch.equal(s0[k], s1[k]), k
    # 4 steps x 3 types x 2 ranks = 24 keys entered the queue of 24 on every rank
    assert int(s0["E.E.queue_ptr"]) == int(s1["E.E.queue_ptr"]) == 0
    assert (tmp_path / "run0" / "last.safetensors").is_file() and not (tmp_path / "run1").exists()


def test_ema_switched_on_at_resume_starts_from_the_resumed_weights(photos, tmp_path):
    extra = ("train.epochs=2", "train.epochs_encoder=0", "train.iters_per_epoch=2", "val.every=100", "train.checkpoint_every=1")
    Trainer(smoke_config(photos, *extra, "train.epochs=1"), tmp_path / "run", progress=False).run()
    resumed = Trainer(smoke_config(photos, *extra, "train.ema=0.5"), tmp_path / "run", resume="auto", progress=False)
    assert resumed.epoch == 1
    for k, v in resumed.model.R.state_dict().items():
        assert torch.equal(resumed.ema.shadow[k], v), k


@pytest.mark.parametrize(("setting", "expected"), [(None, True), ("false", False)])
def test_cpu_training_runs_channels_last_unless_switched_off(photos, tmp_path, setting, expected):
    extra = ("train.iters_per_epoch=1", "train.epochs=1") + ((f"train.channels_last={setting}",) if setting else ())
    trainer = Trainer(smoke_config(photos, *extra), tmp_path / "run", progress=False)
    weight = trainer.model.R.head[0].weight
    assert trainer.channels_last is expected
    assert weight.is_contiguous(memory_format=torch.channels_last) is expected


def test_a_folder_of_the_users_files_is_refused_as_run_folder(photos, tmp_path):
    from airnet_restore.errors import AirNetError

    run = tmp_path / "mine"
    run.mkdir()
    (run / "config.yaml").write_text("my own config\n")
    (run / "last.safetensors").write_bytes(b"my weights")
    with pytest.raises(AirNetError, match=r"holds files airnet train did not write \(config.yaml, last.safetensors\)"):
        Trainer(smoke_config(photos, "train.epochs=1", "train.iters_per_epoch=1"), run, progress=False)
    assert (run / "config.yaml").read_text() == "my own config\n" and sorted(p.name for p in run.iterdir()) == [
        "config.yaml", "last.safetensors"]
    (run / "x").write_text("")
    with pytest.raises(AirNetError, match="is a file, not a folder"):
        Trainer(smoke_config(photos), run / "x", progress=False)


def test_a_run_folder_is_marked_and_reused_only_to_resume(photos, tmp_path):
    from airnet_restore.errors import AirNetError
    from airnet_restore.train.rundir import MARKER

    run = tmp_path / "run"
    run.mkdir()  # an empty folder is fine
    extra = ("train.epochs=1", "train.epochs_encoder=0", "train.iters_per_epoch=1", "val.every=100")
    Trainer(smoke_config(photos, *extra), run, progress=False).run()
    assert (run / MARKER).is_file() and (run / "last.safetensors").is_file()
    with pytest.raises(AirNetError, match="already holds checkpoints; pass --resume auto"):
        Trainer(smoke_config(photos, *extra), run, progress=False)
    assert Trainer(smoke_config(photos, *extra), run, resume="auto", progress=False).epoch == 1


def test_an_unwritable_run_folder_is_one_line_naming_it(photos, tmp_path, monkeypatch, capsys):
    import errno

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "mkdir", read_only)
    code = main(["train", str(SMOKE), "--run-dir", str(tmp_path / "run"), "-q",
                 *(a for o in [f"data.types.{i}.clean={photos}" for i in range(3)] + [f"val.clean={photos}", "val.files=[p0.png]", "train.epochs=1"]
                   for a in ("--set", o))])
    err = capsys.readouterr().err
    assert code == 2 and f"run folder {tmp_path / 'run'}: cannot create or write it: Read-only file system" in err
    assert "Traceback" not in err


def test_a_diverged_run_stops_before_writing_and_keeps_the_last_good_state(photos, tmp_path):
    from airnet_restore.errors import AirNetError

    extra = ("train.epochs=2", "train.epochs_encoder=0", "train.iters_per_epoch=2", "val.every=100", "train.checkpoint_every=1")
    trainer = Trainer(smoke_config(photos, *extra), tmp_path / "run", progress=False)
    original_step = trainer.train_step

    def step_then_diverge(batch):
        out = original_step(batch)
        if trainer.epoch == 1:  # the first epoch's state and weights are written, then the weights go NaN
            with torch.no_grad():
                trainer.model.R.head[0].weight.fill_(float("inf"))
        return out

    trainer.train_step = step_then_diverge
    with pytest.raises(AirNetError, match=r"training diverged at epoch 2, step 4: weight R\.head\.0\.weight holds NaN or Inf; "
                                          r"nothing more was written \(last good state: .*state-e00001-i00000\.pt\)"):
        trainer.run()
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["state-e00001-i00000.pt"]
    from airnet_restore.weights import load_state_dict

    sd, meta = load_state_dict(tmp_path / "run" / "last.safetensors")
    assert json.loads(meta["training"])["epoch"] == 1 and all(torch.isfinite(v).all() for v in sd.values())


def test_a_nan_loss_stops_the_run_at_its_first_logged_step(photos, tmp_path):
    from airnet_restore.errors import AirNetError

    trainer = Trainer(smoke_config(photos, "train.epochs=1", "train.epochs_encoder=0", "train.iters_per_epoch=3"),
                      tmp_path / "run", progress=False)
    with torch.no_grad():
        trainer.model.E.E.encoder_q.E_pre.backbone[0].weight.fill_(float("nan"))
    with pytest.raises(AirNetError, match=r"training diverged at epoch 1, step 1: the loss is nan.*no state saved yet"):
        trainer.run()
    assert not (tmp_path / "run" / "last.safetensors").exists() and not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "state,message",
    [
        ({}, "incomplete training state, no model, optimizer"),
        ({"model": [], "optimizer": {}, "scaler": {}, "ema": None, "epoch": 0, "iteration": 0, "global_step": 0, "best": 0.0,
          "rng": {}, "config": {}}, "model of the wrong type"),
        ({"model": {}, "optimizer": {}, "scaler": {}, "ema": None, "epoch": -1, "iteration": 0, "global_step": 0, "best": 0.0,
          "rng": {}, "config": {}}, "a negative epoch"),
        ({"model": {"w": torch.tensor([float("nan")])}, "optimizer": {}, "scaler": {}, "ema": None, "epoch": 0, "iteration": 0,
          "global_step": 0, "best": 0.0, "rng": {}, "config": {}}, "the state's model tensor w holds NaN or Inf"),
        ({"model": {}, "optimizer": {}, "scaler": {}, "ema": None, "epoch": 0, "iteration": 0, "global_step": 0, "best": 0.0,
          "rng": {}, "config": {"model": {}}}, "its config has no model and train sections"),
    ],
    ids=["format-only", "wrong-type", "negative", "nan", "no-config"],
)
def test_a_damaged_state_is_refused_before_use(photos, tmp_path, capsys, state, message):
    from airnet_restore.train.checkpoint import FORMAT

    path = tmp_path / "state.pt"
    torch.save({"format": FORMAT, **state}, path)
    overrides = [f"data.types.{i}.clean={photos}" for i in range(3)] + [f"val.clean={photos}", "val.files=[p0.png]"]
    assert main(["train", str(SMOKE), "--run-dir", str(tmp_path / "run"), "--resume", str(path), "-q",
                 *(a for o in overrides for a in ("--set", o))]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_state_of_other_trainable_parameters_is_one_line(photos, tmp_path):
    from airnet_restore.errors import AirNetError

    extra = ("train.epochs=1", "train.epochs_encoder=0", "train.iters_per_epoch=1", "val.every=100")
    Trainer(smoke_config(photos, *extra), tmp_path / "run", progress=False).run()
    with pytest.raises(AirNetError, match=r"state-e00001-i00000\.pt: the state does not fit this run \("):
        Trainer(smoke_config(photos, *extra, "train.freeze=[encoder]"), tmp_path / "run", resume="auto", progress=False)
