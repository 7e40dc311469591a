"""The applications: pose transfer, texture transfer (paper Fig. 8), parsing edits (Fig. 9).

Each command takes people at their photos' sizes (:class:`Person`), letterboxes
them to the model's resolution (:mod:`spt_tf.apps.resize`), runs one batched
call of the backend (SavedModel or workdir: :mod:`spt_tf.predictor`), undoes
the letterbox on the outputs and writes the result images and a side-by-side
figure to ``out_dir``. Each returns a dict of the output arrays and the paths
written.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import logging

from spt_tf import labels
from spt_tf.apps import figures, resize
from spt_tf.apps import keypoints as kp_lib
from spt_tf.apps import parsing as parsing_lib
from spt_tf.data import formats

# Keypoints may lie this many pixels outside their photo (as the dataset readers allow).
KEYPOINT_TOLERANCE = 2.0


@dataclasses.dataclass
class Person:
    """One person at the photo's size.

    Attributes:
      image: uint8 ``[h, w, 3]`` RGB.
      keypoints: float32 ``[18, 2]`` ``(y, x)`` photo pixels, ``-1`` missing.
      parsing: uint8 ``[h, w]`` SPT labels, or None when a command needs none.
      label: a short name for figures and messages (the file name).
      parsing_predicted: the parsing came from the human parser (not a file).
      keypoints_predicted: the keypoints came from the pose detector P (no JSON / CSV row).
    """

    image: np.ndarray
    keypoints: np.ndarray
    parsing: np.ndarray | None = None
    label: str = "person"
    parsing_predicted: bool = False
    keypoints_predicted: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.image.shape[:2])


@dataclasses.dataclass
class KeypointSource:
    """Where a person's keypoints come from: exactly one of the three.

    Attributes:
      openpose_json: an OpenPose ``--write_json`` file (``person`` picks one of several).
      csv, name: an annotation CSV and the image's row name.
      detect: run the pose detector P (workdir backends only).
      openpose_threshold: OpenPose joints with confidence ``<=`` it are missing.
      detect_threshold: P's heatmap peaks below it are missing.
      tolerance: how far (pixels) a present keypoint may lie outside the photo
        (the field's 256x176 DeepFashion annotations need
        ``formats.DEEPFASHION_176_TOLERANCE``); such points are kept as they are.
    """

    openpose_json: str | None = None
    person: int | None = None
    csv: str | None = None
    name: str | None = None
    detect: bool = False
    openpose_threshold: float = 0.05
    detect_threshold: float = 0.1
    tolerance: float = KEYPOINT_TOLERANCE

    @property
    def predicted(self) -> bool:
        """The keypoints come from P: ``detect`` and neither a JSON nor a CSV (those win)."""
        return self.detect and not (self.openpose_json or self.csv)

    def describe(self) -> str:
        if self.openpose_json:
            return self.openpose_json
        if self.csv:
            return f"{self.csv} row {self.name!r}"
        return "the pose detector" if self.detect else "nowhere"


# ---------------------------------------------------------------- inputs


def check_in_image(keypoints: np.ndarray, shape: tuple[int, int], what: str,
                   tolerance: float = KEYPOINT_TOLERANCE) -> None:  # fmt: skip
    """Raises KeypointError when a present keypoint lies more than ``tolerance`` pixels outside the
    photo (a wrong CSV / image size)."""
    kp = np.asarray(keypoints)
    ok = ~np.any(kp == kp_lib.MISSING, axis=-1)
    h, w = shape
    t = float(tolerance)
    out = ok & ((kp[:, 0] < -t) | (kp[:, 0] > h - 1 + t) | (kp[:, 1] < -t) | (kp[:, 1] > w - 1 + t))
    if out.any():
        bad = [f"{kp_lib.KEYPOINT_NAMES[i]} (y={kp[i, 0]:g}, x={kp[i, 1]:g})" for i in np.flatnonzero(out)]
        raise kp_lib.KeypointError(
            f"{what}: keypoints outside the {h}x{w} image: {', '.join(bad)}; are they for an image of another size?"
        )


def detect_keypoints(backend, image: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Keypoints of a photo from the pose detector P (at the model's resolution, mapped back).

    Peaks in the letterbox padding count as missing. A peak at the content's edge,
    whose sub-pixel centroid leans up to half a model pixel into the padding, is
    clipped to the photo's border (undone, half a model pixel is many photo pixels).
    """
    lb = resize.fit(image.shape[:2], backend.size)
    heatmaps = backend.detect_heatmaps(lb.image(image)[None])[0]
    kp = kp_lib.from_heatmaps(heatmaps, threshold)
    kp[~lb.in_content(kp)] = kp_lib.MISSING
    kp = lb.undo_keypoints(kp)
    h, w = image.shape[:2]
    present = ~np.any(kp == kp_lib.MISSING, axis=-1)
    kp[present] = np.clip(kp[present], 0.0, [h - 1, w - 1])
    return kp


