"""``Hub``: the one API of both modes.

A ``Hub`` turns Python arguments into the REST API's JSON, hands it to its backend (the native
module in local mode, ``_remote`` in remote mode; both answer the API's JSON) and turns the
answers into the objects of ``_model``. Passwords are taken as ``str`` or ``Secret``, go into the
request body only, and are never logged, echoed or kept.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import (
    Any,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Union,
)

from ._glue import DataFrame
from ._errors import InvalidInput, MissingExtra, TestFailed
from ._model import Connection, Connections, Health, TestReport
from ._progress import Progress, ProgressBar
from ._secret import Secret, as_secret

log = logging.getLogger("datahub_connections")


class Backend(Protocol):
    """What a hub needs from a mode: the REST API's calls, JSON in and out (as dicts)."""

    def describe(self) -> str: ...
    def list(self, query: Mapping[str, Any]) -> Dict[str, Any]: ...
    def get(self, ident: str) -> Dict[str, Any]: ...
    def create(self, body: Mapping[str, Any], test_first: bool) -> Dict[str, Any]: ...
    def update(self, ident: str, version: int, patch: Mapping[str, Any]) -> Dict[str, Any]: ...
    def delete(self, ident: str, version: int) -> None: ...
    def test(self, ident: str) -> Dict[str, Any]: ...
    def test_draft(self, body: Mapping[str, Any]) -> Dict[str, Any]: ...
    def test_many(
        self, idents: List[str], concurrency: int,
        progress: Optional[Progress],
    ) -> List[Dict[str, Any]]: ...
    def health(self, ident: str, since: Optional[str], limit: Optional[int]) -> Dict[str, Any]: ...
    def reveal(self, ident: str) -> Dict[str, Any]: ...
    def close(self) -> None: ...


