"""Starting training from existing weights (--init), partial initialisation, and frozen parts."""

import json

import pytest
import torch
import yaml

from airnet_restore.cli import main
from airnet_restore.errors import AirNetError
from airnet_restore.models import AirNet, AirNetConfig
from airnet_restore.train import Trainer, load_config
from airnet_restore.train.loop import EMA
from airnet_restore.weights import build_model, load_state_dict, save_weights
from tests.train.test_train import SMOKE, smoke_config

SMOKE_ARCH = AirNetConfig(n_feats=16, n_groups=1, n_blocks=1, enc_channels=(16, 16, 32), dim=32, queue_size=24)


def trained_like(seed: int = 1, config: AirNetConfig = SMOKE_ARCH) -> AirNet:
    """A model of the smoke architecture with weights no fresh run would have."""
    torch.manual_seed(seed)
    model = AirNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def outputs_equal(a: AirNet, b: AirNet) -> bool:
    """Same outputs bit for bit, in one memory layout (CPU training runs channels-last)."""
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = (m.to(memory_format=torch.contiguous_format).eval() for m in (a, b))
        return torch.equal(a(x), b(x))


@pytest.mark.parametrize("kind", ["safetensors", "safetensors-full", "official-pth"])
def test_init_starts_from_exactly_the_loaded_weights(photos, tmp_path, kind):
    source = trained_like()
    if kind == "official-pth":
        path = tmp_path / "All.pth"
        torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    else:
        path = save_weights(source, tmp_path / "w.safetensors", full=kind.endswith("full"))
    trainer = Trainer(smoke_config(photos, f"train.init={path}"), tmp_path / "run", progress=False)
    assert outputs_equal(trainer.model, source)
    assert trainer.config.train.epochs_encoder == 0  # the encoder is trained already: no warm-up
    assert any("loaded" in line for line in trainer.init_report)
    if kind == "safetensors":
        assert any("inference weights only" in line for line in trainer.init_report)
        # the momentum encoder starts as a copy of the query encoder, as in MoCo
        assert torch.equal(trainer.model.E.E.encoder_k.E_pre.backbone[0].weight,
                           trainer.model.E.E.encoder_q.E_pre.backbone[0].weight)


def test_init_from_a_training_state_takes_its_ema_restorer(photos, tmp_path):
    extra = ("train.epochs=1", "train.epochs_encoder=0", "train.iters_per_epoch=2", "train.ema=0.5", "val.every=100")
    first = Trainer(smoke_config(photos, *extra), tmp_path / "a", progress=False)
    first.run()
    state = sorted((tmp_path / "a" / "checkpoints").glob("*.pt"))[-1]
    second = Trainer(smoke_config(photos, f"train.init={state}"), tmp_path / "b", progress=False)
    for k, v in first.ema.shadow.items():
        assert torch.equal(second.model.R.state_dict()[k], v), k
    assert second.global_step == 0 and second.epoch == 0  # a new run, not a resume


def test_architecture_comes_from_the_weights_when_the_config_has_none(photos, tmp_path):
    tree = yaml.safe_load(SMOKE.read_text())
    del tree["model"]
    config_path = tmp_path / "no_model.yaml"
    config_path.write_text(yaml.safe_dump(tree))
    wide = AirNetConfig(n_feats=8, n_groups=2, n_blocks=1, enc_channels=(8, 16, 32), dim=16, queue_size=24)
    path = save_weights(trained_like(config=wide), tmp_path / "w.safetensors", full=True)
    overrides = [f"data.types.{i}.clean={photos}" for i in range(3)] + [f"val.clean={photos}", "val.files=[p0.png]", f"train.init={path}"]
    config = load_config(config_path, overrides)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert (trainer.model_config.n_feats, trainer.model_config.n_groups) == (8, 2)