def predict_parsing(parser, image: np.ndarray) -> np.ndarray:
    """A photo's SPT label map from the human parser, at the photo's size.

    The photo is letterboxed to the parser's resolution (border pixels repeated,
    as for the generators), the argmax label map is cropped to the content and
    resized back (nearest): from then on it is handled exactly like a given map.

    Args:
      parser: anything with ``size`` and ``parse_labels(u8 [B,H,W,3]) -> u8 [B,H,W]``:
        a workdir :class:`~spt_tf.predictor.Predictor` or a
        :class:`~spt_tf.predictor.Parser` (``predictor.load_parser``).
      image: uint8 ``[h, w, 3]``.

    Returns:
      uint8 ``[h, w]`` labels 0..9.
    """
    lb = resize.fit(image.shape[:2], parser.size)
    return lb.undo_labels(np.asarray(parser.parse_labels(lb.image(image)[None])[0], np.uint8))


def read_keypoints(source: KeypointSource, image: np.ndarray, what: str, backend=None) -> np.ndarray:
    """A person's keypoints from ``source``, validated (torso present, inside the photo).

    Args:
      source: where they come from.
      image: the person's photo (its size bounds the keypoints; P runs on it).
      what: names the person in errors, e.g. ``"source a.jpg"``.
      backend: needed for ``source.detect``.
    """
    if source.openpose_json:
        kp = kp_lib.read_openpose_json(source.openpose_json, source.person, source.openpose_threshold)
    elif source.csv:
        if not source.name:
            raise kp_lib.KeypointError(f"{what}: give the image's row name in {source.csv} (--name)")
        kp = kp_lib.from_annotations(source.csv, source.name, tolerance=source.tolerance)
    elif source.detect:
        if backend is None:
            raise ValueError("keypoint detection needs a backend")
        kp = detect_keypoints(backend, image, source.detect_threshold)
    else:
        raise kp_lib.KeypointError(
            f"{what}: no keypoints: give an OpenPose JSON, an annotation CSV with the image's name, "
            "or --detect (pose detector, workdir models)"
        )
    what = f"{what} (keypoints from {source.describe()})"
    kp = kp_lib.check_keypoints(kp, what)
    check_in_image(kp, image.shape[:2], what, source.tolerance)
    return kp


