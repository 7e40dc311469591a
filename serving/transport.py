"""Transports to a served SPT model: gRPC (TF Serving protocol) and REST (TF Serving's JSON API).

A transport moves named arrays to one signature and back (:meth:`Transport.predict`)
and reads the signatures (:meth:`Transport.metadata`); it knows nothing of the
SPT signatures' arguments, which :mod:`serving.client` adds on top.

Server-side errors surface as ``grpc.RpcError`` (gRPC) or :class:`RestError`
(REST), with the server's message.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

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

DEFAULT_SIGNATURE = "serving_default"


class RestError(RuntimeError):
    """A REST request failed; ``status`` is the HTTP status, the message the server's."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


def parse_signature_map(sig_map: Mapping) -> dict:
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


class Transport:
    """What the typed client needs of a connection: ``predict`` and ``metadata``."""

    def predict(
        self,
        inputs: Mapping[str, np.ndarray],
        signature_name: str = DEFAULT_SIGNATURE,
        output_filter: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def metadata(self) -> dict:
        """Signature name -> ``{"inputs": {name: {"dtype", "shape"}}, "outputs": ..., "method_name"}``.

        Shapes are lists with ``None`` for dynamic dimensions.
        """
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class GrpcTransport(Transport):
    """gRPC transport (TF Serving's PredictionService / ModelService).

    Args:
      address: ``host:port`` of TF Serving's gRPC port or the local server.
      model_name: ``model_spec.name``.
      version: a fixed version, or None for the newest the server serves.
      timeout: seconds per call.
      max_message_mb: gRPC message size limit in MiB (large batches).
    """

    def __init__(
        self,
        address: str,
        model_name: str = "spt",
        version: int | None = None,
        timeout: float = 30.0,
        max_message_mb: int = 64,
    ):
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
            self._metadata = parse_signature_map(json_format.MessageToDict(sig_map, preserving_proto_field_name=True))
        return self._metadata

    def status(self) -> list[tuple[int, str]]:
        """``[(version, state name)]`` from ModelService ``GetModelStatus``."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec)
        response = self.model_stub.GetModelStatus(request, timeout=self.timeout)
        names = get_model_status_pb2.ModelVersionStatus.State.Name
        return [(s.version, names(s.state)) for s in response.model_version_status]


class RestTransport(Transport):
    """REST transport of TF Serving (``/v1/models/<name>[/versions/<v>]:predict``, columnar JSON).

    Binary inputs and outputs (names ending in ``_bytes``) travel as
    ``{"b64": ...}``, as TF Serving's REST API requires.

    Args:
      url: ``http://host:8501``.
      model_name: the served model's name.
      version: a fixed version, or None for the newest.
      timeout: seconds per request.
    """

    def __init__(self, url: str, model_name: str = "spt", version: int | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self._metadata = None

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
            self._metadata = parse_signature_map(sig_map)
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
