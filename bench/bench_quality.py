"""The quality run: the paper's four ablations x several seeds on the synthetic people.

One data set (``--identities`` x ``--poses``, 20 % held-out identities), one pose
detector, H_S and human parser (seed 0, shared by every variant: the ablations
differ in H_A and in what H_A is given; ``--demo_dir`` takes all four from a
finished ``make demo``), then for each seed and ablation:

- E2E (SPT): ``--app_steps`` appearance steps, then ``--joint_steps`` joint steps;
- TS-Pred, TS-GT, Baseline: ``--app_steps + --joint_steps`` appearance steps
  (the same number of H_A updates);

each evaluated on every held-out pair (``evaluate.py``, all baselines of its
table), plus the texture check: on the pairs whose garment is textured (checks,
stripes: ``identities.csv``), mask-SSIM inside the true target garment of the
model against painting the same parsing the model was given (the predicted one;
the true one for TS-GT). Prints the table (mean ± half the min-max spread over
seeds) and writes ``OUT/quality.json``.

  python bench/bench_quality.py --out runs/quality                # its own data and stages
  python bench/bench_quality.py --demo_dir runs/demo --out runs/quality   # reuse the demo's

The schedule (steps, pairs) is ``configs/synthetic_quality.py``'s unless the flags say
otherwise.
  python bench/bench_quality.py --out runs/q --identities 40 --poses 4 --seeds 0 \\
      --app_steps 2 --joint_steps 2 --shared_steps 2              # smoke

Every training and evaluation is a plain ``train.py`` / ``evaluate.py`` command,
printed as it runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ABLATIONS = ("baseline", "ts_pred", "e2e", "ts_gt")
NAMES = {"baseline": "Baseline", "ts_pred": "TS-Pred", "e2e": "E2E (SPT)", "ts_gt": "TS-GT"}
IMAGE_METRICS = ("ssim", "mask_ssim", "l1")
PERSON_METRICS = ("pckh", "parser_miou")
TEXTURED = ("checks", "stripes")


def _run(cmd: list[str], log: str) -> float:
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    with open(log, "w") as f:
        p = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if p.returncode:
        sys.exit(f"failed (exit {p.returncode}); see {log}")
    return time.time() - t0


def _garment_masks(target_names, target_parsing, textures: dict) -> np.ndarray:
    """[B, H, W] True on the target's textured garments (upper clothes / pants, skirt)."""
    from spt_tf import labels

    masks = np.zeros(target_parsing.shape, bool)
    for i, name in enumerate(target_names):
        upper, lower = textures[name]
        if upper in TEXTURED:
            masks[i] |= target_parsing[i] == labels.UPPER
        if lower in TEXTURED:
            masks[i] |= np.isin(target_parsing[i], (labels.PANTS, labels.SKIRT))
    return masks


def texture_check(config, workdir: str, ablation: str) -> dict:
    """Mask-SSIM inside the textured garments: the model against painting its parsing."""
    import tensorflow as tf

    from spt_tf.data import pipeline
    from spt_tf.evaluation import evaluator, metrics

    ids = os.path.join(config.data.root, config.data.identities)
    with open(ids) as f:
        textures = {r["name"]: (r["upper_texture"], r["lower_texture"]) for r in csv.DictReader(f)}
    gen = evaluator.checkpoint_generator(config, workdir)
    gt = ablation == "ts_gt"
    model, paint, pairs = [], [], 0
    for batch in pipeline.test_dataset(config, max_pairs=int(config.eval.max_pairs)):
        names = [n.decode() for n in batch["target_name"].numpy()]
        tpar = batch["target_parsing"].numpy()
        garment = _garment_masks(names, tpar, textures)
        keep = garment.reshape(len(names), -1).sum(1) >= 16
        if not keep.any():
            continue
        src = tf.cast(tf.round((batch["image"] + 1.0) * 127.5), tf.uint8)
        real = tf.cast(tf.round((batch["target_image"] + 1.0) * 127.5), tf.uint8).numpy()
        out = gen(src, batch["parsing"], batch["keypoints"], batch["target_keypoints"],
                  batch["target_parsing"] if gt else None)  # fmt: skip
        given = tpar if gt else out["parsing"].numpy()
        painted = metrics.paint_parsing(src.numpy(), batch["parsing"].numpy(), given, config.model.num_labels)
        fake = np.asarray(out["image"])
        for i in np.flatnonzero(keep):
            m = garment[i][..., None].astype(np.uint8)
            model.append(metrics.mask_ssim(real[i], fake[i], m))
            paint.append(metrics.mask_ssim(real[i], painted[i], m))
            pairs += 1
    return {"pairs": pairs, "model": float(np.mean(model)), "paint": float(np.mean(paint))}


