"""What the admin is shown to set up a sender: the URL, the client id, and examples that work.

One place builds it for both pages that show it (the wizard's Push setup page and the
Push API page of the Integration settings). With a secret just issued (`issued`), the
`curl` example carries a real Standard Webhooks signature of the example batch, computed
here with that secret: it is the only page the secret is on, and it works when pasted
(within the ±5 minutes the endpoint allows). Without one, the example signs with the
secret the admin stored, in a shell (openssl) or a Python (standard library) snippet.
No secret is ever read back from the database for this: there is none in clear.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from accrue.push import credentials
from accrue.push.credentials import IssuedSecret
from onboarding_app.extensions import warehouse
from onboarding_app.push.views import CLIENT_ID_HEADER
from onboarding_app.security import external_url

# The test record every example sends: one account, harmless to keep (or delete later).
EXAMPLE_RECORDS: list[dict[str, object]] = [
    {"object": "account", "id": "accrue-setup-test", "action": "create",
     "data": {"name": "Test record from the Accrue setup page"}},
]
SECRET_PLACEHOLDER = "whsec_...your-stored-secret..."


def example_body() -> str:
    """The example batch exactly as the examples send (and, on the secret's page, sign) it."""
    return json.dumps({"records": EXAMPLE_RECORDS}, separators=(",", ":"))


@dataclass(frozen=True)
class Guide:
    url: str
    client_id: str | None
    secret: str | None  # only right after it was issued: shown this once
    curl: str  # with a real signature when `secret` is set, else the shell snippet's variables
    shell: str  # signs with the stored secret (openssl), then the same curl
    python: str  # signs with the stored secret (standard library only) and sends
    placeholder: str = SECRET_PLACEHOLDER  # where the snippets want the stored secret


def push_url(tenant_id: str) -> str:
    return external_url("push.push_records", tenant_id=tenant_id)


def client_id(tenant_id: str) -> str | None:
    found = credentials.list_credentials(warehouse.engine, tenant_id)
    return found[0].client_id if found else None


def _curl(url: str, client: str, webhook_id: str, timestamp: str, signature: str,
          body: str) -> str:
    lines = [f"curl -sS -X POST {shlex.quote(url)}",
             "-H 'Content-Type: application/json'",
             f"-H {shlex.quote(f'{CLIENT_ID_HEADER}: {client}')}",
             f"-H {_double_quoted(f'webhook-id: {webhook_id}')}",
             f"-H {_double_quoted(f'webhook-timestamp: {timestamp}')}",
             f"-H {_double_quoted(f'webhook-signature: {signature}')}",
             f"--data-binary {body}"]
    return " \\\n  ".join(lines)


def _double_quoted(text: str) -> str:
    """Quoted so that $VARIABLES expand (the snippet's) and nothing else does."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'


def signed_curl(url: str, client: str, secret: str, *, now: float | None = None) -> str:
    """The example, signed with the just-issued secret (valid for about 5 minutes)."""
    body = example_body()
    webhook_id = f"msg_setup_{uuid.uuid4().hex}"
    stamp = int(now if now is not None else time.time())
    signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(stamp, UTC), body)
    return _curl(url, client, webhook_id, str(stamp), signature, shlex.quote(body))


def shell_snippet(url: str, client: str) -> str:
    """Sign and send with a shell: base64, od and openssl, found on any server."""
    return "\n".join([
        f"SECRET={shlex.quote(SECRET_PLACEHOLDER)}   # the secret you stored when it was shown",
        f"BODY={shlex.quote(example_body())}",
        'ID="msg_$(date +%s)_$$"',
        "TS=$(date +%s)",
        """KEY=$(printf '%s' "${SECRET#whsec_}" | base64 -d | od -An -v -tx1 | tr -d ' \\n')""",
        """SIG="v1,$(printf '%s' "$ID.$TS.$BODY" | openssl dgst -sha256 -mac HMAC """
        """-macopt "hexkey:$KEY" -binary | base64)\"""",
        _curl(url, client, "$ID", "$TS", "$SIG", '"$BODY"'),
    ])


def python_snippet(url: str, client: str) -> str:
    """Sign and send with Python's standard library (no package to install)."""
    records = json.dumps(EXAMPLE_RECORDS)
    return f'''import base64, hashlib, hmac, json, time, urllib.request, uuid

SECRET = "{SECRET_PLACEHOLDER}"  # the secret you stored when it was shown
URL = "{url}"
CLIENT_ID = "{client}"
records = {records}

body = json.dumps({{"records": records}}).encode()
msg_id, stamp = f"msg_{{uuid.uuid4().hex}}", str(int(time.time()))
key = base64.b64decode(SECRET.removeprefix("whsec_"))
digest = hmac.new(key, f"{{msg_id}}.{{stamp}}.".encode() + body, hashlib.sha256).digest()
request = urllib.request.Request(URL, data=body, method="POST", headers={{
    "Content-Type": "application/json", "{CLIENT_ID_HEADER}": CLIENT_ID,
    "webhook-id": msg_id, "webhook-timestamp": stamp,
    "webhook-signature": "v1," + base64.b64encode(digest).decode()}})
with urllib.request.urlopen(request) as answer:
    print(answer.status, answer.read().decode())
'''


def guide(tenant_id: str, issued: IssuedSecret | None = None) -> Guide:
    url = push_url(tenant_id)
    client = issued.client_id if issued else client_id(tenant_id)
    shown = client or "pc_..."
    shell = shell_snippet(url, shown)
    curl = signed_curl(url, issued.client_id, issued.secret) if issued is not None else shell
    return Guide(url, client, issued.secret if issued else None, curl, shell,
                 python_snippet(url, shown))
