"""Store the post-filter's parameters in a weights file's metadata; its tensors and other metadata stay as they are.

    python training/store_postfilter.py src/airnet_restore/assets/airnet-general-v8.safetensors [--params JSON]

Without ``--params`` the file gets ``PostFilterParams()``, the numbers chosen with airnet-general-v8's outputs
(``benchmarks/anchor.py``); ``load_model`` reads them back (``ModelDescriptor.postfilter``). The file's bytes
change, so a registered variant's sha256 (``variants.py``) must be updated after.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safetensors.torch import save

from airnet_restore.atomic import atomic_write
from airnet_restore.postfilter import METADATA_KEY, PostFilterParams
from airnet_restore.variants import file_sha256
from airnet_restore.weights import load_state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, help="a .safetensors file, rewritten in place (atomically)")
    parser.add_argument("--params", help="the record as JSON (default: the defaults)")
    args = parser.parse_args()
    params = PostFilterParams.from_json(args.params, "--params") if args.params else PostFilterParams()
    tensors, metadata = load_state_dict(args.weights)
    data = save(tensors, metadata={**metadata, METADATA_KEY: params.to_json()})
    atomic_write(args.weights, lambda tmp: tmp.write_bytes(data))
    print(f"{args.weights}: post-filter parameters stored; sha256 {file_sha256(args.weights)}")


if __name__ == "__main__":
    main()
