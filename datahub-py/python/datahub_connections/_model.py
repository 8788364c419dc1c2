"""The objects a hub answers with: ``Connection``, ``Connections``, ``TestReport``, ``Health``.

One layer for both modes: each is built from the REST API's JSON (which the native module speaks
too). They are frozen; none holds a secret (a password is fetched, audited, only when
``dsn()``, ``sqlalchemy_url()``, ``psycopg()`` or ``engine()`` asks). Each has a terminal
``__repr__`` and a notebook ``_repr_html_`` whose every value is HTML-escaped.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import (
    TYPE_CHECKING,
    Any,
    ContextManager,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
    overload,
)

from ._glue import DataFrame
from ._errors import TestFailed
from ._secret import Secret

if TYPE_CHECKING:  # pragma: no cover
    import psycopg
    import sqlalchemy

    from ._hub import Hub


def _time(value: Any) -> Optional[datetime]:
    """An RFC 3339 text as an aware datetime (``Z`` included on every Python ≥ 3.9)."""
    if value is None:
        return None
    text = str(value)
    try:
        # Python >= 3.11 reads every RFC 3339 form the API writes.
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    # Python < 3.11 takes at most six fractional digits.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        tail = ""
        for i, ch in enumerate(rest):
            if not ch.isdigit():
                tail = rest[i:]
                break
            digits += ch
        text = f"{head}.{digits[:6].ljust(6, '0')}{tail}"
    return datetime.fromisoformat(text)


def _opt_str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _opt_int(value: Any) -> Optional[int]:
    return None if value is None else int(value)


def _opt_float(value: Any) -> Optional[float]:
    return None if value is None else float(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _html_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: Optional[str] = None
) -> str:
    """An HTML table; every header, cell and the caption escaped."""
    out = ["<table>"]
    if caption is not None:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>")
    out.extend(f"<th>{html.escape(h)}</th>" for h in headers)
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        out.extend(f"<td>{html.escape(_cell(v))}</td>" for v in row)
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _pairs_table(pairs: Sequence[Tuple[str, Any]], caption: Optional[str] = None) -> str:
    return _html_table(["field", "value"], pairs, caption)


# --- connections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsSettings:
    """A connection's TLS settings (the client key is never here, only whether one is set)."""

    mode: str
    ca_cert_pem: Optional[str]
    client_cert_pem: Optional[str]
    channel_binding: str

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> "TlsSettings":
        return cls(
            mode=str(d.get("mode", "verify-full")),
            ca_cert_pem=_opt_str(d.get("ca_cert_pem")),
            client_cert_pem=_opt_str(d.get("client_cert_pem")),
            channel_binding=str(d.get("channel_binding", "prefer")),
        )


@dataclass(frozen=True)
class Options:
    """Connect options."""

    connect_timeout_ms: int
    application_name: Optional[str]


@dataclass(frozen=True)
class Monitoring:
    """Monitoring settings."""

    enabled: bool
    interval_s: int
    slow_ms: int


@dataclass(frozen=True)
class HealthSummary:
    """The derived health carried by a connection."""

    status: str
    checked_at: Optional[datetime]
    latency_ms: Optional[int]
    error_kind: Optional[str]
    uptime_24h: Optional[float]

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> "HealthSummary":
        return cls(
            status=str(d.get("status", "unknown")),
            checked_at=_time(d.get("checked_at")),
            latency_ms=_opt_int(d.get("latency_ms")),
            error_kind=_opt_str(d.get("error_kind")),
            uptime_24h=_opt_float(d.get("uptime_24h")),
        )


