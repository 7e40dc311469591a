"""Local server <-> client over gRPC (and a REST stand-in) on loopback, with a stand-in SavedModel.

The stand-in has the export contract's signatures (names, dtypes, shapes) and
tiny, asymmetric maths that the tests recompute in numpy, so a swapped,
dropped or mangled input is caught:

* ``transform_parsing``: ``(parsing + shift + n(target) + 2 n(source)) % 10``,
  ``n`` = number of present joints, ``shift`` a variable (the version's mark);
* ``render``: ``255 - image`` where ``target_parsing > 0``, else ``image``;
* ``serving_default``: ``render`` with ``transform_parsing``'s output;
* ``serving_bytes`` / ``render_bytes``: the same on decoded PNG/JPEG, PNG out
  (``serving_bytes`` returns ``image_bytes`` and ``parsing_bytes``, as spt_tf.export).
"""

import http.server
import json
import os
import shutil
import threading
import time

import cv2
import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format, text_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from serving import client as client_lib
from serving import local_server, validation

H, W = 32, 16  # non-square, as configs/testing.py
MAX_BATCH = 4
MODEL = "spt"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ the stand-in model


def _present(kp):
    return tf.reduce_sum(tf.cast(tf.reduce_all(tf.not_equal(kp, -1.0), -1), tf.int32), axis=1)


class StandIn(tf.Module):
    """The export contract's signatures at image size ``height x width``, with trivial maths."""

    def __init__(self, shift, height=H, width=W):
        super().__init__()
        self.shift = tf.Variable(shift, dtype=tf.int32, trainable=False)
        self.height, self.width = height, width
        image = tf.TensorSpec([None, height, width, 3], tf.uint8)
        labels = tf.TensorSpec([None, height, width], tf.uint8)
        kp = tf.TensorSpec([None, 18, 2], tf.float32)
        data = tf.TensorSpec([None], tf.string)
        self.transform_parsing = tf.function(self._transform_parsing, input_signature=[labels, kp, kp])
        self.render = tf.function(self._render, input_signature=[image, labels, kp, kp, labels])
        self.serving_default = tf.function(self._serving_default, input_signature=[image, labels, kp, kp])
        self.serving_bytes = tf.function(self._serving_bytes, input_signature=[data, data, kp, kp])
        self.render_bytes = tf.function(self._render_bytes, input_signature=[data, data, kp, kp, data])

    def _decode(self, images, channels):
        shape = [self.height, self.width, channels]
        return tf.map_fn(
            lambda b: tf.ensure_shape(tf.io.decode_image(b, channels=channels, expand_animations=False), shape),
            images,
            fn_output_signature=tf.TensorSpec(shape, tf.uint8),
        )

    def _transform_parsing(self, parsing, source_keypoints, target_keypoints):
        k = self.shift + _present(target_keypoints) + 2 * _present(source_keypoints)
        out = (tf.cast(parsing, tf.int32) + k[:, None, None]) % 10
        return {"parsing": tf.cast(out, tf.uint8)}

    def _render(self, image, parsing, source_keypoints, target_keypoints, target_parsing):
        return {"image": tf.where(target_parsing[..., None] > 0, 255 - image, image)}

    def _serving_default(self, image, parsing, source_keypoints, target_keypoints):
        target = self._transform_parsing(parsing, source_keypoints, target_keypoints)["parsing"]
        out = self._render(image, parsing, source_keypoints, target_keypoints, target)
        return {"image": out["image"], "parsing": target}

    def _serving_bytes(self, image_bytes, parsing_bytes, source_keypoints, target_keypoints):
        image, parsing = self._decode(image_bytes, 3), self._decode(parsing_bytes, 1)[..., 0]
        out = self._serving_default(image, parsing, source_keypoints, target_keypoints)
        return {
            "image_bytes": tf.map_fn(tf.io.encode_png, out["image"], fn_output_signature=tf.string),
            "parsing_bytes": tf.map_fn(tf.io.encode_png, out["parsing"][..., None], fn_output_signature=tf.string),
        }

    def _render_bytes(self, image_bytes, parsing_bytes, source_keypoints, target_keypoints, target_parsing_bytes):
        image, parsing = self._decode(image_bytes, 3), self._decode(parsing_bytes, 1)[..., 0]
        target = self._decode(target_parsing_bytes, 1)[..., 0]
        out = self._render(image, parsing, source_keypoints, target_keypoints, target)["image"]
        return {"image_bytes": tf.map_fn(tf.io.encode_png, out, fn_output_signature=tf.string)}


