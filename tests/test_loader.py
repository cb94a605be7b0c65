# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""monolith_ops._loader: loaded once, the file and its build checked first,
every failure an OpLibraryError; load_ops() registers the ops."""

import json
import os
import shutil
import subprocess
import textwrap

import pytest
import tensorflow as tf
from conftest import run_python

import monolith_ops
from monolith_ops import _loader


def test_loads_once_and_registers_the_ops():
    first = _loader.ops.load()
    assert _loader.ops.load() is first
    for op in (
        "global_l2_reduce",
        "monolith_clip_by_global_norm",
        "monolith_clip_by_global_norm_fused",
    ):
        assert callable(getattr(_loader.ops, op))
    assert _loader.built_tf_version() == tf.__version__


def test_load_ops_returns_the_loaded_library():
    assert monolith_ops.load_ops() is _loader.ops.load()


@pytest.mark.slow
def test_importing_the_package_is_light():
    # A fresh interpreter: the package alone imports neither TensorFlow nor
    # the library (its file is not mapped into the process); clip_ops loads
    # (and registers) the ops.
    probe = textwrap.dedent("""\
        import sys
        import monolith_ops

        def library_mapped():
            with open("/proc/self/maps") as f:
                return "_monolith_ops.so" in f.read()

        assert "tensorflow" not in sys.modules
        assert not library_mapped()
        import monolith_ops.clip_ops
        assert library_mapped()
        print("ok")
        """)
    out = _run_python(probe, cwd=os.path.dirname(_installed_package()))
    assert out.strip() == "ok"


def _installed_package():
    return os.path.dirname(os.path.abspath(_loader.__file__))


def _run_python(code, cwd, *args):
    """Runs `code` in a fresh Python that imports the package from sys.path
    (the installed one, unless `cwd` holds another); returns its stdout.
    Fails the test unless it exits normally (no signal, exit code 0)."""
    return run_python(["-c", code, *args], cwd=cwd).stdout


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
    # A file that passes every check but is no shared object.
    library = package_copy / _loader.LIBRARY_FILE
    library.write_bytes(b"not a shared object")
    record = dict(_loader.tensorflow_facts(), **_loader.file_facts(str(library)))
    (package_copy / _loader.BUILD_RECORD_FILE).write_text(json.dumps(record))
    with pytest.raises(_loader.OpLibraryError) as err:
        _loader._LazyLibrary().load()
    assert err.value.__cause__ is not None
    assert _loader.REBUILD_COMMAND in str(err.value)


def test_version_mismatch_is_refused_before_loading(package_copy):
    _record_as_built(package_copy)
    record = dict(_loader.build_record(), tf_version="1.15.5")
    (package_copy / _loader.BUILD_RECORD_FILE).write_text(json.dumps(record))
    with pytest.raises(_loader.TFVersionMismatchError) as err:
        _loader._LazyLibrary().load()
    message = str(err.value)
    assert "1.15.5" in message and tf.__version__ in message
    assert _loader.REBUILD_COMMAND in message
    assert err.value.__cause__ is None  # refused, not a failed load


def test_build_record_exists_beside_the_library():
    record = _loader.build_record()
    assert record["tf_version"] == tf.__version__
    # TensorFlow's ABI facts, as the installed TensorFlow has them.
    for name in _loader.TF_FACTS:
        assert record[name] == _loader.tensorflow_facts()[name], name
    assert record["cxx11_abi_flag"] == tf.sysconfig.CXX11_ABI_FLAG
    assert record["cxx_standard"].startswith("c++")
    assert record["compiler"]  # name and version
    # The library as the build wrote it.
    assert _loader.file_facts(_loader.library_path()) == {
        k: record[k] for k in ("library_size", "library_sha256")
    }


@pytest.mark.parametrize(
    "fact, value, shown",
    [
        ("cxx11_abi_flag", 0, "_GLIBCXX_USE_CXX11_ABI 0"),
        ("cxx_standard", "c++14", "C++ standard 'c++14'"),
        ("tf_build_info", {"cpu_compiler": "msvc"}, "get_build_info()"),
    ],
)
def test_mismatch_names_the_fact_that_differs(fact, value, shown):
    installed = _loader.tensorflow_facts()
    built = dict(installed, **{fact: value})
    with pytest.raises(_loader.TFVersionMismatchError) as err:
        _loader.check_compatible(built=built, installed=installed)
    message = str(err.value)
    assert shown in message
    assert repr(installed[fact]) in message
    assert _loader.REBUILD_COMMAND in message
    _loader.check_compatible(built=installed, installed=installed)


def _record_as_built(package_dir):
    """The installed record, copied into package_dir beside a dummy library."""
    shutil.copy(
        os.path.join(_installed_package(), _loader.BUILD_RECORD_FILE),
        package_dir / _loader.BUILD_RECORD_FILE,
    )
    (package_dir / _loader.LIBRARY_FILE).write_bytes(b"never loaded")


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b"\xff\xfe",
        b'"TF_VERSION = 2"',
    ],
)
def test_unreadable_build_record_is_an_op_library_error(package_copy, content):
    _record_as_built(package_copy)
    (package_copy / _loader.BUILD_RECORD_FILE).write_bytes(content)
    with pytest.raises(_loader.OpLibraryError) as err:
        _loader._LazyLibrary().load()
    assert str(package_copy / _loader.BUILD_RECORD_FILE) in str(err.value)
    assert _loader.REBUILD_COMMAND in str(err.value)
    for query in (_loader.built_tf_version, _loader.built_with_cuda):
        with pytest.raises(_loader.OpLibraryError):
            query()


def test_library_other_than_the_recorded_one_is_refused(package_copy):
    _record_as_built(package_copy)
    with pytest.raises(_loader.OpLibraryError, match="12 bytes, but the build wrote"):
        _loader._LazyLibrary().load()
    size = _loader.build_record()["library_size"]
    (package_copy / _loader.LIBRARY_FILE).write_bytes(b"x" * size)
    with pytest.raises(_loader.OpLibraryError, match="sha256"):
        _loader._LazyLibrary().load()


@pytest.mark.skipif(shutil.which("strip") is None, reason="needs binutils' strip")
def test_stripped_library_is_refused_with_how_to_rebuild(package_copy):
    _record_as_built(package_copy)
    library = package_copy / _loader.LIBRARY_FILE
    shutil.copy(os.path.join(_installed_package(), _loader.LIBRARY_FILE), library)
    subprocess.run(["strip", "--strip-unneeded", str(library)], check=True)
    with pytest.raises(_loader.OpLibraryError) as err:
        _loader._LazyLibrary().load()
    message = str(err.value)
    assert "differs from the library the build recorded" in message
    assert "stripped" in message
    assert _loader.REBUILD_COMMAND in message


# Truncates the library of the package under sys.argv[1] at each offset in
# sys.argv[2:] and loads it with a fresh loader; prints what each load raised.
_TRUNCATE_PROBE = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    from monolith_ops import _loader
    whole = open(_loader.library_path(), "rb").read()
    for cut in map(int, sys.argv[2:]):
      with open(_loader.library_path(), "wb") as f:
        f.write(whole[:cut])
      try:
        _loader._LazyLibrary().load()
        out = {"cut": cut, "error": None}
      except Exception as err:
        out = {"cut": cut, "error": type(err).__name__, "message": str(err),
               "op_library_error": isinstance(err, _loader.OpLibraryError)}
      print("PROBE " + json.dumps(out), flush=True)
    """)


