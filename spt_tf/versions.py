"""Numbered SavedModel version directories (TF Serving's layout), without TensorFlow.

An export base directory holds one sub-directory per version, named by an
integer (``1/``, ``2/``, ...), each with a ``saved_model.pb``. Export writes the
next one; the evaluator, the apps, the studio and the local server read the
newest. This module is the one place that scans them; it imports nothing heavy
so the serving side can use it.
"""

from __future__ import annotations

import os
import re

_VERSION_DIR = re.compile(r"^\d+$")


class NoSavedModelError(FileNotFoundError):
    """A path is neither a SavedModel directory nor a base directory of versions."""


def is_saved_model(path: str) -> bool:
    """True when ``path`` is a directory holding a ``saved_model.pb``."""
    return os.path.isfile(os.path.join(os.fspath(path), "saved_model.pb"))


def list_versions(base_dir: str) -> list[int]:
    """Integer version directories under ``base_dir`` holding a ``saved_model.pb``, ascending.

    A missing ``base_dir`` has no versions. Directories with other names, and
    numbered ones without a ``saved_model.pb`` (an export in progress writes to
    a hidden temporary directory, then renames), are not versions.
    """
    base_dir = os.fspath(base_dir)
    try:
        names = os.listdir(base_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(n) for n in names if _VERSION_DIR.match(n) and is_saved_model(os.path.join(base_dir, n)))


def next_version(base_dir: str) -> int:
    """The version number an export writes next: one above every numbered directory there.

    Numbered directories without a ``saved_model.pb`` count too, so a version
    number is never reused.
    """
    base_dir = os.fspath(base_dir)
    try:
        names = os.listdir(base_dir)
    except (FileNotFoundError, NotADirectoryError):
        return 1
    return max((int(n) for n in names if _VERSION_DIR.match(n)), default=0) + 1


def resolve_saved_model(path: str) -> str:
    """A SavedModel directory itself, or the newest version directory under an export base.

    Raises:
      NoSavedModelError: ``path`` does not exist, or holds no ``saved_model.pb``
        nor a numbered version directory with one.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise NoSavedModelError(f"{path}: SavedModel directory not found")
    if is_saved_model(path):
        return path
    versions = list_versions(path)
    if not versions:
        raise NoSavedModelError(
            f"{path}: no saved_model.pb here nor in a numbered version subdirectory (export one with "
            "python export.py --workdir ... --export_dir ...)"
        )
    return os.path.join(path, str(versions[-1]))
