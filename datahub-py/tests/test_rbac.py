"""Remote mode is bound by the server's access control: viewer vs editor vs admin on list, get,
test, reveal and psycopg (SECURITY.md S16, S19)."""

from __future__ import annotations

import pytest

import datahub_connections as dh

from conftest import Kit, Server, unique


@pytest.fixture
def shared(server: Server, kit: Kit) -> dh.Connection:
    """A connection the editor saved (and so manages), granted `view` to the viewer."""
    editor = server.hub("editor")
    conn = editor.add(name=unique("rbac"), host=kit.host, port=kit.port, database=kit.database,
                      username=kit.user, password=kit.password, tls="verify-full",
                      ca_cert=kit.ca_pem)
    server.grant(conn.id, "viewer", "view")
    return conn


@pytest.mark.parametrize("role", ["admin", "editor"])
def test_admin_and_editor_may_do_everything(server: Server, shared: dh.Connection,
                                            role: str) -> None:
    hub = server.hub(role)
    assert shared.name in hub.list(search=shared.name).names
    conn = hub.get(shared.name)
    assert conn.access == "manage"
    assert hub.test(shared.name).ok
    assert conn.dsn().reveal().startswith("postgres")
    with conn.psycopg() as pg:
        assert pg.execute("SELECT 1").fetchone() == (1,)


def test_viewer_may_view_but_not_use(server: Server, shared: dh.Connection) -> None:
    viewer = server.hub("viewer")
    assert viewer.list(search=shared.name).names == [shared.name]
    conn = viewer.get(shared.name)
    assert conn.access == "view"
    assert isinstance(viewer.health(shared.name), dh.Health)
    with pytest.raises(dh.PermissionDenied) as e:
        viewer.test(shared.name)
    assert e.value.status == 403 and e.value.kind == "permission_denied"
    with pytest.raises(dh.PermissionDenied):
        conn.dsn()
    with pytest.raises(dh.PermissionDenied):
        conn.sqlalchemy_url()
    with pytest.raises(dh.PermissionDenied):
        with conn.psycopg():
            pass  # pragma: no cover
    with pytest.raises(dh.PermissionDenied):
        conn.engine()
    with pytest.raises(dh.PermissionDenied):
        viewer.update(shared.name, version=conn.version, description="viewer edit")
    with pytest.raises(dh.PermissionDenied):
        viewer.add(name=unique(), host="127.0.0.1", database="app", username="app",
                   password="x-" + unique())


def test_viewer_does_not_see_ungranted_connections(server: Server, kit: Kit) -> None:
    editor = server.hub("editor")
    hidden = editor.add(name=unique("hidden"), host=kit.host, port=kit.port,
                        database=kit.database, username=kit.user, password=kit.password,
                        tls="verify-full", ca_cert=kit.ca_pem)
    viewer = server.hub("viewer")
    assert viewer.list(search=hidden.name).total == 0
    with pytest.raises(dh.NotFound):
        viewer.get(hidden.name)
    with pytest.raises(dh.NotFound):
        viewer.get(hidden.id)
    with pytest.raises(dh.NotFound):
        viewer.test(hidden.id)


def test_use_grant_lets_the_viewer_test_and_connect(server: Server, shared: dh.Connection) -> None:
    server.grant(shared.id, "viewer", "use")
    viewer = server.hub("viewer")
    conn = viewer.get(shared.name)
    assert conn.access == "use"
    assert viewer.test(shared.name).ok
    with conn.psycopg() as pg:
        assert pg.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(dh.PermissionDenied):
        viewer.update(shared.name, version=conn.version, description="not a manager")


def test_a_wrong_token_is_unauthenticated(server: Server) -> None:
    hub = dh.connect(server.url, token="dh_" + "0" * 43)
    with pytest.raises(dh.Unauthenticated) as e:
        hub.list()
    assert e.value.status == 401
