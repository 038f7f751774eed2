"""The default restore's PSNR on a folder of photos under variants of the weights' post-filter record (issue 31:
the stage's numbers are chosen on training and validation photos, never on held-out ones).

    python benchmarks/postfilter_sweep.py data/pool/validation --weights airnet-general-v9 \\
        --variant detectors_sure=0.9:0.97 --variant detectors_sure=0.98:0.99 [--every 2] [--crop 256] \\
        [--conditions clean,ho_noise15,ho_haze_noise] [--jsonl per-photo.jsonl]

Every ``--every``-th photo (sorted) is centre-cropped to ``--crop`` and degraded as ``airnet eval --heldout``
degrades it (``evaluate.build_tasks``, seed 0), then restored by ``restore_tensor`` as ``airnet restore`` does:
with the weights' own post-filter record (``stored``, the reference) and with each ``--variant`` of it
(``FIELD=VALUE[,FIELD=VALUE]``; a pair as ``LOW:HIGH``, a switch as ``true``/``false``; the fields of
``PostFilterParams``, and ``rain.FIELD`` / ``haze.FIELD`` those of a band's settings). Outputs are rounded
to 8 bits. One table row per condition and record: mean, median and worst PSNR (dB; an output identical to
its reference counts as 100 dB), the harmed photos
(``evaluate.is_harmed``: clean below 40 dB, degraded more than 0.5 dB below the input), and on how many photos
the record is better / worse than ``stored`` by more than 0.05 dB. ``--jsonl``: one line per photo and condition
(the detectors' presences and sigma, each record's PSNR).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.degradations import HELDOUT_KINDS
from airnet_restore.evaluate import build_tasks, is_harmed
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.loading import ModelDescriptor, load_model
from airnet_restore.memory import tune_allocator
from airnet_restore.metrics import get_protocol, psnr
from airnet_restore.postfilter import PostFilter, PostFilterParams
from airnet_restore.postfilter.params import HazeSettings, RainSettings

CAP_DB = 100.0  # an output identical to its reference scores inf; means count it as this


def as_batch(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (1,3,H,W) float64 in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).double()[None] / 255


def parse_variant(text: str) -> dict[str, Any]:
    """``FIELD=VALUE[,FIELD=VALUE]`` -> the changes to a ``PostFilterParams``; ``LOW:HIGH`` is a pair, ``true`` /
    ``false`` a switch, and ``haze.FIELD`` / ``rain.FIELD`` a field of a band's settings."""
    names = {f.name for f in dataclasses.fields(PostFilterParams)}
    bands = {"haze": HazeSettings, "rain": RainSettings}
    changes: dict[str, Any] = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        band, _, field = name.partition(".")
        known = {f.name for f in dataclasses.fields(bands[band])} if field and band in bands else names
        if (field or name) not in known or not value:
            raise SystemExit(f"--variant {text!r}: expected FIELD=VALUE with a field of PostFilterParams "
                             f"({', '.join(sorted(names))}) or BAND.FIELD=VALUE for a band ({', '.join(bands)})")
        parsed = (value == "true" if value in ("true", "false")
                  else tuple(float(v) for v in value.split(":")) if ":" in value
                  else int(value) if value.isdigit() else float(value))  # integer fields (check_window) as int
        if field:
            changes.setdefault(band, {})[field] = parsed
        else:
            changes[name] = parsed
    return changes


def with_params(desc: ModelDescriptor, changes: dict[str, Any]) -> ModelDescriptor:
    """``desc`` with its post-filter record changed as ``changes`` says (validated by ``PostFilterParams``)."""
    params = desc.postfilter.params
    bands = {k: dataclasses.replace(getattr(params, k), **v) for k, v in changes.items() if isinstance(v, dict)}
    return dataclasses.replace(desc, postfilter=PostFilter(dataclasses.replace(params, **{**changes, **bands})))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="clean photos, e.g. data/pool/validation")
    parser.add_argument("--weights", default=DEFAULT_VARIANT)
    parser.add_argument("--variant", action="append", default=[], help="FIELD=VALUE[,FIELD=VALUE] (repeatable)")
    parser.add_argument("--conditions", default=",".join(["clean", *HELDOUT_KINDS]))
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--jsonl", type=Path, help="write one line per photo and condition here")
    args = parser.parse_args()
    tune_allocator()
    desc = load_model(args.weights)
    records = {"stored": desc, **{v: with_params(desc, parse_variant(v)) for v in args.variant}}
    protocol = get_protocol("airnet")
    lines = []
    for condition in args.conditions.split(","):
        task = build_tasks(condition, args.folder, protocol, crop=args.crop, seed=0)[0]
        for i in range(0, len(task.names), args.every):
            x = torch.from_numpy(task.degraded[i]).permute(2, 0, 1).float() / 255
            clean = as_batch(task.clean[i])
            found = desc.inspect(x)
            line: dict[str, Any] = {
                "condition": condition, "photo": task.names[i], "input": psnr(as_batch(task.degraded[i]), clean).item(),
                "presence": None if found is None else found.presence, "sigma": None if found is None else found.sigma}
            for label, model in records.items():
                out = (restore_tensor(model, x).clamp(0, 1) * 255).round().double()[None] / 255
                line[label] = psnr(out, clean).item()
            lines.append(line)
            print(json.dumps(line), flush=True)
    if args.jsonl:
        args.jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines))
    print(f"\n{args.weights} on {args.folder} (every {args.every}, {args.crop}-px crops, seed 0): "
          "mean / median / worst dB, harmed, better / worse than stored")
    print("| condition | photos | input | " + " | ".join(records) + " |")
    print("|---|---|---|" + "---|" * len(records))
    for condition in args.conditions.split(","):
        rows = [line for line in lines if line["condition"] == condition]
        cells = []
        for label in records:
            values = [min(CAP_DB, row[label]) for row in rows]
            harmed = sum(is_harmed(row[label], row["input"]) for row in rows)
            cell = f"{statistics.mean(values):.2f} / {statistics.median(values):.2f} / {min(values):.2f}, {harmed} harmed"
            if label != "stored":
                better = sum(row[label] > row["stored"] + 0.05 for row in rows)
                worse = sum(row[label] < row["stored"] - 0.05 for row in rows)
                cell += f", {better} / {worse}"
            cells.append(cell)
        inputs = [row["input"] for row in rows]
        shown = "clean" if condition == "clean" else f"{statistics.mean(inputs):.2f}"
        print(f"| {condition} | {len(rows)} | {shown} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
