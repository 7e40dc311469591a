"""Synthetic people in bundled poses versus poses from a real annotation file.

Generates the demo's set (``spt_tf.demo_run``: 300 identities x 6 poses at 64x32, test
fraction 0.2, seed 0) twice with ``spt_tf.data.synthetic.generate``: with the bundled
joint-angle poses and with ``poses_from`` a real annotation file (default: the Market
training annotations under the repository's ``../shared/realdata/``). On each set's
training split it runs the pseudo-pair search as the demo does
(``python -m spt_tf.data.pseudo_pairs --data_dir D --identities D/identities.csv``, in a
fresh process with one BLAS thread) and reports:

* generation time (one process; wall and CPU) and search time (the process's wall time,
  TensorFlow's import included, the search's own ``seconds``, and the CPU seconds of its
  stages, the worker processes' summed: the measure to compare on a shared machine);
* matched fraction: sources that got a pseudo target;
* the Eq. 1 cost of the chosen pairs (mean, median);
* the normalised pose distance (``pseudo_pairs.pose_distances``, body-scale units) of the
  chosen pairs: percentiles and a histogram, and the joints the two poses share;
* the views: of the images, and the share of chosen pairs whose two images have the same
  view.

The real file is only read; the generated sets stay under ``--out`` (a temporary folder by
default) and are deleted unless ``--keep``.

Usage::

  .venv/bin/python bench/bench_real_poses.py [--poses_from FILE] [--out DIR] [--keep]
      [--identities 300] [--poses 6] [--workers 2] [--json results.json]
"""

import argparse
import collections
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from spt_tf.data import formats, synthetic  # noqa: E402
from spt_tf.data import pseudo_pairs as pp  # noqa: E402

MARKET = os.path.join(ROOT, "..", "shared", "realdata", "market", "market-annotation-train.csv")
DISTANCE_BINS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, np.inf)


def _load_avg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def search(data_dir: str, height: int, width: int, workers: int) -> tuple[dict, float]:
    """The demo's search of ``data_dir``'s training split in a fresh process."""
    cmd = [sys.executable, "-m", "spt_tf.data.pseudo_pairs", "--data_dir", data_dir,
           "--identities", os.path.join(data_dir, "identities.csv"),
           "--out", os.path.join(data_dir, "pseudo-pairs.csv"), "--height", str(height),
           "--width", str(width), "--workers", str(workers), "--no_progress"]  # fmt: skip
    # One BLAS thread: on a shared machine OpenBLAS's spinning threads inflate the times.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.time() - t0
    if res.returncode != 0:
        raise SystemExit(f"search of {data_dir} failed:\n{res.stderr[-3000:]}")
    out = res.stdout
    return json.loads(out[out.index("{") : out.rindex("}") + 1]), wall