def load_person(image_path: str, source: KeypointSource, parsing_path: str | None = None,
                lip_parsing_path: str | None = None, need_parsing: bool = True, backend=None,
                role: str = "source", parser=None) -> Person:  # fmt: skip
    """Reads a photo, its keypoints and its parsing (SPT-10, or LIP-20 converted, or predicted).

    Args:
      image_path: the photo.
      source: where the keypoints come from.
      parsing_path, lip_parsing_path: a parsing map file (at most one).
      need_parsing: without a map file nor a parser, fail (else parsing is None).
      backend: for ``source.detect``.
      role: names the person in errors.
      parser: predicts the parsing when no map file is given (:func:`predict_parsing`).

    Raises:
      FormatError: unreadable files, parsing size differing from the photo.
      KeypointError: no person, torso joints missing (named), keypoints off the photo.
    """
    image = formats.read_image(image_path)
    what = f"{role} {image_path}"
    kp = read_keypoints(source, image, what, backend)
    if parsing_path and lip_parsing_path:
        raise ValueError(f"{role}: give either an SPT parsing or a LIP parsing, not both")
    parsing = None
    if parsing_path:
        parsing = parsing_lib.read_spt(parsing_path, image.shape[:2], image_path)
    elif lip_parsing_path:
        parsing = parsing_lib.read_lip(lip_parsing_path, image.shape[:2], kp, image_path)
    elif parser is not None:
        parsing = predict_parsing(parser, image)
        logging.info("%s: parsing predicted by the human parser", what)
        return Person(image, kp, parsing, os.path.basename(image_path), parsing_predicted=True,
                      keypoints_predicted=source.predicted)  # fmt: skip
    elif need_parsing:
        raise formats.FormatError(
            image_path,
            f"{role}: a parsing map is needed (--parsing SPT-10 .png/.npy, --lip_parsing LIP-20 .png, "
            "or --parse: the human parser of a workdir)",
        )
    return Person(image, kp, parsing, os.path.basename(image_path), keypoints_predicted=source.predicted)


# ---------------------------------------------------------------- helpers


def _to_model(backend, person: Person):
    lb = resize.fit(person.shape, backend.size)
    parsing = None if person.parsing is None else lb.labels(person.parsing)
    return lb, lb.image(person.image), parsing, lb.keypoints(person.keypoints)


def _write(out_dir: str, images: dict[str, np.ndarray], label_maps: dict[str, np.ndarray]) -> dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name, img in images.items():
        paths[name] = os.path.join(out_dir, f"{name}.png")
        formats.write_image(paths[name], img)
    for name, lab in label_maps.items():
        paths[name] = os.path.join(out_dir, f"{name}.png")
        formats.write_parsing(paths[name], lab)
        paths[name + "_color"] = os.path.join(out_dir, f"{name}_color.png")
        formats.write_image(paths[name + "_color"], labels.colorize(lab))
    return paths


def write_predicted_parsing(out_dir: str, people: dict[str, Person]) -> dict[str, str]:
    """Writes ``<name>.png`` (labels 0..9) and ``<name>_color.png`` for each person whose
    parsing the human parser predicted; returns their paths."""
    maps = {name: p.parsing for name, p in people.items() if p is not None and p.parsing_predicted}
    return _write(out_dir, {}, maps) if maps else {}


def write_predicted_keypoints(out_dir: str, people: dict[str, Person]) -> dict[str, str]:
    """Writes ``<name>.json`` for each person whose keypoints P predicted: an OpenPose
    COCO-18 JSON in that person's photo pixels (confidence 1 found, ``0, 0, 0`` missing),
    which ``--openpose_json`` reads back unchanged; returns their paths."""
    paths = {}
    for name, p in people.items():
        if p is None or not p.keypoints_predicted:
            continue
        os.makedirs(out_dir, exist_ok=True)
        paths[name] = os.path.join(out_dir, f"{name}.json")
        kp_lib.write_openpose_json(paths[name], p.keypoints, image=p.label, image_size=list(p.shape),
                                   keypoints_from="the pose detector P")  # fmt: skip
    return paths


def _layout(caption, parsing, keypoints=None):
    """A figure panel: the parsing in colour (with the skeleton on top when keypoints are given)."""
    return caption, figures.parsing_panel(parsing), keypoints


# ---------------------------------------------------------------- commands