def test_a_mismatch_is_a_clear_error_and_partial_init_reports_what_it_did(photos, tmp_path, capsys):
    other = AirNetConfig(n_feats=16, n_groups=1, n_blocks=2, enc_channels=(16, 16, 32), dim=32, queue_size=24)
    path = save_weights(trained_like(config=other), tmp_path / "deeper.safetensors", full=True)
    with pytest.raises(AirNetError, match=r"unexpected: R\.body\.0\.body\.1\."):
        Trainer(smoke_config(photos, f"train.init={path}"), tmp_path / "run", progress=False)

    code = main(["train", str(SMOKE), "--init", str(path), "--init-partial", "--run-dir", str(tmp_path / "p"), "-q",
                 *[a for i in range(3) for a in ("--set", f"data.types.{i}.clean={photos}")],
                 "--set", f"val.clean={photos}", "--set", "val.files=[p0.png]", "--set", "val.crop=32",
                 "--set", "train.epochs=1", "--set", "train.iters_per_epoch=1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "loaded" in out and "skipped (not in model)" in out and "R.body.0.body.1." in out


def test_the_moco_queue_starts_fresh_when_its_length_differs(photos, tmp_path):
    five_types = AirNetConfig(n_feats=16, n_groups=1, n_blocks=1, enc_channels=(16, 16, 32), dim=32, queue_size=40)
    path = save_weights(trained_like(config=five_types), tmp_path / "w.safetensors", full=True)
    trainer = Trainer(smoke_config(photos, f"train.init={path}"), tmp_path / "run", progress=False)
    assert trainer.model.E.E.queue.shape == (32, 24)
    assert any("MoCo queue: fresh" in line for line in trainer.init_report)


def test_a_frozen_encoder_stays_bit_identical(photos, tmp_path):
    extra = ("train.epochs=1", "train.epochs_encoder=0", "train.iters_per_epoch=3", "train.freeze=[encoder]", "val.every=100")
    trainer = Trainer(smoke_config(photos, *extra), tmp_path / "run", progress=False)
    enc = {k: v.clone() for k, v in trainer.model.E.E.encoder_q.state_dict().items()}
    r_before = {k: v.clone() for k, v in trainer.model.R.state_dict().items()}
    trainer.run()
    for k, v in trainer.model.E.E.encoder_q.state_dict().items():
        assert torch.equal(enc[k], v), k  # weights and BatchNorm statistics
    assert not all(torch.equal(r_before[k], v) for k, v in trainer.model.R.state_dict().items())


def test_ema_from_a_checkpoint_moves_to_the_training_device():
    module = torch.nn.Linear(2, 2).to("meta")
    shadow = {k: torch.zeros_like(v, device="cpu") for k, v in module.state_dict().items()}
    ema = EMA(module, 0.9, shadow=shadow)
    assert all(v.device.type == "meta" for v in ema.shadow.values())


def test_resume_with_fp16_switched_on_ignores_the_empty_scaler_state(photos, tmp_path):
    extra = ("train.epochs=2", "train.epochs_encoder=0", "train.iters_per_epoch=1", "val.every=100", "train.checkpoint_every=1")
    Trainer(smoke_config(photos, *extra, "train.epochs=1"), tmp_path / "run", progress=False).run()
    resumed = Trainer(smoke_config(photos, *extra, "train.amp=fp16"), tmp_path / "run", resume="auto", progress=False)
    assert resumed.epoch == 1


def test_resume_with_a_batch_that_does_not_divide_the_queue_is_refused_before_training(photos, tmp_path):
    extra = ("train.epochs=1", "train.epochs_encoder=0", "train.iters_per_epoch=1", "val.every=100", "train.checkpoint_every=1")
    Trainer(smoke_config(photos, *extra), tmp_path / "run", progress=False).run()  # three types: a queue of 24
    five = f"data.types=[{', '.join(f'{{name: n{i}, degradation: noise25, clean: {photos}}}' for i in range(5))}]"
    with pytest.raises(AirNetError, match="24 keys, which the global batch of 5"):
        Trainer(smoke_config(photos, *extra, five), tmp_path / "run", resume="auto", progress=False)


def test_resume_auto_without_a_state_says_it_starts_fresh(photos, tmp_path):
    Trainer(smoke_config(photos), tmp_path / "run", resume="auto", progress=False)
    events = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "fresh start"


def test_the_finetune_preset_trains_the_default_weights_on_a_paired_folder(tmp_path):
    import numpy as np
    from PIL import Image

    from tests.train.test_train import REPO

    rng = np.random.default_rng(0)
    for sub in ("input", "target"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
    for i in range(2):
        clean = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(clean).save(tmp_path / "pairs" / "target" / f"{i}.png")
        Image.fromarray(np.clip(clean + rng.normal(0, 10, clean.shape), 0, 255).astype(np.uint8)).save(
            tmp_path / "pairs" / "input" / f"{i}.png")
    config = load_config(REPO / "configs" / "finetune.yaml", [
        f"data.types.0.root={tmp_path / 'pairs'}", f"data.types.1.clean={tmp_path / 'pairs' / 'target'}",
        "data.patch_size=32", "train.epochs=1", "train.iters_per_epoch=2"])
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert trainer.model_config.n_feats == 24  # the default variant's architecture
    enc = trainer.model.E.E.encoder_q.E_pre.backbone[0].weight.clone()
    trainer.run()
    assert torch.equal(enc, trainer.model.E.E.encoder_q.E_pre.backbone[0].weight)
    assert (tmp_path / "run" / "last.safetensors").is_file()


def test_training_reads_clean_folders_with_their_subfolders_and_says_where_relative_paths_start(photos, tmp_path, capsys):
    from airnet_restore.train.loop import build_sources

    nested = tmp_path / "nested" / "a" / "b"
    nested.mkdir(parents=True)
    for p in sorted(photos.iterdir())[:2]:
        (nested / p.name).write_bytes(p.read_bytes())
    config = smoke_config(photos, f"data.types.0.clean={tmp_path / 'nested'}")
    assert len(build_sources(config)[0].clean) == 2
    assert main(["data", "check", str(tmp_path / "nested")]) == 0
    assert ": 2 images" in capsys.readouterr().out
    code = main(["train", str(SMOKE), "--set", "data.types.0.clean=no/such/folder", "--run-dir", str(tmp_path / "r")])
    assert code == 2 and "relative to" in capsys.readouterr().err


def test_convert_full_refuses_inference_only_weights(tmp_path, capsys):
    path = save_weights(trained_like(), tmp_path / "inference.safetensors")
    assert main(["convert", str(path), str(tmp_path / "full.safetensors"), "--full"]) == 2
    assert "inference weights only" in capsys.readouterr().err
    assert not (tmp_path / "full.safetensors").exists()


def test_resume_auto_without_a_state_is_announced(photos, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", str(SMOKE), "--run-dir", str(run), "--resume", "auto", "-q", "--set", "train.epochs=1",
            "--set", "train.iters_per_epoch=1", *[a for i in range(3) for a in ("--set", f"data.types.{i}.clean={photos}")],
            "--set", f"val.clean={photos}", "--set", "val.files=[p0.png]", "--set", "val.crop=32"]
    assert main(args) == 0
    assert f"no state found in {run}; starting fresh" in capsys.readouterr().out


def test_a_run_started_with_init_resumes_without_init_and_without_a_warm_up(photos, tmp_path):
    path = save_weights(trained_like(), tmp_path / "w.safetensors", full=True)
    extra = ("train.epochs=2", "train.epochs_encoder=1", "train.iters_per_epoch=1", "val.every=100", "train.checkpoint_every=1")
    Trainer(smoke_config(photos, *extra, "train.epochs=1", f"train.init={path}"), tmp_path / "run", progress=False).run()
    resumed = Trainer(smoke_config(photos, *extra), tmp_path / "run", resume="auto", progress=False)
    assert resumed.config.train.epochs_encoder == 0


def test_a_residual_run_from_direct_weights_starts_as_the_identity(photos, tmp_path, capsys):
    path = save_weights(trained_like(), tmp_path / "w.safetensors", full=True)
    config = smoke_config(photos, f"train.init={path}", "model.global_residual=true")
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert any("tail: zero" in line for line in trainer.init_report)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(trainer.model.eval()(x), x)
    # every other restorer tensor is the loaded one
    source = load_state_dict(path)[0]
    assert all(torch.equal(v, source[f"R.{k}"]) for k, v in trainer.model.R.state_dict().items() if not k.startswith("tail."))


def test_residual_weights_carry_their_architecture_into_a_run_without_a_model_section(photos, tmp_path):
    residual = AirNetConfig(**{**SMOKE_ARCH.to_dict(), "global_residual": True})
    path = save_weights(trained_like(config=residual), tmp_path / "w.safetensors", full=True)
    tree = yaml.safe_load(SMOKE.read_text())
    del tree["model"]
    config_path = tmp_path / "no_model.yaml"
    config_path.write_text(yaml.safe_dump(tree))
    overrides = [f"data.types.{i}.clean={photos}" for i in range(3)] + [f"val.clean={photos}", "val.files=[p0.png]", f"train.init={path}"]
    trainer = Trainer(load_config(config_path, overrides), tmp_path / "run", progress=False)
    assert trainer.model_config.global_residual
    assert not any("tail: zero" in line for line in trainer.init_report)
    assert outputs_equal(trainer.model, build_model(path)[0])
