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
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

import cv2
import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from spt_tf import geometry, labels
from spt_tf.data import formats

DEFAULT_SIGNATURE = "serving_default"
SIGNATURES = {
    "pose_transfer": DEFAULT_SIGNATURE,
    "transform_parsing": "transform_parsing",
    "render": "render",
    "pose_transfer_bytes": "serving_bytes",
    "render_bytes": "render_bytes",
}


class RestError(RuntimeError):
    """A REST request failed; ``status`` is the HTTP status, the message the server's."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


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
        if dtype is np.uint8 and array.dtype.kind in "iu" and array.size and (
            array.min() >= 0 and array.max() <= 255
        ):
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


def _parse_signature_map(sig_map: Mapping) -> dict:
    """SignatureDefMap as a dict (``json_format``, proto field names) -> readable specs."""
    out = {}
    for name, sig in sig_map.get("signature_def", {}).items():
        entry = {"method_name": sig.get("method_name", "")}
        for kind in ("inputs", "outputs"):
            entry[kind] = {}
            for tensor_name, info in sig.get(kind, {}).items():
                dtype_enum = types_pb2.DataType.Value(info.get("dtype", "DT_INVALID"))
                shape_info = info.get("tensor_shape", {})
                if shape_info.get("unknown_rank"):
                    shape = None
                else:
                    sizes = [int(d.get("size", 0)) for d in shape_info.get("dim", [])]
                    shape = [None if s < 0 else s for s in sizes]
                dtype = tf.dtypes.as_dtype(dtype_enum).name if dtype_enum else "invalid"
                entry[kind][tensor_name] = {"dtype": dtype, "shape": shape}
        out[name] = entry
    return out


class _SptMethods:
    """The signature-specific methods, over an abstract ``predict`` and ``metadata``."""

    def predict(self, inputs: Mapping[str, np.ndarray], signature_name: str = DEFAULT_SIGNATURE,
                output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def metadata(self) -> dict:
        """Signature name -> ``{"inputs": {name: {"dtype", "shape"}}, "outputs": ..., "method_name"}``.

        Shapes are lists with ``None`` for dynamic dimensions.
        """
        raise NotImplementedError

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
        image, single = _batched("image", image, 3, np.uint8, None)
        out = self.predict(
            {
                "image": image,
                "parsing": _batched("parsing", parsing, 2, np.uint8, single)[0],
                "source_keypoints": _batched("source_keypoints", source_keypoints, 2, np.float32, single)[0],
                "target_keypoints": _batched("target_keypoints", target_keypoints, 2, np.float32, single)[0],
            },
            SIGNATURES["pose_transfer"],
        )
        return _unbatch(out["image"], single), _unbatch(out["parsing"], single)

    def transform_parsing(self, parsing, source_keypoints, target_keypoints):
        """H_S only: source labels ``[(B,) H, W]`` -> predicted target labels, uint8."""
        parsing, single = _batched("parsing", parsing, 2, np.uint8, None)
        out = self.predict(
            {
                "parsing": parsing,
                "source_keypoints": _batched("source_keypoints", source_keypoints, 2, np.float32, single)[0],
                "target_keypoints": _batched("target_keypoints", target_keypoints, 2, np.float32, single)[0],
            },
            SIGNATURES["transform_parsing"],
        )
        return _unbatch(out["parsing"], single)

    def render(self, image, parsing, source_keypoints, target_keypoints, target_parsing):
        """H_A given an explicit target parsing ``[(B,) H, W]``; returns uint8 ``[(B,) H, W, 3]``."""
        image, single = _batched("image", image, 3, np.uint8, None)
        out = self.predict(
            {
                "image": image,
                "parsing": _batched("parsing", parsing, 2, np.uint8, single)[0],
                "source_keypoints": _batched("source_keypoints", source_keypoints, 2, np.float32, single)[0],
                "target_keypoints": _batched("target_keypoints", target_keypoints, 2, np.float32, single)[0],
                "target_parsing": _batched("target_parsing", target_parsing, 2, np.uint8, single)[0],
            },
            SIGNATURES["render"],
        )
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
        images, single = _bytes_batch("image_bytes", image_bytes, None)
        out = self.predict(
            {
                "image_bytes": images,
                "parsing_bytes": _bytes_batch("parsing_bytes", parsing_bytes, single)[0],
                "source_keypoints": _batched("source_keypoints", source_keypoints, 2, np.float32, single)[0],
                "target_keypoints": _batched("target_keypoints", target_keypoints, 2, np.float32, single)[0],
            },
            SIGNATURES["pose_transfer_bytes"],
        )
        images = [bytes(b) for b in out["image_bytes"]]
        parsings = [bytes(b) for b in out["parsing_bytes"]] if "parsing_bytes" in out else None
        if single:
            return images[0], None if parsings is None else parsings[0]
        return images, parsings

    def render_bytes(self, image_bytes, parsing_bytes, source_keypoints, target_keypoints,
                     target_parsing_bytes):
        """``render_bytes``: as :meth:`render` with encoded images; returns PNG bytes."""
        images, single = _bytes_batch("image_bytes", image_bytes, None)
        out = self.predict(
            {
                "image_bytes": images,
                "parsing_bytes": _bytes_batch("parsing_bytes", parsing_bytes, single)[0],
                "source_keypoints": _batched("source_keypoints", source_keypoints, 2, np.float32, single)[0],
                "target_keypoints": _batched("target_keypoints", target_keypoints, 2, np.float32, single)[0],
                "target_parsing_bytes": _bytes_batch("target_parsing_bytes", target_parsing_bytes, single)[0],
            },
            SIGNATURES["render_bytes"],
        )
        result = [bytes(b) for b in out["image_bytes"]]
        return result[0] if single else result


class SptClient(_SptMethods):
    """gRPC client (TF Serving's PredictionService / ModelService).

    Args:
      address: ``host:port`` of TF Serving's gRPC port or the local server.
      model_name: ``model_spec.name``.
      version: a fixed version, or None for the newest the server serves.
      timeout: seconds per call.
      max_message_mb: gRPC message size limit in MiB (large batches).
    """

    def __init__(self, address: str, model_name: str = "spt", version: int | None = None,
                 timeout: float = 30.0, max_message_mb: int = 64):
        limit = int(max_message_mb * 1024 * 1024)
        self.address = address
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            address,
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        )
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_stub = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self._metadata = None
        self.last_model_spec = None  # model_spec of the last Predict answer (name, version)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _spec(self, spec, signature_name: str = "") -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        if signature_name:
            spec.signature_name = signature_name

    def predict(self, inputs, signature_name=DEFAULT_SIGNATURE, output_filter=()):
        """One Predict call with raw arrays (no conversion: dtypes go as given).

        Returns:
          Output name -> numpy array (object arrays of ``bytes`` for strings).
        """
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, signature_name)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        request.output_filter.extend(output_filter)
        response = self.stub.Predict(request, timeout=self.timeout)
        self.last_model_spec = response.model_spec
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def metadata(self) -> dict:
        if self._metadata is None:
            request = get_model_metadata_pb2.GetModelMetadataRequest()
            self._spec(request.model_spec)
            request.metadata_field.append("signature_def")
            response = self.stub.GetModelMetadata(request, timeout=self.timeout)
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            if not response.metadata["signature_def"].Unpack(sig_map):
                raise ValueError("GetModelMetadata answered without a SignatureDefMap")
            self._metadata = _parse_signature_map(
                json_format.MessageToDict(sig_map, preserving_proto_field_name=True)
            )
        return self._metadata

    def status(self) -> list[tuple[int, str]]:
        """``[(version, state name)]`` from ModelService ``GetModelStatus``."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec)
        response = self.model_stub.GetModelStatus(request, timeout=self.timeout)
        names = get_model_status_pb2.ModelVersionStatus.State.Name
        return [(s.version, names(s.state)) for s in response.model_version_status]


class SptRestClient(_SptMethods):
    """REST client of TF Serving (``/v1/models/<name>[/versions/<v>]:predict``, columnar JSON).

    Binary inputs and outputs (names ending in ``_bytes``) travel as
    ``{"b64": ...}``, as TF Serving's REST API requires.

    Args:
      url: ``http://host:8501``.
      model_name: the served model's name.
      version: a fixed version, or None for the newest.
      timeout: seconds per request.
    """

    def __init__(self, url: str, model_name: str = "spt", version: int | None = None,
                 timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self._metadata = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def _model_url(self) -> str:
        url = f"{self.url}/v1/models/{self.model_name}"
        return url if self.version is None else f"{url}/versions/{self.version}"

    def _request(self, url: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                text = json.loads(text).get("error", text)
            except ValueError:
                pass
            raise RestError(e.code, text) from None

    def metadata(self) -> dict:
        if self._metadata is None:
            answer = self._request(self._model_url() + "/metadata")
            try:
                sig_map = answer["metadata"]["signature_def"]
            except (KeyError, TypeError):
                raise ValueError(f"metadata answer lacks metadata.signature_def: {answer}") from None
            self._metadata = _parse_signature_map(sig_map)
        return self._metadata

    @staticmethod
    def _encode(value: np.ndarray):
        if value.dtype.kind in "OSa":
            return [{"b64": base64.b64encode(bytes(v)).decode("ascii")} for v in value.reshape(-1)]
        return value.tolist()

    def predict(self, inputs, signature_name=DEFAULT_SIGNATURE, output_filter=()):
        """One ``:predict`` call; output dtypes come from the signature's metadata."""
        outputs_spec = self.metadata()[signature_name]["outputs"]
        body = {
            "signature_name": signature_name,
            "inputs": {k: self._encode(np.asarray(v)) for k, v in inputs.items()},
        }
        answer = self._request(self._model_url() + ":predict", body)
        if "outputs" not in answer:
            raise ValueError(f"predict answer lacks 'outputs': {str(answer)[:200]}")
        outputs = answer["outputs"]
        if not isinstance(outputs, dict):  # TF Serving drops the name of a lone output
            if len(outputs_spec) != 1:
                raise ValueError(f"unnamed outputs, but the signature has {sorted(outputs_spec)}")
            outputs = {next(iter(outputs_spec)): outputs}
        result = {}
        for name, value in outputs.items():
            if output_filter and name not in output_filter:
                continue
            dtype = outputs_spec[name]["dtype"]
            if dtype == "string":
                result[name] = np.array(
                    [base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode() for v in value],
                    dtype=object,
                )
            else:
                result[name] = np.asarray(value, dtype=np.dtype(dtype))
        return result


# ------------------------------------------------------------------ files and figures


def read_keypoints_json(path) -> np.ndarray:
    """``{"keypoints": [[y, x], ...]}`` (18 pairs, -1 missing) -> float32 ``[18, 2]``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict) or "keypoints" not in data:
        raise ValueError(f"{path}: expected an object with a 'keypoints' field")
    try:
        kp = np.asarray(data["keypoints"], dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: field 'keypoints' must be a list of [y, x] numbers") from None
    if kp.shape != (geometry.NUM_KEYPOINTS, 2):
        raise ValueError(
            f"{path}: field 'keypoints' must be {geometry.NUM_KEYPOINTS} [y, x] pairs, got shape {kp.shape}"
        )
    if not np.isfinite(kp).all():
        raise ValueError(f"{path}: field 'keypoints' holds a non-finite value")
    return kp


def load_keypoints(json_path=None, annotations=None, name=None, what="keypoints") -> np.ndarray:
    """Keypoints from a JSON file, or by image name from an annotation CSV."""
    if json_path and name:
        raise ValueError(f"{what}: give a JSON file or a name in --annotations, not both")
    if json_path:
        return read_keypoints_json(json_path)
    if not (annotations and name):
        raise ValueError(f"{what}: give a JSON file, or --annotations with an image name")
    table = formats.read_annotations(annotations)
    if name not in table:
        raise ValueError(f"{annotations}: no row named {name!r} (for the {what})")
    return table[name]


def draw_pose(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A skeleton drawing uint8 ``[H, W, 3]`` of ``[18, 2]`` ``(y, x)`` keypoints on black."""
    h, w = size
    canvas = np.zeros((h, w, 3), np.uint8)
    thickness = max(1, round(min(h, w) / 64))
    ok = np.all(keypoints != geometry.MISSING, axis=-1)
    for k, (a, b) in enumerate(geometry.SKELETON):
        if ok[a] and ok[b]:
            colour = tuple(int(c) for c in labels.PALETTE[1 + k % (labels.NUM_LABELS - 1)])
            pa = (int(round(keypoints[a, 1])), int(round(keypoints[a, 0])))
            pb = (int(round(keypoints[b, 1])), int(round(keypoints[b, 0])))
            cv2.line(canvas, pa, pb, colour, thickness, cv2.LINE_AA)
    for j in np.flatnonzero(ok):
        centre = (int(round(keypoints[j, 1])), int(round(keypoints[j, 0])))
        cv2.circle(canvas, centre, thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return canvas


def side_by_side(panels: Sequence[np.ndarray], titles: Sequence[str] = ()) -> np.ndarray:
    """Panels of one size side by side, with titles above when panels are wide enough."""
    h, w = panels[0].shape[:2]
    row = np.concatenate([np.asarray(p, np.uint8) for p in panels], axis=1)
    if not titles or w < 64:
        return row
    header = np.full((16, row.shape[1], 3), 255, np.uint8)
    for i, title in enumerate(titles):
        cv2.putText(header, title, (i * w + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([header, row], axis=0)


def _fit(image, parsing, keypoints_list, size, resize: bool, what: str):
    """Resizes image/parsing/keypoints to the model size when asked; else insists they match."""
    h, w = (image if image is not None else parsing).shape[:2]
    if (h, w) == tuple(size):
        return image, parsing, keypoints_list
    if not resize:
        raise ValueError(
            f"{what} is {h}x{w} (H x W) but the model takes {size[0]}x{size[1]}; pass --resize"
        )
    sy, sx = size[0] / h, size[1] / w
    if image is not None:
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    if parsing is not None:
        parsing = cv2.resize(parsing, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    scaled = []
    for kp in keypoints_list:
        missing = np.all(kp == geometry.MISSING, axis=-1, keepdims=True)
        scaled.append(np.where(missing, geometry.MISSING, kp * np.array([sy, sx], np.float32)))
    return image, parsing, scaled


def _png(array: np.ndarray) -> bytes:
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ValueError("cannot encode PNG")
    return buf.tobytes()


def _decode_png_rgb(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def run_command(args, client: _SptMethods) -> dict[str, str]:
    """Runs one CLI command; returns the written files (name -> path)."""
    if args.command == "metadata":
        print(json.dumps(client.metadata(), indent=2))
        return {}
    if args.bytes and args.command == "transform_parsing":
        raise ValueError("transform_parsing has no byte variant; drop --bytes")
    size = client.image_size()
    src_kp = load_keypoints(args.source_keypoints, args.annotations, args.source_name, "source keypoints")
    tgt_kp = load_keypoints(args.target_keypoints, args.annotations, args.target_name, "target keypoints")
    image = formats.read_image(args.image) if args.image else None
    if args.command != "transform_parsing" and image is None:
        raise ValueError(f"{args.command} needs --image")
    parsing = formats.read_parsing(args.parsing)
    # Both poses are taken in the source image's pixel frame and scaled with it.
    image, parsing, (src_kp, tgt_kp) = _fit(
        image, parsing, [src_kp, tgt_kp], size, args.resize, "the source"
    )
    target_parsing = None
    if args.command == "render":
        if not args.target_parsing:
            raise ValueError("render needs --target_parsing")
        target_parsing = formats.read_parsing(args.target_parsing)
        _, target_parsing, _ = _fit(None, target_parsing, [], size, args.resize, "--target_parsing")

    os.makedirs(args.out_dir, exist_ok=True)
    written = {}
    generated = predicted = None
    if args.command == "pose_transfer" and args.bytes:
        image_png, parsing_png = client.pose_transfer_bytes(_png(image), _png(parsing), src_kp, tgt_kp)
        generated = _decode_png_rgb(image_png)
        if parsing_png is not None:
            predicted = cv2.imdecode(np.frombuffer(parsing_png, np.uint8), cv2.IMREAD_UNCHANGED)
    elif args.command == "pose_transfer":
        generated, predicted = client.pose_transfer(image, parsing, src_kp, tgt_kp)
    elif args.command == "transform_parsing":
        predicted = client.transform_parsing(parsing, src_kp, tgt_kp)
    elif args.command == "render" and args.bytes:
        generated = _decode_png_rgb(
            client.render_bytes(_png(image), _png(parsing), src_kp, tgt_kp, _png(target_parsing))
        )
    else:
        generated = client.render(image, parsing, src_kp, tgt_kp, target_parsing)

    source_panel = image if image is not None else labels.colorize(parsing)
    panels, titles = [source_panel, draw_pose(tgt_kp, size)], ["source", "target pose"]
    shown_parsing = predicted if predicted is not None else target_parsing
    if shown_parsing is not None:
        panels.append(labels.colorize(shown_parsing))
        titles.append("parsing" if predicted is not None else "target parsing")
    if predicted is not None:
        written["parsing"] = os.path.join(args.out_dir, "parsing.png")
        formats.write_parsing(written["parsing"], predicted)
        written["parsing_color"] = os.path.join(args.out_dir, "parsing_color.png")
        formats.write_image(written["parsing_color"], labels.colorize(predicted))
    if generated is not None:
        panels.append(generated)
        titles.append("generated")
        written["generated"] = os.path.join(args.out_dir, "generated.png")
        formats.write_image(written["generated"], generated)
    written["figure"] = os.path.join(args.out_dir, "figure.png")
    formats.write_image(written["figure"], side_by_side(panels, titles))
    for name, path in written.items():
        print(f"{name}: {path}")
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.client", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--address", default="localhost:8500", help="gRPC host:port (TF Serving 8500).")
    transport.add_argument("--rest", default=None, help="REST base URL, e.g. http://localhost:8501.")
    parser.add_argument("--model_name", default="spt")
    parser.add_argument("--version", type=int, default=None, help="Model version (default: newest).")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds per call.")
    parser.add_argument("--max_message_mb", type=int, default=64)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("metadata", help="Print the signatures (GetModelMetadata).")
    for name, help_text in (
        ("pose_transfer", "Generate the source person in the target pose (serving_default)."),
        ("transform_parsing", "Predict the target parsing only (H_S)."),
        ("render", "Render with a given target parsing (H_A)."),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--image", required=name != "transform_parsing",
                       help="Source image (any format OpenCV reads).")
        p.add_argument("--parsing", required=True, help="Source parsing (.png/.npy, labels 0..9).")
        p.add_argument("--annotations", help="Annotation CSV (name:keypoints_y:keypoints_x).")
        p.add_argument("--source_name", help="Row of --annotations with the source keypoints.")
        p.add_argument("--target_name", help="Row of --annotations with the target keypoints.")
        p.add_argument("--source_keypoints", help='JSON file {"keypoints": [[y, x], ...]}.')
        p.add_argument("--target_keypoints", help='JSON file {"keypoints": [[y, x], ...]}.')
        if name == "render":
            p.add_argument("--target_parsing", required=True, help="Target parsing (.png/.npy).")
        p.add_argument("--resize", action="store_true",
                       help="Resize inputs to the model's size; both poses are scaled with the "
                            "source image (they must be in its pixel frame).")
        p.add_argument("--bytes", action="store_true",
                       help="Use the encoded-image signature (serving_bytes / render_bytes).")
        p.add_argument("--out_dir", required=True, help="Where to write the results.")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.rest:
        client = SptRestClient(args.rest, args.model_name, args.version, args.timeout)
    else:
        client = SptClient(args.address, args.model_name, args.version, args.timeout, args.max_message_mb)
    try:
        with client:
            run_command(args, client)
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except (RestError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
