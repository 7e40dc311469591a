"""The field's real files: annotation reading speed and the geometry over every test pair.

Reads the real files from ``../shared/realdata`` (next to the repository; research-only
files, never copied into it; ``--realdata`` to point elsewhere) and reports:

* reading speed of the largest annotation file (Market-1501 test, 19,732 rows): rows
  per second of wall time, best of ``--repeats`` reads, and the pairs files' speed;
* ``geometry.pair_conditioning`` over ALL test pairs, batched (``--batch``) in one
  ``tf.function`` (``--mode xla``: ``jit_compile=True``, as the input pipeline runs it
  by default, ``data.xla_geometry``; ``--mode graph``: plain graph mode): Market-1501
  (12,000 pairs, 128x64) and DeepFashion (8,570 pairs,
  256x176 from the field's resize-rule file read with
  ``formats.DEEPFASHION_176_TOLERANCE``, or ``--deepfashion_frame 256`` for the
  256x256 file). Pairs per second of wall time and per CPU-second of this process
  over one full pass after a warm-up batch (the trace); the function also checks that
  every output is finite and counts the off-image part transforms, so the figure
  includes those reductions;
* per part of ``geometry.PART_NAMES``: pairs whose part is missing in the source only,
  the target only, or both (torso: any of its 4 joints absent; head: all 5 head joints
  absent; limb: either end absent), the limbs missing in the source only whose mirrored
  limb stands in or is missing too, and the off-image transforms the geometry gave.

Usage::

  .venv/bin/python bench/bench_realdata.py
  .venv/bin/python bench/bench_realdata.py --mode graph --mode xla --batch 32 --deepfashion_frame 256
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
from spt_tf.data import formats  # noqa: E402

_TORSO, _HEAD = list(geometry.TORSO), list(geometry.HEAD)
_FR = np.array([fr for fr, _, _, _ in geometry.LIMB_PARTS])
_TO = np.array([to for _, to, _, _ in geometry.LIMB_PARTS])
_MIRROR = np.array(geometry.MIRROR)
_OFF = np.array([1.0, 0.0, geometry.OFF_IMAGE, 0.0, 1.0, geometry.OFF_IMAGE, 0.0, 0.0], np.float32)


def part_missing(kp: np.ndarray) -> np.ndarray:
    """[N, 18, 2] -> [N, 10] bool: the joints that define the part are absent."""
    vis = (kp != -1).all(-1)
    torso = ~vis[:, _TORSO].all(1)
    head = ~vis[:, _HEAD].any(1)
    limbs = ~(vis[:, _FR] & vis[:, _TO])
    return np.concatenate([torso[:, None], head[:, None], limbs], 1)


def load_avg() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def reading_speed(path: str, repeats: int, reader) -> tuple[int, float]:
    best = float("inf")
    rows = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = len(reader(path))
        best = min(best, time.perf_counter() - t0)
    return rows, best


def run_pairs(title, table, pairs, h, w, batch, mode):
    src = np.stack([table[a] for a, _ in pairs])
    tgt = np.stack([table[b] for _, b in pairs])
    spec = tf.TensorSpec([None, geometry.NUM_KEYPOINTS, 2], tf.float32)

    @tf.function(input_signature=[spec, spec], jit_compile=mode == "xla")
    def step(s, t):
        out = geometry.pair_conditioning(s, t, h, w)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in out.values()])
        off = tf.reduce_all(tf.equal(out["transforms"], tf.constant(_OFF)), -1)  # [B, 10]
        return finite, tf.reduce_sum(tf.cast(off, tf.int32), 0)

    t0 = time.perf_counter()
    step(src[:batch], tgt[:batch])
    first = time.perf_counter() - t0
    finite = True
    off = np.zeros(geometry.NUM_PARTS, np.int64)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(src), batch):
        f, o = step(src[i : i + batch], tgt[i : i + batch])
        finite &= bool(f)
        off += o.numpy()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(src)
    print(f"\n### {title}: {n:,} pairs, {h}x{w}, batch {batch}, {mode}")
    print(
        f"first call (trace{' + compile' if mode == 'xla' else ''} + {batch} pairs): {first:.1f} s; "
        f"full pass: {wall:.1f} s wall, "
        f"{cpu:.1f} s CPU -> {n / wall:,.0f} pairs/s wall, {n / cpu:,.0f} pairs/CPU-s; "
        f"all outputs finite: {finite}"
    )

    ms, mt = part_missing(src), part_missing(tgt)
    vs = (src != -1).all(-1)
    mirror_ok = np.concatenate([np.zeros((n, 2), bool), vs[:, _MIRROR[_FR]] & vs[:, _MIRROR[_TO]]], 1)
    limb = np.arange(geometry.NUM_PARTS) >= 2
    print("\n| part | missing in source only | target only | both | source only, mirror stands in "
          "| source only, mirror missing too | off-image transforms |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for p, name in enumerate(geometry.PART_NAMES):
        s_only = ms[:, p] & ~mt[:, p]
        mirror = f"{(s_only & mirror_ok[:, p]).sum():,}" if limb[p] else "–"
        no_mirror = f"{(s_only & ~mirror_ok[:, p]).sum():,}" if limb[p] else "–"
        print(f"| {name} | {s_only.sum():,} | {(~ms[:, p] & mt[:, p]).sum():,} | "
              f"{(ms[:, p] & mt[:, p]).sum():,} | {mirror} | {no_mirror} | {off[p]:,} |")  # fmt: skip
    vt = (tgt != -1).all(-1)
    apart = ~ms[:, 1] & ~mt[:, 1] & ~(vs[:, _HEAD] & vt[:, _HEAD]).any(1)
    print(f"\nhead present in both poses without a common head joint: {apart.sum():,} pairs")
    return finite


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--realdata", default=os.path.join(REPO, "..", "shared", "realdata"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--deepfashion_frame", choices=("176", "256"), default="176")
    p.add_argument("--mode", action="append", choices=("xla", "graph"), help="repeatable; default xla")
    p.add_argument("--skip_geometry", action="store_true")
    a = p.parse_args()
    root = os.path.normpath(a.realdata)
    if not os.path.isdir(root):
        sys.exit(f"real data not found: {root}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"TF {tf.__version__}; load average (1/5/15 min) at start: {load_avg()}")  # fmt: skip

    market = os.path.join(root, "market", "market-annotation-test.csv")
    rows, best = reading_speed(market, a.repeats, formats.read_annotations)
    size = os.path.getsize(market) / 2**20
    print(f"\nread_annotations {os.path.basename(market)} ({size:.1f} MiB): {rows:,} rows in "
          f"{best:.3f} s (best of {a.repeats}) -> {rows / best:,.0f} rows/s")  # fmt: skip
    for rel in ("market/market-pairs-test.csv", "deepfashion/fashion-pairs-test.csv"):
        rows, best = reading_speed(os.path.join(root, rel), a.repeats, formats.read_pairs)
        print(f"read_pairs {os.path.basename(rel)}: {rows:,} rows in {best:.3f} s -> {rows / best:,.0f} rows/s")
    if a.skip_geometry:
        return
    ok = True
    market_table = formats.read_annotations(market, image_size=(128, 64))
    market_pairs = formats.read_pairs(os.path.join(root, "market", "market-pairs-test.csv"),
                                      known_names=market_table)  # fmt: skip
    if a.deepfashion_frame == "176":
        ann, hw, tol = "fasion-resize-annotation-test.csv", (256, 176), formats.DEEPFASHION_176_TOLERANCE
    else:
        ann, hw, tol = "fasion-annotation-test.csv", (256, 256), 2.0
    table = formats.read_annotations(os.path.join(root, "deepfashion", ann), image_size=hw, tolerance=tol)
    pairs = formats.read_pairs(os.path.join(root, "deepfashion", "fashion-pairs-test.csv"), known_names=table)
    for mode in a.mode or ["xla"]:
        ok &= run_pairs("Market-1501 test pairs", market_table, market_pairs, 128, 64, a.batch, mode)
        ok &= run_pairs(f"DeepFashion test pairs ({ann})", table, pairs, *hw, a.batch, mode)
    print(f"\nload average (1/5/15 min) at the end: {load_avg()}")
    if not ok:
        sys.exit("non-finite conditioning tensors")


if __name__ == "__main__":
    main()