def export_stand_in(base_dir, version: int, shift: int, height=H, width=W) -> str:
    """Writes version ``version`` atomically: saved to a temporary directory, then renamed."""
    module = StandIn(shift, height, width)
    signatures = {
        name: getattr(module, name).get_concrete_function()
        for name in ("serving_default", "transform_parsing", "render", "serving_bytes", "render_bytes")
    }
    tmp = os.path.join(base_dir, f".tmp-{version}")
    tf.saved_model.save(module, tmp, signatures=signatures)
    final = os.path.join(base_dir, str(version))
    os.rename(tmp, final)
    return final


# ------------------------------------------------------------------ independent references


def n_present(kp):
    return np.all(kp != -1, axis=-1).sum(-1)


def expected_parsing(parsing, src, tgt, shift=1):
    k = shift + n_present(tgt) + 2 * n_present(src)
    return ((parsing.astype(np.int64) + k[:, None, None]) % 10).astype(np.uint8)


def expected_render(image, target_parsing):
    return np.where(target_parsing[..., None] > 0, 255 - image, image).astype(np.uint8)


def make_inputs(batch, seed=0, missing=(3, 7)):
    rng = np.random.default_rng(seed)
    kp = np.stack([rng.uniform(0, H - 1, (batch, 18)), rng.uniform(0, W - 1, (batch, 18))], -1).astype(np.float32)
    src = kp.copy()
    tgt = kp[:, ::-1].copy()
    tgt[:, list(missing)] = -1  # target has fewer present joints than source
    return {
        "image": rng.integers(0, 256, (batch, H, W, 3), dtype=np.uint8),
        "parsing": rng.integers(0, 10, (batch, H, W), dtype=np.uint8),
        "source_keypoints": src,
        "target_keypoints": tgt,
    }


def png(array):
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    return cv2.imencode(".png", array)[1].tobytes()


def unpng(data):
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def export_base(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("exports") / "spt")
    os.makedirs(base)
    export_stand_in(base, 1, shift=1)
    return base


@pytest.fixture(scope="module")
def loaded(export_base):
    return tf.saved_model.load(os.path.join(export_base, "1"))


@pytest.fixture(scope="module")
def server(export_base):
    srv, port = local_server.serve(export_base, MODEL, port=0, max_batch=MAX_BATCH, workers=8, poll_seconds=0)
    yield srv, port
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with client_lib.SptClient(f"127.0.0.1:{server[1]}", MODEL, timeout=20) as c:
        yield c


@pytest.fixture(scope="module")
def channel(server):
    ch = grpc.insecure_channel(f"127.0.0.1:{server[1]}")
    yield ch
    ch.close()


# ------------------------------------------------------------------ round trips


def test_pose_transfer_round_trip(client, loaded):
    x = make_inputs(3)
    image, parsing = client.pose_transfer(x["image"], x["parsing"], x["source_keypoints"], x["target_keypoints"])
    want_parsing = expected_parsing(x["parsing"], x["source_keypoints"], x["target_keypoints"])
    np.testing.assert_array_equal(parsing, want_parsing)
    np.testing.assert_array_equal(image, expected_render(x["image"], want_parsing))
    direct = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in x.items()})
    np.testing.assert_array_equal(image, direct["image"].numpy())
    np.testing.assert_array_equal(parsing, direct["parsing"].numpy())
    assert image.dtype == np.uint8 and image.shape == (3, H, W, 3)
    assert client.last_model_spec.version.value == 1
    assert client.last_model_spec.signature_name == "serving_default"


