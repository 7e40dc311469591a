"""Throughput of ``geometry.pair_conditioning``: graph mode versus XLA.

``pair_conditioning`` is everything the networks see besides images and
parsing (two sets of heatmaps and pose masks, the 10 part transforms and the
part masks); the input pipeline runs it in a batched ``tf.data`` map and the
training step runs it again for the cycle. For each (batch, height, width) the
bench traces one ``tf.function`` per mode (``graph``: plain graph mode, Grappler
and oneDNN; ``xla``: ``jit_compile=True``; ``data_graph`` / ``data_xla``: the same
function as a batched ``tf.data`` map with prefetch), reports the trace + compile time of
the first call, then times ``--steps`` calls and reports examples per second of
wall time and per CPU-second of this process (``time.process_time``; on a
shared machine the latter is the rate of one whole core times the cores used).
Each figure is the best of ``--repeats`` runs.

Usage::

  .venv/bin/python bench/bench_geometry.py
  .venv/bin/python bench/bench_geometry.py --case 16x128x64 --case 4x256x256 --steps 50
  .venv/bin/python bench/bench_geometry.py --mode graph --mode xla --mode data_graph --mode data_xla

Inputs: jittered standing people, a different pose per example, fixed seed.
"""

import argparse
import os
import platform
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from spt_tf import geometry  # noqa: E402

# A standing person in a 1 x 1 frame, (y, x), COCO-18 order.
_POSE = np.array(
    [[0.12, 0.5], [0.22, 0.5], [0.23, 0.33], [0.38, 0.28], [0.52, 0.27], [0.23, 0.67],
     [0.38, 0.72], [0.52, 0.73], [0.52, 0.4], [0.7, 0.39], [0.88, 0.38], [0.52, 0.6],
     [0.7, 0.61], [0.88, 0.62], [0.1, 0.55], [0.1, 0.45], [0.11, 0.6], [0.11, 0.4]], np.float32,
)  # fmt: skip


# graph / xla: a tf.function called directly; data_graph / data_xla: the same
# function as a tf.data map (XLA-compiled functions run inside tf.data maps).
MODES = ("graph", "xla", "data_graph", "data_xla")


def make_keypoints(batch, height, width, seed):
    """[batch, 18, 2] jittered people, about 5 % of the joints missing."""
    rng = np.random.default_rng(seed)
    kp = _POSE[None] + rng.normal(0, 0.04, (batch, 18, 2))
    kp = np.clip(kp * [height - 1, width - 1], 0, [height - 1, width - 1]).astype(np.float32)
    kp[rng.uniform(size=(batch, 18)) < 0.05] = -1
    return tf.constant(kp)


def bench_case(batch, height, width, mode, steps, repeats, sigma=6.0, radius=4.0):
    def fn(src, tgt):
        return geometry.pair_conditioning(src, tgt, height, width, sigma, radius)

    fn = tf.function(fn, jit_compile=mode.endswith("xla"))
    src = make_keypoints(batch, height, width, 0)
    tgt = make_keypoints(batch, height, width, 1)
    t0 = time.perf_counter()  # tf.data traces the map when the dataset is built
    if mode.startswith("data"):
        # The pipeline's use: a batched map over a dataset of keypoints.
        ds = tf.data.Dataset.from_tensor_slices((src, tgt)).repeat().batch(batch).map(fn)
        it = iter(ds.prefetch(2))

        def call():
            return next(it)
    else:

        def call():
            return fn(src, tgt)

    tf.nest.map_structure(lambda t: t.numpy(), call())
    first = time.perf_counter() - t0
    best_wall, best_cpu = 0.0, 0.0
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            out = call()
        out["part_masks"].numpy()  # wait for the last call
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        best_wall = max(best_wall, steps * batch / wall)
        best_cpu = max(best_cpu, steps * batch / max(cpu, 1e-9))
    return first, best_wall, best_cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", action="append", help="BATCHxHEIGHTxWIDTH (repeatable)")
    parser.add_argument("--mode", action="append", choices=MODES, help="default: graph, xla")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cases = [tuple(int(v) for v in c.split("x")) for c in (args.case or ["16x128x64", "4x256x256"])]
    modes = args.mode or ["graph", "xla"]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"TF {tf.__version__}, GPUs: {len(tf.config.list_physical_devices('GPU'))}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| batch | size | mode | first call s | examples/s (wall) | examples/s (CPU-s) |")
    print("|---:|---|---|---:|---:|---:|")
    for batch, height, width in cases:
        for mode in modes:
            first, wall, cpu = bench_case(batch, height, width, mode, args.steps, args.repeats)
            print(f"| {batch} | {height}×{width} | {mode} | {first:.1f} | {wall:.0f} | {cpu:.0f} |",
                  flush=True)  # fmt: skip
    print(f"# load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
