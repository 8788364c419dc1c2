"""The package's types hold: ``mypy --strict`` on the typed example, and ``mypy.stubtest`` of
the package (the native module's stub against the built module, and the pure-Python modules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO, require_native

EXAMPLE = REPO / "datahub-py" / "examples" / "typed_example.py"


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\ncache_dir = {tmp_path / 'stubtest-cache'}\n")
    return config


def _mypy(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=600, cwd=str(Path(EXAMPLE).parent))


def test_mypy_strict_on_the_typed_example(tmp_path: Path) -> None:
    out = _mypy("mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(EXAMPLE))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success" in out.stdout


def test_stubtest_of_the_package(tmp_path: Path) -> None:
    require_native("stubtest")
    out = _mypy("mypy.stubtest", "--mypy-config-file", str(_config(tmp_path)),
                "datahub_connections")
    assert out.returncode == 0, out.stdout + out.stderr