def pose_transfer(backend, source: Person, target_keypoints: np.ndarray, out_dir: str,
                  target_shape: tuple[int, int] | None = None, target_image: np.ndarray | None = None,
                  target_label: str = "target", keypoint_tolerance: float = KEYPOINT_TOLERANCE) -> dict:  # fmt: skip
    """Re-poses ``source`` into ``target_keypoints`` (H_S predicts the parsing, H_A renders).

    Args:
      backend: a :class:`spt_tf.predictor.Predictor`.
      source: the person (with parsing).
      target_keypoints: ``[18, 2]`` ``(y, x)`` in the target frame.
      out_dir: output folder.
      target_shape: ``(h, w)`` of the target frame; default the target
        image's, else the source photo's.
      target_image: the photo the target pose was taken from (figure only).
      target_label: its name in the figure.

    Returns:
      dict: ``image`` u8 ``[h, w, 3]`` and ``parsing`` u8 ``[h, w]`` in the
      target frame, ``paths`` (``output``, ``output_parsing``,
      ``output_parsing_color``, ``figure``).
    """
    if source.parsing is None:
        raise ValueError("pose transfer needs the source's parsing")
    if target_shape is None:
        target_shape = source.shape if target_image is None else target_image.shape[:2]
    tgt = kp_lib.check_keypoints(target_keypoints, f"target pose ({target_label})")
    check_in_image(tgt, target_shape, f"target pose ({target_label})", keypoint_tolerance)
    lb_s, img, par, src_kp = _to_model(backend, source)
    lb_t = resize.fit(target_shape, backend.size)
    out = backend.pose_transfer(img[None], par[None], src_kp[None], lb_t.keypoints(tgt)[None])
    image = lb_t.undo_image(out["image"][0])
    parsing = lb_t.undo_labels(out["parsing"][0])
    paths = _write(out_dir, {"output": image}, {"output_parsing": parsing})
    target_panel = target_image if target_image is not None else np.zeros(tuple(target_shape) + (3,), np.uint8)
    fig = figures.side_by_side([[
        (f"source {source.label}", source.image),
        ("source pose", source.image, source.keypoints),
        _layout("source parsing", source.parsing),
        (f"target pose {target_label}", target_panel, tgt),
        _layout("predicted parsing", parsing),
        ("output", image),
    ]])  # fmt: skip
    paths["figure"] = os.path.join(out_dir, "figure.png")
    formats.write_image(paths["figure"], fig)
    logging.info("pose-transfer: wrote %s", ", ".join(paths.values()))
    return {"image": image, "parsing": parsing, "paths": paths}


def texture_transfer(backend, a: Person, b: Person, out_dir: str) -> dict:
    """A's appearance on B's layout (parsing and pose) and the reverse, in one batch of two.

    Returns:
      dict: ``a_on_b`` u8 in B's frame, ``b_on_a`` u8 in A's frame, ``paths``
      (``a_on_b``, ``b_on_a``, ``figure``).
    """
    if a.parsing is None or b.parsing is None:
        raise ValueError("texture transfer needs both people's parsing maps")
    lb_a, img_a, par_a, kp_a = _to_model(backend, a)
    lb_b, img_b, par_b, kp_b = _to_model(backend, b)
    out = backend.render(np.stack([img_a, img_b]), np.stack([par_a, par_b]), np.stack([kp_a, kp_b]),
                         np.stack([kp_b, kp_a]), np.stack([par_b, par_a]))  # fmt: skip
    a_on_b, b_on_a = lb_b.undo_image(out[0]), lb_a.undo_image(out[1])
    paths = _write(out_dir, {"a_on_b": a_on_b, "b_on_a": b_on_a}, {})
    fig = figures.side_by_side([
        [(f"A {a.label}", a.image), _layout("layout of B", b.parsing, b.keypoints), ("A on B's layout", a_on_b)],
        [(f"B {b.label}", b.image), _layout("layout of A", a.parsing, a.keypoints), ("B on A's layout", b_on_a)],
    ])  # fmt: skip
    paths["figure"] = os.path.join(out_dir, "figure.png")
    formats.write_image(paths["figure"], fig)
    logging.info("texture-transfer: wrote %s", ", ".join(paths.values()))
    return {"a_on_b": a_on_b, "b_on_a": b_on_a, "paths": paths}


