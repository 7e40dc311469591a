"""Serving latency and throughput: in-process SavedModel call versus gRPC round trip.

For each model and each number of concurrent clients (``--concurrency``), every
client thread sends its share of ``--requests`` requests back to back; the
bench reports per-request latency p50 / p99 and the throughput (requests per
second of wall time, from the first request's start to the last one's end).

* ``in-process``: the loaded signature called from the client threads
  (numpy in, numpy out), no serialisation: the model's own cost.
* ``grpc``: :class:`serving.client.SptClient` (one channel per client) against
  ``serving.local_server`` started in a subprocess (``--address`` to measure an
  already running server instead, e.g. TF Serving), so the difference is the
  protocol: tensor protos, HTTP/2 on loopback, validation, Python dispatch.

Models:

* ``--export_dir BASE``: an ``export.py`` output (the newest version); repeatable.
* ``--random_export CONFIG_ARG``: H_S + H_A of ``configs/spt.py:CONFIG_ARG`` with
  random initial weights, exported to a temporary directory through
  ``spt_tf.export`` (timing only: the weights do not change the cost).
* ``--stand_in HxW``: the test suite's stand-in SavedModel (same signatures,
  trivial maths), which isolates the serving overhead at that image size.

Without a model argument it runs ``--stand_in 128x64 --stand_in 256x256``.

Usage::

  .venv/bin/python bench/bench_serving.py --stand_in 128x64 --stand_in 256x256 --repeats 3
  .venv/bin/python bench/bench_serving.py --export_dir exports/spt --requests 32
  .venv/bin/python bench/bench_serving.py --export_dir exports/spt --address localhost:8500

Inputs are a fixed standing pose (scaled to the model's size) and random
images and label maps, batch ``--batch``. The machine may be shared: the
load average is printed with the results.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from serving import client as client_lib  # noqa: E402
from serving import local_server, validation  # noqa: E402

MODEL = "spt"

# A standing person in a 1 x 1 frame, (y, x), COCO-18 order; the target raises the arms.
_POSE = np.array(
    [[0.12, 0.5], [0.22, 0.5], [0.22, 0.35], [0.36, 0.3], [0.5, 0.28], [0.22, 0.65], [0.36, 0.7],
     [0.5, 0.72], [0.52, 0.4], [0.7, 0.4], [0.9, 0.4], [0.52, 0.6], [0.7, 0.6], [0.9, 0.6],
     [0.1, 0.45], [0.1, 0.55], [0.11, 0.4], [0.11, 0.6]], np.float32,
)  # fmt: skip
_TARGET = _POSE.copy()
_TARGET[[3, 4, 6, 7], 0] = [0.14, 0.05, 0.14, 0.05]


def make_inputs(specs, image_size, batch, seed=0):
    """Valid inputs for a signature: random images / labels, the fixed poses."""
    h, w = image_size
    rng = np.random.default_rng(seed)
    scale = np.array([h - 1, w - 1], np.float32)
    out = {}
    for name, spec in specs.items():
        if name.endswith("keypoints"):
            pose = _POSE if name.startswith("source") else _TARGET
            out[name] = np.repeat((pose * scale)[None], batch, 0)
        elif spec.dtype == tf.uint8 and spec.shape.rank == 4:
            out[name] = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
        elif spec.dtype == tf.uint8 and spec.shape.rank == 3:
            out[name] = rng.integers(0, validation.NUM_LABELS, (batch, h, w), dtype=np.uint8)
        else:
            raise ValueError(f"bench makes no input {name!r} ({spec}); use a uint8 signature")
    return out


def run_level(make_call, clients: int, requests: int) -> dict:
    """Runs ``clients`` threads sending ``requests // clients`` requests each (at least 1).

    The model was warmed up when loaded (``load_version``), so no request is discarded.
    """
    per_client = max(1, requests // clients)
    latencies, spans, errors = [], [], []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def worker():
        call = make_call()  # sets up (and warms) a connection where there is one; not timed
        barrier.wait()
        mine, start = [], time.perf_counter()
        try:
            for _ in range(per_client):
                t = time.perf_counter()
                call()
                mine.append(time.perf_counter() - t)
        except Exception as e:  # reported; a failed level must not look fast
            errors.append(repr(e))
        end = time.perf_counter()
        with lock:
            latencies.extend(mine)
            spans.append((start, end))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed; first: {errors[0]}")
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    ms = np.array(latencies) * 1e3
    return {
        "clients": clients,
        "requests": len(latencies),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "throughput_rps": len(latencies) / wall,
    }


def best_of(repeats: int, make_call, clients: int, requests: int) -> dict:
    """The repeat with the highest throughput (the machine may be shared)."""
    runs = [run_level(make_call, clients, requests) for _ in range(repeats)]
    return max(runs, key=lambda r: r["throughput_rps"])


def start_server(export_dir: str, workers: int, max_batch: int, timeout: float = 900.0):
    """``serving.local_server`` in a subprocess; returns (process, address)."""
    cmd = [sys.executable, "-m", "serving.local_server", f"--export_dir={export_dir}",
           f"--model_name={MODEL}", "--port=0", f"--workers={workers}", f"--max_batch={max_batch}",
           "--poll_seconds=0"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    found = {}

    def read():
        for line in proc.stdout:
            m = re.search(r" on ([\d.]+):(\d+)$", line.strip())
            if m:
                found["address"] = f"{m.group(1)}:{m.group(2)}"
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if "address" not in found:
        proc.kill()
        raise RuntimeError(f"local server did not start within {timeout:.0f} s: {' '.join(cmd)}")
    return proc, found["address"]


def random_export(config_arg: str, base_dir: str) -> str:
    from configs import spt as spt_config
    from spt_tf import models
    from spt_tf.export import module

    cfg = spt_config.get_config(config_arg)
    hs, ha = models.build_semantic_generator(cfg), models.build_appearance_generator(cfg)
    module.save_atomically(module.SPTExportModule(hs, ha, cfg), base_dir, 1)
    return base_dir


def stand_in_export(size: str, base_dir: str) -> str:
    from tests.test_serving import export_stand_in

    h, w = (int(v) for v in size.lower().split("x"))
    export_stand_in(base_dir, 1, shift=1, height=h, width=w)
    return base_dir


def bench_model(label, base_dir, args) -> list[dict]:
    version = local_server.list_versions(base_dir)
    if not version:
        raise SystemExit(f"{base_dir}: no version directory with a saved_model.pb")
    loaded = local_server.load_version(base_dir, version[-1], warmup=True)
    if args.signature not in loaded.signatures:
        raise SystemExit(f"{base_dir}: no signature {args.signature!r} in {sorted(loaded.signatures)}")
    size = loaded.image_size
    inputs = make_inputs(loaded.input_specs[args.signature], size, args.batch)
    fn = loaded.signatures[args.signature]
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = []

    def in_process():
        def call():
            out = fn(**inputs)
            return {k: v.numpy() for k, v in out.items()}

        return call

    for c in levels:
        rows.append({"model": label, "size": f"{size[0]}x{size[1]}", "path": "in-process",
                     **best_of(args.repeats, in_process, c, args.requests)})  # fmt: skip
        print(_row(rows[-1]), flush=True)
    loaded = fn = None  # free the in-process copy before the server loads its own

    proc = None
    address = args.address
    if address is None:
        proc, address = start_server(base_dir, max(levels), args.batch)
    try:

        def grpc_call():
            client = client_lib.SptClient(address, MODEL, timeout=600)
            client.metadata()  # opens the channel
            return lambda: client.predict(inputs, args.signature)

        for c in levels:
            rows.append({"model": label, "size": f"{size[0]}x{size[1]}", "path": "grpc",
                         **best_of(args.repeats, grpc_call, c, args.requests)})  # fmt: skip
            print(_row(rows[-1]), flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    return rows


HEADER = "| model | size | path | clients | requests | p50 ms | p99 ms | req/s |\n|---|---|---|---|---|---|---|---|"


def _row(r):
    return (f"| {r['model']} | {r['size']} | {r['path']} | {r['clients']} | {r['requests']} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['throughput_rps']:.1f} |")  # fmt: skip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--export_dir", action="append", default=[], help="export base directory")
    p.add_argument(
        "--random_export",
        action="append",
        default=[],
        help="config argument of configs/spt.py (market, deepfashion, ...)",
    )
    p.add_argument("--stand_in", action="append", default=[], help="HxW of a stand-in model")
    p.add_argument("--signature", default="serving_default")
    p.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts")
    p.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1, help="report the best of this many runs")
    p.add_argument("--address", default=None, help="measure this running server instead")
    p.add_argument("--json", default=None, help="write the rows here")
    a = p.parse_args(argv)
    if not (a.export_dir or a.random_export or a.stand_in):
        # `make bench` runs every script without arguments: measure the serving overhead.
        a.stand_in = ["128x64", "256x256"]
        print("no model given: the stand-in at 128x64 and 256x256 (serving overhead only)")

    print(f"python {platform.python_version()}, TF {tf.__version__}, {os.cpu_count()} CPUs, "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}; batch {a.batch}, "
          f"signature {a.signature}, best of {a.repeats}")  # fmt: skip
    print(HEADER, flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        targets = [(os.path.basename(os.path.normpath(d)), d) for d in a.export_dir]
        for i, arg in enumerate(a.random_export):
            targets.append((f"random {arg}", random_export(arg, os.path.join(tmp, f"random{i}"))))
        for i, size in enumerate(a.stand_in):
            targets.append(("stand-in", stand_in_export(size, os.path.join(tmp, f"stand_in{i}"))))
        for label, base in targets:
            rows += bench_model(label, base, a)
    load = os.getloadavg()
    print(f"load average after the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "loadavg": load}, f, indent=2)


if __name__ == "__main__":
    main()