def test_unbatched_arguments_give_unbatched_results(client):
    x = make_inputs(1, seed=1)
    image, parsing = client.pose_transfer(
        x["image"][0], x["parsing"][0], x["source_keypoints"][0], x["target_keypoints"][0]
    )
    assert image.shape == (H, W, 3) and parsing.shape == (H, W)
    want = expected_parsing(x["parsing"], x["source_keypoints"], x["target_keypoints"])[0]
    np.testing.assert_array_equal(parsing, want)
    with pytest.raises(ValueError, match="parsing is batched unlike"):
        client.pose_transfer(x["image"][0], x["parsing"], x["source_keypoints"][0], x["target_keypoints"][0])


def test_transform_parsing_round_trip(client, loaded):
    x = make_inputs(2, seed=2)
    out = client.transform_parsing(x["parsing"], x["source_keypoints"], x["target_keypoints"])
    np.testing.assert_array_equal(out, expected_parsing(x["parsing"], x["source_keypoints"], x["target_keypoints"]))
    direct = loaded.signatures["transform_parsing"](
        parsing=x["parsing"],
        source_keypoints=x["source_keypoints"],
        target_keypoints=x["target_keypoints"],
    )
    np.testing.assert_array_equal(out, direct["parsing"].numpy())


def test_render_round_trip(client, loaded):
    x = make_inputs(2, seed=3)
    target = np.random.default_rng(4).integers(0, 10, (2, H, W), dtype=np.uint8)
    out = client.render(x["image"], x["parsing"], x["source_keypoints"], x["target_keypoints"], target)
    np.testing.assert_array_equal(out, expected_render(x["image"], target))
    direct = loaded.signatures["render"](
        **{k: tf.constant(v) for k, v in x.items()}, target_parsing=tf.constant(target)
    )
    np.testing.assert_array_equal(out, direct["image"].numpy())


