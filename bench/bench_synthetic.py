"""Synthetic people generator speed, one process (one core).

Prints images/s at 128x64 and 256x256 for
  * render: ``synthetic.render_example`` (pose, background, drawing, compositing);
  * generate: ``synthetic.generate(workers=1)`` end to end, PNG encoding and
    file writes included (into a temporary folder, on /dev/shm when it exists).
Both as wall-clock and CPU (process time) rates; each is the best of
``--repeats`` runs, because the machine may be shared.

Usage::

  .venv/bin/python bench/bench_synthetic.py [--images 600] [--repeats 3]
"""

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spt_tf.data import synthetic  # noqa: E402


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=600, help="images per run")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    k = 6
    ids = max(1, a.images // k)
    n = ids * k
    tmp_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    print(f"python {platform.python_version()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; {n} images per run, best of {a.repeats}")  # fmt: skip
    print(f"{'size':>8} {'stage':>9} {'images/s (wall)':>16} {'images/s (CPU)':>15}")
    for h, w in ((128, 64), (256, 256)):
        synthetic.identity_of.cache_clear()
        best = {}
        for r in range(a.repeats):

            def render():
                for i in range(n):
                    synthetic.render_example(r, i // k, i % k, h, w)

            out = tempfile.mkdtemp(dir=tmp_root)
            try:
                times = {
                    "render": _timed(render),
                    "generate": _timed(lambda: synthetic.generate(out, ids, k, h, w, seed=r)),
                }
            finally:
                shutil.rmtree(out)
            for stage, (wall, cpu) in times.items():
                old = best.get(stage, (float("inf"), float("inf")))
                best[stage] = (min(old[0], wall), min(old[1], cpu))
        for stage, (wall, cpu) in best.items():
            print(f"{f'{h}x{w}':>8} {stage:>9} {n / wall:16.0f} {n / cpu:15.0f}")


if __name__ == "__main__":
    main()
