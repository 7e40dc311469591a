"""Benchmark of the generators: parameters, FLOPs, forward latency (CPU or GPU).

    .venv/bin/python bench/bench_models.py                 # the table of docs/benchmarks.md
    .venv/bin/python bench/bench_models.py --quick         # 128x64 only, fewer repeats

For each generator (H_S, H_A, at 256 also the progressive H_A of DeepFashion,
and each H_A again with its deformable skips removed: same convolutions) at each size and
batch, with XLA off (``tf.function``) and on (``jit_compile=True``): the median forward
time of ``--repeats`` runs after one warm-up (wall clock, and CPU seconds of this process over all its threads:
on a shared machine the CPU figure is the steadier one), plus the first-call
time (tracing, XLA compile). FLOPs are those of the convolutions and
matmuls (2 x MACs), counted by the TF profiler on the frozen forward graph at
batch 1, times the batch. Runs of H_A with and without warps are interleaved,
so their ratio (the deformable skips' share of the forward time) holds on a
noisy, shared machine even when the absolute times drift. Prints a Markdown
table to paste into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2,
)

from spt_tf import geometry  # noqa: E402
from spt_tf.models import generators  # noqa: E402

CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "MatMul", "BatchMatMulV2", "BatchMatMul")


def make_inputs(batch, height, width, seed=0):
    rng = np.random.default_rng(seed)

    def keypoints():
        return np.stack(
            [rng.uniform(0.15 * height, 0.85 * height, (batch, 18)),
             rng.uniform(0.25 * width, 0.75 * width, (batch, 18))], -1,
        ).astype(np.float32)  # fmt: skip

    x = geometry.pair_conditioning(keypoints(), keypoints(), height, width, 6.0, 4.0)
    x["source_parsing"] = geometry.one_hot_parsing(rng.integers(0, 10, (batch, height, width)), 10)
    x["target_parsing"] = geometry.one_hot_parsing(rng.integers(0, 10, (batch, height, width)), 10)
    x["image"] = tf.constant(rng.uniform(-1, 1, (batch, height, width, 3)).astype(np.float32))
    return x


def conv_flops(model, inputs) -> int:
    """Conv / matmul FLOPs of one forward pass (TF profiler on the frozen graph)."""
    fn = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(inputs))
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(frozen.graph, cmd="op", options=opts)
    total = sum(child.total_float_ops for child in prof.children if child.name in CONV_OPS)
    return int(total)


def timed(fn, inputs):
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(inputs)
    float(tf.reduce_sum(out[..., :1]))  # wait for the result
    return time.perf_counter() - t0, time.process_time() - c0


def bench_pair(models: dict, inputs, repeats: int, xla: bool):
    """Median wall and CPU seconds per forward of each model (interleaved runs), first-call seconds."""
    fns = {name: tf.function(lambda x, m=m: m(x, training=False), jit_compile=xla) for name, m in models.items()}
    first = {name: timed(fn, inputs)[0] for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, inputs))
    wall = {name: statistics.median(t[0] for t in ts) for name, ts in times.items()}
    cpu = {name: statistics.median(t[1] for t in ts) for name, ts in times.items()}
    return wall, cpu, first


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128x64,256x256", help="HxW list")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--max-batch-256", type=int, default=1, help="largest batch at 256x256 (time budget)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xla", default="off,on")
    parser.add_argument("--progressive", type=int, default=1, help="also the progressive H_A at 256")
    parser.add_argument("--quick", action="store_true", help="128x64, batch 1, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.batches, args.repeats = "128x64", "1", 2
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    xla_modes = [m == "on" for m in args.xla.split(",")]

    start = time.time()
    load = os.getloadavg()
    device = tf.config.list_physical_devices("GPU")
    print(
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{'GPU ' + str(device) if device else 'CPU only'}; TF {tf.__version__}; load average at start "
        f"{load[0]:.1f}",
        flush=True,
    )
    rows = []
    for height, width in sizes:
        nets = {
            "H_S": generators.SemanticGenerator(height, width),
            "H_A": generators.AppearanceGenerator(height, width),
            "H_A no warps": generators.AppearanceGenerator(height, width, deformable_levels=0),
        }
        if args.progressive and height >= 256:
            # DeepFashion's H_A: global at half resolution + local enhancer (model.progressive).
            nets["H_A progressive"] = generators.ProgressiveAppearanceGenerator(height, width)
            nets["H_A progressive no warps"] = generators.ProgressiveAppearanceGenerator(
                height, width, deformable_levels=0
            )
        x1 = make_inputs(1, height, width)
        for m in nets.values():
            m(x1)
        for name in list(nets):
            if name.endswith(" no warps"):  # identical convolutions, no warps
                nets[name].set_weights(nets[name[: -len(" no warps")]].get_weights())
        reported = [name for name in nets if not name.endswith(" no warps")]
        flops = {name: conv_flops(nets[name], x1) for name in reported}
        for batch in batches:
            if height >= 256 and batch > args.max_batch_256:
                continue
            x = make_inputs(batch, height, width)
            for xla in xla_modes:
                med, cpu, first = bench_pair(nets, x, args.repeats, xla)
                for name in reported:
                    gflop = flops[name] * batch / 1e9
                    nowarp = med.get(name + " no warps")
                    nowarp_cpu = cpu.get(name + " no warps")
                    row = {
                        "model": name, "size": f"{height}x{width}", "batch": batch, "xla": "on" if xla else "off",
                        "params": nets[name].count_params(), "gflop": gflop, "ms": med[name] * 1e3,
                        "first_s": first[name], "gflops": gflop / med[name], "cpu_s": cpu[name],
                        "gflops_cpu": gflop / cpu[name],
                        "warp_share": (1 - nowarp / med[name]) if nowarp else None,
                        "warp_share_cpu": (1 - nowarp_cpu / cpu[name]) if nowarp_cpu else None,
                    }  # fmt: skip
                    rows.append(row)
                    print(row, flush=True)
    print(f"\n# total {time.time() - start:.0f} s; load average at end {os.getloadavg()[0]:.1f}\n")
    print(
        "| model | size | batch | XLA | params | GFLOP (conv) | first call s | forward ms (wall) "
        "| CPU-s / forward | GFLOP per CPU-s | warp share (wall) | warp share (CPU) |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        share = f"{100 * r['warp_share']:.0f} %" if r["warp_share"] is not None else "–"
        share_cpu = f"{100 * r['warp_share_cpu']:.0f} %" if r["warp_share_cpu"] is not None else "–"
        print(
            f"| {r['model']} | {r['size']} | {r['batch']} | {r['xla']} | {r['params'] / 1e6:.1f} M "
            f"| {r['gflop']:.1f} | {r['first_s']:.1f} | {r['ms']:.0f} | {r['cpu_s']:.2f} "
            f"| {r['gflops_cpu']:.0f} | {share} | {share_cpu} |"
        )


if __name__ == "__main__":
    main()
