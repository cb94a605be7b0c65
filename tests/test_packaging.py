# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Packaging: what the build checks before compiling, the installed metadata,
and the package without TensorFlow.

setup.py is loaded as a module here (it calls setup() only when run). The
installs themselves, into venvs with tensorflow-cpu, are checked by
scripts/ci_packaging.sh.
"""

import importlib.metadata
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tf_supported():
    """monolith_ops/_tf_supported.py, the one source of the supported range,
    loaded alone (as setup.py loads it)."""
    spec = importlib.util.spec_from_file_location(
        "tf_supported", os.path.join(ROOT, "monolith_ops", "_tf_supported.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The range's ends, (major, minor), and what the build and the package say.
(LO, HI) = _tf_supported().TF_SUPPORTED
LO_S, HI_S = f"{LO[0]}.{LO[1]}", f"{HI[0]}.{HI[1]}"
RANGE = f"{LO_S} to {HI_S}"
PAST = f"{HI[0]}.{HI[1] + 1}"  # the first release past the range
REQUIREMENT = f">={LO_S},<{PAST}"
BEFORE = f"{LO[0]}.{LO[1] - 1}"  # the last release before it


@pytest.fixture(scope="module")
def setup_py():
    spec = importlib.util.spec_from_file_location(
        "monolith_ops_setup", os.path.join(ROOT, "setup.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "version", [f"{LO_S}.0", f"{LO_S}.1", f"{HI_S}.0", f"{HI_S}.0rc1", f"{HI_S}.3"]
)
def test_supported_tensorflow_builds(setup_py, version):
    setup_py.check_tf_version(version)


@pytest.mark.parametrize(
    "version",
    [f"{BEFORE}.1", f"{PAST}.0", f"{PAST}.0-dev20251101", "3.0.0", "1.15.5", "unknown"],
)
def test_unsupported_tensorflow_stops_the_build_naming_it(setup_py, version):
    with pytest.raises(SystemExit) as err:
        setup_py.check_tf_version(version)
    message = str(err.value.code)
    assert f"TensorFlow {version}" in message
    assert RANGE in message


def test_extras_ask_for_the_supported_range(setup_py):
    assert setup_py.TF_EXTRAS == {
        "tensorflow": [f"tensorflow{REQUIREMENT}"],
        "tensorflow-cpu": [f"tensorflow-cpu{REQUIREMENT}"],
    }


def test_supported_range_is_the_package_one(setup_py):
    # One source: monolith_ops/_tf_supported.py, read by setup.py without
    # importing the package, and named by the package without TensorFlow.
    module = _tf_supported()
    assert setup_py.TF_SUPPORTED == module.TF_SUPPORTED
    assert module.supported_range() == RANGE


def test_installed_metadata_requires_no_tensorflow_distribution():
    requires = importlib.metadata.requires("monolith_ops") or []
    unconditional = [r for r in requires if "extra ==" not in r]
    assert not [r for r in unconditional if r.lower().startswith(("tensorflow", "tf-"))], requires
    extras = importlib.metadata.metadata("monolith_ops").get_all("Provides-Extra")
    assert {"tensorflow", "tensorflow-cpu"} <= set(extras)


def test_version_has_one_source():
    import monolith_ops

    assert importlib.metadata.version("monolith_ops") == monolith_ops.__version__
    with open(os.path.join(ROOT, "setup.py")) as f:
        assert "version=" not in f.read()


@pytest.mark.parametrize(
    "path, prefix",
    [
        ("/tmp/pip-build-env-x1y2/site", None),
        (None, "/tmp/build-env-x1y2"),
        (None, "/root/.cache/uv/builds-v0/.tmpAbC123"),
    ],
)
def test_isolated_build_stops_before_compiling(setup_py, monkeypatch, path, prefix):
    if path:
        monkeypatch.setattr(sys, "path", [path] + sys.path)
    if prefix:
        monkeypatch.setattr(sys, "prefix", prefix)
    assert setup_py.isolated_build_environment() is not None
    with pytest.raises(SystemExit) as err:
        setup_py.check_build_environment()
    message = str(err.value.code)
    assert "build isolation" in message
    assert "pip install --no-build-isolation ." in message
    assert "python -m build --wheel --no-isolation" in message


def test_plain_environment_is_not_taken_for_isolated(setup_py):
    assert setup_py.isolated_build_environment() is None
    setup_py.check_build_environment()


def test_build_without_tensorflow_says_what_to_install(setup_py, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # not importable
    with pytest.raises(SystemExit) as err:
        setup_py.check_build_environment()
    message = str(err.value.code)
    assert "finds none" in message and "--no-build-isolation" in message
    assert f"tensorflow{REQUIREMENT}" in message


def test_build_under_unsupported_tensorflow_stops_before_compiling(tmp_path):
    # A stand-in `tensorflow` just before the range first on the path of a
    # real build_ext.
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f'__version__ = "{BEFORE}.0"\n')
    env = dict(os.environ, PYTHONPATH=str(fake.parent))
    result = subprocess.run(
        [
            sys.executable,
            "setup.py",
            "build_ext",
            "--build-temp",
            str(tmp_path / "temp"),
            "--build-lib",
            str(tmp_path / "lib"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert f"TensorFlow {BEFORE}.0" in result.stderr, result.stderr
    assert RANGE in result.stderr
    assert not list(tmp_path.rglob("*.o")), "compiled anyway"
    assert not list(tmp_path.rglob("*.so")), "compiled anyway"


def test_import_without_tensorflow_is_a_clear_import_error(tmp_path):
    # The installed package (-I: not the source tree), TensorFlow hidden.
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "try:\n"
        "    import monolith_ops\n"
        "except ImportError as err:\n"
        "    print(type(err).__name__, err)\n"
        "else:\n"
        "    print('imported')\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("ImportError monolith_ops needs TensorFlow"), out
    assert "does not install TensorFlow" in out
    # The installed package has a build record: the message names its release.
    assert "built against TensorFlow 2." in out, out


def test_every_source_file_carries_the_license_header():
    root = pathlib.Path(__file__).resolve().parents[1]
    suffixes = {".py", ".sh", ".cc", ".h", ".cu", ".cuh", ".cpp", ".bzl"}
    files = [root / "setup.py", root / "BUILD", root / "build_config.bzl", root / ".ci" / "run"]
    for folder in ("cc", "monolith_ops", "tests", "scripts", "examples", "third_party"):
        files += [
            p
            for p in (root / folder).rglob("*")
            if p.suffix in suffixes and "__pycache__" not in p.parts and p.name != "_build_info.py"
        ]
    assert len(files) > 40, files
    missing = [
        str(p.relative_to(root))
        for p in files
        if "SPDX-License-Identifier: Apache-2.0" not in p.read_text()[:300]
    ]
    assert not missing, f"no license header in {missing}"


def test_tested_releases_are_the_ends_of_the_range():
    module = _tf_supported()
    for end, (major, minor) in zip(("first", "last"), module.TF_SUPPORTED):
        assert module.TF_TESTED[end].startswith(f"{major}.{minor}."), end
    assert module.ESTIMATOR_FOR_FIRST.startswith(f"{LO_S}.")
    for end in ("first", "last", "estimator", "range"):
        out = subprocess.run(
            [sys.executable, os.path.join(ROOT, "monolith_ops", "_tf_supported.py"), end],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        want = {"estimator": module.ESTIMATOR_FOR_FIRST, "range": RANGE}
        assert out == want.get(end, module.TF_TESTED.get(end)), end
