"""Validation of serving requests against a loaded SavedModel's signatures.

Every expected shape and dtype comes from the loaded signature's
``structured_input_signature``; nothing about the model is hard-coded except
the input naming rules of the export contract (``docs/design.md``):

* inputs named ``*keypoints`` are float32 ``[B, 18, 2]`` ``(y, x)`` pixels:
  each joint is either missing (both coordinates exactly ``-1``) or finite and
  inside the image, give or take ``keypoint_margin`` pixels (the tolerance of
  ``spt_tf.data.formats.read_annotations``);
* inputs named ``*parsing`` are uint8 label maps ``[B, H, W]`` with labels in
  ``0 .. num_labels - 1``;
* string inputs named ``*_bytes`` hold one encoded image per example:
  ``*parsing_bytes`` an 8-bit single-channel PNG of labels, the others PNG or
  JPEG; their ``(H, W)`` must equal the model's image size.

The model's image size ``(H, W)`` is read from the static dimensions of its
uint8 image / parsing inputs (:func:`model_image_size`); batch stays dynamic.

Every failure raises :class:`RequestError`, whose message names the input; the
server answers it with ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import cv2
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from spt_tf.labels import NUM_LABELS
from spt_tf.skeleton import MISSING, NUM_KEYPOINTS

DEFAULT_KEYPOINT_MARGIN = 2.0  # pixels, as spt_tf.data.formats.read_annotations

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8"


class RequestError(ValueError):
    """A request that does not match the signature; the message names the input.

    Attributes:
      input_name: the offending input (None when the problem spans inputs).
    """

    def __init__(self, message: str, input_name: str | None = None):
        self.input_name = input_name
        prefix = f"input {input_name!r}: " if input_name is not None else ""
        super().__init__(prefix + message)


def signature_input_specs(fn) -> dict[str, tf.TensorSpec]:
    """Input name -> ``tf.TensorSpec`` of a loaded signature (a ConcreteFunction)."""
    _, kwargs = fn.structured_input_signature
    return dict(kwargs)


def signature_output_specs(fn) -> dict[str, tf.TensorSpec]:
    """Output name -> ``tf.TensorSpec`` of a loaded signature."""
    return dict(fn.structured_outputs)


def _is_keypoints(name: str) -> bool:
    return name.endswith("keypoints")


def _is_labels(name: str) -> bool:
    return name.endswith("parsing")


def _is_bytes(name: str, spec: tf.TensorSpec) -> bool:
    return spec.dtype == tf.string and name.endswith("_bytes")


def model_image_size(signatures: Mapping[str, object]) -> tuple[int, int] | None:
    """The model's image size ``(H, W)`` from its signatures' input specs.

    Args:
      signatures: signature name -> loaded ConcreteFunction.

    Returns:
      ``(H, W)`` read from the first uint8 input of rank 3 or 4 with static
      ``H`` and ``W`` (``image [B, H, W, 3]`` or ``parsing [B, H, W]``), or
      None when no signature has one (the byte signatures alone do not say).

    Raises:
      ValueError: two signatures disagree about the size.
    """
    sizes = {}
    for sig_name, fn in sorted(signatures.items()):
        for name, spec in signature_input_specs(fn).items():
            shape = spec.shape
            if spec.dtype != tf.uint8 or shape.rank not in (3, 4):
                continue
            hw = (shape[1], shape[2])
            if None not in hw:
                sizes[(sig_name, name)] = (int(hw[0]), int(hw[1]))
    distinct = set(sizes.values())
    if len(distinct) > 1:
        raise ValueError(f"signatures disagree about the image size: {sizes}")
    return distinct.pop() if distinct else None


def _dtype_name(enum: int) -> str:
    try:
        return tf.dtypes.as_dtype(enum).name
    except TypeError:
        return f"<invalid dtype enum {enum}>"


def _proto_shape(name: str, proto: tensor_pb2.TensorProto) -> tuple[int, ...]:
    if proto.tensor_shape.unknown_rank:
        raise RequestError("tensor_shape has unknown rank", name)
    dims = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if any(d < 0 for d in dims):
        raise RequestError(f"tensor_shape has a negative dimension {list(dims)}", name)
    return dims


def _check_shape(name: str, dims: tuple[int, ...], spec: tf.TensorSpec) -> None:
    want = spec.shape
    want_text = "[" + ", ".join("B" if i == 0 else str(d) for i, d in enumerate(want.as_list())) + "]"
    if len(dims) != want.rank:
        raise RequestError(f"expected rank {want.rank} {want_text}, got rank {len(dims)} shape {list(dims)}", name)
    for axis, (got, exp) in enumerate(zip(dims, want.as_list(), strict=True)):
        if exp is not None and got != exp:
            raise RequestError(
                f"expected shape {want_text}, got {list(dims)} (dimension {axis} is {got}, must be {exp})",
                name,
            )


def _check_batch(dims_by_name: Mapping[str, tuple[int, ...]], max_batch: int | None) -> int:
    batches = {name: dims[0] for name, dims in dims_by_name.items() if dims}
    if not batches:
        return 0
    distinct = sorted(set(batches.values()))
    if len(distinct) > 1:
        first = sorted(batches)[0]
        for name in sorted(batches):
            if batches[name] != batches[first]:
                raise RequestError(
                    f"batch size {batches[name]} differs from input {first!r}'s {batches[first]} "
                    f"(all batch sizes: {dict(sorted(batches.items()))})",
                    name,
                )
    batch = distinct[0]
    name = sorted(batches)[0]
    if batch < 1:
        raise RequestError("batch size must be at least 1, got 0", name)
    if max_batch is not None and batch > max_batch:
        raise RequestError(f"batch size {batch} exceeds this server's limit of {max_batch}", name)
    return batch


def _to_ndarray(name: str, proto: tensor_pb2.TensorProto, dims: tuple[int, ...]) -> np.ndarray:
    try:
        array = tf.make_ndarray(proto)
    except Exception as e:  # malformed content: make_ndarray raises several types
        raise RequestError(f"cannot decode the tensor ({type(e).__name__}: {e})", name) from None
    if tuple(array.shape) != dims:
        raise RequestError(f"tensor content has shape {list(array.shape)}, declared {list(dims)}", name)
    return array


def _check_keypoints(name: str, kp: np.ndarray, image_size, margin: float) -> None:
    finite = np.isfinite(kp)
    if not finite.all():
        b, j, c = np.argwhere(~finite)[0]
        raise RequestError(
            f"keypoints must be finite, got {kp[b, j, c]} at example {b}, joint {j}, coordinate {'yx'[c]}",
            name,
        )
    is_missing = kp == MISSING
    half = is_missing[..., 0] != is_missing[..., 1]
    if half.any():
        b, j = np.argwhere(half)[0]
        raise RequestError(
            f"joint {j} of example {b} has one coordinate -1 but not the other "
            f"({kp[b, j].tolist()}); a missing joint is (-1, -1)",
            name,
        )
    if image_size is None:
        return
    h, w = image_size
    present = ~is_missing.all(-1)
    y, x = kp[..., 0], kp[..., 1]
    bad = present & ((y < -margin) | (y > h - 1 + margin) | (x < -margin) | (x > w - 1 + margin))
    if bad.any():
        b, j = np.argwhere(bad)[0]
        raise RequestError(
            f"joint {j} of example {b} is at (y, x) = {tuple(kp[b, j].tolist())}, outside the "
            f"{h}x{w} image (margin {margin} px); a missing joint must be (-1, -1)",
            name,
        )


def _check_labels(name: str, labels: np.ndarray, num_labels: int) -> None:
    if labels.size and int(labels.max()) >= num_labels:
        bad = int(labels.max())
        b = int(np.argwhere(labels == bad)[0][0])
        raise RequestError(f"labels must be in 0..{num_labels - 1}, got {bad} in example {b}", name)


def _png_header(data: bytes):
    """(H, W, bit depth, colour type) from a PNG's IHDR chunk, or None."""
    if len(data) < 33 or not data.startswith(_PNG_MAGIC) or data[12:16] != b"IHDR":
        return None
    w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
    return h, w, depth, colour


