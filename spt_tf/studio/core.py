"""The studio's logic without HTTP: people, the three renders, and reproducible bundles.

A :class:`Studio` holds a predictor (:mod:`spt_tf.predictor`: a SavedModel or a
workdir, the serving signatures), an optional human parser, an optional dataset
(its test images, annotation CSV and parsing maps), and two bounded stores: the
people loaded (a :class:`spt_tf.apps.commands.Person` each, at its photo's size)
and the latest results (what a download bundle needs).

Everything a person goes through is the apps' code: files are read by
:func:`spt_tf.apps.commands.load_person` (OpenPose JSON, annotation CSV rows,
SPT-10 / LIP-20 maps, the pose detector P, the human parser), photos are
letterboxed by :mod:`spt_tf.apps.resize`, edits are
:func:`spt_tf.apps.parsing.set_sleeves` / :func:`~spt_tf.apps.parsing.set_lower`.
Each render makes exactly the predictor call of the matching CLI subcommand
(same batch, same letterbox), so the command written into its bundle gives the
same bytes:

* pose: ``pose_transfer`` on one person, the target pose in the source photo's
  frame (``python -m spt_tf.apps pose-transfer ... --target_openpose_json``);
* edit: ``render`` of the edited map and the original, source pose = target
  pose (``python -m spt_tf.apps edit ... --labels edited_parsing.png``);
* texture: ``render`` of A on B's layout and B on A's
  (``python -m spt_tf.apps texture-transfer``); a single garment is then B's
  render inside that label of A's parsing over A's photo
  (:func:`spt_tf.studio.garment.compose`, ``python -m spt_tf.studio.garment``).

Bad input raises :class:`StudioError` whose message names the file or the
field, as the apps' errors do; uploaded files are named by their own file name.
Importing this module loads no TensorFlow (the predictor passed in does).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import os
import re
import shutil
import tempfile
import threading
import time
import uuid

import cv2
import numpy as np

from spt_tf import labels
from spt_tf.apps import commands, resize
from spt_tf.apps import keypoints as kp_lib
from spt_tf.apps import parsing as parsing_lib
from spt_tf.data import formats
from spt_tf.skeleton import KEYPOINT_NAMES, MISSING, NUM_KEYPOINTS
from spt_tf.studio import garment

# Photos with a longer side are refused: the edits and the page's canvases work at
# the photo's size (the model sees the letterboxed photo whatever its size).
DEFAULT_MAX_SIDE = 2048
# The stores keep this many people / results (oldest dropped first).
MAX_PEOPLE = 64
MAX_RESULTS = 64
GARMENT_ALL = "all"
# A standing person, (y, x) in a unit frame, COCO-18 order: the warm-up call's pose.
STANDING = ((0.12, 0.5), (0.22, 0.5), (0.22, 0.3), (0.38, 0.25), (0.52, 0.22), (0.22, 0.7), (0.38, 0.75),
            (0.52, 0.78), (0.52, 0.38), (0.72, 0.38), (0.92, 0.38), (0.52, 0.62), (0.72, 0.62), (0.92, 0.62),
            (0.1, 0.55), (0.1, 0.45), (0.11, 0.6), (0.11, 0.4))  # fmt: skip
MODES = ("pose", "edit", "texture")


class StudioError(ValueError):
    """Bad input: the message names the file or the request field. ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Upload:
    """A file sent by the page: its base name and its bytes."""

    name: str
    data: bytes


@dataclasses.dataclass
class Record:
    """A loaded person and where its inputs came from (for the bundle's JSON)."""

    id: str
    person: commands.Person
    keypoints_from: str
    parsing_from: str | None
    _model_inputs: tuple | None = None


