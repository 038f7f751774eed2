"""Starting a training run from existing weights (fine-tuning): the weights, what was loaded, what is fresh."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from pydantic import ValidationError

from airnet_restore.errors import AirNetError
from airnet_restore.models.airnet import AirNet, AirNetConfig
from airnet_restore.train.checkpoint import load_state
from airnet_restore.train.config import ModelSection
from airnet_restore.weights import INFERENCE_PREFIXES, TORCH_SUFFIXES, load_into, load_state_dict, stored_config

QUEUE_KEYS = ("E.E.queue", "E.E.queue_ptr")


def init_state_dict(spec: str) -> tuple[dict[str, torch.Tensor], str, AirNetConfig]:
    """The state dict to start from, a description of where it came from, and its architecture.

    ``spec`` is a registered variant (its weights, checked), our safetensors, an official ``.pth``,
    or one of our training states, whose EMA restorer (if any) is taken, as it is what was exported.
    The architecture is the one recorded with the weights (variant, metadata or training config),
    else read off the tensor shapes.
    """
    from airnet_restore.variants import VARIANTS

    if spec in VARIANTS:
        variant = VARIANTS[spec]
        path = variant.checked_weights()
        return load_state_dict(path)[0], f"variant {spec} ({path.name})", variant.config
    path = Path(spec)
    if not path.is_file():
        raise AirNetError(f"init weights not found: {spec} (a variant name, .safetensors, .pth or training state)")
    if path.suffix in TORCH_SUFFIXES:
        try:
            state = load_state(path)
        except AirNetError:
            state = None  # not one of our training states: read it as a plain checkpoint below
        if state is not None:
            sd = dict(state["model"])
            queue = sd.get("E.E.queue")
            if queue is None or queue.ndim != 2:
                raise AirNetError(f"{path}: the training state has no MoCo queue (a damaged state)")
            try:
                arch = ModelSection.model_validate(state["config"]["model"]).airnet_config(queue.shape[1])
            except ValidationError as e:
                raise AirNetError(f"{path}: the state's model config is not valid: {e.errors()[0]['msg']}") from None
            if state.get("ema"):
                sd.update({f"R.{k}": v for k, v in state["ema"].items()})
                return sd, f"training state {path} (epoch {state['epoch']}, EMA restorer)", arch
            return sd, f"training state {path} (epoch {state['epoch']})", arch
    sd, metadata = load_state_dict(path)
    return sd, str(path), stored_config(path, metadata, sd)


def apply_init(
    model: AirNet, sd: Mapping[str, torch.Tensor], partial: bool = False, source: AirNetConfig | None = None
) -> list[str]:
    """Load ``sd`` into ``model`` and return a report, one line per fact.

    Strict by default: any missing, unexpected or wrongly shaped tensor is an error naming it
    (a file with inference weights only loads the restorer and the encoder's first block).
    ``partial`` loads every tensor whose name and shape fit and leaves the rest as initialised.
    A MoCo queue of another length (a different number of degradation types) always starts fresh.
    Weights of a restorer without the global residual (``source``) that start one with it get a zero
    tail: their tail maps features to the image, not to a correction, and a zero correction makes the
    run start from the identity, which leaves clean photos exactly alone.
    """
    own = model.state_dict()
    sd = dict(sd)
    if not any(k.startswith(INFERENCE_PREFIXES) for k in sd):
        raise AirNetError("the init weights hold no AirNet restorer or encoder tensor")
    report = []
    if "E.E.queue" in sd and sd["E.E.queue"].shape != own["E.E.queue"].shape:
        report.append(f"MoCo queue: fresh (file {tuple(sd['E.E.queue'].shape)}, run {tuple(own['E.E.queue'].shape)})")
        sd.update({k: own[k] for k in QUEUE_KEYS})  # the model's own fresh queue and pointer
    if partial:
        fits = {k: v for k, v in sd.items() if k in own and v.shape == own[k].shape}
        if not fits:
            raise AirNetError("--init-partial: no tensor of the init weights fits this architecture")
        wrong = sorted(k for k in sd if k in own and k not in fits)
        unused = sorted(k for k in sd if k not in own)
        with torch.no_grad():
            for k, v in model.state_dict(keep_vars=True).items():
                if k in fits:
                    v.copy_(fits[k].to(v.dtype))
        fresh = sorted(set(own) - set(fits))
        report.append(f"loaded {len(fits)} of {len(own)} tensors")
        for label, keys in (("initialised fresh", fresh), ("skipped (shape differs)", wrong), ("skipped (not in model)", unused)):
            if keys:
                more = f" and {len(keys) - 8} more" if len(keys) > 8 else ""
                report.append(f"{label}: {len(keys)}: {', '.join(keys[:8])}{more}")
    else:
        load_into(model, sd)
        report.append(f"loaded {sum(k in sd for k in own)} of {len(own)} tensors")
        if not any(k.startswith("E.E.encoder_k.") for k in sd):
            report.append("the file holds inference weights only: the rest of the encoder starts fresh")
    if model.config.global_residual and source is not None and not source.global_residual:
        with torch.no_grad():
            for p in model.R.tail.parameters():
                p.zero_()
        report.append("restorer tail: zero (the init weights have no global residual; the run starts as the identity)")
    if not any(k.startswith("E.E.encoder_k.") for k in sd):
        # The momentum encoder starts as a copy of the query encoder, as MoCo does.
        for p_q, p_k in zip(model.E.E.encoder_q.parameters(), model.E.E.encoder_k.parameters()):
            p_k.data.copy_(p_q.data)
    return report
