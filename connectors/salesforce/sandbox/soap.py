"""The two SOAP partner-API operations the sandbox speaks: `login` and `undelete`.

Clients locate values in these documents by tag name (simple-salesforce
looks for `sessionId`, `serverUrl` and the prefixed `sf:exceptionCode`), so
the envelopes follow Salesforce's own layout, prefixes included.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER = "urn:partner.soap.sforce.com"
INVALID_LOGIN = "INVALID_LOGIN: Invalid username, password, security token; or user locked out."


@dataclass
class SoapCall:
    """A parsed request: operation name, its element and the SessionHeader id."""

    operation: str
    element: ET.Element
    session_id: str | None

    def texts(self, name: str) -> list[str]:
        """Text of every direct child named `name` in the partner namespace."""
        return [(child.text or "").strip() for child in self.element
                if _local(child.tag) == name]

    def text(self, name: str) -> str | None:
        values = self.texts(name)
        return values[0] if values else None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_call(body: bytes) -> SoapCall | None:
    """Parse a SOAP request; None if it is not a well-formed envelope with a body."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        return None  # no DTDs: nothing legitimate needs them and they enable entity bombs
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    if _local(root.tag) != "Envelope":
        return None
    session_id = None
    header = next((c for c in root if _local(c.tag) == "Header"), None)
    if header is not None:
        for element in header.iter():
            if _local(element.tag) == "sessionId":
                session_id = (element.text or "").strip()
    soap_body = next((c for c in root if _local(c.tag) == "Body"), None)
    if soap_body is None or len(soap_body) == 0:
        return None
    operation = soap_body[0]
    return SoapCall(_local(operation.tag), operation, session_id)


def _envelope(body: str, header: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns="{PARTNER}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"{header}<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )


def _element(name: str, value: Any) -> str:
    if value is None:
        return f'<{name} xsi:nil="true"/>'
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def login_response(*, server_url: str, metadata_url: str, session_id: str, user_id: str,
                   user_info: Mapping[str, Any]) -> str:
    info = "".join(_element(k, v) for k, v in user_info.items())
    result = (
        _element("metadataServerUrl", metadata_url) + _element("passwordExpired", False)
        + _element("sandbox", True) + _element("serverUrl", server_url)
        + _element("sessionId", session_id) + _element("userId", user_id)
        + f"<userInfo>{info}</userInfo>"
    )
    return _envelope(f"<loginResponse><result>{result}</result></loginResponse>")


def undelete_response(results: Sequence[Mapping[str, Any]], usage: tuple[int, int]) -> str:
    items = []
    for result in results:
        errors = "".join(
            "<errors>" + "".join(_element("fields", f) for f in error.get("fields") or [])
            + _element("message", error["message"]) + _element("statusCode", error["statusCode"])
            + "</errors>"
            for error in result["errors"]
        )
        items.append(f"<result>{errors}{_element('id', result['id'])}"
                     f"{_element('success', result['success'])}</result>")
    header = (
        "<soapenv:Header><LimitInfoHeader><limitInfo>"
        f"<current>{usage[0]}</current><limit>{usage[1]}</limit><type>API REQUESTS</type>"
        "</limitInfo></LimitInfoHeader></soapenv:Header>"
    )
    return _envelope(f"<undeleteResponse>{''.join(items)}</undeleteResponse>", header)


def fault(code: str, message: str, fault_type: str = "UnexpectedErrorFault") -> str:
    """A SOAP fault with both the `faultcode` and the prefixed `sf:` detail elements."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>sf:{escape(code)}</faultcode><faultstring>{escape(message)}</faultstring>"
        f'<detail><sf:{fault_type} xsi:type="sf:{fault_type}">'
        f"<sf:exceptionCode>{escape(code)}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        f"</sf:{fault_type}></detail>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