@dataclasses.dataclass
class Result:
    """One render: its inputs (to write the bundle) and its outputs."""

    id: str
    mode: str
    source: Record
    output: np.ndarray  # uint8 [h, w, 3], the image shown
    output_png: bytes
    images: dict  # file name -> uint8 [h, w, 3] written to the bundle (output.png included)
    label_maps: dict  # file name -> uint8 [h, w] labels written to the bundle
    model_ms: float
    server_ms: float = 0.0
    target_keypoints: np.ndarray | None = None
    edited_parsing: np.ndarray | None = None
    changed_pixels: int | None = None
    donor: Record | None = None
    garment: str | None = None
    extras: list = dataclasses.field(default_factory=list)  # (caption, PNG bytes) shown beside the output


def encode_png(rgb: np.ndarray) -> bytes:
    """uint8 RGB ``[h, w, 3]`` -> PNG bytes, the encoding of :func:`spt_tf.data.formats.write_image`."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("OpenCV cannot encode the image as PNG")
    return buf.tobytes()


def encode_label_png(lab: np.ndarray) -> bytes:
    """uint8 labels ``[h, w]`` -> single-channel PNG bytes, as :func:`spt_tf.data.formats.write_parsing`."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(lab, np.uint8))
    if not ok:
        raise ValueError("OpenCV cannot encode the label map as PNG")
    return buf.tobytes()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def safe_name(name: str, default: str = "upload") -> str:
    """A file's base name reduced to safe characters (the name errors and bundles use)."""
    base = os.path.basename(str(name or "").replace("\\", "/")).strip()
    base = re.sub(r"[^A-Za-z0-9._+-]", "_", base)[:120].lstrip(".")
    return base or default


class Dataset:
    """A dataset's test split: images, annotation CSV and parsing maps (``spt_tf.data.formats``).

    Args:
      root: the data root (e.g. ``runs/demo/data``).
      data_config: the config's ``data`` block (folder and file names, ``parsing_is_lip``),
        or None for the defaults of ``configs/base.py``.
    """

    def __init__(self, root: str, data_config=None):
        get = (lambda k, d: data_config.get(k, d)) if data_config is not None else (lambda k, d: d)  # noqa: E731
        self.root = os.fspath(root)
        self.images = formats.resolve(self.root, get("test_images", "test"))
        self.csv = formats.resolve(self.root, get("annotations_test", "annotation-test.csv"))
        self.parsing_dir = formats.resolve(self.root, get("parsing_dir", "parsing"))
        self.parsing_is_lip = bool(get("parsing_is_lip", False))
        if not os.path.isdir(self.images):
            raise StudioError(f"{self.images}: the dataset's test image folder is missing (--data_dir)")
        try:
            rows = formats.read_annotations(self.csv)
        except formats.FormatError as e:
            raise StudioError(f"dataset: {e}") from None
        present = set(os.listdir(self.images))
        self.names = [n for n in rows if n in present]

    def paths(self, name: str) -> tuple[str, str]:
        if name not in self.names:
            raise StudioError(f"dataset: no test image {name!r} in {self.images} with a row in {self.csv}")
        try:
            parsing = formats.find_parsing(self.parsing_dir, name)
        except formats.FormatError as e:
            raise StudioError(str(e)) from None
        return os.path.join(self.images, name), parsing


