"""Remote mode: a small client of a DataHub server's REST API (``/api/v1``), stdlib only.

Every request carries ``Authorization: Bearer <token>`` and a timeout. Error bodies
(``{"error": {code, message, field, request_id}}``) become the one exception tree through
``_errors.error_from``; a refused connection or a timeout is ``Unavailable``. Edits and deletions
send ``If-Match: "<version>"``. Names are resolved to ids by listing with ``search`` until an
exact match. Answers are the API's JSON as dicts, the same the native module gives, so one layer
(``_hub``) reads both.

Blocking waits are on sockets, where Python runs signal handlers (PEP 475): Ctrl-C raises
``KeyboardInterrupt`` in the waiting thread at once.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ._errors import DataHubError, InvalidInput, NotFound, RateLimited, Unavailable, error_from
from ._progress import Progress
from ._secret import Secret

log = logging.getLogger("datahub_connections")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

#: The code for an error answer whose body is not the API's shape, by HTTP status.
_STATUS_CODES: Dict[int, str] = {
    400: "invalid_input",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    428: "if_match_required",
    429: "rate_limited",
    503: "unavailable",
}

#: The largest page the API gives.
_MAX_PER_PAGE = 200


def is_uuid(text: str) -> bool:
    """Whether ``text`` is a UUID (an id) rather than a name."""
    return bool(_UUID.match(text))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: the token must go only to the server the caller named."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class RemoteBackend:
    """The REST API of one server, as one token."""

    def __init__(self, url: str, token: "str | Secret", timeout: float) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidInput("must be an http:// or https:// URL of a DataHub server", field="url")
        if parsed.username or parsed.password:
            raise InvalidInput("must not carry a user or password: pass token=", field="url")
        if not timeout or timeout <= 0:
            raise InvalidInput("must be a positive number of seconds", field="timeout")
        self._base = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
        self._token = token if isinstance(token, Secret) else Secret(token)
        self._timeout = float(timeout)
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._local = threading.local()

    def describe(self) -> str:
        return self._base

    # --- HTTP ---------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Any]] = None,
        body: Optional[Any] = None,
        if_match: Optional[int] = None,
        ok_statuses: Tuple[int, ...] = (200, 201, 204),
    ) -> Any:
        url = f"{self._base}/api/v1{path}"
        if query:
            pairs = {k: str(v) for k, v in query.items() if v is not None}
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        data = None
        headers = {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Accept": "application/json",
            "User-Agent": "datahub-connections-python",
        }
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if if_match is not None:
            headers["If-Match"] = f'"{int(if_match)}"'
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        # Paths and statuses only: never a body (it may hold a password) nor a header.
        log.debug("%s %s", method, path)
        started = time.monotonic()
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                status = response.status
                raw = response.read()
        except urllib.error.HTTPError as e:
            status = e.code
            try:
                raw = e.read()
            except (OSError, ValueError):
                raw = b""
            finally:
                e.close()
            if status in ok_statuses:
                return json.loads(raw) if raw else None
            log.debug("%s %s -> %d", method, path, status)
            raise self._error(status, raw, e.headers.get("Retry-After")) from None
        except urllib.error.URLError as e:
            raise _unavailable(self._base, e.reason) from None
        except (socket.timeout, TimeoutError) as e:
            raise _unavailable(self._base, e) from None
        except (ConnectionError, OSError) as e:
            raise _unavailable(self._base, e) from None
        log.debug("%s %s -> %d in %.1f ms", method, path, status, (time.monotonic() - started) * 1e3)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise error_from(
                "internal", "the server's answer is not JSON", status=status
            ) from None

    def _error(self, status: int, raw: bytes, retry_after: Optional[str]) -> DataHubError:
        wait_s: Optional[float] = None
        if retry_after is not None:
            try:
                wait_s = float(retry_after)
            except ValueError:
                wait_s = None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        detail = body.get("error") if isinstance(body, dict) else None
        if not isinstance(detail, dict):
            code = _STATUS_CODES.get(status, "internal")
            return error_from(code, f"the server answered HTTP {status}", status=status,
                              retry_after=wait_s)
        report = None
        if isinstance(body, dict) and isinstance(body.get("report"), dict):
            from ._model import TestReport

            report = TestReport._from_json(body["report"])
        return error_from(
            str(detail.get("code") or _STATUS_CODES.get(status, "internal")),
            str(detail.get("message") or f"the server answered HTTP {status}"),
            field=detail.get("field"),
            retry_after=wait_s,
            status=status,
            request_id=detail.get("request_id"),
            report=report,
        )

    # --- names --------------------------------------------------------------------------------

    def resolve(self, ident: str) -> str:
        """The id of a connection given by id or name (``NotFound`` when none is visible)."""
        if not isinstance(ident, str) or not ident:
            raise InvalidInput("must be a connection name or id", field="name_or_id")
        if is_uuid(ident):
            return ident
        page = 1
        while True:
            answer = self._request(
                "GET", "/connections",
                query={"search": ident, "page": page, "per_page": _MAX_PER_PAGE},
            )
            for item in answer.get("items") or ():
                if item.get("name") == ident:
                    return str(item["id"])
            if page * _MAX_PER_PAGE >= int(answer.get("total", 0)):
                raise NotFound("no such connection", code="not_found", field="name_or_id")
            page += 1

    def _path(self, ident: str, tail: str = "") -> str:
        return f"/connections/{urllib.parse.quote(self.resolve(ident), safe='')}{tail}"

    # --- the backend's calls ------------------------------------------------------------------

    def list(self, query: Mapping[str, Any]) -> Dict[str, Any]:
        return dict(self._request("GET", "/connections", query=query))

    def get(self, ident: str) -> Dict[str, Any]:
        return dict(self._request("GET", self._path(ident)))

    def create(self, body: Mapping[str, Any], test_first: bool) -> Dict[str, Any]:
        query = {"test_first": "true"} if test_first else None
        return dict(self._request("POST", "/connections", query=query, body=body))

    def update(self, ident: str, version: int, patch: Mapping[str, Any]) -> Dict[str, Any]:
        return dict(self._request("PATCH", self._path(ident), body=patch, if_match=version))

    def delete(self, ident: str, version: int) -> None:
        self._request("DELETE", self._path(ident), if_match=version)

    def test(self, ident: str) -> Dict[str, Any]:
        return dict(self._request("POST", self._path(ident, "/test")))

    def test_draft(self, body: Mapping[str, Any]) -> Dict[str, Any]:
        return dict(self._request("POST", "/connections/test", body=body))

    def health(self, ident: str, since: Optional[str], limit: Optional[int]) -> Dict[str, Any]:
        return dict(
            self._request("GET", self._path(ident, "/health"),
                          query={"since": since, "limit": limit})
        )

    def reveal(self, ident: str) -> Dict[str, Any]:
        return dict(self._request("POST", self._path(ident, "/reveal")))

    def test_many(
        self,
        idents: List[str],
        concurrency: int,
        progress: Optional[Progress],
    ) -> List[Dict[str, Any]]:
        """Tests each on a pool of ``concurrency`` threads; the answers in input order.

        The server limits how many tests a user starts (a burst, then a steady rate) and
        answers ``429`` with ``Retry-After`` past it. Here a refused test is not an answer: it
        is tried again after the wait the server asked for (:class:`_Admission`), so every
        item ends with a report or a real error, never ``rate_limited``. While waiting,
        ``progress(done, total, waiting_s=...)`` is called about ten times a second with the
        seconds left; Ctrl-C ends the waits at once."""
        results: List[Optional[Dict[str, Any]]] = [None] * len(idents)
        admission = _Admission()

        def one(ident: str) -> Optional[Dict[str, Any]]:
            while True:
                probe = admission.enter()
                if probe is None:
                    return None  # interrupted
                try:
                    report = self.test(ident)
                except RateLimited as e:
                    admission.refused(probe, e.retry_after)
                    continue
                except DataHubError as e:
                    admission.answered(probe)
                    return {
                        "ident": ident,
                        "report": None,
                        "error": {"code": e.code, "kind": e.kind, "message": e.message,
                                  "field": e.field},
                    }
                except BaseException:
                    admission.answered(probe)
                    raise
                admission.answered(probe)
                return {"ident": ident, "report": report, "error": None}

        pool = ThreadPoolExecutor(max_workers=max(1, concurrency),
                                  thread_name_prefix="datahub-test")
        try:
            futures: Dict[Future[Optional[Dict[str, Any]]], int] = {
                pool.submit(one, ident): i for i, ident in enumerate(idents)
            }
            pending = set(futures)
            done_count = 0
            while pending:
                # Short waits, so Ctrl-C in the main thread is seen at once.
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for f in done:
                    results[futures[f]] = f.result()
                    done_count += 1
                if progress is None:
                    continue
                waiting = admission.waiting_s()
                if waiting > 0:
                    progress(done_count, len(idents), waiting_s=waiting)
                elif done:
                    progress(done_count, len(idents))
        finally:
            admission.stop()
            pool.shutdown(wait=False, cancel_futures=True)
        return [r for r in results if r is not None]

    def close(self) -> None:
        pass


class _Admission:
    """When ``test_many``'s workers may start a test, given the server's per-user test limit.

    Until the server refuses one, every worker starts at once. After a ``429`` the calls go one
    at a time: none starts before the ``Retry-After`` the server gave has passed, and then one
    tries (a probe); when it is answered (a report or any other error) the next starts at once,
    when it is refused again everyone waits again. So a refusal costs one request per wait, not
    one per worker, and the pace follows the server's refill rate."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._limited = False
        self._probing = False
        self._not_before = 0.0
        self._stopped = False

    def enter(self) -> Optional[bool]:
        """Waits until this worker may start a test: whether it is the probe, or ``None`` once
        stopped (Ctrl-C)."""
        with self._cond:
            while True:
                if self._stopped:
                    return None
                if not self._limited:
                    return False
                left = self._not_before - time.monotonic()
                if left <= 0 and not self._probing:
                    self._probing = True
                    return True
                # Woken by the probe's answer or stop(); never longer than the wait left.
                self._cond.wait(timeout=max(0.01, left) if left > 0 else None)

    def refused(self, probe: bool, retry_after: Optional[float]) -> None:
        """The server refused a test (the probe's or one started before the first refusal):
        nobody starts before its ``Retry-After`` has passed, then one probe."""
        wait_s = retry_after if retry_after is not None and retry_after > 0 else 1.0
        with self._cond:
            self._limited = True
            if probe:
                self._probing = False
            self._not_before = max(self._not_before, time.monotonic() + wait_s)
            self._cond.notify_all()

    def answered(self, probe: bool) -> None:
        """A test was answered (a report, or an error other than the limit's): after the
        probe's, the next may start."""
        if not probe:
            return
        with self._cond:
            self._probing = False
            self._cond.notify_all()

    def waiting_s(self) -> float:
        """Seconds left of the server's wait (0 when not waiting)."""
        with self._cond:
            if not self._limited:
                return 0.0
            return max(0.0, self._not_before - time.monotonic())

    def stop(self) -> None:
        """Wakes and ends every waiting worker (the caller is gone)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


def _unavailable(base: str, reason: Any) -> Unavailable:
    if isinstance(reason, (socket.timeout, TimeoutError)):
        what = "did not answer in time"
    elif isinstance(reason, ConnectionRefusedError):
        what = "refused the connection"
    elif isinstance(reason, OSError):
        what = f"cannot be reached ({type(reason).__name__})"
    else:
        what = "cannot be reached"
    return Unavailable(f"the server at {base} {what}", code="unavailable")