def _stats(values: list[float]) -> dict:
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "half_spread": float((v.max() - v.min()) / 2), "values": v.tolist()}


def _fmt(s: dict, digits: int) -> str:
    if len(s["values"]) == 1:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['half_spread']:.{digits}f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/quality")
    p.add_argument("--demo_dir", default=None,
                   help="a finished `make demo` workdir: its data, P, H_S and parser are reused")  # fmt: skip
    p.add_argument("--config", default="synthetic_quality",
                   help="configs/spt.py dataset: its networks, recipe, schedule and eval.max_pairs")  # fmt: skip
    p.add_argument("--identities", type=int, default=300)
    p.add_argument("--poses", type=int, default=6)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--ablations", default=",".join(ABLATIONS))
    p.add_argument("--app_steps", type=int, default=None,
                   help="E2E's appearance steps (default: the config's train.appearance_steps)")  # fmt: skip
    p.add_argument("--joint_steps", type=int, default=None,
                   help="E2E's joint steps (default: the config's train.joint_steps)")  # fmt: skip
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="config override for every train.py / evaluate.py call, e.g. train.min_pose_pckh=0",
    )
    p.add_argument("--shared_steps", type=int, default=0,
                   help="steps of P, H_S and the parser (0: the config's)")  # fmt: skip
    a = p.parse_args(argv)
    from configs import spt
    from spt_tf import config_files, demo_run

    base_config = spt.get_config(a.config)
    if a.app_steps is None:
        a.app_steps = int(base_config.train.appearance_steps)
    if a.joint_steps is None:
        a.joint_steps = int(base_config.train.joint_steps)
    py = sys.executable
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    if a.demo_dir:
        data = os.path.abspath(os.path.join(a.demo_dir, "data"))
        shared = os.path.join(a.demo_dir, "train")
        for need in ("pose_detector", "semantic", "parser"):
            if not os.path.exists(os.path.join(shared, f"{need}_summary.json")):
                sys.exit(f"{shared}/{need}_summary.json: missing; run `make demo` first")
    else:
        data = os.path.abspath(os.path.join(a.out, "data"))
        shared = os.path.join(a.out, "shared")
        config = spt.get_config(a.config)
        config.data.root = data
        demo_run.prepare_data(config, a.identities, a.poses)
    timings = {"data": time.time() - t0}
    root = [f"--config.data.root={data}"] + [f"--config.{kv}" for kv in a.set]
    steps = []
    if a.shared_steps:
        steps = [f"--config.train.{s}_steps={a.shared_steps}" for s in ("pose_detector", "semantic", "parser")]
    for stage in ("pose_detector", "semantic", "parser"):
        if not os.path.exists(os.path.join(shared, f"{stage}_summary.json")):
            timings[stage] = _run([py, "train.py", f"--config=configs/spt.py:{a.config}", f"--workdir={shared}",
                                   f"--stage={stage}", *root, *steps], os.path.join(a.out, f"{stage}.log"))  # fmt: skip
    results: dict = {}
    for seed in [int(s) for s in a.seeds.split(",")]:
        for abl in a.ablations.split(","):
            name = f"{abl}_s{seed}"
            wd = os.path.join(a.out, name)
            cfg = f"--config=configs/spt.py:{a.config},{abl}"
            common = [cfg, f"--workdir={wd}", *root, f"--config.train.seed={seed}"]
            res_json = os.path.join(wd, "eval", "results.json")
            if not os.path.exists(res_json):
                shutil.rmtree(wd, ignore_errors=True)
                os.makedirs(wd)
                for stage in ("pose_detector", "semantic"):
                    shutil.copytree(os.path.join(shared, stage), os.path.join(wd, stage))
                shutil.copy(os.path.join(shared, "pose_detector_summary.json"), wd)
                app = a.app_steps if abl == "e2e" else a.app_steps + a.joint_steps
                secs = _run([py, "train.py", *common, "--stage=appearance",
                             f"--config.train.appearance_steps={app}"], os.path.join(wd, "appearance.log"))  # fmt: skip
                if abl == "e2e":
                    secs += _run(
                        [py, "train.py", *common, "--stage=joint", f"--config.train.joint_steps={a.joint_steps}"],
                        os.path.join(wd, "joint.log"),
                    )
                timings[f"{name}_train"] = secs
                timings[f"{name}_eval"] = _run(
                    [py, "evaluate.py", *common, "--skip_inception", "--skip_lpips", f"--parser_workdir={shared}"],
                    os.path.join(wd, "eval.log"),
                )
            with open(res_json) as f:
                rows = json.load(f)["rows"]
            # The run's resolved config (train.py wrote it with every --set applied).
            run_config = config_files.load_config(os.path.join(wd, "config.json"))
            results[name] = {"rows": rows, "texture": texture_check(run_config, wd, abl)}
            print(name, {k: rows["model"].get(k) for k in IMAGE_METRICS + PERSON_METRICS}, results[name]["texture"])
    summary = summarise(results, a)
    summary["timings_s"] = timings
    summary["wall_s"] = time.time() - t0
    with open(os.path.join(a.out, "quality.json"), "w") as f:
        json.dump({"summary": summary, "runs": results}, f, indent=2)
    print(markdown(summary))


