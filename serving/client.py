"""Client of the exported SPT model: gRPC (TF Serving protocol) or REST, Python API and CLI.

Python::

    from serving.client import SptClient
    with SptClient("localhost:8500", "spt") as client:
        image, parsing = client.pose_transfer(image, parsing, source_kp, target_kp)

Inputs are raw data, as the export contract says (all preprocessing runs
inside the SavedModel): images uint8 ``[H, W, 3]`` (or ``[B, H, W, 3]``) RGB,
parsing uint8 ``[H, W]`` labels 0..9, keypoints float32 ``[18, 2]`` ``(y, x)``
pixels with ``-1`` for a missing joint. Unbatched arguments give unbatched
results. Server-side errors surface as ``grpc.RpcError`` (gRPC) or
:class:`RestError` (REST), with the server's message.

CLI (``python -m serving.client --help``)::

    python -m serving.client --address localhost:8500 pose_transfer \\
        --image a.jpg --parsing a.png --annotations ann.csv \\
        --source_name a.jpg --target_name b.jpg --out_dir out/

writes ``generated.png``, ``parsing.png`` (labels), ``parsing_color.png`` and
``figure.png`` (source | target pose | parsing in colour | generated).
``--rest http://localhost:8501`` talks to TF Serving's REST port instead;
``--bytes`` uses the encoded-image signatures (``serving_bytes``,
``render_bytes``).

This module holds the typed API (one method per exported signature, with
argument checks); the connections are in :mod:`serving.transport`, the CLI in
:mod:`serving.cli` and its files and figure in :mod:`serving.files`. Their
public names are re-exported here.
"""

from __future__ import annotations

import os
import sys

import numpy as np

if not __package__:  # `python serving/client.py`: make the `serving` package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from serving.transport import (  # noqa: E402
    DEFAULT_SIGNATURE,
    GrpcTransport,
    RestError,
    RestTransport,
    Transport,
)

SIGNATURES = {
    "pose_transfer": DEFAULT_SIGNATURE,
    "transform_parsing": "transform_parsing",
    "render": "render",
    "pose_transfer_bytes": "serving_bytes",
    "render_bytes": "render_bytes",
}


# ------------------------------------------------------------------ argument handling


def _batched(name: str, value, unbatched_rank: int, dtype, single: bool | None):
    """``value`` as a batched array; returns (array, single)."""
    array = np.asarray(value)
    if dtype is np.float32:
        if array.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
        array = array.astype(np.float32)
    elif array.dtype != dtype:
        # No silent casts of pixel data: a float image in [0, 1] would become black.
        if dtype is np.uint8 and array.dtype.kind in "iu" and array.size and (array.min() >= 0 and array.max() <= 255):
            array = array.astype(np.uint8)
        else:
            raise ValueError(f"{name} must be {np.dtype(dtype).name}, got dtype {array.dtype}")
    if array.ndim == unbatched_rank:
        is_single = True
        array = array[None]
    elif array.ndim == unbatched_rank + 1:
        is_single = False
    else:
        raise ValueError(
            f"{name} must have rank {unbatched_rank} (one example) or {unbatched_rank + 1} "
            f"(a batch), got shape {array.shape}"
        )
    if single is not None and is_single != single:
        raise ValueError(f"{name} is {'un' if is_single else ''}batched unlike the first argument")
    return array, is_single


def _bytes_batch(name: str, value, single: bool | None):
    if isinstance(value, (bytes, bytearray)):
        is_single, items = True, [bytes(value)]
    else:
        items = [bytes(v) for v in value]
        is_single = False
    if single is not None and is_single != single:
        raise ValueError(f"{name} is {'un' if is_single else ''}batched unlike the first argument")
    return np.array(items, dtype=object), is_single


def _unbatch(array, single: bool):
    return array[0] if single else array


def _keypoint_inputs(source_keypoints, target_keypoints, single: bool) -> dict:
    """The two poses of a call, float32 and batched like its first argument."""
    return {
        "source_keypoints": _batched("source_keypoints", source_keypoints, 2, np.float32, single)[0],
        "target_keypoints": _batched("target_keypoints", target_keypoints, 2, np.float32, single)[0],
    }


def _person_inputs(image, parsing, source_keypoints, target_keypoints) -> tuple[dict, bool]:
    """The source image, its parsing and the two poses, checked and batched alike; returns
    (inputs, single)."""
    image, single = _batched("image", image, 3, np.uint8, None)
    parsing = _batched("parsing", parsing, 2, np.uint8, single)[0]
    return {"image": image, "parsing": parsing, **_keypoint_inputs(source_keypoints, target_keypoints, single)}, single


def _person_bytes_inputs(image_bytes, parsing_bytes, source_keypoints, target_keypoints) -> tuple[dict, bool]:
    """As :func:`_person_inputs` with encoded image and parsing; returns (inputs, single)."""
    images, single = _bytes_batch("image_bytes", image_bytes, None)
    parsings = _bytes_batch("parsing_bytes", parsing_bytes, single)[0]
    return {
        "image_bytes": images,
        "parsing_bytes": parsings,
        **_keypoint_inputs(source_keypoints, target_keypoints, single),
    }, single


# ------------------------------------------------------------------ the typed API


