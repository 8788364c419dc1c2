"""``hub.add(url=...)``: a ``postgresql://`` URL read with the core's rules (``datahub-core``'s
``dsn.rs``; the web UI's ``url-parse.js`` reads them the same way), into the API's
``CreateConnection`` fields.

The REST API takes fields, not URLs, so the client reads the URL, as the web UI does. Rules
kept: only ``postgres://`` and ``postgresql://``; one host (no lists, no unix sockets); a fixed
set of keys (S15); a key given twice is an error; no ``sslmode`` means ``verify-full``;
``sslrootcert`` with ``require`` means ``verify-ca``; ``sslrootcert=system`` needs
``verify-full``; no database means the user name. A password inside the URL is refused (S9:
pass ``password=``); ``sslrootcert``/``sslcert``/``sslkey`` name local files, read here. No
error message repeats a value from the URL (it may hold a password).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, Dict, List, Tuple

from ._errors import InvalidInput

KEYS = (
    "host", "port", "dbname", "user", "password", "sslmode", "sslrootcert", "sslcert", "sslkey",
    "channel_binding", "connect_timeout", "application_name",
)
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
CHANNEL_BINDINGS = ("disable", "prefer", "require")


def _fail(message: str, field: str = "url") -> InvalidInput:
    return InvalidInput(message, field=field)


def _decode(text: str, what: str) -> str:
    if re.search(r"%(?![0-9a-fA-F]{2})", text):
        raise _fail(f"the {what} has a '%' not followed by two hex digits")
    try:
        return urllib.parse.unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise _fail(f"the {what} is not valid UTF-8 once decoded") from None


def _read_file(path: str, key: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(f"the file named by {key} cannot be read ({type(e).__name__})",
                    field=f"url.{key}") from None


def parse(url: str) -> Dict[str, Any]:
    """The ``CreateConnection`` fields a URL gives (``tls`` and ``options`` as sub-objects)."""
    if not isinstance(url, str):
        raise _fail("must be a str")
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise _fail("a connection URL starts with postgresql:// or postgres://")
    if scheme.lower() not in ("postgres", "postgresql"):
        raise _fail("only postgres:// and postgresql:// URLs are supported")
    if re.search(r"[\s\x00-\x1f\x7f]", rest):
        raise _fail("a URL must not contain spaces or control characters: percent-encode them")
    params: List[Tuple[str, str]] = []
    m = re.search(r"[/?]", rest)
    auth_end = m.start() if m else len(rest)
    at = rest.rfind("@", 0, auth_end)
    if at >= 0:
        info = rest[:at]
        user, colon, _password = info.partition(":")
        if colon:
            raise _fail("must not hold a password: pass it as password= (a URL is logged, "
                        "copied and kept in shell history)")
        params.append(("user", _decode(user, "user name")))
    after = rest[at + 1:]
    m = re.search(r"[/?]", after)
    host_end = m.start() if m else len(after)
    netloc = after[:host_end]
    if "," in netloc:
        raise _fail("host lists are not supported: give one host", field="url.host")
    bracket = re.match(r"^\[([^\]]*)\](.*)$", netloc)
    if netloc.startswith("[") and not bracket:
        raise _fail("the host has an opening '[' without a closing ']'", field="url.host")
    if bracket:
        host, tail = bracket.group(1), bracket.group(2)
        if tail and not tail.startswith(":"):
            raise _fail("the host has unexpected characters after ']'", field="url.host")
        port = tail[1:] if tail else None
    else:
        host, colon, port_text = netloc.partition(":")
        port = port_text if colon else None
        if port is not None and ":" in port:
            raise _fail("an IPv6 address in a URL must be in brackets, e.g. [::1]",
                        field="url.host")
    if host:
        params.append(("host", _decode(host, "host")))
    if port == "":
        raise _fail("the port must not be empty after ':'", field="url.port")
    if port is not None:
        params.append(("port", _decode(port, "port")))
    path, qmark, query = after[host_end:].partition("?")
    if path:
        db = path[1:]
        if "@" in db:
            raise _fail("unexpected '@' after the host: percent-encode special characters")
        if "/" in db:
            raise _fail("the path must be a single database name: percent-encode '/' as %2F",
                        field="url.dbname")
        params.append(("dbname", _decode(db, "database name")))
    for i, pair in enumerate(query.split("&") if qmark and query else []):
        if not pair:
            continue
        key, eq, value = pair.partition("=")
        if not eq:
            raise _fail(f"query parameter #{i + 1} has no '='")
        key = _decode(key, "query")
        if key == "password":
            raise _fail("must not hold a password: pass it as password=")
        params.append((key, _decode(value, "query")))
    return _build(params)


def _build(params: List[Tuple[str, str]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    tls: Dict[str, Any] = {}
    options: Dict[str, Any] = {}
    seen = set()
    rootcert_system = False
    rootcert_file = False
    dbname_given = False
    for i, (key, value) in enumerate(params):
        if key not in KEYS:
            # Never the key itself: it may be a piece of a password.
            raise _fail(f"parameter #{i + 1} is not supported; accepted keys: {', '.join(KEYS)}")
        if key in seen:
            raise _fail("is given more than once", field=f"url.{key}")
        seen.add(key)
        if value == "":
            continue  # libpq reads an empty value as "not set"
        if key == "host":
            if value.startswith("/") or value.startswith("@"):
                raise _fail("unix-socket paths are not supported; give a host name or IP "
                            "address", field="url.host")
            out["host"] = value
        elif key == "port":
            digits = value.strip()
            if not digits.isdigit():
                raise _fail("must be a number between 1 and 65535", field="url.port")
            out["port"] = int(digits)
        elif key == "dbname":
            dbname_given = True
            out["database"] = value
        elif key == "user":
            out["username"] = value
        elif key == "sslmode":
            if value not in SSL_MODES:
                raise _fail(f"must be one of: {', '.join(SSL_MODES)}", field="url.sslmode")
            tls["mode"] = value
        elif key == "channel_binding":
            if value not in CHANNEL_BINDINGS:
                raise _fail(f"must be one of: {', '.join(CHANNEL_BINDINGS)}",
                            field="url.channel_binding")
            tls["channel_binding"] = value
        elif key == "sslrootcert":
            if value == "system":
                rootcert_system = True
            else:
                rootcert_file = True
                tls["ca_cert_pem"] = _read_file(value, key)
        elif key == "sslcert":
            tls["client_cert_pem"] = _read_file(value, key)
        elif key == "sslkey":
            tls["client_key_pem"] = _read_file(value, key)
        elif key == "connect_timeout":
            try:
                secs = int(value.strip())
            except ValueError:
                raise _fail("must be a whole number of seconds",
                            field="url.connect_timeout") from None
            if not 1 <= secs <= 5:
                raise _fail("must be between 1 and 5 seconds", field="url.connect_timeout")
            options["connect_timeout_ms"] = secs * 1000
        elif key == "application_name":
            options["application_name"] = value
    if not out.get("host"):
        raise _fail("is required; a local unix socket is not supported", field="url.host")
    if not dbname_given and "username" in out:
        out["database"] = out["username"]
    if rootcert_system:
        if tls.get("mode", "verify-full") != "verify-full":
            raise _fail("must be verify-full with sslrootcert=system", field="url.sslmode")
        tls["mode"] = "verify-full"
    elif rootcert_file and tls.get("mode") == "require":
        # libpq verifies the chain in require mode when a root certificate is given.
        tls["mode"] = "verify-ca"
    if "mode" not in tls:
        tls["mode"] = "verify-full"
    out["tls"] = tls
    if options:
        out["options"] = options
    return out