def summarise(results: dict, a) -> dict:
    """Per ablation: mean and spread over seeds of the model and its baselines."""
    out: dict = {"seeds": a.seeds, "app_steps": a.app_steps, "joint_steps": a.joint_steps, "ablations": {}}
    for abl in a.ablations.split(","):
        runs = [r for k, r in results.items() if k.rsplit("_s", 1)[0] == abl]
        if not runs:
            continue
        entry: dict = {}
        for row in ("model", "paint_predicted_parsing", "paint_true_parsing", "copy_source_image", "real_target"):
            for m in IMAGE_METRICS + PERSON_METRICS + ("miou",):
                vals = [r["rows"].get(row, {}).get(m) for r in runs]
                if all(v is not None for v in vals):
                    entry[f"{row}/{m}"] = _stats(vals)
        entry["texture/model"] = _stats([r["texture"]["model"] for r in runs])
        entry["texture/paint"] = _stats([r["texture"]["paint"] for r in runs])
        entry["texture/pairs"] = runs[0]["texture"]["pairs"]
        out["ablations"][abl] = entry
    return out


def markdown(summary: dict) -> str:
    cols = [("ssim", 3), ("mask_ssim", 3), ("l1", 4), ("pckh", 3), ("parser_miou", 3), ("miou", 3)]
    lines = ["| | SSIM | mask-SSIM | L1 | PCKh | parser mIoU | H_S mIoU | garment mask-SSIM (textured) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    abls = summary["ablations"]

    def row(label, entry, prefix, texture=None):
        cells = [(_fmt(entry[f"{prefix}/{m}"], d) if f"{prefix}/{m}" in entry else "–") for m, d in cols]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {texture or '–'} |")

    for abl, entry in abls.items():
        row(NAMES.get(abl, abl), entry, "model", _fmt(entry["texture/model"], 3))
    for abl, label, prefix in (("e2e", "paint the predicted parsing (E2E's H_S)", "paint_predicted_parsing"),
                               ("ts_pred", "paint the predicted parsing (stage-1 H_S)", "paint_predicted_parsing"),
                               ("ts_gt", "paint the true parsing", "paint_true_parsing"),
                               ("ts_pred", "copy the source image", "copy_source_image"),
                               ("ts_pred", "real target (ceiling)", "real_target")):  # fmt: skip
        if abl in abls:
            tex = None
            if prefix.startswith("paint"):
                tex = _fmt(abls[abl]["texture/paint"], 3)
            row(label, abls[abl], prefix, tex)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
