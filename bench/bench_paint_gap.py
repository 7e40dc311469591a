"""Where a TS-GT model loses to "paint the true parsing", and what a perfect part warp could give.

On a data root's test pairs (a validation set of other identities, not the test split):

* ``--workdir W`` (a TS-GT run): mask-SSIM / SSIM / L1 of the model's images rendered into the
  true target parsing, of the paint baseline, and of three mixtures that locate the gap: the
  model's person over the paint's background, the paint's person over the model's background,
  and the mean of the two images;
* always: the warp oracle, the source's pixels moved part by part with the pair's own affine
  transforms (``geometry.warp``) into the true target parsing (the paint elsewhere), against the
  paint. It bounds what copying the source's textures along the parts can give on this data;
* for every candidate: mask-SSIM inside the target's textured garments (``identities.csv``),
  and L1 inside each label of the true target parsing.

Usage: ``python bench/bench_paint_gap.py --data_root VAL [--workdir W] [--grid out.png]``; the model
is built from ``W/config.json`` (the options it was trained with) unless ``--config`` names one.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import bench_quality  # noqa: E402


def _warp_oracle(batch, paint):
    import tensorflow as tf

    from spt_tf import composite, geometry

    sp, tp = batch["parsing"].numpy(), batch["target_parsing"].numpy()
    warped_image = geometry.warp(batch["image"], batch["transforms"]).numpy()  # [B, K, H, W, 3]
    warped_labels = geometry.warp(tf.one_hot(sp, 10), batch["transforms"]).numpy()  # [B, K, H, W, 10]
    part_masks = batch["part_masks"].numpy()  # [B, K, H, W]
    # Per pixel, the part whose warped source label agrees best with the true target label.
    score = (warped_labels * np.eye(10)[tp][:, None]).sum(-1) * (part_masks > 0)
    best = score.argmax(1)
    pick = np.take_along_axis(warped_image, best[:, None, :, :, None], 1)[:, 0]
    out = paint.astype(np.float32) / 127.5 - 1.0
    use = (score.max(1) > 0.5) & (tp > 0)
    out[use] = pick[use]
    return composite.to_uint8(out).numpy()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_root", required=True)
    p.add_argument("--config", default=None,
                   help="configs/spt.py argument (default: the workdir's config.json, the model as it was "
                        "trained; without a workdir, synthetic,ts_gt)")  # fmt: skip
    p.add_argument("--workdir", help="a TS-GT training workdir (its latest appearance checkpoint)")
    p.add_argument("--grid", help="write a figure: source | paint | model (or warp) | real, 8 rows")
    a = p.parse_args(argv)
    import cv2

    from configs import spt
    from spt_tf import composite, config_files, labels
    from spt_tf.data import pipeline
    from spt_tf.evaluation import evaluator, metrics

    if a.config is not None:
        c = spt.get_config(a.config)
    elif a.workdir:
        c = config_files.load_config(os.path.join(a.workdir, "config.json"))
    else:
        c = spt.get_config("synthetic,ts_gt")
    c.data.root = a.data_root
    gen = evaluator.checkpoint_generator(c, a.workdir) if a.workdir else None
    radius, closing = evaluator.mask_parameters(int(c.data.height))
    with open(os.path.join(a.data_root, c.data.identities)) as f:
        textures = {r["name"]: (r["upper_texture"], r["lower_texture"]) for r in csv.DictReader(f)}
    scores: dict[str, list] = {}
    garment_scores: dict[str, list] = {}
    label_l1: dict[str, np.ndarray] = {}  # per candidate: [labels, 2] sums of |error| and pixel counts
    grid_rows: list[np.ndarray] = []
    for batch in pipeline.test_dataset(c, batch_size=40):
        src, real = composite.to_uint8(batch["image"]), composite.to_uint8(batch["target_image"]).numpy()
        tp = batch["target_parsing"].numpy()
        paint = metrics.paint_parsing(src.numpy(), batch["parsing"].numpy(), tp)
        cands = {"paint the true parsing": paint, "warp oracle": _warp_oracle(batch, paint)}
        if gen is not None:
            fake = gen(src, batch["parsing"], batch["keypoints"], batch["target_keypoints"], tp)["image"].numpy()
            person = (tp > 0)[..., None]
            cands.update({
                "model": fake,
                "model person + paint background": np.where(person, fake, paint),
                "paint person + model background": np.where(person, paint, fake),
                "mean(model, paint)": ((fake.astype(np.float32) + paint) / 2).round().astype(np.uint8),
            })  # fmt: skip
        masks = metrics.evaluation_masks(batch["target_keypoints"].numpy(), *real.shape[1:3], radius=radius,
                                         closing=closing)  # fmt: skip
        for name, images in cands.items():
            scores.setdefault(name, []).append((
                metrics.ssim_batch(real, images).numpy(), metrics.mask_ssim_batch(real, images, masks).numpy(),
                metrics.l1_distance(images, real),
            ))  # fmt: skip
        names = [n.decode() for n in batch["target_name"].numpy()]
        garment = bench_quality._garment_masks(names, tp, textures)
        textured = np.flatnonzero(garment.reshape(len(names), -1).sum(1) >= 16)
        onehot = np.eye(int(c.model.num_labels), dtype=bool)[tp]  # [B, H, W, L]
        for name, images in cands.items():
            err = np.abs(images.astype(np.float32) - real).mean(-1) / 255.0  # [B, H, W]
            acc = label_l1.setdefault(name, np.zeros((int(c.model.num_labels), 2)))
            acc[:, 0] += np.einsum("bhw,bhwl->l", err, onehot)
            acc[:, 1] += onehot.sum((0, 1, 2))
            garment_scores.setdefault(name, []).extend(
                metrics.mask_ssim(real[i], images[i], garment[i][..., None].astype(np.uint8)) for i in textured
            )
        shown = cands["model"] if gen is not None else cands["warp oracle"]
        for i in textured[::7]:  # textured targets, spread over identities
            if len(grid_rows) < 10:
                grid_rows.append(np.concatenate([src.numpy()[i], paint[i], shown[i], real[i]], 1))
    n = sum(len(s) for s, _, _ in scores["paint the true parsing"])
    print(f"{n} pairs of {a.data_root}" + (f", model {gen.path}" if gen else ""))
    g = len(garment_scores["paint the true parsing"])
    print(f"| | SSIM | mask-SSIM | L1 | garment mask-SSIM ({g} textured targets) |\n|---|---|---|---|---|")
    for name, parts in scores.items():
        s, ms, l1 = (np.concatenate([np.atleast_1d(x[k]) for x in parts]) for k in range(3))
        gm = np.nanmean(garment_scores[name]) if g else float("nan")
        print(f"| {name} | {np.nanmean(s):.3f} | {np.nanmean(ms):.3f} | {np.mean(l1):.4f} | {gm:.3f} |")
    names = list(labels.SPT_LABELS)
    print("\nL1 inside each label of the true target parsing (all pairs' pixels of the label):")
    print("| | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for name, acc in label_l1.items():
        cells = [f"{t / n:.4f}" if n else "–" for t, n in acc]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if a.grid and grid_rows:
        grid = np.concatenate(grid_rows)
        cv2.imwrite(a.grid, cv2.resize(grid[..., ::-1], None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST))
        print("grid:", a.grid)


if __name__ == "__main__":
    main()
