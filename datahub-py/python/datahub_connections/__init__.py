"""DataHub Connections for Python: find, test and use your team's database connections without
ever seeing, printing or pasting a password.

Two modes, one API::

    import datahub_connections as dh
    hub = dh.open("./datahub-data")                       # local: a data folder, as the operator
    hub = dh.connect("http://127.0.0.1:8080", token=...)  # remote: a server, bound by its RBAC
    conn = hub.get("sales-replica")
    hub.test("sales-replica").raise_for_status()
    with conn.psycopg() as pg: ...
"""

from __future__ import annotations

import getpass
import os
from typing import Optional, Union

from ._errors import (
    CODE_CLASSES,
    Conflict,
    DataHubError,
    InternalError,
    InvalidInput,
    KeyringError,
    MissingExtra,
    NotFound,
    PermissionDenied,
    RateLimited,
    StaleVersion,
    TestFailed,
    Unauthenticated,
    Unavailable,
)
from ._hub import Hub, LocalBackend
from ._model import (
    Check,
    Connection,
    Connections,
    Health,
    HealthSummary,
    Monitoring,
    Options,
    ServerInfo,
    Step,
    TestReport,
    TlsInfo,
    TlsSettings,
)
from ._remote import RemoteBackend
from ._secret import Secret


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return "0+unknown"
    try:
        return version("datahub-connections")
    except PackageNotFoundError:
        return "0+unknown"


__version__: str = _version()


def open(
    path: Union[None, str, "os.PathLike[str]"] = None,
    *,
    store: "Optional[str | Secret]" = None,
    key_file: Union[None, str, "os.PathLike[str]"] = None,
    create: bool = False,
) -> Hub:
    """Opens a hub in this process as the trusted operator (recorded in the audit log with the
    OS user): a data folder (``path``: its SQLite store and ``master.key``) or a shared store
    (``store``: a ``postgres://`` URL, best passed as a :class:`Secret`; ``key_file``: the
    master key). ``create``: make the folder and a new key when the store is empty. Needs the
    native module (built with the package)."""
    try:
        from . import _native
    except ImportError as e:
        raise MissingExtra(
            "local mode needs the native module, which this installation lacks: "
            "pip install ./datahub-py (or use connect() against a server)",
            code="missing_extra",
        ) from e
    if path is None and store is None:
        raise InvalidInput("give a data folder or a store", field="path")
    store_text = store.reveal() if isinstance(store, Secret) else store
    native = _native.LocalHub.open(
        None if path is None else os.fspath(path),
        store_text,
        None if key_file is None else os.fspath(key_file),
        getpass.getuser(),
        bool(create),
    )
    return Hub(LocalBackend(native), "local")


def connect(url: str, *, token: "str | Secret", timeout: float = 30.0) -> Hub:
    """A hub on a DataHub server's REST API, acting as the API ``token``'s user (its role and
    grants apply). ``timeout``: seconds any one request may take (default 30)."""
    return Hub(RemoteBackend(url, token, timeout), "remote")


__all__ = [
    "CODE_CLASSES",
    "Check",
    "Conflict",
    "Connection",
    "Connections",
    "DataHubError",
    "Health",
    "HealthSummary",
    "Hub",
    "InternalError",
    "InvalidInput",
    "KeyringError",
    "MissingExtra",
    "Monitoring",
    "NotFound",
    "Options",
    "PermissionDenied",
    "RateLimited",
    "Secret",
    "ServerInfo",
    "StaleVersion",
    "Step",
    "TestFailed",
    "TestReport",
    "TlsInfo",
    "TlsSettings",
    "Unauthenticated",
    "Unavailable",
    "__version__",
    "connect",
    "open",
]
