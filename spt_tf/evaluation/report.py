"""The evaluation's outputs: the results dict (results.json), results.md and the sample grids.

:func:`results` turns the accumulators of one run (a :class:`Measurements`)
into the results dict; :func:`markdown` renders it; :func:`sample_rows` and
:func:`write_outputs` make and write the files (docs/evaluation.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import tensorflow as tf

from spt_tf import labels
from spt_tf.data import formats
from spt_tf.evaluation import metrics
from spt_tf.evaluation.accumulators import ImageRow
from spt_tf.evaluation.feature_statistics import fid
from spt_tf.evaluation.fid_cache import RealStatistics
from spt_tf.evaluation.generators import Generator
from spt_tf.evaluation.protocol import (
    COLUMNS,
    FIELD_MASK_HEIGHT,
    PCKH_THRESHOLD,
    POSE_THRESHOLD,
    ROW_TITLES,
    ROWS,
)

SAMPLES_PER_GRID = 8


@dataclasses.dataclass(frozen=True)
class Measurements:
    """Everything one evaluation run measured and how, as :func:`results` reads it.

    Attributes:
      config: the run config (data.name, data.height / width, train.ablation).
      split: "test" or "train".
      generator: the evaluated :class:`Generator`.
      inception: the :class:`spt_tf.evaluation.inception.InceptionFeatures`, or
        None when IS / FID were skipped.
      lpips: the :class:`spt_tf.evaluation.lpips.LPIPS`, or None when skipped.
      lpips_note: why there is no LPIPS, or None.
      rows: the image rows' accumulators by row name.
      confusions: the parsing confusion matrices of the rows judged on parsing
        (``"model"``: H_S's prediction, ``"copy_source_parsing"``).
      real: the real targets' FID statistics, or None without Inception.
      parser_note: why there is no parser mIoU, or None.
      num_pairs: the number of evaluated pairs.
      is_splits: IS splits.
      parsing_ok: the model's parsing is judged (not the baseline ablation).
      gt_parsing: H_A rendered the real target parsing (TS-GT ablation).
      radius, closing: the evaluation mask's parameters.
    """

    config: object
    split: str
    generator: Generator
    inception: object | None
    lpips: object | None
    lpips_note: str | None
    rows: dict[str, ImageRow]
    confusions: dict[str, np.ndarray]
    real: RealStatistics | None
    parser_note: str | None
    num_pairs: int
    is_splits: int
    parsing_ok: bool
    gt_parsing: bool
    radius: float
    closing: int


def _notes_and_warnings(m: Measurements) -> tuple[list[str], list[str]]:
    """The run-level notes and warnings, before the per-row ones."""
    notes, warnings = [], []
    if m.inception is not None:
        warnings.extend(m.inception.warnings)
    else:
        notes.append("IS, mask-IS, FID: skipped (--skip_inception)")
    if m.lpips is not None:
        warnings.extend(m.lpips.warnings)
    elif m.lpips_note:
        notes.append(m.lpips_note)
    if m.generator.pose_note:
        (notes if m.generator.kind == "saved_model" else warnings).append(m.generator.pose_note)
    if m.parser_note:
        notes.append(m.parser_note)
    notes.append(
        "paint the predicted / true parsing: the target parsing (H_S's prediction / the real "
        "target's) filled with the source image's mean colour per label; a generator below them "
        "has learnt no more than the colours of its parsing"
    )
    if not m.parsing_ok:
        notes.append("mIoU / pixel acc of the model: n/a (baseline ablation: H_A uses no parsing)")
    if m.gt_parsing:
        notes.append("TS-GT ablation: H_A renders the real target parsing; mIoU / pixel acc are H_S's")
    return notes, warnings


def _table(m: Measurements, notes: list[str]) -> dict:
    """The table's rows by name, a value (or None) per column; NaN SSIM counts added to ``notes``."""
    table = {}
    for name in ROWS:
        r = {k: None for k, _ in COLUMNS}
        table[name] = r
        if name in m.rows and not m.rows[name].person_only:
            row = m.rows[name]
            r["ssim"], r["ssim_nan"] = row.ssim.value(), row.ssim.nan
            r["mask_ssim"], r["mask_ssim_nan"] = row.mask_ssim.value(), row.mask_ssim.nan
            r["l1"] = row.l1.value()
            if row.lpips is not None:
                r["lpips"] = row.lpips.value()
            for key in ("ssim", "mask_ssim"):
                if r[f"{key}_nan"]:
                    notes.append(
                        f"{ROW_TITLES[name]}: {r[f'{key}_nan']} of {m.num_pairs} {key.replace('_', '-')} "
                        "values are NaN (both images flat) and left out of the mean"
                    )
            if m.inception is not None:
                r["is"], r["is_std"] = row.inception_score.result()
                r["mask_is"], r["mask_is_std"] = row.mask_inception_score.result()
                r["fid"] = fid(row.features, m.real.stats)
        if name in m.rows:
            row = m.rows[name]
            if row.pck is not None and row.pck[1]:
                r["pckh"] = row.pck[0] / row.pck[1]
            if row.parser_confusion is not None:
                r["parser_miou"] = metrics.miou_from_confusion(row.parser_confusion)
        if name in m.confusions and (name != "model" or m.parsing_ok):
            conf = m.confusions[name]
            r["miou"] = metrics.miou_from_confusion(conf)
            r["pixel_accuracy"] = metrics.pixel_accuracy_from_confusion(conf)
            r["iou_per_label"] = {labels.SPT_LABELS[i]: _num(v) for i, v in enumerate(metrics.iou_per_label(conf))}
    return table


def results(m: Measurements) -> dict:
    """The results dict of a run (strict JSON: NaN / Inf as None), without timing and samples.

    Args:
      m: what the run measured.

    Returns:
      ``warnings``, ``comparable``, the run's settings (dataset, split, pairs,
      size, generator, inception, ssim, mask, pose_detector), ``rows`` (the
      table, :data:`ROWS` x :data:`COLUMNS`) and ``notes``.
    """
    notes, warnings = _notes_and_warnings(m)
    table = _table(m, notes)
    config, gen, inc = m.config, m.generator, m.inception
    out = {
        "warnings": warnings,
        "comparable": bool((inc is None or inc.comparable) and (m.lpips is None or m.lpips.comparable)),
        "dataset": str(config.data.name),
        "split": m.split,
        "num_pairs": m.num_pairs,
        "image_size": [int(config.data.height), int(config.data.width)],
        "generator": {"kind": gen.kind, "path": gen.path, "ablation": str(config.train.ablation)},
        "inception": None
        if inc is None
        else {
            "weights": inc.description,
            "random": inc.random,
            "input_size": inc.input_size,
            "is_splits": m.is_splits,
            "fid_real_statistics": {
                "path": m.real.path,
                "status": m.real.status,
                "count": m.real.stats.count,
            },
        },
        "lpips": None
        if m.lpips is None
        else {"weights": m.lpips.description, "random": m.lpips.random, "version": "0.1", "net": "alex"},
        "ssim": {
            "sigma": metrics.SSIM_SIGMA,
            "sample_covariance": False,
            "data_range": "generated image",
            "images": "uint8",
        },
        "mask": {"radius": m.radius, "closing": m.closing, "keypoints": "target"},
        "pose_detector": {
            "available": gen.pose_trained,
            "trained": gen.pose_trained,
            "heatmap_threshold": POSE_THRESHOLD,
            "pckh_threshold": PCKH_THRESHOLD,
            "pckh_real_target": table["real_target"]["pckh"],
        },
        "rows": table,
        "notes": notes,
    }
    return _clean(out)


def _num(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _clean(x):
    """NaN / Inf -> None, numpy scalars -> Python (strict JSON)."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return _num(float(x))
    return x


# --------------------------------------------------------------------------- markdown


def _cell(row: dict, key: str) -> str:
    v = row.get(key)
    if v is None:
        return "–"
    if key == "fid":
        s = f"{v:.2f}"
    elif key == "l1":
        s = f"{v:.4f}"
    else:
        s = f"{v:.3f}"
    if row.get(f"{key}_std") is not None:
        s += f" ± {row[f'{key}_std']:.3f}"
    if row.get(f"{key}_nan"):
        s += f" ({row[f'{key}_nan']} NaN)"
    return s


def markdown_table(results: dict) -> str:
    """The results table: rows model / baselines, columns of :data:`COLUMNS`."""
    lines = ["| | " + " | ".join(t for _, t in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in ROWS:
        row = results["rows"][name]
        lines.append(f"| {ROW_TITLES[name]} | " + " | ".join(_cell(row, k) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    """results.md: header (pairs, weights status, conventions), table, notes."""
    r = results
    out = [f"# Evaluation: {r['dataset']} / {r['split']}", ""]
    for warning in r["warnings"]:
        out += [f"**{warning}**", ""]
    g = r["generator"]
    out.append(f"- pairs: {r['num_pairs']}, image size {r['image_size'][0]}x{r['image_size'][1]}")
    out.append(f"- generator: {g['kind']} `{g['path']}` (ablation {g['ablation']})")
    inc = r["inception"]
    if inc is None:
        out.append("- Inception: not run (IS, mask-IS, FID skipped)")
    else:
        fs = inc["fid_real_statistics"]
        out.append(
            f"- Inception v3 weights: {inc['weights']}, input {inc['input_size']}x{inc['input_size']}, "
            f"IS splits {inc['is_splits']}; real FID statistics {fs['status']} "
            f"(`{os.path.basename(fs['path'])}`)"
        )
    lp = r.get("lpips")
    out.append(
        "- LPIPS: not run" if lp is None else f"- LPIPS v{lp['version']} {lp['net']}-lin, weights: {lp['weights']}"
    )
    m, p = r["mask"], r["pose_detector"]
    out.append(
        f"- SSIM: Gaussian σ 1.5, population covariance, per channel, data range of the generated "
        f"image, uint8; masks: target pose, radius {m['radius']:g}, closing {m['closing']}"
    )
    if p["available"]:
        ref = "–" if p["pckh_real_target"] is None else f"{p['pckh_real_target']:.3f}"
        out.append(
            f"- PCKh@{p['pckh_threshold']:g} through the pose detector P (heatmap threshold "
            f"{p['heatmap_threshold']:g}); P on the real targets: {ref}"
        )
    out += ["", markdown_table(r), ""]
    if r["notes"]:
        out += ["Notes:", ""] + [f"- {n}" for n in r["notes"]] + [""]
    out.append(f"{r['seconds']:.1f} s, {r['pairs_per_second']:.2f} pairs/s, peak RSS {r['peak_rss_mb']:.0f} MB")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- files


def sample_rows(src, target_pose, pred, fake, real) -> list[np.ndarray]:
    """[h, 5w, 3] uint8 rows: source | target pose | predicted parsing | generated | truth.

    Args:
      src, fake, real: uint8 image tensors [B, h, w, 3]; target_pose: the
        target pose maps [B, h, w, 18]; pred: predicted label maps [B, h, w].
    """
    skel = (np.clip(tf.reduce_max(target_pose, -1).numpy(), 0, 1) * 255).astype(np.uint8)
    skel = np.repeat(skel[..., None], 3, -1)
    parsing = labels.colorize(pred.numpy()).astype(np.uint8)
    cols = [src.numpy(), skel, parsing, fake.numpy(), real.numpy()]
    return list(np.concatenate(cols, 2))


def _write_samples(out_dir: str, samples: list[np.ndarray], height: int) -> list[str]:
    scale = max(1, FIELD_MASK_HEIGHT // height)  # small images enlarged (nearest) to be visible
    paths = []
    for i in range(0, len(samples), SAMPLES_PER_GRID):
        grid = np.concatenate(samples[i : i + SAMPLES_PER_GRID], 0)
        grid = np.repeat(np.repeat(grid, scale, 0), scale, 1)
        path = os.path.join(out_dir, f"samples_{i // SAMPLES_PER_GRID:02d}.png")
        formats.write_image(path, grid)
        paths.append(path)
    return paths


def write_outputs(out_dir: str, results: dict, samples: list[np.ndarray], height: int) -> None:
    """Writes ``samples_NN.png`` (:data:`SAMPLES_PER_GRID` rows each), then results.json and results.md.

    Args:
      out_dir: the output folder (exists).
      results: the results dict, complete but for ``samples``, which is set here
        (the grids' file names).
      samples: rows of :func:`sample_rows`.
      height: the image height (grids of small images are enlarged).
    """
    grids = _write_samples(out_dir, samples, height)
    results["samples"] = [os.path.basename(p) for p in grids]
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, allow_nan=False)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(results))