class Studio:
    """The studio's state and operations; thread-safe (one model call at a time).

    Args:
      predictor: a :class:`spt_tf.predictor.Predictor` (or anything with its
        ``size``, ``pose_transfer``, ``render``, ``can_detect``, ``detect_heatmaps``).
      model_args: the CLI arguments that load the same model, e.g.
        ``["--model", DIR]`` or ``["--workdir", W, "--config", C]`` (bundles' commands).
      dataset: a :class:`Dataset`, or None.
      parser: a human parser (``size``, ``parse_labels``), or None: the predictor's when it has one.
      max_side: photos with a longer side are refused.
    """

    def __init__(self, predictor, model_args: list[str], dataset: Dataset | None = None, parser=None,
                 max_side: int = DEFAULT_MAX_SIDE, max_request_bytes: int = 20 << 20):  # fmt: skip
        self.predictor = predictor
        self.model_args = [str(a) for a in model_args]
        self.dataset = dataset
        if parser is None and getattr(predictor, "can_parse", False):
            parser = predictor.parser
        self.parser = parser
        self.max_side = int(max_side)
        self.max_request_bytes = int(max_request_bytes)
        self._people: collections.OrderedDict[str, Record] = collections.OrderedDict()
        self._results: collections.OrderedDict[str, Result] = collections.OrderedDict()
        self._lock = threading.Lock()  # the stores
        self._model_lock = threading.Lock()  # one model call at a time

    # ---------------------------------------------------------------- info

    @property
    def can_detect(self) -> bool:
        return bool(getattr(self.predictor, "can_detect", False))

    def info(self) -> dict:
        from spt_tf.apps import figures
        from spt_tf.skeleton import SKELETON

        h, w = self.predictor.size
        return {
            "model": {"kind": getattr(self.predictor, "kind", "model"), "source": getattr(self.predictor, "source", ""),
                      "height": int(h), "width": int(w)},
            "can_detect": self.can_detect,
            "can_parse": self.parser is not None,
            "labels": list(labels.SPT_LABELS),
            "palette": labels.PALETTE.tolist(),
            "keypoint_names": list(KEYPOINT_NAMES),
            "required_keypoints": list(kp_lib.REQUIRED),
            "skeleton": [list(p) for p in SKELETON],
            "link_colours": [list(c) for c in figures.LINK_COLOURS],
            "dataset": None if self.dataset is None else {"root": self.dataset.root, "names": self.dataset.names},
            "garments": [GARMENT_ALL, *labels.SPT_LABELS[1:]],
            "sleeves": list(parsing_lib.SLEEVES),
            "lowers": list(parsing_lib.LOWERS),
            "max_request_bytes": self.max_request_bytes,
            "max_side": self.max_side,
        }  # fmt: skip

    # ---------------------------------------------------------------- people

    def person_json(self, rec: Record) -> dict:
        p = rec.person
        return {
            "id": rec.id, "name": p.label, "height": p.shape[0], "width": p.shape[1],
            "image": data_url(encode_png(p.image)),
            "keypoints": np.asarray(p.keypoints, np.float64).tolist(),
            "parsing": None if p.parsing is None else base64.b64encode(p.parsing.tobytes()).decode("ascii"),
            "keypoints_from": rec.keypoints_from, "parsing_from": rec.parsing_from,
        }  # fmt: skip

    def _store(self, store: collections.OrderedDict, key: str, value, limit: int):
        with self._lock:
            store[key] = value
            while len(store) > limit:
                store.popitem(last=False)

    def person(self, person_id, field: str = "person") -> Record:
        with self._lock:
            rec = self._people.get(str(person_id))
        if rec is None:
            raise StudioError(f"{field}: unknown person {person_id!r} (load the person again: the studio keeps "
                              f"the latest {MAX_PEOPLE})", 404)  # fmt: skip
        return rec

    def _check_size(self, person: commands.Person, name: str):
        h, w = person.shape
        if max(h, w) > self.max_side:
            raise StudioError(f"{name}: the photo is {h}x{w} pixels; the studio takes photos up to {self.max_side} "
                              "pixels a side (--max_side): downscale it, with its keypoints and parsing")  # fmt: skip

    def _new_record(self, person, keypoints_from, parsing_from) -> Record:
        rec = Record(uuid.uuid4().hex[:12], person, keypoints_from, parsing_from)
        self._store(self._people, rec.id, rec, MAX_PEOPLE)
        return rec

    def load_dataset_person(self, name: str, need_parsing: bool = True) -> Record:
        """A test image of the dataset with its CSV row and its parsing map."""
        if self.dataset is None:
            raise StudioError(
                "dataset: none given; start the studio with --data_dir (or a config whose data root exists)"
            )
        image_path, parsing_path = self.dataset.paths(str(name))
        source = commands.KeypointSource(csv=self.dataset.csv, name=str(name))
        lip = self.dataset.parsing_is_lip
        try:
            person = commands.load_person(image_path, source, None if lip else parsing_path,
                                          parsing_path if lip else None, need_parsing=need_parsing)  # fmt: skip
        except ValueError as e:
            raise StudioError(str(e)) from None
        self._check_size(person, name)
        what = "LIP map {} (converted)" if lip else "SPT map {}"
        return self._new_record(person, f"annotation CSV {os.path.basename(self.dataset.csv)} row {name!r}",
                                what.format(os.path.basename(parsing_path)))  # fmt: skip

    def load_upload_person(self, image: Upload | None, keypoints: Upload | None = None, csv_row: str | None = None,
                           parsing: Upload | None = None, parsing_format: str = "spt", person_index: int | None = None,
                           need_parsing: bool = True, role: str = "source") -> Record:  # fmt: skip
        """A person from uploaded files, read by the apps' readers.

        Keypoints: an OpenPose ``.json`` (``person_index`` picks one of several), an
        annotation ``.csv`` (row ``csv_row``, default the photo's name), else the pose
        detector P when the model has one. Parsing: an SPT-10 (``.png``/``.npy``) or a
        LIP-20 map (``parsing_format="lip"``), else the human parser when there is one.
        """
        if image is None:
            raise StudioError("image: no photo uploaded")
        if parsing_format not in ("spt", "lip"):
            raise StudioError(f"parsing_format: must be 'spt' or 'lip', got {parsing_format!r}")
        tmp = tempfile.mkdtemp(prefix="spt_studio_")
        try:

            def save(upload: Upload, default: str) -> str:
                path = os.path.join(tmp, safe_name(upload.name, default))
                if os.path.exists(path):  # two uploads of one name: keep both
                    stem, ext = os.path.splitext(path)
                    path = f"{stem}_{len(os.listdir(tmp))}{ext}"
                with open(path, "wb") as f:
                    f.write(upload.data)
                return path

            image_path = save(image, "photo.png")
            image_name = os.path.basename(image_path)
            try:  # the photo first: a file that does not decode is the first thing to say
                formats.read_image(image_path)
            except formats.FormatError as e:
                raise StudioError(str(e).replace(tmp + os.sep, "")) from None
            source = commands.KeypointSource()
            if keypoints is not None:
                kp_path = save(keypoints, "keypoints.json")
                ext = os.path.splitext(kp_path)[1].lower()
                if ext == ".json":
                    source = commands.KeypointSource(openpose_json=kp_path, person=person_index)
                    kp_from = f"OpenPose JSON {os.path.basename(kp_path)}"
                elif ext == ".csv":
                    row = (csv_row or "").strip() or image.name
                    source = commands.KeypointSource(csv=kp_path, name=row)
                    kp_from = f"annotation CSV {os.path.basename(kp_path)} row {row!r}"
                else:
                    raise StudioError(f"{os.path.basename(kp_path)}: keypoints must be an OpenPose .json or an "
                                      "annotation .csv (name:keypoints_y:keypoints_x)")  # fmt: skip
            elif self.can_detect:
                source = commands.KeypointSource(detect=True)
                kp_from = "the pose detector P"
            else:
                raise StudioError(f"{image_name}: no keypoints: upload an OpenPose .json or an annotation .csv "
                                  "(this model has no pose detector P: start the studio with --workdir of a run "
                                  "whose pose_detector stage ran to detect them)")  # fmt: skip
            parser = None
            parsing_path = lip_path = None
            if parsing is not None:
                path = save(parsing, "parsing.png")
                if parsing_format == "lip":
                    lip_path, parsing_from = path, f"LIP map {os.path.basename(path)} (converted)"
                else:
                    parsing_path, parsing_from = path, f"SPT map {os.path.basename(path)}"
            elif self.parser is not None:
                parser, parsing_from = self.parser, "the human parser"
            elif need_parsing:
                raise StudioError(f"{image_name}: no parsing map: upload an SPT-10 (.png/.npy) or LIP-20 (.png) map "
                                  "(this model has no human parser: start the studio with --parser_workdir, or "
                                  "--workdir of a run whose parser stage ran)")  # fmt: skip
            else:
                parsing_from = None
            try:
                with self._model_lock:  # P and the parser are models too
                    person = commands.load_person(image_path, source, parsing_path, lip_path,
                                                  need_parsing=need_parsing, backend=self.predictor,
                                                  role=role, parser=parser)  # fmt: skip
            except ValueError as e:
                raise StudioError(str(e).replace(tmp + os.sep, "")) from None
            self._check_size(person, image_name)
            return self._new_record(person, kp_from, parsing_from)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def pose_of(self, person_id: str, other_id: str) -> np.ndarray:
        """The other person's keypoints in this person's photo frame (through the model's letterbox).

        Both photos map to the model's frame as the apps letterbox them; the other's
        pose there is undone to this photo. Same-size photos keep the keypoints as
        they are; joints that land outside this photo are clipped to its border.
        """
        rec, other = self.person(person_id), self.person(other_id, "other")
        kp = np.asarray(other.person.keypoints, np.float32).copy()
        if other.person.shape != rec.person.shape:
            size = self.predictor.size
            kp = resize.fit(rec.person.shape, size).undo_keypoints(resize.fit(other.person.shape, size).keypoints(kp))
            h, w = rec.person.shape
            present = ~np.any(kp == MISSING, axis=-1)
            kp[present] = np.clip(kp[present], 0.0, [h - 1, w - 1])
        return kp

    # ---------------------------------------------------------------- model calls

    def warm_up(self) -> float:
        """Runs each signature once on a standing pose (the first call of a loaded model
        builds its graph); returns the seconds it took."""
        h, w = self.predictor.size
        kp = (np.asarray(STANDING, np.float32) * [h - 1, w - 1])[None]
        img = np.zeros((1, h, w, 3), np.uint8)
        par = np.zeros((1, h, w), np.uint8)
        t = time.perf_counter()
        self._call(self.predictor.pose_transfer, img, par, kp, kp)
        self._call(self.predictor.render, *(np.concatenate([x, x]) for x in (img, par, kp, kp, par)))
        return time.perf_counter() - t

    def _call(self, fn, *args):
        with self._model_lock:
            t = time.perf_counter()
            out = fn(*args)
            return out, (time.perf_counter() - t) * 1e3

    def _model_inputs(self, rec: Record):
        """The person letterboxed to the model (cached: the person's inputs never change)."""
        if rec._model_inputs is None:
            p = rec.person
            lb = resize.fit(p.shape, self.predictor.size)
            rec._model_inputs = (lb, lb.image(p.image), lb.labels(p.parsing), lb.keypoints(p.keypoints))
        return rec._model_inputs

    def _need_parsing(self, rec: Record, who: str):
        if rec.person.parsing is None:
            raise StudioError(f"{who} {rec.person.label}: no parsing map (load the person with one)")

    def _finish(self, result: Result) -> Result:
        self._store(self._results, result.id, result, MAX_RESULTS)
        return result

    def pose(self, person_id: str, target_keypoints) -> Result:
        """Re-poses the person into ``target_keypoints`` (``[18, 2]`` (y, x) in its photo's pixels)."""
        rec = self.person(person_id)
        self._need_parsing(rec, "source")
        tgt = _keypoints_field(target_keypoints, "target_keypoints")
        what = f"target pose (field target_keypoints, {rec.person.label})"
        try:
            tgt = kp_lib.check_keypoints(tgt, what)
            commands.check_in_image(tgt, rec.person.shape, what)
        except ValueError as e:
            raise StudioError(str(e)) from None
        lb, img, par, kp = self._model_inputs(rec)
        out, ms = self._call(self.predictor.pose_transfer, img[None], par[None], kp[None], lb.keypoints(tgt)[None])
        image, parsing = lb.undo_image(out["image"][0]), lb.undo_labels(out["parsing"][0])
        png = encode_png(image)
        return self._finish(Result(
            uuid.uuid4().hex[:12], "pose", rec, image, png, {"output.png": image}, {"output_parsing.png": parsing},
            ms, target_keypoints=tgt, extras=[("parsing predicted by H_S", encode_png(labels.colorize(parsing)))],
        ))  # fmt: skip

    def edit_preset(self, person_id: str, parsing, sleeves: str | None = None, lower: str | None = None) -> np.ndarray:
        """The apps' sleeve / lower-garment edit applied to ``parsing`` (the map being painted)."""
        rec = self.person(person_id)
        lab = _parsing_field(parsing, rec.person.shape, "parsing")
        try:
            if sleeves:
                if sleeves not in parsing_lib.SLEEVES:
                    raise StudioError(f"sleeves: must be one of {', '.join(parsing_lib.SLEEVES)}, got {sleeves!r}")
                lab = parsing_lib.set_sleeves(lab, rec.person.keypoints, sleeves)
            if lower:
                if lower not in parsing_lib.LOWERS:
                    raise StudioError(f"lower: must be one of {', '.join(parsing_lib.LOWERS)}, got {lower!r}")
                lab = parsing_lib.set_lower(lab, rec.person.keypoints, lower)
        except StudioError:
            raise
        except ValueError as e:
            raise StudioError(str(e)) from None
        return lab

    def edit(self, person_id: str, edited_parsing) -> Result:
        """Renders the person in its own pose with ``edited_parsing`` (and the original, for comparison)."""
        rec = self.person(person_id)
        self._need_parsing(rec, "source")
        edited = _parsing_field(edited_parsing, rec.person.shape, "edited_parsing")
        lb, img, par, kp = self._model_inputs(rec)
        out, ms = self._call(self.predictor.render, np.stack([img, img]), np.stack([par, par]), np.stack([kp, kp]),
                             np.stack([kp, kp]), np.stack([lb.labels(edited), par]))  # fmt: skip
        image, recon = lb.undo_image(out[0]), lb.undo_image(out[1])
        return self._finish(Result(
            uuid.uuid4().hex[:12], "edit", rec, image, encode_png(image),
            {"output.png": image, "reconstruction.png": recon}, {"edited_parsing.png": edited}, ms,
            edited_parsing=edited, changed_pixels=int((edited != rec.person.parsing).sum()),
            extras=[("reconstruction (original map)", encode_png(recon))],
        ))  # fmt: skip

    def texture(self, person_id: str, donor_id: str, garment_label: str = GARMENT_ALL) -> Result:
        """The source wearing the donor's garment ``garment_label`` (or all of its appearance).

        One ``render`` batch, as ``texture-transfer``: the source's appearance on the
        donor's layout and the donor's on the source's; the output is the latter
        inside the garment's label of the source's parsing, the source's photo elsewhere.
        """
        a, b = self.person(person_id), self.person(donor_id, "donor")
        self._need_parsing(a, "source")
        self._need_parsing(b, "second person")
        if garment_label != GARMENT_ALL and garment_label not in labels.SPT_LABELS:
            raise StudioError(f"garment: must be {GARMENT_ALL!r} or one of {', '.join(labels.SPT_LABELS)}, "
                              f"got {garment_label!r}")  # fmt: skip
        if garment_label != GARMENT_ALL and not (a.person.parsing == labels.SPT_LABELS.index(garment_label)).any():
            raise StudioError(f"garment: the source {a.person.label} has no {garment_label} pixels in its parsing")
        lb_a, img_a, par_a, kp_a = self._model_inputs(a)
        lb_b, img_b, par_b, kp_b = self._model_inputs(b)
        out, ms = self._call(self.predictor.render, np.stack([img_a, img_b]), np.stack([par_a, par_b]),
                             np.stack([kp_a, kp_b]), np.stack([kp_b, kp_a]), np.stack([par_b, par_a]))  # fmt: skip
        a_on_b, b_on_a = lb_b.undo_image(out[0]), lb_a.undo_image(out[1])
        if garment_label == GARMENT_ALL:
            image = b_on_a
        else:
            image = garment.compose(a.person.image, a.person.parsing, b_on_a, labels.SPT_LABELS.index(garment_label))
        extras = [] if garment_label == GARMENT_ALL else [("second person's appearance on the source's layout",
                                                           encode_png(b_on_a))]  # fmt: skip
        extras.append(("source's appearance on the second person's layout", encode_png(a_on_b)))
        return self._finish(Result(
            uuid.uuid4().hex[:12], "texture", a, image, encode_png(image),
            {"output.png": image, "b_on_a.png": b_on_a, "a_on_b.png": a_on_b}, {}, ms, donor=b,
            garment=garment_label, extras=extras,
        ))  # fmt: skip

    def result(self, result_id: str) -> Result:
        with self._lock:
            res = self._results.get(str(result_id))
        if res is None:
            raise StudioError(f"result {result_id!r} not found (the studio keeps the latest {MAX_RESULTS})", 404)
        return res

    def result_json(self, res: Result) -> dict:
        return {
            "id": res.id, "mode": res.mode, "image": data_url(res.output_png),
            "extras": [{"caption": c, "image": data_url(png)} for c, png in res.extras],
            "model_ms": round(res.model_ms, 3), "server_ms": round(res.server_ms, 3),
            "changed_pixels": res.changed_pixels,
            "bundle": f"/api/result/{res.id}/bundle.zip", "output": f"/api/result/{res.id}/output.png",
            "target_keypoints": None if res.target_keypoints is None else res.target_keypoints.tolist(),
        }  # fmt: skip


