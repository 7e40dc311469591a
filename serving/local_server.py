"""A PredictionService-compatible gRPC server over an export directory.

For development and tests only: it speaks the TF Serving protocol
(``tensorflow.serving.PredictionService`` ``Predict`` and ``GetModelMetadata``,
``tensorflow.serving.ModelService`` ``GetModelStatus``, gRPC health checking and
reflection) over the same ``BASE/<version>/`` SavedModels that TF Serving
loads, so clients written against it work unchanged against TF Serving. It is
NOT a replacement for TF Serving: no batching scheduler, no REST, one model,
no model config file, Python-speed request handling.

Behaviour:

* serves the newest ``num_versions`` integer-named version directories under
  ``export_dir`` (TF Serving's default "latest 1" policy); a background thread
  polls the directory every ``poll_seconds``, loads new versions outside the
  lock (and warms them up), then swaps the served set in one assignment. A
  version that fails to load is logged, reported by ``GetModelStatus`` as
  ``END`` with its error, never retried, and the previous version keeps
  serving (TF Serving's availability-preserving behaviour).
* every request is validated (:mod:`serving.validation`); a bad request gets
  ``INVALID_ARGUMENT`` naming the input, an unknown model, version or
  signature ``NOT_FOUND``; errors never stop the server.
* binds ``127.0.0.1`` unless told otherwise.

Run::

    python -m serving.local_server --export_dir exports/spt --model_name spt --port 8500
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import numpy as np
import tensorflow as tf
from absl import app, logging
from absl.flags import argparse_flags
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)

# Also served as local_server.list_versions (bench/bench_serving.py calls it so).
from spt_tf.versions import list_versions

# Imported as a sibling module when run as a script, as a package module otherwise.
if __package__:
    from . import validation
else:  # pragma: no cover - `python serving/local_server.py`
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import validation  # type: ignore[no-redef]

DEFAULT_SIGNATURE = "serving_default"
PREDICTION_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name
MODEL_SERVICE = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name
_State = get_model_status_pb2.ModelVersionStatus.State


# ------------------------------------------------------------------ versions


@dataclass
class LoadedVersion:
    """One loaded SavedModel version.

    Attributes:
      version: the integer version (the directory name).
      path: the version directory.
      module: the object ``tf.saved_model.load`` returned (owns the variables).
      signatures: signature name -> ConcreteFunction.
      input_specs: signature name -> input name -> ``tf.TensorSpec``.
      output_names: signature name -> sorted output names.
      signature_defs: signature name -> ``SignatureDef`` proto, from
        ``saved_model.pb`` (what TF Serving's ``GetModelMetadata`` returns).
      image_size: the model's ``(H, W)``, or None if no signature says.
    """

    version: int
    path: str
    module: object
    signatures: dict
    input_specs: dict
    output_names: dict
    signature_defs: dict
    image_size: tuple[int, int] | None


@dataclass
class _Failure:
    version: int
    message: str


@dataclass
class _Snapshot:
    """The served state, replaced wholesale (never mutated) so readers need no lock."""

    versions: dict = field(default_factory=dict)  # int -> LoadedVersion
    failures: dict = field(default_factory=dict)  # int -> _Failure


def _read_signature_defs(path: str) -> dict:
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    if not proto.meta_graphs:
        raise ValueError(f"{path}/saved_model.pb holds no meta graph")
    return {k: v for k, v in proto.meta_graphs[0].signature_def.items()}


def _warmup_inputs(specs: dict) -> dict | None:
    """Batch-1 inputs for a warm-up call: zeros, keypoints all missing; None for byte signatures."""
    out = {}
    for name, spec in specs.items():
        if spec.dtype == tf.string or None in spec.shape.as_list()[1:]:
            return None
        shape = [1] + spec.shape.as_list()[1:]
        fill = validation.MISSING if name.endswith("keypoints") else 0
        out[name] = tf.fill(shape, tf.constant(fill, spec.dtype))
    return out


def load_version(base_dir: str, version: int, warmup: bool = True) -> LoadedVersion:
    """Loads ``base_dir/<version>`` and optionally runs each tensor signature once.

    Raises:
      Exception: anything loading or the warm-up raises (the caller records it).
    """
    path = os.path.join(base_dir, str(version))
    module = tf.saved_model.load(path)
    signatures = dict(module.signatures)
    if not signatures:
        raise ValueError(f"{path} exports no signatures")
    input_specs = {k: validation.signature_input_specs(fn) for k, fn in signatures.items()}
    output_names = {k: sorted(validation.signature_output_specs(fn)) for k, fn in signatures.items()}
    loaded = LoadedVersion(
        version=version,
        path=path,
        module=module,
        signatures=signatures,
        input_specs=input_specs,
        output_names=output_names,
        signature_defs=_read_signature_defs(path),
        image_size=validation.model_image_size(signatures),
    )
    if warmup:
        # The first call of a loaded function pays for graph optimisation; pay it here,
        # before the version is served, not in the first client's latency.
        for name, fn in signatures.items():
            inputs = _warmup_inputs(input_specs[name])
            if inputs is not None:
                fn(**inputs)
    return loaded


class VersionManager:
    """Keeps the newest versions of one export directory loaded.

    Args:
      base_dir: the export base directory (``BASE/<version>/``).
      num_versions: how many of the newest versions to serve (TF Serving's
        ``latest { num_versions }``).
      poll_seconds: how often the background thread looks for new versions.
      warmup: run each tensor signature once on load.
    """

    def __init__(self, base_dir: str, num_versions: int = 1, poll_seconds: float = 2.0, warmup: bool = True):
        if num_versions < 1:
            raise ValueError(f"num_versions must be >= 1, got {num_versions}")
        self.base_dir = os.fspath(base_dir)
        self.num_versions = num_versions
        self.poll_seconds = poll_seconds
        self.warmup = warmup
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()  # serialises polls; readers use the snapshot
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners = []

    @property
    def snapshot(self) -> _Snapshot:
        return self._snapshot

    def add_listener(self, fn) -> None:
        """``fn(snapshot)`` is called after every change of the served set."""
        self._listeners.append(fn)

    def poll_once(self) -> bool:
        """Loads new versions and drops old ones; returns whether the served set changed."""
        with self._lock:
            old = self._snapshot
            on_disk = list_versions(self.base_dir)
            failures = dict(old.failures)
            candidates = [v for v in reversed(on_disk) if v not in failures]
            versions = {}
            for v in candidates:
                if len(versions) == self.num_versions:
                    break
                if v in old.versions:
                    versions[v] = old.versions[v]
                    continue
                logging.info("loading version %d from %s", v, self.base_dir)
                start = time.perf_counter()
                try:
                    versions[v] = load_version(self.base_dir, v, self.warmup)
                except Exception as e:  # a broken export must not stop the server
                    logging.error("version %d of %s failed to load, skipped: %s", v, self.base_dir, e)
                    failures[v] = _Failure(v, f"{type(e).__name__}: {e}")
                    continue
                logging.info("version %d loaded in %.2f s", v, time.perf_counter() - start)
            changed = set(versions) != set(old.versions) or failures != old.failures
            if changed:
                for v in sorted(set(old.versions) - set(versions)):
                    logging.info("unloading version %d", v)
                self._snapshot = _Snapshot(versions, failures)
        if changed:
            for fn in self._listeners:
                fn(self._snapshot)
        return changed

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # keep polling whatever happens on disk
                logging.exception("polling %s failed", self.base_dir)

    def start(self) -> None:
        """Starts the polling thread (after a first synchronous poll)."""
        self.poll_once()
        if self.poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="version-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


# ------------------------------------------------------------------ services


def _resolve(context, manager: VersionManager, model_name: str, spec) -> LoadedVersion:
    """The version a ModelSpec asks for, or aborts with NOT_FOUND."""
    if spec.name != model_name:
        context.abort(grpc.StatusCode.NOT_FOUND, f"model {spec.name!r} not found; this server serves {model_name!r}")
    versions = manager.snapshot.versions
    if spec.version_label:
        context.abort(
            grpc.StatusCode.NOT_FOUND,
            f"version label {spec.version_label!r} not found (this server has no version labels)",
        )
    if spec.HasField("version"):
        v = spec.version.value
        if v not in versions:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"version {v} of model {model_name!r} not found; serving versions {sorted(versions)}",
            )
        return versions[v]
    if not versions:
        context.abort(grpc.StatusCode.NOT_FOUND, f"model {model_name!r} has no loaded version yet")
    return versions[max(versions)]


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``Predict`` and ``GetModelMetadata``; the other methods answer UNIMPLEMENTED."""

    def __init__(
        self,
        manager: VersionManager,
        model_name: str,
        max_batch: int | None,
        keypoint_margin: float = validation.DEFAULT_KEYPOINT_MARGIN,
    ):
        self.manager = manager
        self.model_name = model_name
        self.max_batch = max_batch
        self.keypoint_margin = keypoint_margin

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        loaded = _resolve(context, self.manager, self.model_name, request.model_spec)
        sig_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        if sig_name not in loaded.signatures:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"signature {sig_name!r} not found in version {loaded.version}; available: {sorted(loaded.signatures)}",
            )
        try:
            arrays = validation.validate_request(
                request.inputs,
                loaded.input_specs[sig_name],
                image_size=loaded.image_size,
                max_batch=self.max_batch,
                keypoint_margin=self.keypoint_margin,
            )
        except validation.RequestError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"signature {sig_name!r}: {e}")
        outputs = loaded.output_names[sig_name]
        unknown = sorted(set(request.output_filter) - set(outputs))
        if unknown:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output_filter names unknown output {unknown[0]!r}; outputs: {outputs}",
            )
        try:
            result = loaded.signatures[sig_name](**{k: tf.constant(v) for k, v in arrays.items()})
        except tf.errors.InvalidArgumentError as e:  # e.g. an image that does not decode
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"signature {sig_name!r}: {e.message}")
        except Exception as e:
            logging.exception("signature %r of version %d failed", sig_name, loaded.version)
            context.abort(grpc.StatusCode.INTERNAL, f"signature {sig_name!r} failed: {e}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = loaded.version
        response.model_spec.signature_name = sig_name
        for name in request.output_filter or outputs:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(result[name])))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802 - gRPC method name
        loaded = _resolve(context, self.manager, self.model_name, request.model_spec)
        fields = list(request.metadata_field)
        if not fields:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        unsupported = [f for f in fields if f != "signature_def"]
        if unsupported:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"metadata field {unsupported[0]!r} is not supported (only 'signature_def')",
            )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = loaded.version
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in loaded.signature_defs.items():
            sig_map.signature_def[name].CopyFrom(sig)
        response.metadata["signature_def"].Pack(sig_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """``GetModelStatus``: loaded versions AVAILABLE, failed ones END with their error."""

    def __init__(self, manager: VersionManager, model_name: str):
        self.manager = manager
        self.model_name = model_name

    def GetModelStatus(self, request, context):  # noqa: N802 - gRPC method name
        spec = request.model_spec
        if spec.name != self.model_name:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"model {spec.name!r} not found; this server serves {self.model_name!r}",
            )
        snap = self.manager.snapshot
        statuses = []
        for v, _ in sorted(snap.versions.items(), reverse=True):
            statuses.append(get_model_status_pb2.ModelVersionStatus(version=v, state=_State.AVAILABLE))
        for v, failure in sorted(snap.failures.items(), reverse=True):
            st = get_model_status_pb2.ModelVersionStatus(version=v, state=_State.END)
            st.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
            st.status.error_message = failure.message
            statuses.append(st)
        if spec.HasField("version"):
            statuses = [s for s in statuses if s.version == spec.version.value]
            if not statuses:
                context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"version {spec.version.value} of model {self.model_name!r} not found",
                )
        response = get_model_status_pb2.GetModelStatusResponse()
        response.model_version_status.extend(statuses)
        return response