@pytest.mark.slow
def test_truncated_library_raises_instead_of_crashing(tmp_path):
    shutil.copytree(
        _installed_package(),
        tmp_path / "monolith_ops",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    size = os.path.getsize(tmp_path / "monolith_ops" / _loader.LIBRARY_FILE)
    # dlopen dies of SIGBUS on a cut in the first ~185 KB, loading segments
    # that the file no longer holds.
    cuts = [0, 1, 64, 4096, 65536, 120000, 150000, 184000, 185000, 190000, size // 2, size - 1]
    out = _run_python(_TRUNCATE_PROBE, str(tmp_path), str(tmp_path), *map(str, cuts))
    results = [
        json.loads(line[len("PROBE ") :]) for line in out.splitlines() if line.startswith("PROBE ")
    ]
    assert [r["cut"] for r in results] == cuts
    for r in results:
        assert r["op_library_error"], r
        assert f"is {r['cut']} bytes, but the build wrote {size}" in r["message"]
        assert "truncated" in r["message"]


# Saves a model that uses the ops, in this process (SavedModel) or in a graph
# (MetaGraph); the probes load it in a fresh process after one import.
_SAVED_MODEL_PROBE = textwrap.dedent("""
    import sys
    import tensorflow as tf
    {register}
    model = tf.saved_model.load(sys.argv[1])
    clipped, norm = model.clip(tf.constant([3.0, 4.0]))
    print("RESULT", clipped.numpy().tolist(), float(norm))
    """)

_META_GRAPH_PROBE = textwrap.dedent("""
    import sys
    import tensorflow as tf
    {register}
    with tf.Graph().as_default():
      tf.compat.v1.train.import_meta_graph(sys.argv[1])
      with tf.compat.v1.Session() as sess:
        clipped, norm = sess.run(["clipped:0", "norm:0"])
    print("RESULT", clipped.tolist(), float(norm))
    """)

_REGISTER = {
    "load_ops": "import monolith_ops; monolith_ops.load_ops()",
    "import_clip_ops": "import monolith_ops.clip_ops",
}


@pytest.mark.parametrize("register", sorted(_REGISTER))
@pytest.mark.slow
def test_saved_model_using_the_ops_loads_in_a_fresh_process(tmp_path, register):
    from monolith_ops import clip_ops

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)])
        def clip(self, x):
            clipped, norm = clip_ops.clip_by_global_norm([x], 1.0)
            return clipped[0], norm

    path = str(tmp_path / "model")
    tf.saved_model.save(Model(), path)
    out = _run_python(_SAVED_MODEL_PROBE.format(register=_REGISTER[register]), str(tmp_path), path)
    assert "RESULT [0.6000000238418579, 0.800000011920929] 5.0" in out


@pytest.mark.parametrize("register", sorted(_REGISTER))
@pytest.mark.slow
def test_meta_graph_using_the_ops_loads_in_a_fresh_process(tmp_path, register):
    from monolith_ops import clip_ops

    path = str(tmp_path / "model.meta")
    with tf.Graph().as_default():
        clipped, norm = clip_ops.clip_by_global_norm([tf.constant([3.0, 4.0])], 1.0)
        tf.identity(clipped[0], name="clipped")
        tf.identity(norm, name="norm")
        tf.compat.v1.train.export_meta_graph(path)
    out = _run_python(_META_GRAPH_PROBE.format(register=_REGISTER[register]), str(tmp_path), path)
    assert "RESULT [0.6000000238418579, 0.800000011920929] 5.0" in out
