"""Input pipeline throughput: examples/s of pipeline.train_dataset with all geometry.

  python bench/bench_pipeline.py [--batches 30]

At 128x64 (batch 16) and 256x256 (batch 4) on synthetic people made once under
/tmp/spt_bench_data_<H>x<W>; XLA geometry on (the default) and off. The first
batch (tracing / compilation) is excluded.
"""

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=30)
    args = ap.parse_args()
    from bench.bench_training import _data
    from configs import base
    from spt_tf.data import pipeline

    print("| size | batch | XLA geometry | examples/s (wall) | examples/s per CPU-s |")
    print("|---|---|---|---|---|")
    for (h, w), b in (((128, 64), 16), ((256, 256), 4)):
        for xla in (True, False):
            c = base.get_config()
            c.data.root = _data(h, w)
            c.data.height, c.data.width = h, w
            c.data.xla_geometry = xla
            c.train.batch_size = b
            it = iter(pipeline.train_dataset(c))
            next(it)
            t0, c0 = time.time(), time.process_time()
            for _ in range(args.batches):
                next(it)
            dt, dc = time.time() - t0, time.process_time() - c0
            n = args.batches * b
            print(f"| {h}x{w} | {b} | {'on' if xla else 'off'} | {n / dt:.0f} | {n / dc:.0f} |", flush=True)


if __name__ == "__main__":
    main()
