"""sweeps.bytecode: a package without compiled bytecode is named, with the command that fixes it."""

import compileall
import importlib
import logging

import pytest

from sweeps.bytecode import uncompiled, warn_if_uncompiled

PACKAGE = "vae_sweep_bytecode_probe"


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package on sys.path that was never imported, so it has no __pycache__."""
    (tmp_path / PACKAGE).mkdir()
    (tmp_path / PACKAGE / "__init__.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


def test_a_package_without_bytecode_is_named_until_it_is_compiled(package):
    assert uncompiled((PACKAGE,)) == [PACKAGE]
    assert compileall.compile_dir(str(package), quiet=1)
    assert uncompiled((PACKAGE,)) == []


def test_a_missing_package_needs_no_compiling():
    assert uncompiled(("vae_sweep_no_such_package",)) == []


def test_the_warning_is_one_line_with_the_command(package, caplog):
    with caplog.at_level(logging.WARNING, logger="sweeps.bytecode"):
        warn_if_uncompiled((PACKAGE,))
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message
    assert message.startswith(f"{PACKAGE} has no compiled bytecode here")
    assert message.endswith(f"-m compileall -q {package}")
    caplog.clear()
    compileall.compile_dir(str(package), quiet=1)
    with caplog.at_level(logging.WARNING, logger="sweeps.bytecode"):
        warn_if_uncompiled((PACKAGE,))
    assert not caplog.records
