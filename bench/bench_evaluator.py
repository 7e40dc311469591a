"""Evaluator memory growth and throughput: peak RSS after N pairs, for growing N.

The evaluator streams (docs/evaluation.md); what may grow with the number of
pairs is the IS logits (4 x 1000 float32 per pair) and, up to 2048 pairs, the
kept pool features. Each N runs in its own process (peak RSS is per process)
on the same synthetic data and SavedModel, and prints one JSON line; the
parent prints a markdown table and the linear extrapolation of the peak to
12,000 pairs.

  python bench/bench_evaluator.py                               # 256x256, N = 32, 128, 256
  python bench/bench_evaluator.py --size 128 64 --identities 64 --pairs 256 1024 2048
  python bench/bench_evaluator.py --inception_size 299          # the field's input (slow on CPU)

Each child also samples its resident memory every 5 s into ``OUT/rss.txt``
("seconds MB" lines, then glibc's heap, free-in-heap and mmap MB), to show
growth within one long run and whether it is malloc's.

The networks are random (config `synthetic` widths at the chosen size),
exported once as a SavedModel from memory; Inception has random weights
(`allow_random_weights`): memory and speed do not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from spt_tf import memory  # noqa: E402  (no TensorFlow import)


def _config(root, height, width, batch, buffer=None, model="synthetic"):
    from configs import spt

    c = spt.get_config("synthetic")
    if model != "synthetic":  # that dataset's networks, on the synthetic people
        c.model = spt.get_config(model).model
    c.data.root = root
    c.data.height, c.data.width = height, width
    c.eval.batch_size = batch
    c.eval.is_splits = 10
    if buffer is not None:
        c.eval.buffer_batches = buffer
    return c


def _sample_rss(path: str, stop, every: float = 5.0) -> None:
    """Writes "seconds rss_mb [heap_mb heap_free_mb mmap_mb]" lines every ``every`` s.

    The bracketed columns are glibc's mallinfo2 (absent elsewhere); until ``stop`` is set.
    """
    t0 = time.time()
    with open(path, "w") as f:
        while not stop.wait(every):
            line = f"{time.time() - t0:.0f} {memory.resident_mb():.0f}"
            m = memory.malloc_stats_mb()
            if m is not None:
                line += f" {m['heap']:.0f} {m['heap_free']:.0f} {m['mmap']:.0f}"
            f.write(line + "\n")
            f.flush()


def _prepare(work, height, width, batch, identities, poses, model):
    """Synthetic data (test pairs) and a random-weight SavedModel, made once per size."""
    from spt_tf import networks
    from spt_tf.data import synthetic
    from spt_tf.export import module

    root = os.path.join(work, f"data_{height}x{width}_{identities}x{poses}")
    export = os.path.join(work, f"export_{height}x{width}" + ("" if model == "synthetic" else f"_{model}"))
    if not os.path.isdir(root):
        synthetic.generate(root, identities, poses, height, width, seed=0, test_fraction=0.5)
    if not os.path.isdir(export):
        c = _config(root, height, width, batch, model=model)
        nets = networks.Networks(c, ("hs", "ha"))
        module.save_atomically(module.SPTExportModule(nets.hs, nets.ha, c), export)
    return root, export


def _child(spec):
    # As evaluate.py does, before TensorFlow starts (spt_tf/memory.py), unless the
    # run measures oneDNN's pool allocator.
    if not spec["pool_allocator"]:
        memory.use_system_allocator_for_onednn()
    malloc = None
    if not spec["glibc_default"]:
        malloc = memory.limit_malloc_retention()  # None under GLIBC_TUNABLES / MALLOC_* / not glibc
    from absl import logging

    from spt_tf.evaluation import evaluator

    logging.set_verbosity(logging.WARNING)
    c = _config(spec["root"], spec["height"], spec["width"], spec["batch"], spec["buffer"], spec["model"])
    os.makedirs(spec["out"], exist_ok=True)
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(os.path.join(spec["out"], "rss.txt"), stop), daemon=True)
    sampler.start()
    r = evaluator.run(
        c,
        None,
        spec["out"],
        saved_model=spec["export"],
        max_pairs=spec["pairs"],
        allow_random_weights=True,
        inception_size=spec["inception_size"],
        skip_inception=spec["skip_inception"],
        num_samples=8,
    )
    stop.set()
    # Resident memory once the run is over: what the evaluator kept, without the
    # per-batch transients (generator activations) that set the peak.
    rss_end = memory.resident_mb()
    out = {k: r[k] for k in ("peak_rss_mb", "seconds", "pairs_per_second")}
    print(json.dumps({"pairs": r["num_pairs"], "rss_end_mb": rss_end, **out, "malloc": malloc}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    p.add_argument("--pairs", type=int, nargs="+", default=[32, 128, 256])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--inception_size", type=int, default=75)
    p.add_argument("--skip_inception", action="store_true")
    p.add_argument(
        "--model",
        default="synthetic",
        choices=("synthetic", "market", "deepfashion"),
        help="whose networks (config.model) to export; the data stay the synthetic people",
    )
    p.add_argument(
        "--pool_allocator",
        action="store_true",
        help="keep oneDNN's BFC pool allocator (what evaluate.py turns off)",
    )
    p.add_argument(
        "--glibc_default",
        action="store_true",
        help="leave glibc malloc's arenas and thresholds at their defaults "
        "(evaluate.py limits them: memory.limit_malloc_retention)",
    )
    p.add_argument("--buffer", type=int, default=None, help="eval.buffer_batches (default: the config's)")
    p.add_argument("--identities", type=int, default=16, help="synthetic identities (half are test)")
    p.add_argument("--poses", type=int, default=9, help="poses per identity: P(P-1) pairs each")
    p.add_argument("--tag", default="", help="suffix of each run's out dir (variants side by side)")
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "spt_bench_evaluator"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _child(json.loads(a.child))
        return
    h, w = a.size
    os.makedirs(a.work, exist_ok=True)
    root, export = _prepare(a.work, h, w, a.batch, a.identities, a.poses, a.model)
    buffer = "config default" if a.buffer is None else a.buffer
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; {h}x{w}, {a.model} networks, "
        f"batch {a.batch}, "
        f"input buffer {buffer} batches, oneDNN "
        f"{'pool' if a.pool_allocator else 'system'} allocator, "
        f"glibc malloc {'defaults' if a.glibc_default else 'limited (limit_malloc_retention)'}, "
        f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r}, "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}, "
        f"Inception input {a.inception_size}{' (skipped)' if a.skip_inception else ''}"
    )
    rows = []
    for n in a.pairs:
        spec = {
            "root": root,
            "export": export,
            "height": h,
            "width": w,
            "batch": a.batch,
            "pairs": n,
            "inception_size": a.inception_size,
            "skip_inception": a.skip_inception,
            "buffer": a.buffer,
            "pool_allocator": a.pool_allocator,
            "glibc_default": a.glibc_default,
            "model": a.model,
            "out": os.path.join(a.work, f"eval_{h}x{w}_{a.model}_b{a.batch}_{n}{a.tag}"),
        }
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            sys.exit(f"child for {n} pairs failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| pairs | peak RSS (MB) | RSS at the end (MB) | pairs/s | seconds |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['pairs']} | {r['peak_rss_mb']:.0f} | {r['rss_end_mb']:.0f} "
            f"| {r['pairs_per_second']:.2f} | {r['seconds']:.0f} |"
        )
    if len(rows) >= 2 and rows[-1]["pairs"] > rows[-2]["pairs"]:
        # The last two runs: the first batches also grow tf.data buffers, allocator arenas
        # and graph caches to their steady size, which a first-to-last slope would count.
        a, b = rows[-2], rows[-1]
        for key in ("peak_rss_mb", "rss_end_mb"):
            slope = (b[key] - a[key]) / (b["pairs"] - a["pairs"])
            print(
                f"{key}: {slope * 1024:.1f} KB/pair between {a['pairs']} and {b['pairs']} pairs; "
                f"linear extrapolation to 12,000 pairs: "
                f"{b[key] + slope * (12000 - b['pairs']):.0f} MB"
            )


if __name__ == "__main__":
    main()