def _jpeg_size(data: bytes):
    """(H, W) from a JPEG's first start-of-frame marker, or None."""
    if not data.startswith(_JPEG_MAGIC):
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return h, w
        i += 2 + length
    return None


def _check_encoded(name: str, values: np.ndarray, image_size, num_labels: int) -> None:
    labels = name.endswith("parsing_bytes")
    for b, data in enumerate(values.reshape(-1)):
        data = bytes(data)
        png = _png_header(data)
        if labels:
            if png is None:
                raise RequestError(f"example {b} is not a PNG (label maps must be lossless)", name)
            h, w, depth, colour = png
            if depth != 8 or colour != 0:
                raise RequestError(
                    f"example {b} must be an 8-bit single-channel PNG of labels, got bit depth "
                    f"{depth}, colour type {colour}",
                    name,
                )
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            if decoded is None:
                raise RequestError(f"example {b} is a corrupt PNG", name)
            _check_labels(name, decoded[None], num_labels)
        else:
            size = png[:2] if png is not None else _jpeg_size(data)
            if size is None:
                raise RequestError(f"example {b} is neither a PNG nor a JPEG", name)
            h, w = size
        if image_size is not None and (h, w) != tuple(image_size):
            raise RequestError(
                f"example {b} is {h}x{w} (H x W), the model takes {image_size[0]}x{image_size[1]}",
                name,
            )


