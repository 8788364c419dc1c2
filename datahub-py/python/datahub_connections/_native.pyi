"""The native module: the core's `Hub` in this process (local mode), as a trusted operator.

Private: use :func:`datahub_connections.open`. Every method speaks the REST API's JSON (the same
types the server serializes), so one Python layer reads the answers of both modes. Every call
releases the GIL, waits in short slices and checks for signals (Ctrl-C raises
``KeyboardInterrupt`` within 100 ms and cancels the work), and is safe from many threads. After
``os.fork()`` the child gets a fresh runtime and reopens the store on its next call.

Errors are raised as :mod:`datahub_connections._errors` classes, built by
``_errors.error_from(code, message, kind=..., field=..., retry_after=..., report=...)`` with the
REST API's code for the core's error kind; for a failed ``test_first`` creation the code is
``test_failed`` and ``report`` is the test report as JSON text.
"""

from typing import Callable, List, Optional, Tuple, final

__all__ = ["__version__", "LocalHub", "parse_url", "_ProbeLoop", "_wait_floor"]

__version__: str

def parse_url(url: str) -> str:
    """Reads a ``postgresql://`` URL (or a libpq ``key=value`` string) with the core's rules
    (``datahub_core::dsn``) into the ``CreateConnection`` fields it gives, as JSON text:
    ``host``, and when given ``port``, ``database`` (the user name when absent), ``username``,
    ``tls`` (``mode``, ``channel_binding``, and ``ca_cert_pem``/``client_cert_pem``/
    ``client_key_pem`` read from the files ``sslrootcert``/``sslcert``/``sslkey`` name) and
    ``options`` (``connect_timeout_ms``, ``application_name``). A field the URL leaves out is
    left out (the API's default applies: TLS ``verify-full``). Raises ``InvalidInput`` on
    ``url`` or ``url.<key>`` (``url.host``, ``url.sslmode``, …) for a URL the core refuses and
    for a password in the URL (pass ``password=``); no error repeats any part of the URL."""

def _wait_floor() -> None:
    """Measurement only (``benches/compare.py``): waits, as every call waits, for work that does
    nothing: the binding's own cost per call."""

@final
class _ProbeLoop:
    """Measurement only: the prober's own loop over saved connections (``probe::test`` through
    the Hub's dialer and policy, no Hub around each test), from ``LocalHub._probe_loop``."""

    def run(self, concurrency: int) -> Tuple[float, int]:
        """Tests every connection once, at most ``concurrency`` at once: the seconds the batch
        took and how many tests passed."""

@final
class LocalHub:
    """A Hub opened on a store in this process, acting as the operator ``operator:<name>``."""

    @staticmethod
    def open(
        data_dir: Optional[str],
        store: Optional[str],
        key_file: Optional[str],
        operator: str,
        create: bool,
    ) -> "LocalHub":
        """Opens a data folder (``data_dir``: SQLite store and ``master.key``) or a store URL
        (``store``: ``postgres://…``, or a folder) with ``key_file`` (default: the data folder's
        ``master.key``; ``DATAHUB_MASTER_KEY`` wins when set, as in the server). ``create``: make
        the folder and a new key when the store is empty (never for a store holding data)."""

    def describe(self) -> str:
        """Where this hub is, for reprs: e.g. ``sqlite:/path/to/datahub-data`` (never a password)."""

    def list(self, query: str) -> Tuple[str, List[str]]:
        """``query``: JSON object of ``GET /connections``'s parameters (search, tag, status,
        engine, page, per_page, sort; strings or numbers). Returns the ``ConnectionPage`` JSON
        with no items, and each item's ``ConnectionOut`` JSON in page order (read a row only
        when it is used)."""

    def get(self, ident: str) -> str:
        """A connection by id (UUID text) or name: the ``ConnectionOut`` JSON with ``access``."""

    def create(self, body: str, test_first: bool) -> str:
        """``body``: the ``CreateConnection`` JSON. Returns the saved ``ConnectionOut`` JSON."""

    def update(self, ident: str, version: int, patch: str) -> str:
        """``patch``: the ``PatchConnection`` JSON. Returns the ``ConnectionOut`` JSON."""

    def delete(self, ident: str, version: int) -> None:
        """Deletes the connection at that version."""

    def test(self, ident: str) -> str:
        """Tests a saved connection now: the ``TestReport`` JSON (a failed test is ``ok: false``)."""

    def test_draft(self, body: str) -> str:
        """Tests the ``DraftTest`` JSON settings without saving: the ``TestReport`` JSON."""

    def test_many(
        self,
        idents: List[str],
        concurrency: int,
        progress: Optional[Callable[[int, int], None]],
    ) -> str:
        """Tests many saved connections, at most ``concurrency`` at once. ``progress(done,
        total)`` is called (with the GIL) once per result, between the wait's slices (so at
        most one slice, 20 ms, after the result). Returns a JSON array in input
        order of ``{"ident", "report": TestReport | null, "error": {"code", "kind", "message",
        "field"} | null}``."""

    def health(self, ident: str, since: Optional[str], limit: Optional[int]) -> str:
        """The ``HealthHistoryOut`` JSON (``since``: RFC 3339, default 24 h ago)."""

    def reveal(self, ident: str) -> str:
        """The ``RevealResponse`` JSON: holds the password. Audited. Wrap it at once."""

    def close(self) -> None:
        """Closes the store's connections; later calls raise ``Unavailable``."""

    def _probe_loop(self, idents: List[str]) -> _ProbeLoop:
        """Measurement only: reads these connections' settings and secrets (reveals: audited)
        for the prober's own loop."""

    def _test_traced(self, ident: str) -> Tuple[str, float, float, float]:
        """Measurement only: :meth:`test`, and where its time went in microseconds: from the
        call's start to the first poll of its work, the work, and from its end to the return."""
