"""Cost of ``geometry.pair_conditioning``: first-call (trace, XLA compile) and throughput.

``pair_conditioning`` is everything the networks see besides images and
parsing (two sets of heatmaps and pose masks, the 10 part transforms and the
part masks); the input pipeline runs it in a batched ``tf.data`` map, the
training step runs it again for the cycle and the exported SavedModel runs it
per request, so both its first-call cost and its throughput matter.

Two tables:

* first-call cost, per function (``--function``, default ``pair_conditioning``)
  and case: the number of nodes of the traced graph
  (``get_concrete_function(...).graph.as_graph_def()``), the trace time of a plain
  ``tf.function`` (the first trace of the process, then a second trace of a fresh
  ``tf.function``: the first pays one-off costs such as AutoGraph conversion), and
  the XLA compile time (first call of a traced ``jit_compile=True`` function minus
  a steady call);
* throughput, per mode (``graph``: plain graph mode, Grappler and oneDNN;
  ``xla``: ``jit_compile=True``; ``data_graph`` / ``data_xla``: the same function
  as a batched ``tf.data`` map with prefetch): the first call (trace + compile +
  run), then examples per second of wall time and per CPU-second of this process
  (``time.process_time``; on a shared machine the latter is the rate of one whole
  core times the cores used) over ``--steps`` calls, best of ``--repeats`` runs.

``--geometry PATH`` benchmarks another version of ``spt_tf/geometry.py`` (e.g.
``git show REV:spt_tf/geometry.py > /tmp/old.py``) for before/after figures;
run each version in its own process (the first trace pays one-off costs).

Usage::

  .venv/bin/python bench/bench_geometry.py
  .venv/bin/python bench/bench_geometry.py --case 16x128x64 --case 4x256x256 --steps 50
  .venv/bin/python bench/bench_geometry.py --mode graph --mode xla --mode data_graph --mode data_xla
  .venv/bin/python bench/bench_geometry.py --mode none --function part_transforms \\
      --function part_masks --function pose_masks --function pair_conditioning

Inputs: jittered standing people, a different pose per example, fixed seed.
"""

import argparse
import importlib.util
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
# Functions of (source, target) keypoints whose first-call cost can be measured.
FUNCTIONS = ("pair_conditioning", "part_transforms", "part_masks", "pose_masks", "pose_heatmaps")


def load_geometry(path):
    """The module ``spt_tf.geometry``, or the geometry.py at ``path``."""
    if path is None:
        return geometry
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--geometry: no file {path}")
    spec = importlib.util.spec_from_file_location("bench_geometry_alt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_function(geom, name, height, width, sigma=6.0, radius=4.0):
    """A Python function (source, target) -> tensors for ``name`` in ``FUNCTIONS``."""
    calls = {
        "pair_conditioning": lambda s, t: geom.pair_conditioning(s, t, height, width, sigma, radius),
        "part_transforms": lambda s, t: geom.part_transforms(s, t),
        "part_masks": lambda s, t: geom.part_masks(t, height, width),
        "pose_masks": lambda s, t: geom.pose_masks(t, height, width, radius),
        "pose_heatmaps": lambda s, t: geom.pose_heatmaps(t, height, width, sigma),
    }
    call = calls[name]

    def fn(src, tgt):
        return call(src, tgt)

    return fn


def make_keypoints(batch, height, width, seed):
    """[batch, 18, 2] jittered people, about 5 % of the joints missing."""
    rng = np.random.default_rng(seed)
    kp = _POSE[None] + rng.normal(0, 0.04, (batch, 18, 2))
    kp = np.clip(kp * [height - 1, width - 1], 0, [height - 1, width - 1]).astype(np.float32)
    kp[rng.uniform(size=(batch, 18)) < 0.05] = -1
    return tf.constant(kp)


def _fetch(out):
    tf.nest.map_structure(lambda t: t.numpy(), out)


def first_call_cost(geom, name, batch, height, width):
    """(graph nodes, first trace s, second trace s, XLA compile s) of one function."""
    fn = make_function(geom, name, height, width)
    src = make_keypoints(batch, height, width, 0)
    tgt = make_keypoints(batch, height, width, 1)
    traces = []
    for _ in range(2):  # a fresh tf.function each time: two full traces
        t0 = time.perf_counter()
        concrete = tf.function(fn).get_concrete_function(src, tgt)
        traces.append(time.perf_counter() - t0)
    nodes = len(concrete.graph.as_graph_def().node)
    xla = tf.function(fn, jit_compile=True)
    xla.get_concrete_function(src, tgt)  # trace outside the timed call
    t0 = time.perf_counter()
    _fetch(xla(src, tgt))
    first = time.perf_counter() - t0
    steady = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        _fetch(xla(src, tgt))
        steady = min(steady, time.perf_counter() - t0)
    return nodes, traces[0], traces[1], first - steady


def bench_case(geom, batch, height, width, mode, steps, repeats):
    fn = tf.function(make_function(geom, "pair_conditioning", height, width),
                     jit_compile=mode.endswith("xla"))  # fmt: skip
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

    _fetch(call())
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
    parser.add_argument(
        "--mode",
        action="append",
        choices=MODES + ("none",),
        help="throughput modes (default: graph, xla; 'none': skip the table)",
    )
    parser.add_argument(
        "--function",
        action="append",
        choices=FUNCTIONS + ("none",),
        help="first-call cost of (default: pair_conditioning; 'none': skip)",
    )
    parser.add_argument("--geometry", help="path of another geometry.py to benchmark")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()  # fmt: skip
    cases = [tuple(int(v) for v in c.split("x")) for c in (args.case or ["16x128x64", "4x256x256"])]
    modes = [m for m in (args.mode or ["graph", "xla"]) if m != "none"]
    functions = [f for f in (args.function or ["pair_conditioning"]) if f != "none"]
    geom = load_geometry(args.geometry)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"TF {tf.__version__}, GPUs: {len(tf.config.list_physical_devices('GPU'))}, "
          f"geometry: {os.path.relpath(geom.__file__, REPO)}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    if functions:
        print("| function | batch | size | graph nodes | 1st trace s | 2nd trace s | XLA compile s |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for batch, height, width in cases:
            for name in functions:
                nodes, t1, t2, comp = first_call_cost(geom, name, batch, height, width)
                print(f"| {name} | {batch} | {height}×{width} | {nodes} | {t1:.1f} | {t2:.1f} | "
                      f"{comp:.1f} |", flush=True)  # fmt: skip
    if modes:
        print("| batch | size | mode | first call s | examples/s (wall) | examples/s (CPU-s) |")
        print("|---:|---|---|---:|---:|---:|")
        for batch, height, width in cases:
            for mode in modes:
                first, wall, cpu = bench_case(geom, batch, height, width, mode, args.steps,
                                              args.repeats)  # fmt: skip
                print(f"| {batch} | {height}×{width} | {mode} | {first:.1f} | {wall:.0f} | "
                      f"{cpu:.0f} |", flush=True)  # fmt: skip
    print(f"# load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
