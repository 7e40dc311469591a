"""Inception v3 features in the evaluator: memory and time per call, by input size.

What the evaluator's Inception adds to a batch's transients: each size runs in
a fresh process with the evaluator's memory settings (spt_tf/memory.py), builds
``InceptionFeatures`` (random weights: memory and time do not depend on the
values), makes one warm-up call, then ``--calls`` calls on a batch of
``--batch`` uint8 256x256 images (the evaluator sends generated and masked
images together: 2 x its eval batch). Resident memory is sampled every 20 ms.

  python bench/bench_inception.py                       # sizes 75 and 299, batch 16
  python bench/bench_inception.py --sizes 299 --batch 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from spt_tf import memory  # noqa: E402  (no TensorFlow import)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(size: int, batch: int, calls: int) -> dict:
    memory.use_system_allocator_for_onednn()
    memory.limit_malloc_retention()
    import numpy as np

    from spt_tf.evaluation import inception as inception_lib

    started = memory.resident_mb()
    inc = inception_lib.InceptionFeatures("", allow_random_weights=True, input_size=size)
    built, built_max = memory.resident_mb(), _maxrss_mb()
    x = np.random.default_rng(0).integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
    inc(x)[0].numpy()  # warm-up: traces the tf.function
    warm = memory.resident_mb()
    peak, stop = [warm], threading.Event()

    def sample():
        while not stop.wait(0.02):
            peak[0] = max(peak[0], memory.resident_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    for _ in range(calls):
        inc(x)[0].numpy()
    seconds = (time.perf_counter() - t0) / calls
    stop.set()
    sampler.join()
    return {
        "size": size,
        "batch": batch,
        "rss_start_mb": started,
        "rss_built_mb": built,
        "maxrss_built_mb": built_max,
        "rss_warm_mb": warm,
        "peak_during_calls_mb": peak[0],
        "seconds_per_call": seconds,
        "maxrss_mb": _maxrss_mb(),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[75, 299])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--calls", type=int, default=4)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child, a.batch, a.calls)))
        return
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs; batch {a.batch} of 256x256")
    rows = []
    for size in a.sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(size), "--batch", str(a.batch)] + ["--calls", str(a.calls)],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            sys.exit(f"child for size {size} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(
        "\n| input | RSS built (MB) | RSS after warm-up (MB) | peak during calls (MB) "
        "| above warm (MB) | max RSS (MB) | s / call |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['size']} | {r['rss_built_mb']:.0f} | {r['rss_warm_mb']:.0f} "
            f"| {r['peak_during_calls_mb']:.0f} | {r['peak_during_calls_mb'] - r['rss_warm_mb']:.0f} "
            f"| {r['maxrss_mb']:.0f} | {r['seconds_per_call']:.2f} |"
        )


if __name__ == "__main__":
    main()
