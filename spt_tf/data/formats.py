"""Readers and writers of the on-disk dataset formats, with strict validation.

Formats (``docs/data.md`` has the full layouts):

* Annotation CSV: separator ``:``, header ``name:keypoints_y:keypoints_x``,
  one row per image ``name: [y0, ..., y17]: [x0, ..., x17]`` (JSON-like lists
  of 18 numbers in COCO-18 order, ``-1`` for a missing joint).
* Pairs CSV: comma separated, header containing ``from`` and ``to`` (extra
  columns, such as a pandas index, are allowed and ignored).
* Name lists: one image name per line, no header (the split files
  ``train.lst`` / ``test.lst`` of the field's DeepFashion split).
* Parsing maps: ``<stem>.png`` (single channel uint8) or ``<stem>.npy``
  (2-D integer array), one label per pixel.
* Images: anything OpenCV decodes; returned as uint8 RGB.

Every reader raises :class:`FormatError` naming the file, the row (1-based
line number in the file, the header being line 1) and the field. Readers of
row formats accept ``skip_invalid=True``: bad rows are then skipped, but each
one is appended (as a :class:`FormatError`) to the ``report`` list when given,
and their count is logged as a warning, so no row disappears unnoticed.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Container, Iterable, Mapping, Sequence

import cv2
import numpy as np

NUM_KEYPOINTS = 18  # COCO-18, as spt_tf.geometry.KEYPOINT_NAMES
ANNOTATION_HEADER = ("name", "keypoints_y", "keypoints_x")
MISSING = -1.0
# The field's 256x176 DeepFashion annotations are its 256x256 ones with x - 40
# (the crop of 40 columns on each side), unclipped and with -1 kept: a point of
# the 256-wide frame lands at most 40 px outside [0, 175]. Reading such a file
# with this tolerance keeps those points as they are (docs/data.md).
DEEPFASHION_176_TOLERANCE = 40.0

_log = logging.getLogger(__name__)


class FormatError(ValueError):
    """Bad dataset input. The message names the file, the row and the field.

    Attributes:
      path: the offending file.
      row: 1-based line number in the file (header = 1), or None.
      field: the column / field name, or None.
    """

    def __init__(self, path, message: str, row: int | None = None, field: str | None = None):
        self.path = os.fspath(path)
        self.row = row
        self.field = field
        where = self.path
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")


def _report_skipped(path, errors: list[FormatError], report: list | None, what: str) -> None:
    if report is not None:
        report.extend(errors)
    if errors:
        _log.warning(
            "%s: skipped %d invalid %s (skip_invalid=True); first: %s",
            os.fspath(path),
            len(errors),
            what,
            errors[0],
        )


def _read_lines(path) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise FormatError(path, "file not found") from None
    except IsADirectoryError:
        raise FormatError(path, "is a directory, expected a file") from None
    except UnicodeDecodeError as e:
        raise FormatError(path, f"not UTF-8 text ({e})") from None


# ------------------------------------------------------------------ annotations


def _parse_list(path, row: int, field: str, text: str) -> list[float]:
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise FormatError(path, f"expected a list like [y0, ..., y17], got {text[:40]!r}", row, field)
    body = text[1:-1].strip()
    items = [s.strip() for s in body.split(",")] if body else []
    values = []
    for i, item in enumerate(items):
        try:
            v = float(item)
        except ValueError:
            raise FormatError(path, f"value {i} is not a number: {item!r}", row, field) from None
        if not math.isfinite(v):
            raise FormatError(path, f"value {i} is not finite: {item!r}", row, field)
        values.append(v)
    if len(values) != NUM_KEYPOINTS:
        raise FormatError(path, f"expected {NUM_KEYPOINTS} keypoints, got {len(values)}", row, field)
    return values


def _parse_annotation_row(path, row: int, line: str, image_size, tolerance: float):
    parts = line.rsplit(":", 2)
    if len(parts) != 3:
        raise FormatError(path, f"expected 3 ':'-separated fields, got {len(parts)}", row)
    name = parts[0].strip()
    if not name:
        raise FormatError(path, "empty name", row, "name")
    ys = _parse_list(path, row, "keypoints_y", parts[1])
    xs = _parse_list(path, row, "keypoints_x", parts[2])
    kp = np.array([ys, xs], dtype=np.float32).T  # [18, 2] (y, x)
    for j in range(NUM_KEYPOINTS):
        y_missing, x_missing = ys[j] == MISSING, xs[j] == MISSING
        if y_missing != x_missing:
            field = "keypoints_x" if y_missing else "keypoints_y"
            raise FormatError(
                path,
                f"keypoint {j} is missing in one coordinate only (y={ys[j]:g}, x={xs[j]:g})",
                row,
                field,
            )
        if y_missing:
            continue
        limits = (None, None) if image_size is None else image_size
        for field, v, size in (("keypoints_y", ys[j], limits[0]), ("keypoints_x", xs[j], limits[1])):
            if v < -tolerance or (size is not None and v > size - 1 + tolerance):
                bound = "" if size is None else f" [0, {size - 1}]"
                raise FormatError(
                    path,
                    f"keypoint {j} coordinate {v:g} is outside the image{bound} by more than "
                    f"the tolerance {tolerance:g} (a file whose points may lie farther out, such "
                    f"as the field's 256x176 DeepFashion annotations, needs a larger tolerance: "
                    f"formats.DEEPFASHION_176_TOLERANCE; in a run, data.keypoint_tolerance)",
                    row,
                    field,
                )
    return name, kp


def read_annotations(
    path,
    image_size: tuple[int, int] | None = None,
    tolerance: float = 2.0,
    skip_invalid: bool = False,
    report: list | None = None,
    rows: dict | None = None,
) -> dict[str, np.ndarray]:
    """Reads an annotation CSV ``name:keypoints_y:keypoints_x``.

    Args:
      path: the CSV file.
      image_size: optional ``(H, W)``; coordinates must then lie in
        ``[-tolerance, H - 1 + tolerance]`` (resp. ``W``). Without it only
        ``>= -tolerance`` is checked.
      tolerance: pixels a keypoint may lie outside the image. A point within
        it is kept as it is, not clipped (the pose maps and part transforms
        of ``spt_tf.geometry`` take points outside the image as they are, as
        the field's loaders do); a point beyond it refuses the row. The
        field's 256x176 DeepFashion files need ``DEEPFASHION_176_TOLERANCE``.
      skip_invalid: skip bad rows instead of raising. Missing file and bad
        header still raise. Skipped rows are appended to ``report`` and their
        count is logged as a warning.
      report: optional list receiving one :class:`FormatError` per skipped row.
      rows: optional dict receiving name -> 1-based row (header = 1) of each
        row returned, for checks made later that name the row (e.g. against
        an image size known only then).

    Returns:
      Insertion-ordered dict name -> float32 ``[18, 2]`` ``(y, x)`` pixels,
      ``-1`` for both coordinates of a missing joint.

    Raises:
      FormatError: missing file, bad header, wrong number of keypoints,
        non-numeric values, one coordinate missing but not the other,
        coordinates outside the image, duplicate names.
    """
    lines = _read_lines(path)
    if not lines:
        raise FormatError(path, f"empty file, expected header {':'.join(ANNOTATION_HEADER)!r}", 1)
    header = tuple(s.strip() for s in lines[0].split(":"))
    if header != ANNOTATION_HEADER:
        raise FormatError(path, f"bad header {lines[0]!r}, expected {':'.join(ANNOTATION_HEADER)!r}", 1)
    out: dict[str, np.ndarray] = {}
    first_row: dict[str, int] = {}
    errors: list[FormatError] = []
    for row, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue  # blank lines (e.g. a trailing one) hold no data
        try:
            name, kp = _parse_annotation_row(path, row, line, image_size, tolerance)
            if name in out:
                raise FormatError(path, f"duplicate name {name!r} (first on row {first_row[name]})", row, "name")
        except FormatError as e:
            if not skip_invalid:
                raise
            errors.append(e)
            continue
        out[name] = kp
        first_row[name] = row
    _report_skipped(path, errors, report, "annotation rows")
    if rows is not None:
        rows.update(first_row)
    return out


def _format_numbers(values: np.ndarray) -> str:
    """``"v0, v1, ..."``: integral values as ints, others as the shortest float32 decimal."""
    if (values == np.round(values)).all():  # the common case, fast
        return ", ".join(map(str, values.astype(np.int64).tolist()))
    return ", ".join(
        str(int(v)) if float(v).is_integer() else np.format_float_positional(v, unique=True, trim="-") for v in values
    )


def write_annotations(path, mapping: Mapping[str, np.ndarray]) -> None:
    """Writes an annotation CSV that :func:`read_annotations` reads back exactly.

    Args:
      path: output file (parent folders are created).
      mapping: name -> ``[18, 2]`` ``(y, x)`` keypoints, ``-1`` missing.
        Integral values are written as ints, others as the shortest decimal
        that reads back to the same float32.
    """
    rows = [":".join(ANNOTATION_HEADER)]
    for name, kp in mapping.items():
        if not name or name != name.strip() or any(c in name for c in ":\r\n"):
            raise ValueError(f"annotation name {name!r} must be non-empty, unpadded, without ':'")
        kp = np.asarray(kp, dtype=np.float32)
        if kp.shape != (NUM_KEYPOINTS, 2):
            raise ValueError(f"keypoints of {name!r} must be [18, 2], got {kp.shape}")
        if not np.isfinite(kp).all():
            raise ValueError(f"keypoints of {name!r} are not finite")
        rows.append(f"{name}: [{_format_numbers(kp[:, 0])}]: [{_format_numbers(kp[:, 1])}]")
    _write_text(path, "\n".join(rows) + "\n")


def _write_text(path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path, data: bytes) -> None:
    """Writes a file, creating its parent folders only when missing (no stat per file)."""
    try:
        f = open(path, "wb")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
        f = open(path, "wb")
    with f:
        f.write(data)


# ------------------------------------------------------------------ pairs


def read_pairs(
    path,
    known_names: Container[str] | None = None,
    skip_invalid: bool = False,
    report: list | None = None,
) -> list[tuple[str, str]]:
    """Reads a pairs CSV with a header containing ``from`` and ``to``.

    Args:
      path: the CSV file (comma separated; extra columns are ignored).
      known_names: optional container of valid image names; a pair naming
        another name is an error.
      skip_invalid: skip bad rows (appended to ``report``, count logged).
      report: optional list receiving one :class:`FormatError` per skipped row.
      rows: optional dict receiving name -> 1-based row (header = 1) of each
        row returned, for checks made later that name the row (e.g. against
        an image size known only then).

    Returns:
      List of ``(from, to)`` name pairs, in file order.
    """
    lines = _read_lines(path)
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise FormatError(path, "empty file, expected a header with 'from,to'", 1) from None
    for col in ("from", "to"):
        if col not in header:
            raise FormatError(path, f"header {header} lacks the column {col!r}", 1, col)
    i_from, i_to = header.index("from"), header.index("to")
    pairs: list[tuple[str, str]] = []
    errors: list[FormatError] = []
    for row, fields in enumerate(reader, start=2):
        if not fields or not any(f.strip() for f in fields):
            continue
        try:
            if len(fields) != len(header):
                raise FormatError(path, f"expected {len(header)} columns as the header, got {len(fields)}", row)
            pair = (fields[i_from].strip(), fields[i_to].strip())
            for col, name in zip(("from", "to"), pair):
                if not name:
                    raise FormatError(path, "empty name", row, col)
                if known_names is not None and name not in known_names:
                    raise FormatError(path, f"unknown image name {name!r}", row, col)
        except FormatError as e:
            if not skip_invalid:
                raise
            errors.append(e)
            continue
        pairs.append(pair)
    _report_skipped(path, errors, report, "pair rows")
    return pairs


def write_pairs(
    path,
    pairs: Iterable[tuple[str, str]],
    extra_columns: Mapping[str, Sequence] | None = None,
) -> None:
    """Writes a pairs CSV ``from,to[,extra...]``.

    Args:
      path: output file (parent folders are created).
      pairs: ``(from, to)`` names.
      extra_columns: optional column name -> one value per pair, written after
        ``from,to`` in the given order.
    """
    pairs = [tuple(p) for p in pairs]
    extra = dict(extra_columns or {})
    for col, values in extra.items():
        if col in ("from", "to"):
            raise ValueError(f"extra column {col!r} clashes with from/to")
        if len(values) != len(pairs):
            raise ValueError(f"extra column {col!r} has {len(values)} values for {len(pairs)} pairs")
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["from", "to", *extra])
        for i, pair in enumerate(pairs):
            if len(pair) != 2 or not all(isinstance(n, str) and n for n in pair):
                raise ValueError(f"pair {i} must be two non-empty names, got {pair!r}")
            writer.writerow([*pair, *(values[i] for values in extra.values())])


def read_name_list(path, known_names: Container[str] | None = None) -> list[str]:
    """Reads a list of image names, one per line, no header (``train.lst``, ``test.lst``).

    Args:
      path: the text file. Blank lines hold no name and are passed over;
        spaces around a name are not part of it.
      known_names: optional container of valid names (e.g. an annotation
        file's); a name outside it is an error.

    Returns:
      The names, in file order.

    Raises:
      FormatError: missing file, a duplicate name, a name with ``:`` or ``,``
        (the annotation and pairs formats could not hold it), an unknown name.
    """
    names: list[str] = []
    first_row: dict[str, int] = {}
    for row, line in enumerate(_read_lines(path), start=1):
        name = line.strip()
        if not name:
            continue
        if ":" in name or "," in name:
            raise FormatError(path, f"name {name!r} holds ':' or ','", row, "name")
        if name in first_row:
            message = f"duplicate name {name!r} (first on row {first_row[name]})"
            raise FormatError(path, message, row, "name")
        if known_names is not None and name not in known_names:
            raise FormatError(path, f"unknown image name {name!r}", row, "name")
        first_row[name] = row
        names.append(name)
    return names


# ------------------------------------------------------------------ parsing maps


def read_parsing(path, num_labels: int = 10, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Reads a parsing map from ``.png`` (single-channel uint8) or ``.npy``.

    Args:
      path: the file.
      num_labels: labels must lie in ``0..num_labels - 1`` (10 for SPT, 20 for
        LIP).
      shape: optional expected ``(H, W)`` (the image's size).

    Returns:
      uint8 ``[H, W]`` labels.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".npy"):
        raise FormatError(path, f"parsing maps must be .png or .npy, got {ext!r}")
    if not os.path.isfile(path):
        raise FormatError(path, "file not found")
    if ext == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise FormatError(path, f"cannot load .npy ({e})") from None
        if arr.dtype.kind not in "iub":
            raise FormatError(path, f"parsing .npy must hold integers, got dtype {arr.dtype}")
    else:
        arr = _imread(path, cv2.IMREAD_UNCHANGED)
        if arr.dtype != np.uint8:
            raise FormatError(path, f"parsing .png must be 8-bit, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise FormatError(
            path,
            f"parsing map must be single-channel [H, W], got shape {arr.shape} (a colour "
            "visualisation is not a label map)",
        )
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise FormatError(path, f"parsing shape {arr.shape} differs from the image {tuple(shape)}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= num_labels:
            bad = int(arr[(arr < 0) | (arr >= num_labels)].flat[0])
            raise FormatError(path, f"label {bad} out of range 0..{num_labels - 1} (map holds {lo}..{hi})")
    return arr.astype(np.uint8)


def write_parsing(path, labels: np.ndarray) -> None:
    """Writes a uint8 ``[H, W]`` label map losslessly (``.png``, or ``.npy`` by extension)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be uint8 [H, W], got {labels.dtype} {labels.shape}")
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        np.save(path, labels)
    elif ext == ".png":
        _imwrite(path, labels)
    else:
        raise ValueError(f"parsing maps are written as .png or .npy, got {path!r}")


# ------------------------------------------------------------------ images


def _imread(path, flags: int) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            data = np.frombuffer(f.read(), dtype=np.uint8)
    except FileNotFoundError:
        raise FormatError(path, "file not found") from None
    except IsADirectoryError:
        raise FormatError(path, "is a directory, expected an image file") from None
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise FormatError(path, "cannot decode the image (corrupt or unsupported format)")
    return img


def _imwrite(path, array: np.ndarray) -> None:
    ext = os.path.splitext(os.fspath(path))[1]
    try:
        ok, buf = cv2.imencode(ext, array)
    except cv2.error as e:
        raise ValueError(f"OpenCV cannot encode {os.fspath(path)!r}: {e}") from None
    if not ok:
        raise ValueError(f"OpenCV cannot encode {os.fspath(path)!r}")
    _write_bytes(path, buf.tobytes())


def read_image(path) -> np.ndarray:
    """Reads an image as uint8 ``[H, W, 3]`` RGB (grayscale is repeated, alpha dropped)."""
    img = _imread(path, cv2.IMREAD_COLOR)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path, rgb: np.ndarray) -> None:
    """Writes uint8 ``[H, W, 3]`` RGB; format by extension (``.png`` is lossless)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    _imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


# ------------------------------------------------------------------ paths


def resolve(root, path) -> str:
    """``path`` joined to ``root`` when relative; absolute paths (or an empty root) pass through."""
    path = os.fspath(path)
    if not root or os.path.isabs(path):
        return path
    return os.path.join(os.fspath(root), path)


def find_parsing(parsing_dir, name: str) -> str:
    """The parsing map of image ``name`` (e.g. ``foo.jpg``): ``<stem>.png`` or ``<stem>.npy``.

    Raises:
      FormatError: neither exists, or both do (which one is meant is ambiguous).
    """
    stem = os.path.splitext(name)[0]
    candidates = [os.path.join(os.fspath(parsing_dir), stem + ext) for ext in (".png", ".npy")]
    found = [c for c in candidates if os.path.isfile(c)]
    if not found:
        raise FormatError(candidates[0], f"no parsing map for image {name!r} (nor {candidates[1]})")
    if len(found) == 2:
        raise FormatError(candidates[0], f"both .png and .npy parsing maps exist for {name!r}")
    return found[0]