def validate_request(
    inputs: Mapping[str, tensor_pb2.TensorProto],
    specs: Mapping[str, tf.TensorSpec],
    image_size: tuple[int, int] | None = None,
    max_batch: int | None = None,
    num_labels: int = NUM_LABELS,
    keypoint_margin: float = DEFAULT_KEYPOINT_MARGIN,
) -> dict[str, np.ndarray]:
    """Checks a Predict request's inputs and decodes them.

    Structure (names, dtypes, ranks, shapes, batch) is checked on the protos
    before any content is decoded, so a wrong request costs little.

    Args:
      inputs: input name -> ``TensorProto`` (a ``PredictRequest.inputs`` map).
      specs: input name -> ``tf.TensorSpec`` of the signature
        (:func:`signature_input_specs`).
      image_size: the model's ``(H, W)`` (:func:`model_image_size`), used for
        keypoint ranges and encoded images; static dims in ``specs`` are
        checked regardless.
      max_batch: largest batch accepted, or None for no limit.
      num_labels: label maps must hold labels in ``0 .. num_labels - 1``.
      keypoint_margin: pixels a present joint may lie outside the image.

    Returns:
      Input name -> numpy array (uint8, float32, or object arrays of bytes).

    Raises:
      RequestError: the first problem found; the message names the input.
    """
    unknown = sorted(set(inputs) - set(specs))
    if unknown:
        raise RequestError(f"unknown input for this signature (expected inputs: {sorted(specs)})", unknown[0])
    missing = sorted(set(specs) - set(inputs))
    if missing:
        raise RequestError(f"required input is missing (expected inputs: {sorted(specs)})", missing[0])

    dims_by_name = {}
    for name in sorted(specs):
        proto, spec = inputs[name], specs[name]
        if proto.dtype != spec.dtype.as_datatype_enum:
            raise RequestError(f"expected dtype {spec.dtype.name}, got {_dtype_name(proto.dtype)}", name)
        dims = _proto_shape(name, proto)
        _check_shape(name, dims, spec)
        dims_by_name[name] = dims
    _check_batch(dims_by_name, max_batch)

    arrays = {name: _to_ndarray(name, inputs[name], dims_by_name[name]) for name in sorted(specs)}
    for name in sorted(arrays):
        array, spec = arrays[name], specs[name]
        if _is_keypoints(name) and spec.dtype.is_floating:
            if spec.shape.rank != 3 or array.shape[1:] != (NUM_KEYPOINTS, 2):
                raise RequestError(f"keypoints must be [B, {NUM_KEYPOINTS}, 2], got {list(array.shape)}", name)
            _check_keypoints(name, array, image_size, keypoint_margin)
        elif _is_labels(name) and spec.dtype.is_integer:
            _check_labels(name, array, num_labels)
        elif _is_bytes(name, spec):
            _check_encoded(name, array, image_size, num_labels)
    return arrays
