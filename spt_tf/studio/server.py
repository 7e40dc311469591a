"""The studio's HTTP server: the page's static files and a JSON API over :class:`~spt_tf.studio.core.Studio`.

``http.server.ThreadingHTTPServer`` (standard library, one thread per
connection, HTTP/1.1 keep-alive). Every API reply is JSON, except the result
PNG and the bundle ZIP; an error is ``{"error": message}`` with status 400
(bad input), 404 (unknown person / result), 413 (request over the limit) or 500,
and the server keeps serving. Endpoints (docs/studio.md has the fields):

* ``GET /``, ``GET /static/<file>``: the page (no CDN: every asset is here);
* ``GET /api/info``: model, labels, palette, skeleton, dataset names, limits;
* ``POST /api/person``: load a person: ``{"dataset": name}`` or uploads
  ``{"image": {"name", "data"}, "keypoints": ..., "parsing": ..., ...}`` (base64);
* ``POST /api/pose``, ``/api/edit``, ``/api/texture``: the three renders;
* ``POST /api/edit_preset``: the apps' sleeve / lower edits on a map;
* ``POST /api/pose_of``: another person's pose in this person's frame;
* ``GET /api/result/<id>/output.png``, ``GET /api/result/<id>/bundle.zip``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from absl import logging

from spt_tf.studio import bundle, core

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
# A body over the limit is read and dropped (so that the client sees the 413 reply, not a
# reset connection) up to this many times the limit; a larger one closes the connection.
DRAIN_FACTOR = 4


def _upload(body: dict, field: str) -> core.Upload | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("data"), str):
        raise core.StudioError(f'{field}: expected {{"name": file name, "data": base64 of the file}}')
    name = core.safe_name(value.get("name"), field)
    try:
        data = base64.b64decode(value["data"], validate=True)
    except (binascii.Error, ValueError):
        raise core.StudioError(f"{name} (field {field}): the file's data is not base64") from None
    if not data:
        raise core.StudioError(f"{name} (field {field}): empty file")
    return core.Upload(name, data)


def _text(body: dict, field: str, default=None):
    value = body.get(field, default)
    if value is not None and not isinstance(value, str):
        raise core.StudioError(f"{field}: expected a string, got {type(value).__name__}")
    return value


def _int(body: dict, field: str):
    value = body.get(field)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise core.StudioError(f"{field}: expected an integer, got {value!r}") from None


class Api:
    """The endpoints as methods of plain dicts: ``(method, path) -> handler(body) -> reply``."""

    def __init__(self, studio: core.Studio):
        self.studio = studio

    def info(self, _body):
        return self.studio.info()

    def person(self, body):
        role = _text(body, "role", "source")
        need_parsing = role == "source"  # a second person may come without a map (pose only)
        if body.get("dataset") is not None:
            rec = self.studio.load_dataset_person(_text(body, "dataset"), need_parsing=need_parsing)
        else:
            rec = self.studio.load_upload_person(
                _upload(body, "image"), _upload(body, "keypoints"), _text(body, "csv_row"), _upload(body, "parsing"),
                _text(body, "parsing_format", "spt") or "spt", _int(body, "person_index"), need_parsing=need_parsing,
                role="source" if role == "source" else "second person",
            )  # fmt: skip
        return self.studio.person_json(rec)

    def pose(self, body):
        return self.studio.pose(_text(body, "person"), body.get("target_keypoints"))

    def edit(self, body):
        return self.studio.edit(_text(body, "person"), body.get("edited_parsing"))

    def edit_preset(self, body):
        lab = self.studio.edit_preset(_text(body, "person"), body.get("parsing"), _text(body, "sleeves"),
                                      _text(body, "lower"))  # fmt: skip
        return {"parsing": base64.b64encode(lab.tobytes()).decode("ascii")}

    def texture(self, body):
        return self.studio.texture(_text(body, "person"), _text(body, "donor"),
                                   _text(body, "garment", core.GARMENT_ALL) or core.GARMENT_ALL)  # fmt: skip

    def pose_of(self, body):
        kp = self.studio.pose_of(_text(body, "person"), _text(body, "other"))
        return {"keypoints": kp.astype(float).tolist()}


class Handler(BaseHTTPRequestHandler):
    server_version = "SPTStudio/1"
    protocol_version = "HTTP/1.1"
    server: StudioServer

    def log_message(self, fmt, *args):
        logging.debug("studio %s: " + fmt, self.address_string(), *args)

    # ---------------------------------------------------------------- replies

    def _send(self, status: int, data: bytes, ctype: str, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status: int, obj):
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, status: int, message: str):
        logging.info("studio: %d %s %s: %s", status, self.command, self.path, message)
        self._json(status, {"error": message})

    # ---------------------------------------------------------------- routes

    def do_GET(self):  # noqa: N802 (http.server's name)
        try:
            self._get()
        except core.StudioError as e:
            self._error(e.status, str(e))
        except Exception as e:  # keep serving whatever happened
            logging.exception("studio: GET %s failed", self.path)
            self._error(500, f"internal error: {type(e).__name__}: {e}")

    def _get(self):
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/") :])
        if path == "/favicon.ico":
            return self._send(204, b"", "image/x-icon")
        if path == "/api/info":
            return self._json(200, self.server.api.info(None))
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["api", "result"]:
            res = self.server.studio.result(parts[2])
            if parts[3] == "output.png":
                return self._send(
                    200,
                    res.output_png,
                    "image/png",
                    {"Content-Disposition": f'attachment; filename="studio_{res.mode}_{res.id}.png"'},
                )
            if parts[3] == "bundle.zip":
                data = bundle.zip_bytes(res, self.server.studio.model_args, self.server.studio.info()["model"])
                return self._send(
                    200,
                    data,
                    "application/zip",
                    {"Content-Disposition": f'attachment; filename="studio_{res.mode}_{res.id}.zip"'},
                )
        raise core.StudioError(f"{path}: not found", 404)

    def _static(self, name: str):
        ext = os.path.splitext(name)[1]
        path = os.path.join(STATIC_DIR, os.path.basename(name))
        if "/" in name or ext not in STATIC_TYPES or not os.path.isfile(path):
            raise core.StudioError(f"/static/{name}: not found", 404)
        with open(path, "rb") as f:
            self._send(200, f.read(), STATIC_TYPES[ext])

    def do_POST(self):  # noqa: N802
        t0 = time.perf_counter()
        routes = {"/api/person": "person", "/api/pose": "pose", "/api/edit": "edit", "/api/texture": "texture",
                  "/api/edit_preset": "edit_preset", "/api/pose_of": "pose_of"}  # fmt: skip
        path = self.path.split("?", 1)[0]
        try:
            body = self._body()
            if path not in routes:
                raise core.StudioError(f"{path}: not found", 404)
            if not isinstance(body, dict):
                raise core.StudioError("request body: expected a JSON object")
            reply = getattr(self.server.api, routes[path])(body)
            if isinstance(reply, core.Result):
                reply.server_ms = (time.perf_counter() - t0) * 1e3
                reply = self.server.studio.result_json(reply)
            self._json(200, reply)
        except core.StudioError as e:
            self._error(e.status, str(e))
        except Exception as e:
            logging.exception("studio: POST %s failed", self.path)
            self._error(500, f"internal error: {type(e).__name__}: {e}")

    def _body(self):
        limit = self.server.studio.max_request_bytes
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise core.StudioError("request body: Content-Length required", 411)
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            raise core.StudioError(f"request body: bad Content-Length {length!r}") from None
        if n > limit:
            mb = 1 << 20
            if n <= DRAIN_FACTOR * limit:
                left = n
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)
            else:
                self.close_connection = True
            raise core.StudioError(f"request body: {n / mb:.1f} MB is over the studio's limit of {limit / mb:g} MB "
                                   "(--max_request_mb); upload smaller files", 413)  # fmt: skip
        raw = self.rfile.read(n)
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise core.StudioError(f"request body: not JSON ({e})") from None


class StudioServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, studio: core.Studio, host: str = "127.0.0.1", port: int = 0):
        self.studio = studio
        self.api = Api(studio)
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"


def serve_in_thread(
    studio: core.Studio, host: str = "127.0.0.1", port: int = 0
) -> tuple[StudioServer, threading.Thread]:
    """Starts a server on a daemon thread (tests, benchmarks, screenshots); stop it with ``stop``."""
    server = StudioServer(studio, host, port)
    thread = threading.Thread(target=server.serve_forever, name="spt-studio", daemon=True)
    thread.start()
    return server, thread


def stop(server: StudioServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)