# ------------------------------------------------------------------ server


class LocalServer:
    """A running server: the gRPC server plus its version poller.

    Attributes:
      port: the bound port.
      manager: the :class:`VersionManager`.
      grpc_server: the underlying ``grpc.Server``.
    """

    def __init__(self, grpc_server, manager: VersionManager, port: int):
        self.grpc_server = grpc_server
        self.manager = manager
        self.port = port

    def stop(self, grace: float | None = None) -> None:
        """Stops polling and the gRPC server (waits until it has stopped)."""
        self.manager.stop()
        self.grpc_server.stop(grace).wait()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.grpc_server.wait_for_termination(timeout)


def serve(
    export_dir: str,
    model_name: str,
    port: int = 0,
    host: str = "127.0.0.1",
    max_message_mb: int = 64,
    max_batch: int | None = 16,
    workers: int = 4,
    poll_seconds: float = 2.0,
    num_versions: int = 1,
    warmup: bool = True,
    keypoint_margin: float = validation.DEFAULT_KEYPOINT_MARGIN,
) -> tuple[LocalServer, int]:
    """Starts a server over ``export_dir`` and returns at once.

    The newest version is loaded before this returns (if one exists; else the
    server starts NOT_SERVING and waits for one).

    Args:
      export_dir: base directory of integer version subdirectories.
      model_name: the name clients put in ``model_spec.name``.
      port: TCP port; 0 picks a free one (returned).
      host: interface to bind; loopback by default.
      max_message_mb: gRPC send/receive message limit in MiB.
      max_batch: largest batch a request may carry (None: no limit).
      workers: threads handling requests.
      poll_seconds: how often to look for new versions (0: never).
      num_versions: how many of the newest versions to serve.
      warmup: run each tensor signature once when a version loads.
      keypoint_margin: pixels a keypoint may lie outside the image.

    Returns:
      ``(server, port)``; ``server.stop()`` shuts it down.
    """
    manager = VersionManager(export_dir, num_versions, poll_seconds, warmup)
    limit = int(max_message_mb * 1024 * 1024)
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spt-serving"),
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(manager, model_name, max_batch, keypoint_margin), grpc_server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager, model_name), grpc_server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)

    def set_health(snapshot):
        status = (
            health_pb2.HealthCheckResponse.SERVING if snapshot.versions else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", PREDICTION_SERVICE, MODEL_SERVICE):
            health_servicer.set(service, status)

    manager.add_listener(set_health)
    set_health(manager.snapshot)
    reflection.enable_server_reflection(
        (PREDICTION_SERVICE, MODEL_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), grpc_server
    )
    bound = grpc_server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port}")
    manager.start()
    if not manager.snapshot.versions:
        logging.warning("no loadable version under %s yet; NOT_SERVING until one appears", export_dir)
    grpc_server.start()
    return LocalServer(grpc_server, manager, bound), bound