class SptMethods(Transport):
    """The signature-specific methods, over a transport's ``predict`` and ``metadata``."""

    def image_size(self, signature_name: str = DEFAULT_SIGNATURE) -> tuple[int, int]:
        """The model's ``(H, W)`` from the signature's uint8 image/parsing input."""
        for spec in self.metadata()[signature_name]["inputs"].values():
            shape = spec["shape"]
            if spec["dtype"] == "uint8" and shape and len(shape) in (3, 4) and None not in shape[1:3]:
                return shape[1], shape[2]
        raise ValueError(f"signature {signature_name!r} has no uint8 input with a static H, W")

    def pose_transfer(self, image, parsing, source_keypoints, target_keypoints):
        """Pose transfer (``serving_default``).

        Args:
          image: uint8 ``[H, W, 3]`` or ``[B, H, W, 3]`` RGB source image.
          parsing: uint8 ``[H, W]`` / ``[B, H, W]`` source labels 0..9.
          source_keypoints: ``[18, 2]`` / ``[B, 18, 2]`` ``(y, x)``, -1 missing.
          target_keypoints: same, the pose to generate.

        Returns:
          ``(image, parsing)``: uint8 generated image ``[(B,) H, W, 3]`` and
          predicted target parsing ``[(B,) H, W]``.
        """
        inputs, single = _person_inputs(image, parsing, source_keypoints, target_keypoints)
        out = self.predict(inputs, SIGNATURES["pose_transfer"])
        return _unbatch(out["image"], single), _unbatch(out["parsing"], single)

    def transform_parsing(self, parsing, source_keypoints, target_keypoints):
        """H_S only: source labels ``[(B,) H, W]`` -> predicted target labels, uint8."""
        parsing, single = _batched("parsing", parsing, 2, np.uint8, None)
        out = self.predict(
            {"parsing": parsing, **_keypoint_inputs(source_keypoints, target_keypoints, single)},
            SIGNATURES["transform_parsing"],
        )
        return _unbatch(out["parsing"], single)

    def render(self, image, parsing, source_keypoints, target_keypoints, target_parsing):
        """H_A given an explicit target parsing ``[(B,) H, W]``; returns uint8 ``[(B,) H, W, 3]``."""
        inputs, single = _person_inputs(image, parsing, source_keypoints, target_keypoints)
        inputs["target_parsing"] = _batched("target_parsing", target_parsing, 2, np.uint8, single)[0]
        out = self.predict(inputs, SIGNATURES["render"])
        return _unbatch(out["image"], single)

    def pose_transfer_bytes(self, image_bytes, parsing_bytes, source_keypoints, target_keypoints):
        """``serving_bytes``: encoded PNG/JPEG image and PNG labels in, PNG bytes out.

        Args:
          image_bytes: ``bytes`` (one example) or a sequence of them.
          parsing_bytes: the same for 8-bit single-channel label PNGs.
          source_keypoints, target_keypoints: ``[(B,) 18, 2]``.

        Returns:
          ``(image_png, parsing_png)``: the generated image and the predicted
          target parsing (8-bit label PNG), each ``bytes`` (one example) or a
          list; ``parsing_png`` is None if the export has no ``parsing_bytes``
          output.
        """
        inputs, single = _person_bytes_inputs(image_bytes, parsing_bytes, source_keypoints, target_keypoints)
        out = self.predict(inputs, SIGNATURES["pose_transfer_bytes"])
        images = [bytes(b) for b in out["image_bytes"]]
        parsings = [bytes(b) for b in out["parsing_bytes"]] if "parsing_bytes" in out else None
        if single:
            return images[0], None if parsings is None else parsings[0]
        return images, parsings

    def render_bytes(self, image_bytes, parsing_bytes, source_keypoints, target_keypoints, target_parsing_bytes):
        """``render_bytes``: as :meth:`render` with encoded images; returns PNG bytes."""
        inputs, single = _person_bytes_inputs(image_bytes, parsing_bytes, source_keypoints, target_keypoints)
        inputs["target_parsing_bytes"] = _bytes_batch("target_parsing_bytes", target_parsing_bytes, single)[0]
        out = self.predict(inputs, SIGNATURES["render_bytes"])
        result = [bytes(b) for b in out["image_bytes"]]
        return result[0] if single else result


class SptClient(GrpcTransport, SptMethods):
    """gRPC client (TF Serving's PredictionService / ModelService).

    Takes the arguments of :class:`serving.transport.GrpcTransport`: ``address``,
    ``model_name``, ``version``, ``timeout``, ``max_message_mb``.

    Besides the signature methods: ``predict`` (raw arrays), ``metadata``,
    ``status`` (``GetModelStatus``) and ``last_model_spec`` (the model_spec of
    the last Predict answer), from :class:`serving.transport.GrpcTransport`.
    """


class SptRestClient(RestTransport, SptMethods):
    """REST client of TF Serving: the signature methods over
    :class:`serving.transport.RestTransport`, whose arguments it takes (``url``,
    ``model_name``, ``version``, ``timeout``)."""


# The CLI and its file helpers, under the names this module has always offered
# (serving.cli imports this module only when it runs, so there is no import cycle).
from serving.cli import build_parser, main, parse, run_command  # noqa: E402
from serving.files import draw_pose, load_keypoints, read_keypoints_json, side_by_side  # noqa: E402

__all__ = [
    "DEFAULT_SIGNATURE",
    "SIGNATURES",
    "RestError",
    "SptClient",
    "SptMethods",
    "SptRestClient",
    "build_parser",
    "draw_pose",
    "load_keypoints",
    "main",
    "parse",
    "read_keypoints_json",
    "run_command",
    "side_by_side",
]

if __name__ == "__main__":
    from absl import app

    app.run(main, flags_parser=parse)
