"""Point an unmodified Salesforce client at the local sandbox.

simple-salesforce (like most clients) hard-codes `https://` and logs in at
`https://login.salesforce.com` (or `test.`), then talks to whatever instance
host the login returned. `sandbox_session` returns a `requests.Session` whose
adapter (the sandbox kit's `SandboxAdapter`) rewrites those URLs to the sandbox's
plain-HTTP address, so the only change in client code is `session=sandbox_session(url)`.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

import requests
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceGeneralError

from ..sandbox_kit.transport import SandboxAdapter
from ..sandbox_kit.transport import sandbox_session as kit_session

LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")
_PARTNER = "urn:partner.soap.sforce.com"
_UNDELETE_BATCH = 200
__all__ = ["LOGIN_HOSTS", "SandboxAdapter", "sandbox_session", "soap_undelete"]


def sandbox_session(base_url: str) -> requests.Session:
    """A Session that routes Salesforce login and instance URLs to `base_url`.

    Mounted for `https://login.salesforce.com`, `https://test.salesforce.com`
    and `https://<host:port of base_url>` (the instance host the sandbox
    returns from login). Anything else goes out untouched.
    """
    return kit_session(base_url, LOGIN_HOSTS)


def soap_undelete(sf: Any, ids: list[str]) -> list[dict[str, Any]]:
    """Restore records from the recycle bin with the SOAP `undelete` call.

    The REST API cannot undelete; SOAP can, with the same session. `sf` is a
    logged-in `simple_salesforce.Salesforce`. Returns one result per id:
    `{"id", "success", "errors": [{"statusCode", "message", "fields"}]}`.
    A stale session is refreshed once when `sf` logged in with a password.
    """
    results: list[dict[str, Any]] = []
    for start in range(0, len(ids), _UNDELETE_BATCH):
        results.extend(_undelete_batch(sf, ids[start:start + _UNDELETE_BATCH]))
    return results


def _undelete_batch(sf: Any, ids: list[str], *, retried: bool = False) -> list[dict[str, Any]]:
    url = f"https://{sf.sf_instance}/services/Soap/u/{sf.sf_version}"
    id_elements = "".join(f"<urn:ids>{escape(i)}</urn:ids>" for i in ids)
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:urn="{_PARTNER}">'
        "<soapenv:Header><urn:SessionHeader>"
        f"<urn:sessionId>{escape(sf.session_id)}</urn:sessionId>"
        "</urn:SessionHeader></soapenv:Header>"
        f"<soapenv:Body><urn:undelete>{id_elements}</urn:undelete></soapenv:Body>"
        "</soapenv:Envelope>"
    )
    headers = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "undelete"}
    response = sf.session.post(url, data=body.encode("utf-8"), headers=headers)
    root = ET.fromstring(response.content)
    fault = next(root.iter("{http://schemas.xmlsoap.org/soap/envelope/}Fault"), None)
    if fault is not None:
        code = (fault.findtext("faultcode") or "").split(":")[-1]
        if code == "INVALID_SESSION_ID":
            refresh = getattr(sf, "_salesforce_login_partial", None)
            if refresh is not None and not retried:
                sf._refresh_session()
                return _undelete_batch(sf, ids, retried=True)
            raise SalesforceExpiredSession(url, response.status_code, "undelete",
                                           response.content)
        raise SalesforceGeneralError(url, response.status_code, "undelete", response.content)
    results = []
    for result in root.iter(f"{{{_PARTNER}}}result"):
        errors = [
            {
                "statusCode": error.findtext(f"{{{_PARTNER}}}statusCode"),
                "message": error.findtext(f"{{{_PARTNER}}}message"),
                "fields": [f.text for f in error.findall(f"{{{_PARTNER}}}fields")],
            }
            for error in result.findall(f"{{{_PARTNER}}}errors")
        ]
        results.append({
            "id": result.findtext(f"{{{_PARTNER}}}id") or None,
            "success": result.findtext(f"{{{_PARTNER}}}success") == "true",
            "errors": errors,
        })
    return results