def _bool(text: str) -> bool:
    """absl's boolean flag values: true/t/1 and false/f/0, any case."""
    value = text.lower()
    if value in ("true", "t", "1"):
        return True
    if value in ("false", "f", "0"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def build_parser(parser_class=argparse_flags.ArgumentParser) -> argparse.ArgumentParser:
    """The CLI parser (absl's argparse parser by default, so absl's flags parse too)."""
    p = parser_class(prog="python -m serving.local_server", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--export_dir", required=True, help="Export base directory (BASE/<version>/).")
    p.add_argument("--model_name", default="spt", help="Model name clients use in model_spec.name.")
    p.add_argument("--host", default="127.0.0.1", help="Interface to bind (loopback by default).")
    p.add_argument("--port", type=int, default=8500, help="gRPC port; 0 picks a free one and prints it.")
    p.add_argument("--max_message_mb", type=int, default=64, help="gRPC message size limit (MiB).")
    p.add_argument("--max_batch", type=int, default=16, help="Largest batch per request.")
    p.add_argument("--workers", type=int, default=4, help="Request handler threads.")
    p.add_argument("--poll_seconds", type=float, default=2.0, help="How often to look for new versions (0: never).")
    p.add_argument("--num_versions", type=int, default=1, help="Serve this many of the newest versions.")
    # --warmup, --warmup=false and --nowarmup, as absl's boolean flags read.
    p.add_argument(
        "--warmup",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        help="Run each signature once when a version loads (default: true; --nowarmup: no).",
    )
    p.add_argument("--nowarmup", dest="warmup", action="store_false", help=argparse.SUPPRESS)
    p.add_argument(
        "--keypoint_margin",
        type=float,
        default=validation.DEFAULT_KEYPOINT_MARGIN,
        help="Pixels a keypoint may lie outside the image.",
    )
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """``app.run``'s flags parser: ``argv[0]`` is the program."""
    return build_parser().parse_args(argv[1:])


def main(argv=None) -> None:
    """Serves until interrupted.

    Args:
      argv: the parsed arguments (from :func:`parse`, under ``app.run``), or the
        command-line arguments without the program name (None: ``sys.argv[1:]``).
    """
    args = argv if isinstance(argv, argparse.Namespace) else build_parser().parse_args(argv)
    server, port = serve(
        args.export_dir,
        args.model_name,
        port=args.port,
        host=args.host,
        max_message_mb=args.max_message_mb,
        max_batch=args.max_batch,
        workers=args.workers,
        poll_seconds=args.poll_seconds,
        num_versions=args.num_versions,
        warmup=args.warmup,
        keypoint_margin=args.keypoint_margin,
    )
    print(f"serving {args.model_name!r} from {args.export_dir} on {args.host}:{port}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(grace=2.0)


if __name__ == "__main__":
    app.run(main, flags_parser=parse)
