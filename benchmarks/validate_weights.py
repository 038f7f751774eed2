"""Score weights files on a training config's validation, as the trainer scores its own EMA weights.

    python benchmarks/validate_weights.py airnet-general-v7 runs/general/last.safetensors [--config configs/general.yaml]

The trainer validates the network alone (strength 1, anchor 0) on the config's ``val`` photos,
degradations, crop and seed. Weights from before a change of the validation family (a degradation
redrawn, a type added) cannot be compared with the new log's figures; this scores them on today's.
Printed per weights: PSNR per validation task and their mean.
"""

from __future__ import annotations

import argparse

from airnet_restore.evaluate import evaluate, model_method
from airnet_restore.loading import load_model
from airnet_restore.metrics import get_protocol
from airnet_restore.train import load_config
from airnet_restore.train.loop import build_val_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="+", help="registered variants or weights files")
    parser.add_argument("--config", default="configs/general.yaml", help="training config whose val section to use")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    config = load_config(args.config)
    tasks = build_val_tasks(config)
    if not tasks:
        parser.error(f"{args.config} has no validation photos (val.clean)")
    protocol = get_protocol(config.val.protocol)
    for name in args.weights:
        restore = model_method(load_model(name, device=args.device), tile=None, postfilter="none")
        scores = evaluate(tasks, {name: (restore, lambda _: True)}, protocol, progress=False).scores[name]
        mean = sum(p for p, _ in scores.values()) / len(scores)
        print(name + ": " + ", ".join(f"{task} {p:.2f}" for task, (p, _) in scores.items()) + f"; mean {mean:.2f}", flush=True)


if __name__ == "__main__":
    main()