def edit_parsing(person: Person, sleeves: str | None = None, lower: str | None = None,
                 labels_path: str | None = None, image_path: str = "the image") -> np.ndarray:  # fmt: skip
    """The edited parsing: the painted map (if any), then the sleeve edit, then the lower-garment edit."""
    if not (sleeves or lower or labels_path):
        raise parsing_lib.EditError("edit: choose at least one of --sleeves, --lower, --labels")
    edited = person.parsing
    if labels_path:
        edited = parsing_lib.read_label_edit(labels_path, person.shape, image_path)
    if sleeves:
        edited = parsing_lib.set_sleeves(edited, person.keypoints, sleeves)
    if lower:
        edited = parsing_lib.set_lower(edited, person.keypoints, lower)
    return edited


def edit(backend, person: Person, out_dir: str, sleeves: str | None = None, lower: str | None = None,
         labels_path: str | None = None, edited_parsing: np.ndarray | None = None) -> dict:  # fmt: skip
    """Renders ``person`` in the same pose with an edited parsing map (paper Fig. 9).

    One batch of two ``render`` calls: the edited map and, for comparison, the
    original (the reconstruction), both with source pose = target pose.

    Args:
      backend: a :class:`spt_tf.predictor.Predictor`.
      person: the person (with parsing).
      out_dir: output folder.
      sleeves, lower, labels_path: the edits (:func:`edit_parsing`).
      edited_parsing: the already edited uint8 ``[h, w]`` map; the edits then
        only name it in the figure.

    Returns:
      dict: ``image`` (edited render), ``reconstruction``, ``edited_parsing``
      (all at the photo's size), ``changed_pixels``, ``paths``
      (``output``, ``reconstruction``, ``edited_parsing``, ``edited_parsing_color``, ``figure``).
    """
    if person.parsing is None:
        raise ValueError("edit needs the person's parsing")
    if edited_parsing is None:
        edited = edit_parsing(person, sleeves, lower, labels_path, person.label)
    else:
        edited = np.asarray(edited_parsing, np.uint8)
        if edited.shape != person.shape:
            raise ValueError(f"edited parsing has size {edited.shape}, the photo {person.shape}")
    changed = int((edited != person.parsing).sum())
    if changed == 0:
        logging.warning("edit: the edited map equals the original; the output is the reconstruction")
    lb, img, par, kp = _to_model(backend, person)
    out = backend.render(np.stack([img, img]), np.stack([par, par]), np.stack([kp, kp]), np.stack([kp, kp]),
                         np.stack([lb.labels(edited), par]))  # fmt: skip
    image, recon = lb.undo_image(out[0]), lb.undo_image(out[1])
    paths = _write(out_dir, {"output": image, "reconstruction": recon}, {"edited_parsing": edited})
    what = ", ".join(
        f"{k} {v}"
        for k, v in (("sleeves", sleeves), ("lower", lower), ("labels", labels_path and os.path.basename(labels_path)))
        if v
    )
    what = what or "given map"
    fig = figures.side_by_side([[
        (f"source {person.label}", person.image),
        ("pose", person.image, person.keypoints),
        _layout("parsing", person.parsing),
        _layout(f"edited: {what}", edited),
        ("reconstruction", recon),
        ("edited output", image),
    ]])  # fmt: skip
    paths["figure"] = os.path.join(out_dir, "figure.png")
    formats.write_image(paths["figure"], fig)
    logging.info("edit: %d label pixels changed; wrote %s", changed, ", ".join(paths.values()))
    return {"image": image, "reconstruction": recon, "edited_parsing": edited, "changed_pixels": changed,
            "paths": paths}  # fmt: skip
