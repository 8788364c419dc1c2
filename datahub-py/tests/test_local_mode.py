"""Local mode beside a running server: notebooks open the server's own data folder (the same
SQLite store and master key) while it serves, every writer's rows are seen by all, and what a
notebook does is audited as the operator with the OS user's name."""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import datahub_connections as dh

from conftest import Kit, Server, http, require_native, unique

WRITER = """
import json, os, sys
import datahub_connections as dh
settings = json.loads(os.environ["WRITER_SETTINGS"])
hub = dh.open(sys.argv[1])
for i in range(int(sys.argv[3])):
    hub.add(name=f"{sys.argv[2]}-{i}", tags=[sys.argv[2]], **settings)
hub.close()
"""


def _settings(kit: Kit) -> Dict[str, Any]:
    return dict(host=kit.host, port=kit.port, database=kit.database, username=kit.user,
                password=kit.password, tls="verify-full", ca_cert=kit.ca_pem)


def test_notebooks_share_the_servers_data_folder_while_it_serves(
    server: Server, kit: Kit, tmp_path: Path
) -> None:
    require_native("local mode beside the server")
    first = dh.open(server.data_dir)
    second = dh.open(server.data_dir)
    admin = server.hub("admin")
    try:
        saved = first.add(name=unique("nb"), **_settings(kit))
        # The other notebook and the server see it at once; the server's answer is the same row.
        assert second.get(saved.name).id == saved.id
        assert admin.get(saved.id).version == saved.version
        # And the other way round: what the server saves, the notebooks see.
        remote = admin.add(name=unique("srv"), **_settings(kit))
        assert first.get(remote.name).id == remote.id
        assert first.test(remote.name).ok

        # Three processes write at once while the server also writes: nothing is lost.
        tag = unique("w")
        env = dict(os.environ, WRITER_SETTINGS=json.dumps(_settings(kit)))
        writers = [
            subprocess.Popen([sys.executable, "-c", WRITER, str(server.data_dir), f"{tag}-{n}", "8"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            for n in range(3)
        ]
        for i in range(8):
            admin.add(name=f"{tag}-srv-{i}", **_settings(kit), tags=[f"{tag}-srv"])
        for proc in writers:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err.decode(errors="replace")
        for label in [f"{tag}-0", f"{tag}-1", f"{tag}-2", f"{tag}-srv"]:
            assert admin.list(tag=label).total == 8, label
            assert second.list(tag=label).total == 8, label
    finally:
        first.close()
        second.close()


def test_local_mode_is_audited_as_the_operator_with_the_os_user(server: Server, kit: Kit) -> None:
    require_native("local mode audit")
    hub = dh.open(server.data_dir)
    try:
        conn = hub.add(name=unique("audited"), **_settings(kit))
        hub.test(conn.name)
    finally:
        hub.close()
    status, _, page = http(server.url, "GET",
                           f"/api/v1/audit?per_page=200&target=connection:{conn.id}",
                           token=server.tokens["admin"])
    assert status == 200, page
    mine: List[Dict[str, Any]] = page["items"]
    assert mine, page
    expected = "operator:" + (re.sub(r"[^A-Za-z0-9._-]", "_", getpass.getuser()[:64]) or "unknown")
    assert {e["actor_name"] for e in mine} == {expected}
    assert all(e["actor"] is None for e in mine)
    assert {e["action"] for e in mine} >= {"connection.create", "connection.test"}