@dataclass(frozen=True)
class Connection:
    """A saved connection: its settings and derived health (``status``, ``checked_at``,
    ``latency_ms``, ``error_kind``, ``uptime_24h``), never a secret. ``engine_name`` is the
    API's ``engine`` (``postgres``): ``engine()`` is the SQLAlchemy engine.

    ``version`` is what :meth:`Hub.update` and :meth:`Hub.delete` need. ``access`` is the
    caller's grant level (``view``, ``use``, ``manage``) when the hub answered it (``get``).
    """

    id: str
    name: str
    description: Optional[str]
    engine_name: str
    host: str
    port: int
    database: str
    username: str
    password_set: bool
    client_key_set: bool
    tls: TlsSettings
    options: Options
    tags: Tuple[str, ...]
    monitoring: Monitoring
    owner: Optional[str]
    version: int
    created_at: Optional[datetime]
    updated_at: Optional[datetime]
    status: str
    checked_at: Optional[datetime]
    latency_ms: Optional[int]
    error_kind: Optional[str]
    uptime_24h: Optional[float]
    access: Optional[str] = None
    facts: Optional[Mapping[str, Any]] = field(default=None, repr=False, compare=False)
    _hub: Optional["Hub"] = field(default=None, repr=False, compare=False)

    @classmethod
    def _from_json(cls, d: Mapping[str, Any], hub: Optional["Hub"] = None) -> "Connection":
        options = d.get("options") or {}
        monitoring = d.get("monitoring") or {}
        health = d.get("health") or {}
        tls = d.get("tls") or {}
        # Built as the dataclass's __init__ would, in one step: a page of them is built per
        # list() and the frozen __init__'s per-field object.__setattr__ is most of the cost.
        tls_settings = object.__new__(TlsSettings)
        tls_settings.__dict__.update(
            mode=str(tls.get("mode", "verify-full")),
            ca_cert_pem=_opt_str(tls.get("ca_cert_pem")),
            client_cert_pem=_opt_str(tls.get("client_cert_pem")),
            channel_binding=str(tls.get("channel_binding", "prefer")),
        )
        connect_options = object.__new__(Options)
        connect_options.__dict__.update(
            connect_timeout_ms=int(options.get("connect_timeout_ms", 5000)),
            application_name=_opt_str(options.get("application_name")),
        )
        monitor = object.__new__(Monitoring)
        monitor.__dict__.update(
            enabled=bool(monitoring.get("enabled", True)),
            interval_s=int(monitoring.get("interval_s", 60)),
            slow_ms=int(monitoring.get("slow_ms", 1000)),
        )
        conn = object.__new__(cls)
        conn.__dict__.update(
            id=str(d["id"]),
            name=str(d["name"]),
            description=_opt_str(d.get("description")),
            engine_name=str(d.get("engine", "postgres")),
            host=str(d["host"]),
            port=int(d["port"]),
            database=str(d["database"]),
            username=str(d["username"]),
            password_set=bool(d.get("password_set", False)),
            client_key_set=bool(d.get("client_key_set", False)),
            tls=tls_settings,
            options=connect_options,
            tags=tuple(str(t) for t in d.get("tags") or ()),
            monitoring=monitor,
            owner=_opt_str(d.get("owner")),
            version=int(d["version"]),
            created_at=_time(d.get("created_at")),
            updated_at=_time(d.get("updated_at")),
            status=str(health.get("status", "unknown")),
            checked_at=_time(health.get("checked_at")),
            latency_ms=_opt_int(health.get("latency_ms")),
            error_kind=_opt_str(health.get("error_kind")),
            uptime_24h=_opt_float(health.get("uptime_24h")),
            access=_opt_str(d.get("access")),
            facts=d.get("facts"),
            _hub=hub,
        )
        return conn

    def _require_hub(self) -> "Hub":
        if self._hub is None:
            from ._errors import InvalidInput

            raise InvalidInput("this connection is not bound to a hub", field="hub")
        return self._hub

    # What needs the password: fetched now (an audited reveal), never kept in this object.

    def dsn(self) -> Secret:
        """A libpq URL with the password, as a :class:`Secret` (an audited reveal; grant ``use``)."""
        return Secret(self._require_hub()._reveal(self.id)["dsn"])

    def sqlalchemy_url(self) -> Secret:
        """A ``postgresql+psycopg://`` URL with the password, as a :class:`Secret` (audited)."""
        from ._glue import sqlalchemy_url

        return sqlalchemy_url(self, self._require_hub()._reveal(self.id))

    def psycopg(self, **kwargs: Any) -> "ContextManager[psycopg.Connection[Any]]":
        """A live psycopg 3 connection with TLS as saved, closed (and its temporary CA file
        removed) when the ``with`` block ends. Extra ``kwargs`` go to ``psycopg.connect``."""
        from ._glue import psycopg_connection

        return psycopg_connection(self, self._require_hub()._reveal(self.id), **kwargs)

    def engine(self, **kwargs: Any) -> "sqlalchemy.engine.Engine":
        """A SQLAlchemy engine; the password is never in its URL or repr. Extra ``kwargs`` go to
        ``sqlalchemy.create_engine``. ``dispose()`` it when done (removes the CA file)."""
        from ._glue import make_engine

        return make_engine(self, self._require_hub()._reveal(self.id), **kwargs)

    def test(self) -> "TestReport":
        """Tests this connection now."""
        return self._require_hub().test(self.id)

    def health(
        self, since: Union[None, str, datetime] = None, limit: Optional[int] = None
    ) -> "Health":
        """Its recent checks (same as :meth:`Hub.health`)."""
        return self._require_hub().health(self.id, since=since, limit=limit)

    def _rows(self) -> List[Tuple[str, Any]]:
        return [
            ("name", self.name),
            ("id", self.id),
            ("description", self.description),
            ("engine", self.engine_name),
            ("host", self.host),
            ("port", self.port),
            ("database", self.database),
            ("username", self.username),
            ("password", "set" if self.password_set else "not set"),
            ("tls", self.tls.mode),
            ("ca certificate", "set" if self.tls.ca_cert_pem else "public roots"),
            ("client certificate", "set" if self.client_key_set else "none"),
            ("channel binding", self.tls.channel_binding),
            ("tags", self.tags),
            ("status", self.status),
            ("last check", self.checked_at),
            ("latency ms", self.latency_ms),
            ("error", self.error_kind),
            ("uptime 24h", self.uptime_24h),
            ("version", self.version),
            ("access", self.access),
        ]

    def __repr__(self) -> str:
        return (
            f"Connection(name={self.name!r}, host={self.host!r}, port={self.port}, "
            f"database={self.database!r}, username={self.username!r}, tls={self.tls.mode!r}, "
            f"status={self.status!r}, version={self.version})"
        )

    def _repr_html_(self) -> str:
        return _pairs_table(self._rows(), caption=f"Connection {self.name}")

    def to_dict(self) -> Dict[str, Any]:
        """A flat row of the table shown by ``to_pandas``."""
        return {
            "name": self.name,
            "id": self.id,
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "username": self.username,
            "tls": self.tls.mode,
            "tags": list(self.tags),
            "status": self.status,
            "checked_at": self.checked_at,
            "latency_ms": self.latency_ms,
            "error_kind": self.error_kind,
            "uptime_24h": self.uptime_24h,
            "version": self.version,
            "description": self.description,
        }


