"""monolith_ops._loader: lazy, loaded once, clear errors."""
import importlib

import pytest
import tensorflow as tf

from monolith_ops import _loader


def test_loads_once_and_registers_the_ops():
    first = _loader.ops.load()
    assert _loader.ops.load() is first
    for op in ("global_l2_reduce", "monolith_clip_by_global_norm",
               "monolith_clip_by_global_norm_fused"):
        assert callable(getattr(_loader.ops, op))
    assert _loader.built_tf_version() == tf.__version__


def test_importing_the_package_does_not_load_the_library():
    # _loader.ops is created unloaded; only an op access loads it.
    fresh = _loader._LazyLibrary()
    assert fresh._module is None


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """The loader pointed at an empty copy of the package folder."""
    monkeypatch.setattr(_loader, "_DIR", str(tmp_path))
    return tmp_path


def test_missing_library_names_the_rebuild_command(package_copy):
    with pytest.raises(_loader.OpLibraryError) as err:
        _loader._LazyLibrary().load()
    assert isinstance(err.value, ImportError)
    assert str(package_copy) in str(err.value)
    assert _loader.REBUILD_COMMAND in str(err.value)


def test_unloadable_library_is_chained(package_copy):
    (package_copy / _loader.LIBRARY_FILE).write_bytes(b"not a shared object")
    with pytest.raises(_loader.OpLibraryError) as err:
        _loader._LazyLibrary().load()
    assert err.value.__cause__ is not None
    assert _loader.REBUILD_COMMAND in str(err.value)


def test_version_mismatch_is_refused_before_loading(package_copy, monkeypatch):
    (package_copy / _loader.LIBRARY_FILE).write_bytes(b"never loaded")
    monkeypatch.setattr(_loader, "built_tf_version", lambda: "1.15.5")
    with pytest.raises(_loader.TFVersionMismatchError) as err:
        _loader._LazyLibrary().load()
    message = str(err.value)
    assert "1.15.5" in message and tf.__version__ in message
    assert _loader.REBUILD_COMMAND in message
    assert err.value.__cause__ is None  # refused, not a failed load


def test_check_compatible_names_both_versions():
    with pytest.raises(_loader.TFVersionMismatchError, match=r"2\.99\.0.*2\.98\.0"):
        _loader.check_compatible(built="2.99.0", installed="2.98.0")
    _loader.check_compatible(built="2.98.0", installed="2.98.0")


def test_build_record_exists_beside_the_library():
    info = importlib.import_module("monolith_ops._build_info")
    assert info.TF_VERSION == tf.__version__
