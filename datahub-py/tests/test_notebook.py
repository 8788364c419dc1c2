"""The example notebook, executed end to end by ``pytest --nbmake`` in a child pytest, against
the kit's TLS (verify-full) + SCRAM cluster, whose details it reads from the environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, Kit, assert_no_leak, require_native

NOTEBOOK = REPO / "datahub-py" / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_end_to_end(kit: Kit, tmp_path: Path) -> None:
    require_native("notebook")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(kit.ca_pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAHUB_")}
    env.update(
        DATAHUB_EXAMPLE_HOST=kit.host,
        DATAHUB_EXAMPLE_PORT=str(kit.port),
        DATAHUB_EXAMPLE_DATABASE=kit.database,
        DATAHUB_EXAMPLE_USER=kit.user,
        DATAHUB_EXAMPLE_PASSWORD=kit.password,
        DATAHUB_EXAMPLE_CA_FILE=str(ca_file),
    )
    # A copy, executed in place (`--overwrite`), so its outputs can be read afterwards.
    notebook = tmp_path / NOTEBOOK.name
    shutil.copyfile(NOTEBOOK, notebook)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake",
         "--nbmake-timeout=300", "--overwrite", str(notebook)],
        capture_output=True, text=True, timeout=600, cwd=str(tmp_path), env=env,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "1 passed" in out.stdout, out.stdout[-2000:]
    assert_no_leak(kit.password, out.stdout + out.stderr, "nbmake's output")
    executed = notebook.read_text()
    # Every cell ran and showed something; the password is in no output, the Secret is masked.
    cells = [c for c in json.loads(executed)["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] for c in cells), "a code cell of the notebook showed nothing"
    assert "Secret('****')" in executed
    assert_no_leak(kit.password, executed, "the executed notebook")
