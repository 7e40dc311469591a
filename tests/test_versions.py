"""spt_tf.versions: the one scanner of numbered SavedModel directories."""

import os

import pytest

from spt_tf import versions


def _version(base, n, complete=True):
    d = base / str(n)
    d.mkdir(parents=True)
    if complete:
        (d / "saved_model.pb").write_bytes(b"")
    return str(d)


def test_lists_complete_numbered_versions_in_numeric_order(tmp_path):
    for n in (2, 10, 1):
        _version(tmp_path, n)
    _version(tmp_path, 11, complete=False)  # an export in progress / a broken one
    (tmp_path / "latest").mkdir()
    (tmp_path / "3.bak").mkdir()
    (tmp_path / ".tmp-12-99").mkdir()
    assert versions.list_versions(str(tmp_path)) == [1, 2, 10]  # numeric, not lexical
    assert versions.next_version(str(tmp_path)) == 12  # never reuses 11
    assert versions.resolve_saved_model(str(tmp_path)) == os.path.join(str(tmp_path), "10")


def test_a_version_directory_resolves_to_itself(tmp_path):
    v = _version(tmp_path, 4)
    assert versions.is_saved_model(v) and not versions.is_saved_model(str(tmp_path))
    assert versions.resolve_saved_model(v) == v


def test_missing_and_empty_bases(tmp_path):
    missing = str(tmp_path / "nope")
    assert versions.list_versions(missing) == [] and versions.next_version(missing) == 1
    with pytest.raises(versions.NoSavedModelError, match="not found"):
        versions.resolve_saved_model(missing)
    with pytest.raises(versions.NoSavedModelError, match="no saved_model.pb"):
        versions.resolve_saved_model(str(tmp_path))
    assert issubclass(versions.NoSavedModelError, FileNotFoundError)
