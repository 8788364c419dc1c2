"""schemathesis hooks of the OpenAPI test (datahub-server/tests/it/schemathesis.rs).

The document states every rule of a single field or parameter (datahub-server/src/routes/rules.rs).
What no JSON Schema can state is here, each rule named, and nothing else:

- rules that depend on the server's state: the version an edit names (`If-Match`), the target
  policy's lowest TLS mode, the caller's current password, whether a test connects;
- rules between fields: `until` not before `since`, a changed target needs the password again;
- the contents of PEM fields: a certificate or key must parse, which a pattern cannot say (the
  API's own fuzz test, tests/it/fuzz.rs, sends them bad PEM).
"""

from datetime import datetime

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData

CONNECTION_BODIES = {
    ("POST", "/api/v1/connections"),
    ("POST", "/api/v1/connections/test"),
    ("PATCH", "/api/v1/connections/{id}"),
}

# A patch that changes any of these needs the password again (the core's
# `PatchOutcome::check_password_requirement`, which compares with what is stored).
RETARGETING = ("host", "port", "database", "tls")

# The password a retargeting patch carries: any valid password is the right one to give.
PATCH_PASSWORD = "schemathesis-patch-password"


def _operation(ctx):
    operation = ctx.operation
    return (operation.method.upper(), operation.path) if operation is not None else None


@schemathesis.hook
def filter_query(ctx, query):
    """`GET /audit`: `until` is not before `since` (both given, both times)."""
    if _operation(ctx) != ("GET", "/api/v1/audit") or not isinstance(query, dict):
        return True
    since, until = query.get("since"), query.get("until")
    if not isinstance(since, str) or not isinstance(until, str) or not since or not until:
        return True
    try:
        return datetime.fromisoformat(until) >= datetime.fromisoformat(since)
    except ValueError:
        # Not both times: the document refuses it, and so does the server.
        return True


@schemathesis.hook
def map_body(ctx, body):
    """Connection bodies: PEM fields left out, the TLS mode the strongest, and the password
    given again where a patch changes the target.

    Only strings are replaced, so a body made invalid on purpose (a number where a string goes)
    stays invalid.
    """
    if _operation(ctx) not in CONNECTION_BODIES or not isinstance(body, dict):
        return body
    tls = body.get("tls")
    if isinstance(tls, dict):
        for field in ("ca_cert_pem", "client_cert_pem", "client_key_pem"):
            if isinstance(tls.get(field), str):
                tls[field] = None
        # Whatever the policy's lowest mode, `verify-full` is at or above it.
        if tls.get("mode") in ("disable", "allow", "prefer", "require", "verify-ca"):
            tls["mode"] = "verify-full"
    if _operation(ctx) == ("PATCH", "/api/v1/connections/{id}") and "password" not in body:
        if any(body.get(field) is not None for field in RETARGETING):
            body["password"] = PATCH_PASSWORD
    return body


def _error_field(response):
    try:
        return response.json()["error"].get("field")
    except Exception:  # noqa: BLE001 - a body without the error shape names no field
        return None


def _error_code(response):
    try:
        return response.json()["error"]["code"]
    except Exception:  # noqa: BLE001 - a body without the error shape is no known refusal
        return None


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    """Refusals for the server's state, named by their error code, are the right answers:

    - `not_found` (404) naming a body field: a member or grantee that does not exist, while the
      resource in the path (just created, say) does;
    - `payload_too_large` (413): the body is larger than the server's limit, which is a setting
      (a team of 10,000 members fits the schema and not the default 256 KiB);
    - `precondition_failed` (412): the `If-Match` version is well formed but stale; the server
      checks it before the body, so an invalid body with a stale version gets it too;
    - `test_failed` (422, `POST /connections?test_first=true`): the test ran and failed (in the
      test's network namespace nothing answers), so nothing was saved;
    - `invalid_input` on `current_password` (400, `POST /users/me/password`): the password now
      is a secret the document cannot know.
    """
    code = _error_code(response)
    # A 404 naming a body field (`members`, `grants[0].user_id`) is about another resource the
    # body refers to, not about the one in the path that was just created.
    if code == "not_found" and response.status_code == 404 and _error_field(response):
        return False
    # The body limit is the server's setting (`--body-limit`), not the document's.
    if code == "payload_too_large" and response.status_code == 413:
        return False
    if code == "precondition_failed" and response.status_code == 412:
        return False
    if code == "test_failed" and response.status_code == 422:
        return False
    if (
        not isinstance(failure, AcceptedNegativeData)
        and response.status_code == 400
        and case.operation.path == "/api/v1/users/me/password"
    ):
        if _error_field(response) == "current_password":
            return False
    return True