class LocalBackend:
    """Local mode: the native module's ``LocalHub`` (JSON text in and out)."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def describe(self) -> str:
        return str(self._native.describe())

    def list(self, query: Mapping[str, Any]) -> Dict[str, Any]:
        # The page's rows stay JSON text until used (``Connections`` reads each on access).
        head, rows = self._native.list(json.dumps(dict(query)))
        page = dict(json.loads(head))
        page["items"] = list(rows)
        return page

    def get(self, ident: str) -> Dict[str, Any]:
        return dict(json.loads(self._native.get(ident)))

    def create(self, body: Mapping[str, Any], test_first: bool) -> Dict[str, Any]:
        try:
            return dict(json.loads(self._native.create(json.dumps(dict(body)), test_first)))
        except TestFailed as e:
            # The native module gives the failed test's report as JSON text.
            if isinstance(e.report, (str, bytes)):
                e.report = TestReport._from_json(json.loads(e.report))
            elif isinstance(e.report, dict):
                e.report = TestReport._from_json(e.report)
            raise

    def update(self, ident: str, version: int, patch: Mapping[str, Any]) -> Dict[str, Any]:
        return dict(json.loads(self._native.update(ident, int(version), json.dumps(dict(patch)))))

    def delete(self, ident: str, version: int) -> None:
        self._native.delete(ident, int(version))

    def test(self, ident: str) -> Dict[str, Any]:
        return dict(json.loads(self._native.test(ident)))

    def test_draft(self, body: Mapping[str, Any]) -> Dict[str, Any]:
        return dict(json.loads(self._native.test_draft(json.dumps(dict(body)))))

    def test_many(
        self, idents: List[str], concurrency: int,
        progress: Optional[Progress],
    ) -> List[Dict[str, Any]]:
        return list(json.loads(self._native.test_many(list(idents), int(concurrency), progress)))

    def health(self, ident: str, since: Optional[str], limit: Optional[int]) -> Dict[str, Any]:
        return dict(json.loads(self._native.health(ident, since, limit)))

    def reveal(self, ident: str) -> Dict[str, Any]:
        return dict(json.loads(self._native.reveal(ident)))

    def close(self) -> None:
        self._native.close()


#: ``update``'s keyword arguments and where each goes in the API's ``PatchConnection``.
_PATCH_FIELDS: Dict[str, Sequence[str]] = {
    "name": ("name",),
    "description": ("description",),
    "engine": ("engine",),
    "host": ("host",),
    "port": ("port",),
    "database": ("database",),
    "username": ("username",),
    "password": ("password",),
    "tags": ("tags",),
    "tls": ("tls", "mode"),
    "ca_cert": ("tls", "ca_cert_pem"),
    "client_cert": ("tls", "client_cert_pem"),
    "client_key": ("tls", "client_key_pem"),
    "channel_binding": ("tls", "channel_binding"),
    "connect_timeout_ms": ("options", "connect_timeout_ms"),
    "application_name": ("options", "application_name"),
    "monitoring": ("monitoring", "enabled"),
    "interval_s": ("monitoring", "interval_s"),
    "slow_ms": ("monitoring", "slow_ms"),
}

#: The secret ones among them: taken as ``str`` or ``Secret``.
_SECRET_FIELDS = ("password", "client_key")


def _put(body: Dict[str, Any], path: Sequence[str], value: Any) -> None:
    target = body
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def _since_text(since: Union[None, str, datetime]) -> Optional[str]:
    if since is None or isinstance(since, str):
        return since
    if since.tzinfo is None:
        raise InvalidInput("must be a timezone-aware datetime (or RFC 3339 text)", field="since")
    return since.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _url_fields(url: str) -> Dict[str, Any]:
    """The ``CreateConnection`` fields of a URL, read by the native module with the core's
    rules (in both modes: the wheel always has it)."""
    if not isinstance(url, str):
        raise InvalidInput("must be a str", field="url")
    try:
        from . import _native
    except ImportError as e:
        raise MissingExtra(
            "url= is read by the native module, which this installation lacks: "
            "pip install ./datahub-py (or pass the fields by name)",
            code="missing_extra",
        ) from e
    return dict(json.loads(_native.parse_url(url)))


def _settings_body(
    *,
    url: Optional[str],
    name: Optional[str],
    host: Optional[str],
    port: Optional[int],
    database: Optional[str],
    username: Optional[str],
    password: "Optional[str | Secret]",
    tls: Optional[str],
    ca_cert: Optional[str],
    client_cert: Optional[str],
    client_key: "Optional[str | Secret]",
    channel_binding: Optional[str],
    tags: Optional[Iterable[str]],
    description: Optional[str],
    connect_timeout_ms: Optional[int],
    application_name: Optional[str],
    monitoring: Optional[bool],
    interval_s: Optional[int],
    slow_ms: Optional[int],
) -> Dict[str, Any]:
    """The JSON of ``CreateConnection``/``DraftTest``: a URL's fields, then the explicit ones."""
    body: Dict[str, Any] = _url_fields(url) if url is not None else {}
    tls_body: Dict[str, Any] = body.pop("tls", {})
    options: Dict[str, Any] = body.pop("options", {})
    monitor: Dict[str, Any] = {}
    for key, value in (("name", name), ("host", host), ("port", port), ("database", database),
                       ("username", username), ("description", description)):
        if value is not None:
            body[key] = value
    if tags is not None:
        if isinstance(tags, str):
            raise InvalidInput("must be a list of strings, not one string", field="tags")
        body["tags"] = list(tags)
    if password is not None:
        body["password"] = as_secret(password, "password").reveal()
    for key, value in (("mode", tls), ("ca_cert_pem", ca_cert),
                       ("client_cert_pem", client_cert), ("channel_binding", channel_binding)):
        if value is not None:
            tls_body[key] = value
    if client_key is not None:
        tls_body["client_key_pem"] = as_secret(client_key, "client_key").reveal()
    if connect_timeout_ms is not None:
        options["connect_timeout_ms"] = connect_timeout_ms
    if application_name is not None:
        options["application_name"] = application_name
    for key, value in (("enabled", monitoring), ("interval_s", interval_s), ("slow_ms", slow_ms)):
        if value is not None:
            monitor[key] = value
    if tls_body:
        body["tls"] = tls_body
    if options:
        body["options"] = options
    if monitor:
        body["monitoring"] = monitor
    return body


