"""Serving: TF Serving set-up, a gRPC/REST client and a local protocol-compatible server.

* :mod:`serving.client`: ``SptClient`` (gRPC), ``SptRestClient`` (REST), the typed
  API over :mod:`serving.transport` (the gRPC and REST connections); its CLI
  (``python -m serving.client``) is :mod:`serving.cli`, with the CLI's files and
  figure in :mod:`serving.files`.
* :mod:`serving.local_server`: a PredictionService-compatible server for
  development and tests (not a replacement for TF Serving).
* :mod:`serving.validation`: request checks shared by the server.

Submodules import TensorFlow; this package's ``__init__`` does not.
"""