def test_byte_signatures_round_trip(client):
    x = make_inputs(2, seed=5)
    target = np.random.default_rng(6).integers(0, 10, (2, H, W), dtype=np.uint8)
    images = [png(i) for i in x["image"]]
    parsings = [png(p) for p in x["parsing"]]
    out, out_parsing = client.pose_transfer_bytes(images, parsings, x["source_keypoints"], x["target_keypoints"])
    want_parsing = expected_parsing(x["parsing"], x["source_keypoints"], x["target_keypoints"])
    want = expected_render(x["image"], want_parsing)
    for b in range(2):
        np.testing.assert_array_equal(unpng(out[b]), want[b])
        labels = cv2.imdecode(np.frombuffer(out_parsing[b], np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(labels, want_parsing[b])
    one = client.render_bytes(
        images[0], parsings[0], x["source_keypoints"][0], x["target_keypoints"][0], png(target[0])
    )
    assert isinstance(one, bytes)
    np.testing.assert_array_equal(unpng(one), expected_render(x["image"][:1], target[:1])[0])


def test_jpeg_image_bytes_accepted(client):
    x = make_inputs(1, seed=7)
    jpeg = cv2.imencode(".jpg", x["image"][0])[1].tobytes()
    out, out_parsing = client.pose_transfer_bytes(
        jpeg, png(x["parsing"][0]), x["source_keypoints"][0], x["target_keypoints"][0]
    )
    assert unpng(out).shape == (H, W, 3) and isinstance(out_parsing, bytes)


# ------------------------------------------------------------------ bad requests


def _with(**changes):
    x = make_inputs(2, seed=8)
    for k, v in changes.items():
        if v is None:
            del x[k]
        else:
            x[k] = v(x[k]) if callable(v) else v
    return x


def _set_kp(index, value):
    def fn(kp):
        kp = kp.copy()
        kp[index] = value
        return kp

    return fn


BAD_REQUESTS = {
    "wrong_dtype": ("image", _with(image=lambda a: a.astype(np.float32))),
    "wrong_rank": ("parsing", _with(parsing=lambda a: a[..., None])),
    "mismatched_batch": ("target_keypoints", _with(target_keypoints=lambda a: a[:1])),
    "wrong_height_width": ("image", _with(image=np.zeros((2, H, H, 3), np.uint8))),
    "batch_over_limit": ("image", {k: np.concatenate([v] * 3) for k, v in make_inputs(2).items()}),
    "keypoint_nan": ("source_keypoints", _with(source_keypoints=_set_kp((1, 4, 0), np.nan))),
    "keypoint_out_of_range": ("target_keypoints", _with(target_keypoints=_set_kp((0, 2, 1), W + 5.0))),
    "keypoint_half_missing": ("source_keypoints", _with(source_keypoints=_set_kp((0, 2, 0), -1.0))),
    "label_12": ("parsing", _with(parsing=_set_kp((1, 5, 5), 12))),
    "missing_input": ("target_keypoints", _with(target_keypoints=None)),
    "unknown_input": ("extra", {**make_inputs(2), "extra": np.zeros((2,), np.float32)}),
    "keypoints_wrong_joint_count": ("source_keypoints", _with(source_keypoints=lambda a: a[:, :17])),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_invalid_argument_then_good_request(client, case):
    name, inputs = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as err:
        client.predict(inputs, "serving_default")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert f"input {name!r}" in err.value.details()
    good = make_inputs(2, seed=9)
    out = client.predict(good, "serving_default")
    np.testing.assert_array_equal(
        out["parsing"],
        expected_parsing(good["parsing"], good["source_keypoints"], good["target_keypoints"]),
    )


def _bytes_inputs(**changes):
    x = make_inputs(1, seed=10)
    out = {
        "image_bytes": np.array([png(x["image"][0])], object),
        "parsing_bytes": np.array([png(x["parsing"][0])], object),
        "source_keypoints": x["source_keypoints"],
        "target_keypoints": x["target_keypoints"],
    }
    out.update({k: np.array([v], object) for k, v in changes.items()})
    return out


BAD_BYTES = {
    "not_an_image": ("image_bytes", _bytes_inputs(image_bytes=b"GIF89a not supported")),
    "wrong_size_png": ("image_bytes", _bytes_inputs(image_bytes=png(np.zeros((H, H, 3), np.uint8)))),
    "rgb_parsing_png": ("parsing_bytes", _bytes_inputs(parsing_bytes=png(np.zeros((H, W, 3), np.uint8)))),
    "jpeg_parsing": (
        "parsing_bytes",
        _bytes_inputs(parsing_bytes=cv2.imencode(".jpg", np.zeros((H, W), np.uint8))[1].tobytes()),
    ),
    "label_12_png": ("parsing_bytes", _bytes_inputs(parsing_bytes=png(np.full((H, W), 12, np.uint8)))),
    "wrong_size_jpeg": (
        "image_bytes",
        _bytes_inputs(image_bytes=cv2.imencode(".jpg", np.zeros((W, W, 3), np.uint8))[1].tobytes()),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BYTES))
def test_bad_encoded_input_invalid_argument(client, case):
    name, inputs = BAD_BYTES[case]
    with pytest.raises(grpc.RpcError) as err:
        client.predict(inputs, "serving_bytes")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert f"input {name!r}" in err.value.details()
    assert len(client.predict(_bytes_inputs(), "serving_bytes")["image_bytes"]) == 1


def test_corrupt_png_body_is_invalid_argument(client):
    # A valid PNG header with a truncated body passes the header checks and fails in the graph.
    data = png(np.zeros((H, W, 3), np.uint8))
    with pytest.raises(grpc.RpcError) as err:
        client.predict(_bytes_inputs(image_bytes=data[:40]), "serving_bytes")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert len(client.predict(_bytes_inputs(), "serving_bytes")["image_bytes"]) == 1


@pytest.mark.parametrize(
    "model, version, label, signature, needle",
    [
        ("other", None, "", "serving_default", "model 'other'"),
        (MODEL, 99, "", "serving_default", "version 99"),
        (MODEL, None, "stable", "serving_default", "version label 'stable'"),
        (MODEL, None, "", "no_such_signature", "signature 'no_such_signature'"),
    ],
)
def test_unknown_model_version_signature_not_found(channel, client, model, version, label, signature, needle):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:  # version and version_label are a oneof: assigning "" would clear the version
        request.model_spec.version_label = label
    for k, v in make_inputs(1).items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert needle in err.value.details()
    assert client.transform_parsing(
        make_inputs(1)["parsing"], make_inputs(1)["source_keypoints"], make_inputs(1)["target_keypoints"]
    ).shape == (1, H, W)


def test_output_filter(client):
    out = client.predict(make_inputs(1), "serving_default", output_filter=["parsing"])
    assert sorted(out) == ["parsing"]
    with pytest.raises(grpc.RpcError) as err:
        client.predict(make_inputs(1), "serving_default", output_filter=["nope"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------ metadata, status, health


def test_get_model_metadata(channel, client, export_base):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 1
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(sig_map)
    names = {"serving_default", "transform_parsing", "render", "serving_bytes", "render_bytes"}
    assert names <= set(sig_map.signature_def)
    image = sig_map.signature_def["serving_default"].inputs["image"]
    assert image.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in image.tensor_shape.dim] == [-1, H, W, 3]
    # The same SignatureDefs saved_model_cli reads from saved_model.pb.
    on_disk = local_server._read_signature_defs(os.path.join(export_base, "1"))
    assert sig_map.signature_def["render"] == on_disk["render"]

    meta = client.metadata()
    assert meta["render"]["inputs"]["target_parsing"] == {"dtype": "uint8", "shape": [None, H, W]}
    assert meta["serving_bytes"]["outputs"]["image_bytes"] == {"dtype": "string", "shape": [None]}
    assert client.image_size() == (H, W)

    del request.metadata_field[:]
    with pytest.raises(grpc.RpcError) as err:
        stub.GetModelMetadata(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_model_status(channel, client):
    assert client.status() == [(1, "AVAILABLE")]
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.value = 7
    with pytest.raises(grpc.RpcError) as err:
        stub.GetModelStatus(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    request.model_spec.name = "other"
    request.model_spec.ClearField("version")
    with pytest.raises(grpc.RpcError) as err:
        stub.GetModelStatus(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_serving_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tensorflow.serving.PredictionService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    services = {s.name for s in next(answers).list_services_response.service}
    assert {
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
        "grpc.health.v1.Health",
    } <= services


# ------------------------------------------------------------------ load


def test_concurrent_clients(server):
    errors, done = [], []

    def worker(seed):
        rng = np.random.default_rng(seed)
        with client_lib.SptClient(f"127.0.0.1:{server[1]}", MODEL, timeout=30) as c:
            for i in range(50):
                x = make_inputs(int(rng.integers(1, MAX_BATCH + 1)), seed=seed * 1000 + i)
                try:
                    image, parsing = c.pose_transfer(
                        x["image"], x["parsing"], x["source_keypoints"], x["target_keypoints"]
                    )
                    want = expected_parsing(x["parsing"], x["source_keypoints"], x["target_keypoints"])
                    np.testing.assert_array_equal(parsing, want)
                    np.testing.assert_array_equal(image, expected_render(x["image"], want))
                    done.append(1)
                except Exception as e:  # collected: a thread's assertion must fail the test
                    errors.append(f"client {seed} request {i}: {e!r}")

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(done) == 8 * 50


def test_new_version_is_picked_up(tmp_path):
    base = str(tmp_path / "spt")
    os.makedirs(base)
    export_stand_in(base, 1, shift=1)
    srv, port = local_server.serve(base, MODEL, port=0, poll_seconds=0.1)
    try:
        with client_lib.SptClient(f"127.0.0.1:{port}", MODEL, timeout=10) as c:
            x = make_inputs(1, seed=11)
            args = (x["parsing"], x["source_keypoints"], x["target_keypoints"])
            np.testing.assert_array_equal(c.transform_parsing(*args), expected_parsing(*args, shift=1))
            # A half-written directory that is not a version (no integer name) is ignored,
            # and so is an integer directory without saved_model.pb yet.
            os.makedirs(os.path.join(base, ".tmp-5"))
            os.makedirs(os.path.join(base, "4"))
            export_stand_in(base, 2, shift=2)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                out = c.transform_parsing(*args)
                if c.last_model_spec.version.value == 2:
                    break
                time.sleep(0.05)
            assert c.last_model_spec.version.value == 2
            np.testing.assert_array_equal(out, expected_parsing(*args, shift=2))
            assert c.status() == [(2, "AVAILABLE")]  # latest 1: version 1 unloaded

            # A broken version is reported and skipped; version 2 keeps serving.
            shutil.rmtree(os.path.join(base, "4"))
            broken = os.path.join(base, ".tmp-3")
            os.makedirs(broken)
            with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
                f.write(b"not a saved model")
            os.rename(broken, os.path.join(base, "3"))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(c.status()) < 2:
                time.sleep(0.05)
            status = dict(c.status())
            assert status == {2: "AVAILABLE", 3: "END"}
            np.testing.assert_array_equal(c.transform_parsing(*args), expected_parsing(*args, shift=2))
    finally:
        srv.stop()


def test_server_without_versions_is_not_serving(tmp_path):
    srv, port = local_server.serve(str(tmp_path), MODEL, port=0, poll_seconds=0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            answer = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with client_lib.SptClient(f"127.0.0.1:{port}", MODEL, timeout=10) as c:
                with pytest.raises(grpc.RpcError) as err:
                    c.predict(make_inputs(1))
                assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        srv.stop()


# ------------------------------------------------------------------ CLI


def _write_case(tmp_path, scale=1):
    from spt_tf.data import formats

    x = make_inputs(1, seed=12)
    image, parsing = x["image"][0], x["parsing"][0]
    if scale != 1:
        image = np.repeat(np.repeat(image, scale, 0), scale, 1)
        parsing = np.repeat(np.repeat(parsing, scale, 0), scale, 1)
    formats.write_image(tmp_path / "a.png", image)
    formats.write_parsing(tmp_path / "a_parsing.png", parsing)
    kp = {"a.png": x["source_keypoints"][0] * scale, "b.png": x["target_keypoints"][0]}
    kp["b.png"] = np.where(kp["b.png"] == -1, -1, kp["b.png"] * scale).astype(np.float32)
    formats.write_annotations(tmp_path / "ann.csv", kp)
    with open(tmp_path / "b.json", "w") as f:
        json.dump({"keypoints": kp["b.png"].tolist()}, f)
    return x


def test_cli_pose_transfer(tmp_path, server):
    x = _write_case(tmp_path)
    out = tmp_path / "out"
    rc = client_lib.main([
        "--address", f"127.0.0.1:{server[1]}", "pose_transfer",
        "--image", str(tmp_path / "a.png"), "--parsing", str(tmp_path / "a_parsing.png"),
        "--annotations", str(tmp_path / "ann.csv"), "--source_name", "a.png",
        "--target_keypoints", str(tmp_path / "b.json"), "--out_dir", str(out),
    ])  # fmt: skip
    assert rc == 0
    want_parsing = expected_parsing(x["parsing"], x["source_keypoints"], x["target_keypoints"])[0]
    generated = cv2.cvtColor(cv2.imread(str(out / "generated.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(generated, expected_render(x["image"][:1], want_parsing[None])[0])
    np.testing.assert_array_equal(cv2.imread(str(out / "parsing.png"), cv2.IMREAD_UNCHANGED), want_parsing)
    figure = cv2.imread(str(out / "figure.png"))
    assert figure.shape == (H, 4 * W, 3)
    # The pose panel draws something where the target's joints are, nothing elsewhere.
    pose_panel = figure[:, W : 2 * W]
    assert pose_panel.any() and not pose_panel.all()


def test_cli_resize_and_bytes(tmp_path, server):
    x = _write_case(tmp_path, scale=2)
    out = tmp_path / "out"
    common = [
        "--address", f"127.0.0.1:{server[1]}", "pose_transfer",
        "--image", str(tmp_path / "a.png"), "--parsing", str(tmp_path / "a_parsing.png"),
        "--annotations", str(tmp_path / "ann.csv"), "--source_name", "a.png", "--target_name", "b.png",
        "--out_dir", str(out),
    ]  # fmt: skip
    assert client_lib.main(common) == 1  # 64x32 input, 32x16 model, no --resize: refused
    assert client_lib.main(common + ["--resize", "--bytes"]) == 0
    # 2x nearest-upsampled inputs area-resized back are the originals; keypoints scale back too.
    want_parsing = expected_parsing(x["parsing"], x["source_keypoints"], x["target_keypoints"])
    generated = cv2.cvtColor(cv2.imread(str(out / "generated.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(generated, expected_render(x["image"], want_parsing)[0])
    np.testing.assert_array_equal(cv2.imread(str(out / "parsing.png"), cv2.IMREAD_UNCHANGED), want_parsing[0])
    assert cv2.imread(str(out / "figure.png")).shape == (H, 4 * W, 3)


def test_cli_render_and_transform_parsing(tmp_path, server):
    from spt_tf.data import formats

    x = _write_case(tmp_path)
    target = np.random.default_rng(13).integers(0, 10, (H, W), dtype=np.uint8)
    formats.write_parsing(tmp_path / "t.png", target)
    base = ["--address", f"127.0.0.1:{server[1]}"]
    kp = ["--annotations", str(tmp_path / "ann.csv"), "--source_name", "a.png", "--target_name", "b.png"]
    assert (
        client_lib.main(
            base
            + [
                "render",
                "--image",
                str(tmp_path / "a.png"),
                "--parsing",
                str(tmp_path / "a_parsing.png"),
                "--target_parsing",
                str(tmp_path / "t.png"),
                "--out_dir",
                str(tmp_path / "r"),
            ]
            + kp
        )
        == 0
    )
    generated = cv2.cvtColor(cv2.imread(str(tmp_path / "r" / "generated.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(generated, expected_render(x["image"][:1], target[None])[0])
    assert (
        client_lib.main(
            base
            + ["transform_parsing", "--parsing", str(tmp_path / "a_parsing.png"), "--out_dir", str(tmp_path / "p")]
            + kp
        )
        == 0
    )
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / "p" / "parsing.png"), cv2.IMREAD_UNCHANGED),
        expected_parsing(x["parsing"], x["source_keypoints"], x["target_keypoints"])[0],
    )
    # An unknown annotation row is a clear error, not a crash.
    assert (
        client_lib.main(
            base
            + [
                "transform_parsing",
                "--parsing",
                str(tmp_path / "a_parsing.png"),
                "--out_dir",
                str(tmp_path / "p"),
                "--annotations",
                str(tmp_path / "ann.csv"),
                "--source_name",
                "zz.png",
                "--target_name",
                "b.png",
            ]
        )
        == 1
    )


def test_read_keypoints_json_errors(tmp_path):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"keypoints": [[1, 2]] * 17}))
    with pytest.raises(ValueError, match="18 \\[y, x\\] pairs"):
        client_lib.read_keypoints_json(path)
    path.write_text(json.dumps({"points": []}))
    with pytest.raises(ValueError, match="'keypoints' field"):
        client_lib.read_keypoints_json(path)


# ------------------------------------------------------------------ REST (TF Serving's JSON API)


class _RestStandIn(http.server.BaseHTTPRequestHandler):
    """TF Serving's documented REST API over the in-process SavedModel (columnar format)."""

    loaded = None
    sig_map = None

    def log_message(self, *args):
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if self.path != f"/v1/models/{MODEL}/metadata":
            return self._send(404, {"error": f"Servable not found for {self.path}"})
        meta = {"signature_def": json_format.MessageToDict(self.sig_map, preserving_proto_field_name=True)}
        self._send(200, {"model_spec": {"name": MODEL, "version": "1"}, "metadata": meta})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        fn = self.loaded.signatures[body["signature_name"]]
        specs = validation.signature_input_specs(fn)
        try:
            args = {}
            for name, value in body["inputs"].items():
                if specs[name].dtype == tf.string:
                    import base64

                    args[name] = tf.constant([base64.b64decode(v["b64"]) for v in value])
                else:
                    args[name] = tf.constant(np.asarray(value, specs[name].dtype.as_numpy_dtype))
            out = fn(**args)
        except (KeyError, ValueError, tf.errors.InvalidArgumentError) as e:
            return self._send(400, {"error": str(e)})
        encoded = {}
        for name, value in out.items():
            if name.endswith("_bytes"):
                import base64

                encoded[name] = [{"b64": base64.b64encode(v).decode()} for v in value.numpy()]
            else:
                encoded[name] = value.numpy().tolist()
        # TF Serving drops the name when a signature has a single output.
        self._send(200, {"outputs": encoded if len(encoded) > 1 else next(iter(encoded.values()))})


def test_rest_client_against_tf_serving_json_format(export_base, loaded):
    handler = type("Handler", (_RestStandIn,), {})
    handler.loaded = loaded
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for k, v in local_server._read_signature_defs(os.path.join(export_base, "1")).items():
        sig_map.signature_def[k].CopyFrom(v)
    handler.sig_map = sig_map
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        rest = client_lib.SptRestClient(f"http://127.0.0.1:{httpd.server_address[1]}", MODEL)
        assert rest.image_size() == (H, W)
        x = make_inputs(2, seed=14)
        image, parsing = rest.pose_transfer(x["image"], x["parsing"], x["source_keypoints"], x["target_keypoints"])
        want_parsing = expected_parsing(x["parsing"], x["source_keypoints"], x["target_keypoints"])
        np.testing.assert_array_equal(parsing, want_parsing)
        np.testing.assert_array_equal(image, expected_render(x["image"], want_parsing))
        assert image.dtype == np.uint8
        target = want_parsing
        out = rest.render(x["image"], x["parsing"], x["source_keypoints"], x["target_keypoints"], target)
        np.testing.assert_array_equal(out, expected_render(x["image"], target))
        one, one_parsing = rest.pose_transfer_bytes(
            png(x["image"][0]), png(x["parsing"][0]), x["source_keypoints"][0], x["target_keypoints"][0]
        )
        np.testing.assert_array_equal(unpng(one), expected_render(x["image"], want_parsing)[0])
        labels = cv2.imdecode(np.frombuffer(one_parsing, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(labels, want_parsing[0])
        bad = client_lib.SptRestClient(f"http://127.0.0.1:{httpd.server_address[1]}", "other")
        with pytest.raises(client_lib.RestError, match="HTTP 404"):
            bad.metadata()
    finally:
        httpd.shutdown()
        httpd.server_close()


# ------------------------------------------------------------------ validation helpers, config


def test_jpeg_and_png_headers_give_the_size():
    jpeg = cv2.imencode(".jpg", np.zeros((37, 23, 3), np.uint8))[1].tobytes()
    assert validation._jpeg_size(jpeg) == (37, 23)
    assert validation._png_header(png(np.zeros((5, 9), np.uint8))) == (5, 9, 8, 0)
    assert validation._jpeg_size(b"\xff\xd8\xff") is None


def test_model_image_size_from_signatures(loaded):
    assert validation.model_image_size(loaded.signatures) == (H, W)
    byte_only = {k: loaded.signatures[k] for k in ("serving_bytes",)}
    assert validation.model_image_size(byte_only) is None


def test_models_config_parses_as_tf_serving_config():
    with open(os.path.join(REPO, "serving", "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    models = config.model_config_list.config
    assert [m.name for m in models] == ["spt", "spt_pinned"]
    assert models[0].model_platform == "tensorflow"
    assert models[0].model_version_policy.latest.num_versions == 1
    assert list(models[1].model_version_policy.specific.versions) == [1]
