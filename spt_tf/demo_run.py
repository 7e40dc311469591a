"""The demo job: synthetic people -> pseudo pairs -> Algorithm 1 -> evaluation -> export.

Everything lands under WORKDIR: `data/` (the synthetic set and its figure),
`train/` (checkpoints, TensorBoard logs, resolved config), `eval/` (metrics),
`export/` (SavedModel versions), `results.png` (source | target pose |
predicted parsing | paint baseline | generated | ground truth, on held-out pairs
of different identities).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import logging

# Sized to run within 15 minutes on 2 quiet CPU cores (docs/benchmarks.md). The pose
# detector needs about 240 training identities to find real joints (PCKh >= 0.8).
DEMO_IDENTITIES = 300
DEMO_POSES = 6
DEMO_TEST_FRACTION = 0.2


def demo_config(workdir: str):
    from configs import spt

    config = spt.get_config("synthetic")
    config.data.root = os.path.join(workdir, "data")
    return config


def _results_figure(config, export_path: str, out_png: str, n: int = 8) -> None:
    """Source | target pose | predicted parsing | paint baseline | generated | ground truth.

    The test pairs are grouped by identity (30 per identity at 6 poses), so the rows
    are ``n`` pairs spread evenly over the first ``32 n`` test pairs: about one
    identity per row.
    """
    import cv2
    import tensorflow as tf

    from spt_tf import composite, labels
    from spt_tf.data import pipeline
    from spt_tf.evaluation import metrics

    loaded = tf.saved_model.load(export_path)
    fn = loaded.signatures["serving_default"]
    pool = next(iter(pipeline.test_dataset(config, batch_size=32 * n, max_pairs=32 * n)))
    count = int(pool["image"].shape[0])
    pick = np.linspace(0, count - 1, min(n, count)).round().astype(int)
    batch = {k: tf.gather(v, pick) for k, v in pool.items()}
    src = composite.to_uint8(batch["image"]).numpy()
    out = fn(image=tf.constant(src), parsing=batch["parsing"], source_keypoints=batch["keypoints"],
             target_keypoints=batch["target_keypoints"])  # fmt: skip
    src_labels = batch["parsing"].numpy()  # [n, H, W] labels
    painted = metrics.paint_parsing(src, src_labels, out["parsing"].numpy(), config.model.num_labels)
    skel = (np.max(batch["target_pose"].numpy(), -1) * 255).astype(np.uint8)
    real = composite.to_uint8(batch["target_image"]).numpy()
    rows = []
    for i in range(src.shape[0]):
        cols = [src[i], np.repeat(skel[i][..., None], 3, -1), labels.colorize(out["parsing"][i].numpy()),
                painted[i], out["image"][i].numpy(), real[i]]  # fmt: skip
        rows.append(np.concatenate(cols, 1))
    grid = np.concatenate(rows, 0)
    grid = cv2.resize(grid, (grid.shape[1] * 3, grid.shape[0] * 3), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(out_png, grid[..., ::-1])


def prepare_data(
    config,
    identities: int,
    poses: int,
    test_fraction: float = DEMO_TEST_FRACTION,
    seed: int = 0,
    poses_from: str | None = None,
) -> tuple[str, str, str]:
    """Synthetic people and their pseudo pairs under ``config.data.root`` (kept if present).

    ``poses_from``: a real annotation CSV whose poses the people take
    (``synthetic.generate``'s ``poses_from``) instead of the bundled ones.

    Returns ``(data_dir, pseudo_pairs_csv, samples_png)``.
    """
    from spt_tf.data import pseudo_pairs, synthetic

    data_dir = config.data.root
    if not os.path.exists(os.path.join(data_dir, "identities.csv")):
        logging.info("generating synthetic people in %s", data_dir)
        synthetic.generate(data_dir, identities=identities, poses_per_identity=poses,
                           height=config.data.height, width=config.data.width, seed=seed,
                           test_fraction=test_fraction, poses_from=poses_from)  # fmt: skip
    figure = os.path.join(data_dir, "samples.png")
    synthetic.sample_figure(data_dir, figure)
    pp = os.path.join(data_dir, config.data.pseudo_pairs)
    if not os.path.exists(pp):
        logging.info("pseudo-label search -> %s", pp)
        ids = os.path.join(data_dir, config.data.identities)
        pseudo_pairs.main(["--data_dir", data_dir, "--identities", ids, "--out", pp,
                           "--height", str(config.data.height), "--width", str(config.data.width)])  # fmt: skip
    return data_dir, pp, figure


def _peak_rss_gb() -> float:
    """Peak resident memory of this process or its largest finished child (GB)."""
    import resource

    kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
             resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # fmt: skip
    return kb / 2**20


def run(workdir: str, poses_from: str | None = None) -> dict:
    """Runs the whole demo; returns a summary (also written to WORKDIR/demo.json).

    ``poses_from``: draw the synthetic people in the poses of a real annotation CSV.
    """
    t0 = time.time()
    os.makedirs(workdir, exist_ok=True)
    config = demo_config(workdir)
    data_dir = config.data.root
    summary: dict = {}
    summary["data"], summary["pseudo_pairs"], figure = prepare_data(
        config, DEMO_IDENTITIES, DEMO_POSES, poses_from=poses_from
    )

    from spt_tf import evaluation
    from spt_tf.training import loop

    train_dir = os.path.join(workdir, "train")
    summary["stages"] = loop.run(config, train_dir, "all", validators=evaluation.stage_validators())
    # The human parser (trained on the real images) judges whether the generated
    # images are people: the evaluator's "parser mIoU" column.
    summary["stages"] += loop.run(config, train_dir, loop.PARSER_STAGE, validators=evaluation.stage_validators())

    from spt_tf.export import module as export_module

    export_dir = os.path.join(workdir, "export")
    path = export_module.export(config, train_dir, export_dir)
    summary["export"] = path

    from spt_tf.evaluation import evaluator

    # No Inception or LPIPS weights can be downloaded on the demo machine: IS / FID /
    # LPIPS are left out (say so); the ground-truth metrics (SSIM, mask-SSIM, L1, mIoU, PCKh, parser mIoU)
    # and the baselines (paint the predicted / true parsing, copy the source) are
    # computed from the checkpoints.
    logging.warning("demo: IS, mask-IS, FID and LPIPS skipped (no Inception / AlexNet weights offline)")
    summary["eval"] = evaluator.run(
        config, train_dir, os.path.join(workdir, "eval"), skip_inception=True, skip_lpips=True, parser_workdir=train_dir
    )

    results = os.path.join(workdir, "results.png")
    _results_figure(config, path, results)
    summary["results_figure"] = results
    summary["seconds"] = time.time() - t0
    summary["peak_rss_gb"] = _peak_rss_gb()
    with open(os.path.join(workdir, "demo.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    print(
        f"\nDemo finished in {summary['seconds'] / 60:.1f} min, peak memory "
        f"{summary['peak_rss_gb']:.2f} GB (largest process)."
    )
    print(f"  synthetic data and sample figure: {data_dir}, {figure}")
    print(f"  TensorBoard logs:                 tensorboard --logdir {os.path.join(train_dir, 'tensorboard')}")
    print(f"  SavedModel:                       {path}")
    print(f"  results figure:                   {results}")
    if "eval" in summary:
        print(f"  metrics:                          {os.path.join(workdir, 'eval', 'results.md')}")
    return summary
