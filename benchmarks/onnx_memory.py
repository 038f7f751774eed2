"""Where the onnxruntime backend's memory goes in one `airnet restore`: the resident set after each step.

    python benchmarks/onnx_memory.py PHOTO --weights default.onnx [--memory-pattern] [--no-shrink] [--doubling-arena]
        [--ceiling GIB]
    python benchmarks/onnx_memory.py --forward 512 --weights default.onnx   # one forward alone

Runs ``airnet restore PHOTO -o OUT -q --backend onnxruntime --weights ...`` in this process (OUT: a temporary folder)
and prints the resident set (VmRSS) and its peak so far (VmHWM), in GB, after the session is made, after the
detectors, after each tile's forward and after the post-filter. The switches put back what issue 35 took out, one
at a time: ``--memory-pattern`` onnxruntime's memory pattern, ``--no-shrink`` the arena kept between runs,
``--doubling-arena`` the session's own arena (extended in powers of two) instead of the shared one extended by what
is requested; ``--ceiling`` sets onnxruntime's tile ceiling in GiB (``ORT_FORWARD_BYTES``; 2 was the PyTorch
path's, shared before). Run one configuration per process: the peak is the process's. ``--forward SIZE`` instead
runs two forwards of a random SIZE x SIZE image through ``OnnxRestorer`` and prints each one's peak over the resident
set before the first, per pixel.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time


def status(key: str) -> float:
    """A /proc/self/status figure in GB (10^9 bytes)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key)) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", nargs="?")
    parser.add_argument("--forward", type=int, metavar="SIZE", help="time and measure forwards alone, no restore")
    parser.add_argument("--weights", required=True, help="an `airnet export` file")
    parser.add_argument("--memory-pattern", action="store_true")
    parser.add_argument("--no-shrink", action="store_true")
    parser.add_argument("--doubling-arena", action="store_true")
    parser.add_argument("--ceiling", type=float, help="onnxruntime's tile ceiling in GiB")
    args = parser.parse_args()
    start = time.perf_counter()

    def log(what: str) -> None:
        print(f"{time.perf_counter() - start:7.1f} s  rss {status('VmRSS'):.2f}  peak {status('VmHWM'):.2f} GB  {what}",
              flush=True)

    import onnxruntime as ort

    from airnet_restore import export
    from airnet_restore.cli import main as cli
    from airnet_restore.loading import ModelDescriptor
    from airnet_restore.postfilter.stage import PostFilter

    log("imported")
    if args.forward:
        import torch

        from airnet_restore.memory import tune_allocator

        tune_allocator()  # as airnet restore does
        net = export.OnnxRestorer(args.weights)
        x = torch.rand(1, 3, args.forward, args.forward, generator=torch.Generator().manual_seed(0))
        before = status("VmRSS")
        for i in range(2):
            t0 = time.perf_counter()
            net(x)
            grown = (status("VmHWM") - before) * 1e9
            print(f"forward {i + 1}: {time.perf_counter() - t0:.1f} s, peak {grown / 1e9:.2f} GB over the process "
                  f"({grown / args.forward**2:,.0f} B per pixel)", flush=True)
        return
    if args.photo is None:
        parser.error("give a PHOTO to restore, or --forward SIZE")
    if args.ceiling is not None:
        export.ORT_FORWARD_BYTES = args.ceiling * 2**30
    init, forward, inspect, finish = (export.OnnxRestorer.__init__, export.OnnxRestorer.forward,
                                      ModelDescriptor.inspect, PostFilter.finish)

    def new_init(self, path, threads=None):
        init(self, path, threads)
        if args.memory_pattern or args.doubling_arena:
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.session.get_session_options().intra_op_num_threads
            options.enable_mem_pattern = args.memory_pattern
            if not args.doubling_arena:
                options.add_session_config_entry("session.use_env_allocators", "1")
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        if args.no_shrink:
            self.run_options = None
        log(f"session made (tiles sized at {self.bytes_per_pixel:,} B per pixel)")

    def new_forward(self, x):
        out = forward(self, x)
        log(f"forward of {x.shape[-2]}x{x.shape[-1]}")
        return out

    def new_inspect(self, image):
        found = inspect(self, image)
        log("detectors")
        return found

    def new_finish(self, *a, **k):
        done = finish(self, *a, **k)
        log("post-filter")
        return done

    export.OnnxRestorer.__init__, export.OnnxRestorer.forward = new_init, new_forward
    ModelDescriptor.inspect, PostFilter.finish = new_inspect, new_finish
    with tempfile.TemporaryDirectory() as out:
        rc = cli(["restore", args.photo, "-o", out, "-q", "--backend", "onnxruntime", "--weights", args.weights])
    log(f"done (exit status {rc})")
    sys.exit(rc)


if __name__ == "__main__":
    main()
