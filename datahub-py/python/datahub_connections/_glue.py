"""The optional extras: pandas, psycopg 3 and SQLAlchemy, imported only when asked for.

A missing one is :class:`MissingExtra` naming what to install. Credentials come from an audited
reveal, live in a :class:`Secret` and go to the driver as a keyword argument (psycopg) or
through a ``do_connect`` event (SQLAlchemy), never into a DSN string that is kept, a URL or a
repr. TLS is as saved: ``sslmode`` and ``channel_binding`` from the connection, the CA (and a
client certificate and key) in temporary files created mode 0600 and removed when the psycopg
connection closes or the engine is disposed or garbage-collected.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import tempfile
import weakref
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Tuple

from ._errors import MissingExtra
from ._secret import Secret

if TYPE_CHECKING:  # pragma: no cover
    import psycopg
    import sqlalchemy

    from ._model import Connection


#: ``pandas.DataFrame``, typed as ``Any``: pandas is an optional extra and ships no type hints.
DataFrame = Any


def require(module: str, extra: str) -> Any:
    """Imports ``module``, or raises :class:`MissingExtra` naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"{module} is not installed: pip install \"datahub-connections[{extra}]\"",
            code="missing_extra",
        ) from None


def _write_private(prefix: str, text: str) -> str:
    """A temporary file holding ``text``, mode 0600 (``mkstemp`` creates it so), its path."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=".pem")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except BaseException:
        _remove([path])
        raise
    return path


def _remove(paths: List[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    paths.clear()


def _tls_params(conn: "Connection", revealed: Mapping[str, Any]) -> Tuple[Dict[str, str], List[str]]:
    """libpq's TLS keywords for the connection as saved, and the temporary files they name."""
    params: Dict[str, str] = {"sslmode": conn.tls.mode}
    files: List[str] = []
    try:
        if conn.tls.mode != "disable":
            params["channel_binding"] = conn.tls.channel_binding
        if conn.tls.ca_cert_pem:
            path = _write_private("datahub-ca-", conn.tls.ca_cert_pem)
            files.append(path)
            params["sslrootcert"] = path
        elif conn.tls.mode in ("verify-ca", "verify-full"):
            # No CA saved means the public roots, as the prober uses.
            params["sslrootcert"] = "system"
        key = revealed.get("client_key_pem")
        if conn.tls.client_cert_pem and key:
            cert_path = _write_private("datahub-cert-", conn.tls.client_cert_pem)
            files.append(cert_path)
            key_path = _write_private("datahub-key-", str(key))
            files.append(key_path)
            params["sslcert"] = cert_path
            params["sslkey"] = key_path
    except BaseException:
        _remove(files)
        raise
    return params, files


def _base_params(conn: "Connection") -> Dict[str, Any]:
    params: Dict[str, Any] = {
        "host": conn.host,
        "port": conn.port,
        "dbname": conn.database,
        # libpq waits whole seconds, at least 2.
        "connect_timeout": max(2, math.ceil(conn.options.connect_timeout_ms / 1000)),
    }
    if conn.options.application_name:
        params["application_name"] = conn.options.application_name
    return params


@contextlib.contextmanager
def psycopg_connection(
    conn: "Connection", revealed: Mapping[str, Any], **kwargs: Any
) -> Iterator["psycopg.Connection[Any]"]:
    """``with conn.psycopg() as pg``: a live psycopg connection, TLS as saved."""
    psycopg = require("psycopg", "psycopg")
    password = Secret(str(revealed["password"]))
    params = _base_params(conn)
    params["user"] = str(revealed.get("username") or conn.username)
    tls, files = _tls_params(conn, revealed)
    params.update(tls)
    params.update(kwargs)
    try:
        pg = psycopg.connect(password=password.reveal(), **params)
    except BaseException as e:
        _remove(files)
        if isinstance(e, psycopg.Error):
            # psycopg's message quotes the server and libpq, never the password; drop the
            # chained cause anyway so a traceback holds nothing built from the conninfo.
            raise type(e)(str(e)) from None
        raise
    try:
        with pg:
            yield pg
    finally:
        pg.close()
        _remove(files)


def sqlalchemy_url(conn: "Connection", revealed: Mapping[str, Any]) -> Secret:
    """The ``postgresql+psycopg://`` URL with the password, as a :class:`Secret`. A saved CA
    cannot travel in a URL: use :meth:`Connection.engine`, which writes it to a file."""
    sa = require("sqlalchemy", "sqlalchemy")
    query: Dict[str, str] = {"sslmode": conn.tls.mode}
    if conn.tls.mode != "disable":
        query["channel_binding"] = conn.tls.channel_binding
    if not conn.tls.ca_cert_pem and conn.tls.mode in ("verify-ca", "verify-full"):
        query["sslrootcert"] = "system"
    url = sa.engine.URL.create(
        "postgresql+psycopg",
        username=str(revealed.get("username") or conn.username),
        password=str(revealed["password"]),
        host=conn.host,
        port=conn.port,
        database=conn.database,
        query=query,
    )
    return Secret(url.render_as_string(hide_password=False))


def make_engine(conn: "Connection", revealed: Mapping[str, Any], **kwargs: Any) -> "sqlalchemy.engine.Engine":
    """A SQLAlchemy engine whose URL has no password; the password is injected per connect."""
    sa = require("sqlalchemy", "sqlalchemy")
    require("psycopg", "sqlalchemy")
    password = Secret(str(revealed["password"]))
    params = _base_params(conn)
    tls, files = _tls_params(conn, revealed)
    query = {k: str(v) for k, v in tls.items()}
    query["connect_timeout"] = str(params["connect_timeout"])
    if "application_name" in params:
        query["application_name"] = str(params["application_name"])
    try:
        url = sa.engine.URL.create(
            "postgresql+psycopg",
            username=str(revealed.get("username") or conn.username),
            host=conn.host,
            port=conn.port,
            database=conn.database,
            query=query,
        )
        engine = sa.create_engine(url, **kwargs)
    except BaseException:
        _remove(files)
        raise

    def inject_password(dialect: Any, conn_rec: Any, cargs: Any, cparams: Dict[str, Any]) -> None:
        cparams["password"] = password.reveal()

    def disposed(_engine: Any) -> None:
        _remove(files)

    sa.event.listen(engine, "do_connect", inject_password)
    sa.event.listen(engine, "engine_disposed", disposed)
    weakref.finalize(engine, _remove, files)
    made: "sqlalchemy.engine.Engine" = engine
    return made


def read_sql(
    conn: "Connection",
    revealed: Mapping[str, Any],
    sql: str,
    params: Optional[Mapping[str, Any]] = None,
) -> DataFrame:
    """``pandas.read_sql`` over a short-lived engine (disposed, CA file removed, after)."""
    pd = require("pandas", "pandas")
    sa = require("sqlalchemy", "sqlalchemy")
    engine = make_engine(conn, revealed)
    try:
        with engine.connect() as db:
            return pd.read_sql(sa.text(sql), db, params=dict(params) if params else None)
    finally:
        engine.dispose()