class Hub:
    """A DataHub: local (``datahub_connections.open``) or remote (``datahub_connections.connect``).

    Every method works the same in both modes; remote mode is bound by the server's access
    control (a viewer's ``reveal``/``psycopg()`` raises ``PermissionDenied``).
    """

    def __init__(self, backend: Backend, mode: str) -> None:
        self._backend = backend
        self._mode = mode

    @property
    def mode(self) -> str:
        """``local`` or ``remote``."""
        return self._mode

    def __repr__(self) -> str:
        return f"Hub({self._mode}: {self._backend.describe()})"

    def _repr_html_(self) -> str:
        import html

        return f"<div>DataHub ({html.escape(self._mode)}): {html.escape(self._backend.describe())}</div>"

    def __enter__(self) -> "Hub":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the store (local mode); later calls raise ``Unavailable``."""
        self._backend.close()

    # --- reading ------------------------------------------------------------------------------

    def list(
        self,
        search: Optional[str] = None,
        status: Optional[str] = None,
        tag: Optional[str] = None,
        engine: Optional[str] = None,
        sort: Optional[str] = None,
        page: int = 1,
        per_page: int = 50,
    ) -> Connections:
        """One page of the connections this hub may view, filtered and sorted."""
        query: Dict[str, Any] = {"page": page, "per_page": per_page}
        for key, value in (("search", search), ("status", status), ("tag", tag),
                           ("engine", engine), ("sort", sort)):
            if value is not None:
                query[key] = value
        return Connections._from_json(self._backend.list(query), self)

    def get(self, name_or_id: str) -> Connection:
        """A connection by name or id (``NotFound`` when none, or one the caller may not view)."""
        return Connection._from_json(self._backend.get(name_or_id), self)

    def _names(self, **filters: Any) -> List[str]:
        names: List[str] = []
        page = 1
        while True:
            batch = self.list(page=page, per_page=200, **filters)
            names.extend(batch.names)
            if page * batch.per_page >= batch.total or not len(batch):
                return names
            page += 1

    # --- writing ------------------------------------------------------------------------------

    def add(
        self,
        name: Optional[str] = None,
        *,
        host: Optional[str] = None,
        port: Optional[int] = None,
        database: Optional[str] = None,
        username: Optional[str] = None,
        password: "Optional[str | Secret]" = None,
        tls: Optional[str] = None,
        ca_cert: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: "Optional[str | Secret]" = None,
        channel_binding: Optional[str] = None,
        tags: Optional[Iterable[str]] = None,
        description: Optional[str] = None,
        connect_timeout_ms: Optional[int] = None,
        application_name: Optional[str] = None,
        monitoring: Optional[bool] = None,
        interval_s: Optional[int] = None,
        slow_ms: Optional[int] = None,
        test_first: bool = False,
        url: Optional[str] = None,
    ) -> Connection:
        """Saves a new connection. ``url``: a ``postgresql://`` URL without a password (the
        fields given by name win over it). ``test_first``: save only if a test passes (else
        ``TestFailed`` holding the report). Default port 5432, TLS ``verify-full``."""
        body = _settings_body(
            url=url, name=name, host=host, port=port, database=database, username=username,
            password=password, tls=tls, ca_cert=ca_cert, client_cert=client_cert,
            client_key=client_key, channel_binding=channel_binding, tags=tags,
            description=description, connect_timeout_ms=connect_timeout_ms,
            application_name=application_name, monitoring=monitoring, interval_s=interval_s,
            slow_ms=slow_ms,
        )
        for required in ("name", "host", "database", "username"):
            if not body.get(required):
                raise InvalidInput("is required", field=required)
        if "password" not in body:
            raise InvalidInput("is required (a str or a Secret)", field="password")
        return Connection._from_json(self._backend.create(body, bool(test_first)), self)

    def update(self, name_or_id: str, *, version: int, **fields: Any) -> Connection:
        """Edits a connection at ``version`` (stale → ``Conflict``). Fields: ``name``,
        ``description``, ``host``, ``port``, ``database``, ``username``, ``password``, ``tags``,
        ``tls`` (the mode), ``ca_cert``, ``client_cert``, ``client_key``, ``channel_binding``,
        ``connect_timeout_ms``, ``application_name``, ``monitoring`` (on/off), ``interval_s``,
        ``slow_ms``. ``None`` removes ``description``, ``ca_cert``, ``client_cert`` and
        ``application_name``. Changing host, port or database needs the password again."""
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidInput("must be the connection's version (an int)", field="version")
        patch: Dict[str, Any] = {}
        for key, value in fields.items():
            path = _PATCH_FIELDS.get(key)
            if path is None:
                raise InvalidInput(
                    f"is not a field of a connection; accepted: {', '.join(_PATCH_FIELDS)}",
                    field=key,
                )
            if key in _SECRET_FIELDS and value is not None:
                value = as_secret(value, key).reveal()
            if key == "tags" and value is not None:
                if isinstance(value, str):
                    raise InvalidInput("must be a list of strings, not one string", field="tags")
                value = list(value)
            _put(patch, path, value)
        return Connection._from_json(self._backend.update(name_or_id, version, patch), self)

    def delete(self, name_or_id: str, *, version: int) -> None:
        """Deletes a connection at ``version`` (stale → ``Conflict``)."""
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidInput("must be the connection's version (an int)", field="version")
        self._backend.delete(name_or_id, version)

    # --- testing ------------------------------------------------------------------------------

    def test(self, name_or_id: str) -> TestReport:
        """Tests a saved connection now; a failed test is a report with ``ok`` false."""
        return TestReport._from_json(self._backend.test(name_or_id), name=name_or_id)

    def test_draft(
        self,
        *,
        url: Optional[str] = None,
        name: Optional[str] = None,
        host: Optional[str] = None,
        port: Optional[int] = None,
        database: Optional[str] = None,
        username: Optional[str] = None,
        password: "Optional[str | Secret]" = None,
        tls: Optional[str] = None,
        ca_cert: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: "Optional[str | Secret]" = None,
        channel_binding: Optional[str] = None,
        connect_timeout_ms: Optional[int] = None,
        application_name: Optional[str] = None,
    ) -> TestReport:
        """Tests settings without saving anything."""
        body = _settings_body(
            url=url, name=name, host=host, port=port, database=database, username=username,
            password=password, tls=tls, ca_cert=ca_cert, client_cert=client_cert,
            client_key=client_key, channel_binding=channel_binding, tags=None, description=None,
            connect_timeout_ms=connect_timeout_ms, application_name=application_name,
            monitoring=None, interval_s=None, slow_ms=None,
        )
        for required in ("host", "database", "username"):
            if not body.get(required):
                raise InvalidInput("is required", field=required)
        return TestReport._from_json(self._backend.test_draft(body), name=name)

    def test_many(
        self, names: Iterable[str], concurrency: int = 16, progress: bool = True
    ) -> DataFrame:
        """Tests many connections, ``concurrency`` at a time; a DataFrame in the order given,
        one row each (``name``, ``ok``, ``error_kind``, ``step``, ``hint``, ``total_ms``,
        ``server_version``, ``tls_protocol``, ``error``: the code of an error that kept the
        test from running, e.g. ``not_found``). A progress bar on stderr unless ``progress``
        is false. Needs the ``pandas`` extra.

        Remote mode: the server limits how many tests a user starts (a burst, then a steady
        rate; ``--test-rate-burst``/``--test-rate-per-second``). A test it refuses is tried
        again once the ``Retry-After`` it answered has passed, so every row is a report (or a
        real error) and none is ``rate_limited``; a long list then takes as long as the limit
        says, the progress bar showing the wait. Ctrl-C stops the waits and raises
        ``KeyboardInterrupt``. A single :meth:`test` does not wait: it raises
        :class:`RateLimited` with ``retry_after``. Local mode acts as the operator, whom the
        limit does not bind."""
        from ._glue import require

        pd = require("pandas", "pandas")
        if isinstance(names, str):
            raise InvalidInput("must be a list of names, not one string", field="names")
        idents = [str(n) for n in names]
        if concurrency < 1:
            raise InvalidInput("must be at least 1", field="concurrency")
        bar: Optional[Progress] = ProgressBar() if progress and idents else None
        answers = self._backend.test_many(idents, int(concurrency), bar)
        rows = []
        for ident, answer in zip(idents, answers):
            if answer.get("report") is not None:
                row = TestReport._from_json(answer["report"], name=ident).to_dict()
                row["error"] = None
            else:
                err = answer.get("error") or {}
                row = {"name": ident, "ok": False, "error_kind": None, "step": None,
                       "hint": err.get("message"), "total_ms": None, "server_version": None,
                       "tls_protocol": None, "error": err.get("code")}
            rows.append(row)
        columns = ["name", "ok", "error_kind", "step", "hint", "total_ms", "server_version",
                   "tls_protocol", "error"]
        return pd.DataFrame(rows, columns=columns)

    def test_all(
        self, concurrency: int = 16, progress: bool = True, **filters: Any
    ) -> DataFrame:
        """Tests every connection this hub may view (optionally filtered as in :meth:`list`:
        ``search``, ``status``, ``tag``, ``engine``), as :meth:`test_many`."""
        return self.test_many(self._names(**filters), concurrency=concurrency, progress=progress)

    def health(
        self,
        name_or_id: str,
        since: Union[None, str, datetime] = None,
        limit: Optional[int] = None,
    ) -> Health:
        """The connection's status, 24 h uptime and recent checks (default: the last 24 h)."""
        return Health._from_json(
            self._backend.health(name_or_id, _since_text(since), limit), name=name_or_id
        )

    # --- using --------------------------------------------------------------------------------

    def _reveal(self, name_or_id: str) -> Dict[str, Any]:
        """The reveal answer (audited; grant ``use``). Only ``_model``/``_glue`` call it and
        wrap the password in a ``Secret`` at once."""
        return self._backend.reveal(name_or_id)

    def read_sql(
        self, name: str, sql: str, params: Optional[Mapping[str, Any]] = None
    ) -> DataFrame:
        """Runs ``sql`` (with ``:name`` bound ``params``) on the connection through a short-lived
        SQLAlchemy engine; a pandas DataFrame."""
        from ._glue import read_sql

        conn = self.get(name)
        return read_sql(conn, self._reveal(conn.id), sql, params)