#: The columns of ``Connections._repr_html_``.
_LIST_COLUMNS = ("name", "host", "port", "database", "username", "tls", "tags", "status",
                 "latency_ms", "error_kind", "version")
#: The columns of ``Connections.to_pandas`` (``Connection.to_dict``'s keys).
_FRAME_COLUMNS = ("name", "id", "host", "port", "database", "username", "tls", "tags", "status",
                  "checked_at", "latency_ms", "error_kind", "uptime_24h", "version",
                  "description")


class Connections(Sequence[Connection]):
    """One page of connections: a sequence, plus ``total`` (over all pages), ``page`` and
    ``per_page``. Immutable.

    A page a hub answers holds the API's rows (local mode: each row's JSON text) and makes each
    :class:`Connection` the first time it is reached (then keeps it), so listing costs little
    until the page is used."""

    __slots__ = ("_rows", "_items", "_hub", "total", "page", "per_page")
    _rows: Tuple[Union[str, Mapping[str, Any]], ...]
    _items: List[Optional[Connection]]
    _hub: Optional["Hub"]
    total: int
    page: int
    per_page: int

    def __init__(self, items: Iterable[Connection], total: int, page: int, per_page: int) -> None:
        built: List[Optional[Connection]] = list(items)
        object.__setattr__(self, "_rows", ())
        object.__setattr__(self, "_items", built)
        object.__setattr__(self, "_hub", None)
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "page", page)
        object.__setattr__(self, "per_page", per_page)

    @classmethod
    def _from_json(cls, d: Mapping[str, Any], hub: Optional["Hub"] = None) -> "Connections":
        rows = tuple(d.get("items") or ())
        page = object.__new__(cls)
        object.__setattr__(page, "_rows", rows)
        object.__setattr__(page, "_items", [None] * len(rows))
        object.__setattr__(page, "_hub", hub)
        object.__setattr__(page, "total", int(d.get("total", 0)))
        object.__setattr__(page, "page", int(d.get("page", 1)))
        object.__setattr__(page, "per_page", int(d.get("per_page", 50)))
        return page

    def _at(self, index: int) -> Connection:
        """The connection at a non-negative index, made on first use. Two threads racing here
        both make one from the same row; one of the equal objects is kept."""
        item = self._items[index]
        if item is None:
            row = self._rows[index]
            item = Connection._from_json(json.loads(row) if isinstance(row, str) else row,
                                         self._hub)
            self._items[index] = item
        return item

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Connections is immutable")

    @overload
    def __getitem__(self, index: int) -> Connection: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Connection]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[Connection, Sequence[Connection]]:
        if isinstance(index, slice):
            return tuple(self._at(i) for i in range(*index.indices(len(self._items))))
        n = len(self._items)
        i = index.__index__()
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("Connections index out of range")
        return self._at(i)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Connection]:
        return (self._at(i) for i in range(len(self._items)))

    @property
    def names(self) -> List[str]:
        """The names on this page, in order."""
        return [c.name for c in self]

    def to_pandas(self) -> DataFrame:
        """This page as a DataFrame, one row per connection (needs the ``pandas`` extra)."""
        from ._glue import require

        pd = require("pandas", "pandas")
        return pd.DataFrame([c.to_dict() for c in self], columns=list(_FRAME_COLUMNS))

    def __repr__(self) -> str:
        head = f"Connections(page {self.page}, {len(self)} of {self.total})"
        lines = [head]
        for c in self:
            lines.append(
                f"  {c.name}  {c.host}:{c.port}/{c.database}  {c.username}  {c.tls.mode}  "
                f"{c.status}"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [[c.to_dict()[k] for k in _LIST_COLUMNS] for c in self]
        return _html_table(
            _LIST_COLUMNS,
            rows,
            caption=f"Connections: page {self.page}, {len(self)} of {self.total}",
        )


# --- test reports ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One step of a test: ``resolve``, ``policy``, ``tcp``, ``tls``, ``startup``, ``auth``,
    ``query``, ``config``."""

    name: str
    ms: float
    ok: bool


@dataclass(frozen=True)
class ServerInfo:
    """The server as the test's probe query saw it."""

    version: str
    database: str
    user: str
    in_recovery: bool
    connections_used: Optional[int]
    max_connections: Optional[int]


@dataclass(frozen=True)
class TlsInfo:
    """The TLS session as the test's handshake saw it."""

    protocol: Optional[str]
    cipher: Optional[str]
    peer_subject: Optional[str]
    peer_not_after: Optional[str]


@dataclass(frozen=True)
class TestReport:
    """What a connection test found. A failed test is a report (``ok`` false, ``error_kind``,
    the ``step`` it failed in and a ``hint``), not an exception: :meth:`raise_for_status`
    turns it into :class:`TestFailed` when success is required."""

    __test__ = False  # not a pytest test class

    ok: bool
    error_kind: Optional[str]
    step: Optional[str]
    hint: Optional[str]
    sqlstate: Optional[str]
    total_ms: float
    steps: Tuple[Step, ...]
    server: Optional[ServerInfo]
    tls: Optional[TlsInfo]
    name: Optional[str] = None

    @classmethod
    def _from_json(cls, d: Mapping[str, Any], name: Optional[str] = None) -> "TestReport":
        server = d.get("server")
        tls = d.get("tls")
        return cls(
            ok=bool(d.get("ok", False)),
            error_kind=_opt_str(d.get("error_kind")),
            step=_opt_str(d.get("step")),
            hint=_opt_str(d.get("hint")),
            sqlstate=_opt_str(d.get("sqlstate")),
            total_ms=float(d.get("total_ms", 0.0)),
            steps=tuple(
                Step(name=str(s["name"]), ms=float(s["ms"]), ok=bool(s["ok"]))
                for s in d.get("steps") or ()
            ),
            server=None
            if not server
            else ServerInfo(
                version=str(server.get("version", "")),
                database=str(server.get("database", "")),
                user=str(server.get("user", "")),
                in_recovery=bool(server.get("in_recovery", False)),
                connections_used=_opt_int(server.get("connections_used")),
                max_connections=_opt_int(server.get("max_connections")),
            ),
            tls=None
            if not tls
            else TlsInfo(
                protocol=_opt_str(tls.get("protocol")),
                cipher=_opt_str(tls.get("cipher")),
                peer_subject=_opt_str(tls.get("peer_subject")),
                peer_not_after=_opt_str(tls.get("peer_not_after")),
            ),
            name=name,
        )

    def raise_for_status(self) -> "TestReport":
        """Returns the report when it passed; raises :class:`TestFailed` (holding it) when not."""
        if self.ok:
            return self
        what = f" of {self.name}" if self.name else ""
        raise TestFailed(
            f"the connection test{what} failed: {self.error_kind} at step {self.step}",
            code="test_failed",
            report=self,
        )

    def _summary(self) -> str:
        if self.ok:
            return f"ok in {self.total_ms:.1f} ms"
        return f"failed: {self.error_kind} at {self.step} ({self.total_ms:.1f} ms)"

    def __repr__(self) -> str:
        who = f" {self.name}" if self.name else ""
        lines = [f"TestReport{who}: {self._summary()}"]
        if not self.ok and self.hint:
            lines.append(f"  hint: {self.hint}")
        for s in self.steps:
            lines.append(f"  {'ok ' if s.ok else 'ERR'} {s.name:<8} {s.ms:8.1f} ms")
        if self.server is not None:
            lines.append(
                f"  server: PostgreSQL {self.server.version}, database {self.server.database}, "
                f"user {self.server.user}{', standby' if self.server.in_recovery else ''}"
            )
        if self.tls is not None:
            lines.append(f"  tls: {self.tls.protocol} {self.tls.cipher}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        who = f" {self.name}" if self.name else ""
        parts = [
            f"<div><strong>{html.escape('Test' + who)}</strong>: "
            f"{html.escape(self._summary())}</div>"
        ]
        if not self.ok and self.hint:
            parts.append(f"<div>{html.escape(self.hint)}</div>")
        parts.append(
            _html_table(
                ["step", "ms", "ok"],
                [[s.name, s.ms, s.ok] for s in self.steps],
                caption="steps",
            )
        )
        facts: List[Tuple[str, Any]] = []
        if self.server is not None:
            facts += [
                ("server version", self.server.version),
                ("database", self.server.database),
                ("user", self.server.user),
                ("standby", self.server.in_recovery),
            ]
        if self.tls is not None:
            facts += [
                ("tls protocol", self.tls.protocol),
                ("cipher", self.tls.cipher),
                ("certificate subject", self.tls.peer_subject),
                ("certificate expires", self.tls.peer_not_after),
            ]
        if facts:
            parts.append(_pairs_table(facts, caption="server"))
        return "".join(parts)

    def to_dict(self) -> Dict[str, Any]:
        """A flat row (as ``test_many``'s DataFrame has)."""
        return {
            "name": self.name,
            "ok": self.ok,
            "error_kind": self.error_kind,
            "step": self.step,
            "hint": self.hint,
            "total_ms": self.total_ms,
            "server_version": self.server.version if self.server else None,
            "tls_protocol": self.tls.protocol if self.tls else None,
        }


# --- health ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One recorded health check."""

    at: Optional[datetime]
    ok: bool
    latency_ms: int
    error_kind: Optional[str]
    step: Optional[str]
    hint: Optional[str]
    status: str


@dataclass(frozen=True)
class Health:
    """A connection's health: the derived status and 24 h uptime, and its recent checks
    (newest first)."""

    status: str
    checked_at: Optional[datetime]
    latency_ms: Optional[int]
    error_kind: Optional[str]
    uptime_24h: Optional[float]
    checks: Tuple[Check, ...]
    name: Optional[str] = None

    @classmethod
    def _from_json(cls, d: Mapping[str, Any], name: Optional[str] = None) -> "Health":
        h = HealthSummary._from_json(d.get("health") or {})
        return cls(
            status=h.status,
            checked_at=h.checked_at,
            latency_ms=h.latency_ms,
            error_kind=h.error_kind,
            uptime_24h=h.uptime_24h,
            checks=tuple(
                Check(
                    at=_time(c.get("at")),
                    ok=bool(c.get("ok", False)),
                    latency_ms=int(c.get("latency_ms", 0)),
                    error_kind=_opt_str(c.get("error_kind")),
                    step=_opt_str(c.get("step")),
                    hint=_opt_str(c.get("hint")),
                    status=str(c.get("status", "unknown")),
                )
                for c in d.get("checks") or ()
            ),
            name=name,
        )

    def to_pandas(self) -> DataFrame:
        """The checks as a DataFrame, newest first (needs the ``pandas`` extra)."""
        from ._glue import require

        pd = require("pandas", "pandas")
        columns = ["at", "ok", "latency_ms", "error_kind", "step", "hint", "status"]
        return pd.DataFrame(
            [[getattr(c, k) for k in columns] for c in self.checks], columns=columns
        )

    def _uptime(self) -> str:
        return "n/a" if self.uptime_24h is None else f"{self.uptime_24h * 100:.1f} %"

    def __repr__(self) -> str:
        who = f" {self.name}" if self.name else ""
        lines = [
            f"Health{who}: {self.status}, uptime 24h {self._uptime()}, {len(self.checks)} checks"
        ]
        for c in self.checks[:10]:
            what = "ok" if c.ok else f"{c.error_kind} at {c.step}"
            lines.append(f"  {_cell(c.at)}  {c.latency_ms:6d} ms  {what}  -> {c.status}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        who = f" {self.name}" if self.name else ""
        head = (
            f"<div><strong>{html.escape('Health' + who)}</strong>: {html.escape(self.status)}, "
            f"uptime 24h {html.escape(self._uptime())}</div>"
        )
        return head + _html_table(
            ["at", "ok", "latency ms", "error", "step", "status"],
            [[c.at, c.ok, c.latency_ms, c.error_kind, c.step, c.status] for c in self.checks],
            caption="recent checks",
        )
