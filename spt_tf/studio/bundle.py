"""A result's download: the output, every input the CLI needs, a JSON of them, and the command.

The bundle (a ZIP, flat) holds, for every mode:

* ``source.png``: the source photo as decoded (PNG, lossless: a JPEG upload is
  stored as the pixels the studio used), ``source_parsing.png`` (SPT labels 0..9,
  the map used: uploaded, converted from LIP or predicted by the parser) and
  ``source_keypoints.json`` (OpenPose COCO-18 JSON in the photo's pixels,
  confidence 1 present, ``0, 0, 0`` missing; ``--openpose_json`` reads it back
  exactly, float32 survives JSON);
* pose: ``target_keypoints.json``; edit: ``edited_parsing.png``; texture:
  ``donor.png``, ``donor_parsing.png``, ``donor_keypoints.json``;
* the studio's outputs (``output.png``, the image shown, and the mode's other
  outputs), byte for byte as served;
* ``studio.json``: the keypoints (``[18, 2]`` (y, x), ``-1`` missing) and the
  parsing maps (one string of label digits per row) used, where they came
  from, the model, the timings and the commands;
* ``command.sh``: the commands that rebuild ``output.png`` under ``out/``
  (``python -m spt_tf.apps ...``, then ``python -m spt_tf.studio.garment`` for
  one garment) followed by ``cmp`` of each output against the studio's.
"""

from __future__ import annotations

import io
import json
import shlex
import zipfile

import numpy as np

from spt_tf import labels
from spt_tf.skeleton import KEYPOINT_NAMES, MISSING
from spt_tf.studio import core

# What the CLI writes, per mode, that the bundle holds as the studio made it.
CHECKED = {"pose": ("output.png",), "edit": ("output.png", "reconstruction.png"),
           "texture": ("a_on_b.png", "b_on_a.png", "output.png")}  # fmt: skip


def openpose_json(keypoints: np.ndarray, **extra) -> bytes:
    """An OpenPose ``--write_json`` file of one person (COCO-18 layout): what ``--openpose_json`` reads."""
    flat = []
    for y, x in np.asarray(keypoints, np.float32).tolist():  # float32 -> float and JSON are exact
        flat += [0.0, 0.0, 0.0] if MISSING in (y, x) else [x, y, 1.0]
    data = {"version": 1.3, "people": [{"pose_keypoints_2d": flat}], **extra}
    return (json.dumps(data, indent=1) + "\n").encode()


def label_rows(lab: np.ndarray) -> list[str]:
    """uint8 ``[h, w]`` labels 0..9 -> one string of digits per row."""
    return ["".join(map(str, row)) for row in np.asarray(lab).tolist()]


def _person(rec: core.Record, prefix: str) -> tuple[dict, dict]:
    p = rec.person
    files = {
        f"{prefix}.png": core.encode_png(p.image),
        f"{prefix}_keypoints.json": openpose_json(p.keypoints, image=p.label, image_size=list(p.shape)),
    }
    meta = {"name": p.label, "size": list(p.shape), "image": f"{prefix}.png",
            "keypoints": np.asarray(p.keypoints, np.float64).tolist(), "keypoints_from": rec.keypoints_from,
            "keypoints_file": f"{prefix}_keypoints.json"}  # fmt: skip
    if p.parsing is not None:
        files[f"{prefix}_parsing.png"] = core.encode_label_png(p.parsing)
        meta.update({"parsing": f"{prefix}_parsing.png", "parsing_from": rec.parsing_from,
                     "parsing_rows": label_rows(p.parsing)})  # fmt: skip
    return files, meta


def commands_for(res: core.Result, model_args: list[str]) -> list[list[str]]:
    """The CLI commands (argument lists) that rebuild the result under ``out/`` from the bundle's files."""
    src = ["--image", "source.png", "--parsing", "source_parsing.png", "--openpose_json", "source_keypoints.json"]
    apps = ["python", "-m", "spt_tf.apps"]
    if res.mode == "pose":
        return [[*apps, "pose-transfer", *model_args, *src, "--target_openpose_json", "target_keypoints.json",
                 "--out", "out"]]  # fmt: skip
    if res.mode == "edit":
        return [[*apps, "edit", *model_args, *src, "--labels", "edited_parsing.png", "--out", "out"]]
    cmds = [[*apps, "texture-transfer", *model_args, *src, "--target_image", "donor.png", "--target_parsing",
             "donor_parsing.png", "--target_openpose_json", "donor_keypoints.json", "--out", "out"]]  # fmt: skip
    if res.garment == core.GARMENT_ALL:
        cmds.append(["cp", "out/b_on_a.png", "out/output.png"])
    else:
        cmds.append(["python", "-m", "spt_tf.studio.garment", "--image", "source.png", "--parsing",
                     "source_parsing.png", "--render", "out/b_on_a.png", "--label", res.garment,
                     "--out", "out/output.png"])  # fmt: skip
    return cmds


def files(res: core.Result, model_args: list[str], model_info: dict) -> dict[str, bytes]:
    """The bundle's files, name -> bytes."""
    out, src_meta = _person(res.source, "source")
    meta = {"mode": res.mode, "model": {**model_info, "cli": list(model_args)},
            "keypoint_names": list(KEYPOINT_NAMES), "labels": list(labels.SPT_LABELS), "source": src_meta}  # fmt: skip
    if res.mode == "pose":
        out["target_keypoints.json"] = openpose_json(res.target_keypoints, image=res.source.person.label,
                                                     image_size=list(res.source.person.shape))  # fmt: skip
        meta["target_keypoints"] = np.asarray(res.target_keypoints, np.float64).tolist()
    if res.mode == "edit":
        meta.update({"edited_parsing": "edited_parsing.png", "edited_parsing_rows": label_rows(res.edited_parsing),
                     "changed_pixels": res.changed_pixels})  # fmt: skip
    if res.mode == "texture":
        donor, meta["donor"] = _person(res.donor, "donor")
        out.update(donor)
        meta["garment"] = res.garment
    for name, img in res.images.items():
        out[name] = res.output_png if name == "output.png" else core.encode_png(img)
    for name, lab in res.label_maps.items():
        out[name] = core.encode_label_png(lab)
    cmds = commands_for(res, model_args)
    meta["commands"] = [shlex.join(c) for c in cmds]
    checked = {n: f"out/{n} of the commands equals it byte for byte" for n in CHECKED[res.mode]}
    meta["outputs"] = {"output.png": "the image the studio showed", **checked}
    meta["timing_ms"] = {"model": round(res.model_ms, 3), "server": round(res.server_ms, 3)}
    out["studio.json"] = (json.dumps(meta, indent=1) + "\n").encode()
    script = [
        "#!/bin/sh",
        "# Rebuilds the studio's result with the CLI (the project's environment: spt_tf importable),",
        "# then compares each output with the studio's bytes.",
        "set -e",
        'cd "$(dirname "$0")"',
    ]
    script += [shlex.join(c) for c in cmds]
    script += [f"cmp out/{n} {n}" for n in CHECKED[res.mode]]
    script.append('echo "same bytes as the studio: ' + " ".join(CHECKED[res.mode]) + '"')
    out["command.sh"] = ("\n".join(script) + "\n").encode()
    return out


def zip_bytes(res: core.Result, model_args: list[str], model_info: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files(res, model_args, model_info).items():
            info = zipfile.ZipInfo(name, date_time=(2019, 6, 16, 0, 0, 0))  # fixed: same result, same bytes
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if name.endswith(".sh") else 0o644) << 16
            z.writestr(info, data)
    return buf.getvalue()
