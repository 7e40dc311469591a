"""Training throughput: ms/step and examples/s per stage; the release's H_A train step.

Each measurement runs in its own process (logical CPU replicas must be set
before TensorFlow starts) and prints one JSON line; the parent prints a
markdown table for docs/benchmarks.md.

  python bench/bench_training.py                       # default matrix (see MATRIX)
  python bench/bench_training.py --only ha_step        # the release's H_A step only
  python bench/bench_training.py --child '{"kind": "stage", ...}'   # one measurement

Kinds:
  stage    a real stage of Algorithm 1 through loop.train_stage on synthetic data
           (data made once under /tmp/spt_bench_data_<H>x<W>), `steps` timed after
           `warmup` steps (tracing / compilation excluded).
  ha_step  the release's "generator train step": fake = H_A(...), cycle =
           H_A(fake, ...), L1(cycle, source), backward, Adam; full width, random
           weights; `progressive` for the 256 global + local generator.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MATRIX = [
    # The release's H_A step (docs/benchmarks.md): 256 progressive batch 4, global at 128 batch 4.
    {"kind": "ha_step", "size": [256, 256], "batch": 4, "progressive": True, "xla": False, "steps": 3},
    {"kind": "ha_step", "size": [128, 128], "batch": 4, "progressive": False, "xla": False, "steps": 3},
    {"kind": "ha_step", "size": [128, 128], "batch": 4, "progressive": False, "xla": True, "steps": 3},
    # Stages at Market size, batch 16, full width.
    *[
        {"kind": "stage", "stage": s, "size": [128, 64], "batch": 16, "xla": x, "replicas": r, "steps": 3}
        for s in ("pose_detector", "semantic", "appearance")
        for x in (False, True)
        for r in (1, 2)
        if not (x and r == 2)
    ],
    {
        "kind": "stage",
        "stage": "appearance",
        "size": [256, 256],
        "batch": 4,
        "xla": False,
        "replicas": 1,
        "steps": 2,
    },  # fmt: skip
]


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def _data(h, w):
    from spt_tf.data import formats, synthetic

    root = f"/tmp/spt_bench_data_{h}x{w}"
    if not os.path.exists(os.path.join(root, "identities.csv")):
        synthetic.generate(root, identities=24, poses_per_identity=4, height=h, width=w, seed=1)
        names = list(formats.read_annotations(os.path.join(root, "annotation-train.csv")))
        formats.write_pairs(os.path.join(root, "pseudo-pairs.csv"),
                            [(a, names[(i + 5) % len(names)]) for i, a in enumerate(names)])  # fmt: skip
    return root


def child_stage(spec):
    import tensorflow as tf

    reps = int(spec.get("replicas", 1))
    if reps > 1:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * reps
        )
    from configs import base
    from spt_tf import networks
    from spt_tf.training import loop

    h, w = spec["size"]
    c = base.get_config()
    c.data.root = _data(h, w)
    c.data.height, c.data.width = h, w
    c.model.vgg_weights = ""
    c.model.progressive = False
    c.train.batch_size = spec["batch"]
    c.train.xla = "on" if spec["xla"] else "off"
    c.train.cpu_replicas = reps
    c.train.log_every = c.train.image_every = c.train.checkpoint_every = 10**9
    stage = spec["stage"]
    warm, steps = 1, int(spec["steps"])
    import tempfile

    wd = tempfile.mkdtemp()
    strategy = __import__("spt_tf.training.strategy", fromlist=["x"]).build_strategy(c)
    with strategy.scope():
        nets = networks.Networks(c)
    setattr(c.train, f"{stage}_steps", warm)
    t0 = time.time()
    loop.train_stage(c, wd, stage, strategy=strategy, nets=nets)
    first = time.time() - t0
    setattr(c.train, f"{stage}_steps", warm + steps)
    t0 = time.time()
    loop.train_stage(c, wd, stage, strategy=strategy, nets=nets)
    dt = (time.time() - t0) / steps
    return {"first_step_s": first, "ms_per_step": dt * 1000, "examples_per_s": spec["batch"] / dt,
            "peak_rss_gb": _peak_rss_gb()}  # fmt: skip


def child_ha_step(spec):
    import keras
    import numpy as np
    import tensorflow as tf

    from configs import base
    from spt_tf import composite, geometry
    from spt_tf.models import build_appearance_generator

    h, w = spec["size"]
    c = base.get_config()
    c.data.height, c.data.width = h, w
    c.model.progressive = bool(spec["progressive"])
    ha = build_appearance_generator(c)
    b = spec["batch"]
    rng = np.random.default_rng(0)
    kp_s = tf.constant(rng.uniform(0.2, 0.8, (b, 18, 2)) * [h, w], tf.float32)
    kp_t = tf.constant(rng.uniform(0.2, 0.8, (b, 18, 2)) * [h, w], tf.float32)
    cond = geometry.pair_conditioning(kp_s, kp_t, h, w)
    back = geometry.pair_conditioning(kp_t, kp_s, h, w)
    img = tf.constant(rng.uniform(-1, 1, (b, h, w, 3)), tf.float32)
    par = tf.one_hot(rng.integers(0, 10, (b, h, w)), 10)
    opt = keras.optimizers.Adam(2e-4, 0.5, 0.999)

    def grads():
        with tf.GradientTape() as tape:
            fake = ha(composite.ha_inputs(img, par, cond["source_pose"], par, cond["target_pose"], cond["transforms"],
                                       cond["part_masks"]), training=True)  # fmt: skip
            cyc = ha(composite.ha_inputs(fake, par, back["source_pose"], par, back["target_pose"], back["transforms"],
                                      back["part_masks"]), training=True)  # fmt: skip
            loss = tf.reduce_mean(tf.abs(cyc - img))
        return tape.gradient(loss, ha.trainable_variables), loss

    gfn = tf.function(grads, jit_compile=bool(spec["xla"]))

    @tf.function
    def step():
        g, loss = gfn()
        opt.apply_gradients(zip(g, ha.trainable_variables))
        return loss

    ha(composite.ha_inputs(img, par, cond["source_pose"], par, cond["target_pose"], cond["transforms"],
                        cond["part_masks"]))  # fmt: skip
    opt.build(ha.trainable_variables)
    t0 = time.time()
    step().numpy()
    first = time.time() - t0
    times = []
    for _ in range(int(spec["steps"])):
        t0 = time.time()
        step().numpy()
        times.append(time.time() - t0)
    med = float(np.median(times))
    return {"params_m": ha.count_params() / 1e6, "first_step_s": first, "ms_per_step": med * 1000,
            "examples_per_s": b / med, "peak_rss_gb": _peak_rss_gb()}  # fmt: skip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", help="run one measurement (JSON spec) and print JSON")
    ap.add_argument("--only", choices=["ha_step", "stage"], help="run only one kind of the matrix")
    args = ap.parse_args()
    if args.child:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        spec = json.loads(args.child)
        out = child_stage(spec) if spec["kind"] == "stage" else child_ha_step(spec)
        print("RESULT " + json.dumps({**spec, **out}), flush=True)
        return
    rows = []
    for spec in MATRIX:
        if args.only and spec["kind"] != args.only:
            continue
        p = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=REPO,
                           capture_output=True, text=True)  # fmt: skip
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode or not line:
            print(f"FAILED {spec}: {p.stderr[-2000:]}", file=sys.stderr)
            continue
        r = json.loads(line[0][7:])
        rows.append(r)
        print(json.dumps(r), flush=True)
    print("\n| kind | stage | size | batch | XLA | replicas | ms/step | examples/s | first step s | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = r.get("stage", "H_A step" + (" (global+local)" if r.get("progressive") else ""))
        print(f"| {r['kind']} | {name} | {r['size'][0]}x{r['size'][1]} | {r['batch']} | {'on' if r['xla'] else 'off'}"
              f" | {r.get('replicas', 1)} | {r['ms_per_step']:.0f} | {r['examples_per_s']:.2f} | "
              f"{r['first_step_s']:.1f} | {r['peak_rss_gb']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