# ---------------------------------------------------------------- request fields


def _keypoints_field(value, field: str) -> np.ndarray:
    """``[18, 2]`` (y, x) from JSON (``null`` or ``-1`` for a missing joint; or an array, from Python)."""
    if isinstance(value, np.ndarray):
        value = value.astype(np.float64).tolist()
    if not isinstance(value, list) or len(value) != NUM_KEYPOINTS:
        raise StudioError(f"{field}: expected a list of {NUM_KEYPOINTS} [y, x] pairs (COCO-18 order, -1 missing)")
    out = np.full((NUM_KEYPOINTS, 2), MISSING, np.float32)
    for i, v in enumerate(value):
        if v is None:
            continue
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                              for c in v)):  # fmt: skip
            raise StudioError(f"{field}[{i}] ({KEYPOINT_NAMES[i]}): expected [y, x] numbers, got {v!r}")
        if not all(np.isfinite(v)):
            raise StudioError(f"{field}[{i}] ({KEYPOINT_NAMES[i]}): non-finite coordinates")
        out[i] = v
    missing = np.any(out == MISSING, axis=-1)
    out[missing] = MISSING  # a joint missing in one coordinate is missing
    return out


def _parsing_field(value, shape: tuple[int, int], field: str) -> np.ndarray:
    """uint8 ``[h, w]`` labels from base64 of the raw bytes (row-major; or an array, from Python),
    checked against the photo."""
    if isinstance(value, np.ndarray):
        if value.shape != tuple(shape) or value.dtype.kind not in "iu":
            raise StudioError(
                f"{field}: expected integer labels of shape {tuple(shape)}, got {value.dtype} {value.shape}"
            )
        value = base64.b64encode(np.clip(value, 0, 255).astype(np.uint8).tobytes()).decode("ascii")
    if not isinstance(value, str):
        raise StudioError(f"{field}: expected base64 of the {shape[0]}x{shape[1]} label bytes")
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise StudioError(f"{field}: not base64") from None
    h, w = shape
    if len(raw) != h * w:
        raise StudioError(f"{field}: {len(raw)} labels, the photo has {h}x{w} = {h * w} pixels")
    lab = np.frombuffer(raw, np.uint8).reshape(h, w).copy()
    if lab.max(initial=0) >= labels.NUM_LABELS:
        bad = int(lab[lab >= labels.NUM_LABELS][0])
        raise StudioError(f"{field}: label {bad} out of range 0..{labels.NUM_LABELS - 1}")
    return lab