def analyse(data_dir: str) -> dict:
    """Matched fraction, costs, pose distances and views of a searched set."""
    ann = formats.read_annotations(os.path.join(data_dir, "annotation-train.csv"))
    names = list(ann)
    index = {n: i for i, n in enumerate(names)}
    kp = np.stack([ann[n] for n in names])
    z, vis = pp.normalized_poses(kp)
    with open(os.path.join(data_dir, "identities.csv"), newline="") as f:
        view = {r["name"]: r["view"] for r in csv.DictReader(f)}
    rows = pp.read_pseudo_pairs(os.path.join(data_dir, "pseudo-pairs.csv"))
    costs = np.array([c for _, _, c in rows])
    dist, common, same_view = [], [], []
    for a, b, _ in rows:
        i, j = index[a], index[b]
        dist.append(float(pp.pose_distances(z[i : i + 1], vis[i : i + 1], z[j : j + 1], vis[j : j + 1])[0, 0]))
        common.append(float(vis[i] @ vis[j]))
        same_view.append(view[a] == view[b])
    dist = np.array(dist)
    hist = np.histogram(dist, bins=DISTANCE_BINS)[0] / max(len(dist), 1)
    return {
        "train_images": len(names),
        "matched": len(rows),
        "matched_fraction": len(rows) / len(names),
        "cost_mean": float(costs.mean()),
        "cost_median": float(np.median(costs)),
        "pose_distance_percentiles": {str(q): float(np.percentile(dist, q)) for q in (5, 25, 50, 75, 95)},
        "pose_distance_mean": float(dist.mean()),
        "pose_distance_histogram": {
            f"{lo:g}-{hi:g}": float(h) for lo, hi, h in zip(DISTANCE_BINS, DISTANCE_BINS[1:], hist)
        },
        "common_joints_mean": float(np.mean(common)),
        "visible_joints_mean": float(vis.sum(1).mean()),
        "views": dict(collections.Counter(view[n] for n in names)),
        "same_view_fraction": float(np.mean(same_view)),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--poses_from", default=MARKET, help="real annotation CSV")
    p.add_argument("--identities", type=int, default=300)
    p.add_argument("--poses", type=int, default=6)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="search processes")
    p.add_argument("--out", default="", help="folder of the two sets (default: temporary)")
    p.add_argument("--keep", action="store_true", help="keep the generated sets")
    p.add_argument("--json", default="", help="also write the results here")
    a = p.parse_args(argv)
    if not os.path.exists(a.poses_from):
        raise SystemExit(f"annotation file not found: {a.poses_from}")
    root = a.out or tempfile.mkdtemp(prefix="spt_bench_real_poses_")
    load_before = _load_avg()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {load_before:.2f}; "
          f"{a.identities} identities x {a.poses} poses at {a.height}x{a.width}, seed {a.seed}")  # fmt: skip
    results = {"args": vars(a), "load_before": load_before, "sets": {}}
    try:
        for mode, poses_from in (("bundled", None), ("real", a.poses_from)):
            data_dir = os.path.join(root, mode)
            if os.path.exists(data_dir):
                shutil.rmtree(data_dir)
            t0, c0 = time.time(), time.process_time()
            summary = synthetic.generate(data_dir, a.identities, a.poses, a.height, a.width,
                                         a.seed, test_fraction=0.2, poses_from=poses_from)  # fmt: skip
            gen, gen_cpu = time.time() - t0, time.process_time() - c0
            found, wall = search(data_dir, a.height, a.width, a.workers)
            r = analyse(data_dir)
            st = found["stages"]
            search_cpu = sum(st.get(k, 0.0) for k in ("clothing_cpu", "descriptors_cpu", "prefilter_cpu", "exact_cpu"))
            r.update(generate_s=gen, generate_cpu_s=gen_cpu, search_wall_s=wall,
                     search_s=found["seconds"], search_cpu_s=search_cpu,
                     search_stages={k: v for k, v in found["stages"].items()},
                     groups=found["groups"], pose_rows=summary.get("pose_rows"),
                     pose_rows_eligible=summary.get("pose_rows_eligible"))  # fmt: skip
            results["sets"][mode] = r
            print(f"{mode}: generated in {gen:.1f} s, searched in {wall:.1f} s", flush=True)
    finally:
        if not a.keep and not a.out:
            shutil.rmtree(root, ignore_errors=True)
    results["load_after"] = _load_avg()
    b, r = results["sets"]["bundled"], results["sets"]["real"]
    print(f"\nload average before / after: {load_before:.2f} / {results['load_after']:.2f}")
    print("| measure | bundled poses | real poses |\n|---|---:|---:|")
    lines = [
        ("eligible rows / rows of the file", "-", f"{r['pose_rows_eligible']:,} / {r['pose_rows']:,}"),
        ("generation (s, 1 process)", f"{b['generate_s']:.1f}", f"{r['generate_s']:.1f}"),
        ("search, process wall (s)", f"{b['search_wall_s']:.1f}", f"{r['search_wall_s']:.1f}"),
        ("generation CPU (s)", f"{b['generate_cpu_s']:.1f}", f"{r['generate_cpu_s']:.1f}"),
        ("search, run_search seconds", f"{b['search_s']:.1f}", f"{r['search_s']:.1f}"),
        (
            "search CPU: clothing + descriptors + pre-filter + exact (s, workers summed)",
            f"{b['search_cpu_s']:.1f}",
            f"{r['search_cpu_s']:.1f}",
        ),
        ("training maps", f"{b['train_images']}", f"{r['train_images']}"),
        ("matched fraction", f"{b['matched_fraction']:.3f}", f"{r['matched_fraction']:.3f}"),
        ("Eq. 1 cost of chosen pairs, mean", f"{b['cost_mean']:.1f}", f"{r['cost_mean']:.1f}"),
        ("Eq. 1 cost of chosen pairs, median", f"{b['cost_median']:.1f}", f"{r['cost_median']:.1f}"),
        ("pose distance, mean", f"{b['pose_distance_mean']:.3f}", f"{r['pose_distance_mean']:.3f}"),
    ]
    for q in ("5", "25", "50", "75", "95"):
        lines.append(
            (
                f"pose distance, p{q}",
                f"{b['pose_distance_percentiles'][q]:.3f}",
                f"{r['pose_distance_percentiles'][q]:.3f}",
            )
        )
    for k in b["pose_distance_histogram"]:
        lines.append(
            (
                f"pose distance in [{k})",
                f"{b['pose_distance_histogram'][k]:.3f}",
                f"{r['pose_distance_histogram'][k]:.3f}",
            )
        )
    lines += [
        ("joints visible per image, mean", f"{b['visible_joints_mean']:.1f}", f"{r['visible_joints_mean']:.1f}"),
        ("joints shared by a chosen pair, mean", f"{b['common_joints_mean']:.1f}", f"{r['common_joints_mean']:.1f}"),
        ("views front / back / side (training images)",
         "/".join(str(b["views"].get(v, 0)) for v in ("front", "back", "side")),
         "/".join(str(r["views"].get(v, 0)) for v in ("front", "back", "side"))),
        ("chosen pairs with the same view", f"{b['same_view_fraction']:.3f}", f"{r['same_view_fraction']:.3f}"),
    ]  # fmt: skip
    for name, x, y in lines:
        print(f"| {name} | {x} | {y} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
