"""Which column of an export feeds which common-model column: the mapping and its proposal.

A `FileMapping` names the header that holds the record id, the header for each common
column, optionally the header of the record's last-modified time, and the file's value
conventions. It serialises to JSON (`as_json` / `from_json`) so the admin can correct it
(`accrue import --mapping file.json`) and so it is remembered per tenant and object,
keyed by the header's shape (`header_signature`).

`propose_columns` matches headers to columns: exactly, after normalising ("CloseDate",
"Close Date", "close_date"), by the names CRM exports use (Salesforce reports and Data
Loader, HubSpot, Pipedrive's "Deal - Value"), then fuzzily (rapidfuzz), each header and
each column used once, best scores first.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rapidfuzz import fuzz

from accrue.file_import.values import ValueFormat
from connectors.common_model import COMMON_OBJECTS, Column

ID = "source_id"  # the target naming the record's id
MODIFIED = "modified_at"  # the target naming the record's last-modified time
FUZZY_THRESHOLD = 86

# Header names of real exports, per common column (any object) or per object.
_COMMON_ALIASES: dict[str, tuple[str, ...]] = {
    ID: ("Id", "ID", "Record ID", "Record Id", "18 Digit ID", "Internal ID", "External ID"),
    MODIFIED: ("Last Modified Date", "LastModifiedDate", "Last Modified", "SystemModstamp",
               "Last Modified Date/Time", "Update time", "Updated at", "Date updated",
               "Last modified date"),
    "source_created_at": ("Created Date", "CreatedDate", "Create Date", "Created", "Add time",
                          "Deal created", "Date created", "Created at"),
    "owner_id": ("Owner ID", "OwnerId", "Owner Id", "Record owner ID"),
    "name": ("Name",),
    "account_id": ("Account ID", "AccountId", "Account: Account ID", "Organization ID",
                   "Company ID", "Associated Company IDs", "Associated Company ID"),
}
_OBJECT_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "opportunity": {
        ID: ("Opportunity ID", "Opportunity Id", "Opportunity 18 Digit ID", "Deal ID",
             "Deal - ID", "Opportunity: ID"),
        "name": ("Opportunity Name", "Deal Name", "Deal - Title", "Title", "Deal title"),
        "amount": ("Amount", "Deal - Value", "Value", "Opportunity Amount", "Deal amount",
                   "Total Amount"),
        "stage": ("Stage", "StageName", "Stage Name", "Deal Stage", "Deal - Stage",
                  "Pipeline Stage", "Status"),
        "is_closed": ("Closed", "IsClosed", "Is Closed"),
        "is_won": ("Won", "IsWon", "Is Won"),
        "close_date": ("Close Date", "CloseDate", "Expected close date",
                       "Deal - Expected close date", "Expected Close Date"),
        "probability": ("Probability (%)", "Probability", "Deal - Probability",
                        "Deal probability", "Win probability"),
        "opportunity_type": ("Type", "Opportunity Type", "Deal Type", "Deal - Type"),
        "lead_source": ("Lead Source", "LeadSource", "Source", "Original Source",
                        "Deal - Source", "Original Source Type"),
        "owner_id": ("Opportunity Owner ID", "Deal owner ID", "Deal - Owner ID",
                     "HubSpot Owner ID"),
        "price_book_id": ("Price Book ID", "Pricebook2Id"),
        "list_amount": ("List Amount", "List Price Total"),
        "source_created_at": ("Deal - Deal created", "Deal - Add time"),
        MODIFIED: ("Deal - Update time", "Last Modified Date"),
    },
    "account": {
        ID: ("Account ID", "Company ID", "Organization - ID", "Organization ID"),
        "name": ("Account Name", "Company name", "Organization - Name"),
        "annual_revenue": ("Annual Revenue", "AnnualRevenue"),
        "employee_count": ("Employees", "NumberOfEmployees", "Number of Employees"),
        "billing_country": ("Billing Country", "BillingCountry", "Country"),
        "billing_state": ("Billing State/Province", "BillingState", "State/Region"),
        "account_id": (),
    },
    "contact": {
        ID: ("Contact ID", "Person - ID"),
        "first_name": ("First Name", "FirstName"),
        "last_name": ("Last Name", "LastName"),
        "email": ("Email", "Email Address"),
    },
}


def normalise(header: str) -> str:
    """Case, spaces and punctuation removed; a leading "Deal - " / "Opportunity: " kept out."""
    text = header.strip().lower()
    text = re.sub(r"^(deal|opportunity|organization|person|account|company)\s*[-:]\s+", "", text)
    return re.sub(r"[^0-9a-z%]+", "", text)


def _words(header: str) -> str:
    return " ".join(re.findall(r"[0-9a-z%]+", header.lower().replace("_", " ")))


def targets(object_name: str) -> dict[str, Column | None]:
    """The columns a file can feed: the id, the modified time, then the object's columns."""
    if object_name not in COMMON_OBJECTS:
        raise KeyError(f"unknown object {object_name!r}; known: {sorted(COMMON_OBJECTS)}")
    found: dict[str, Column | None] = {ID: None, MODIFIED: None}
    found.update({c.name: c for c in COMMON_OBJECTS[object_name]})
    return found


def header_signature(headers: Sequence[str]) -> str:
    """The shape of a header row: the same export's next file has the same signature."""
    shape = "\x1f".join(sorted(h.strip() for h in headers))
    return hashlib.sha256(shape.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class FileMapping:
    object_name: str
    id_column: str
    columns: Mapping[str, str]  # common column -> header
    modified_column: str | None = None
    format: ValueFormat = field(default_factory=ValueFormat)
    # Per column, the file's words and what they mean ({"is_won": {"won": "true", ...}}):
    # a text not listed is refused (quarantined), never defaulted.
    value_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def headers_used(self) -> list[str]:
        used = [self.id_column, *self.columns.values()]
        if self.modified_column:
            used.append(self.modified_column)
        return used

    def problems(self, headers: Sequence[str]) -> list[str]:
        """Why this mapping does not fit a file with these headers (empty: it fits)."""
        known = targets(self.object_name)
        out = [f"no column {h!r} in the file" for h in self.headers_used() if h not in headers]
        out += [f"{self.object_name} has no column {name!r}" for name in self.columns
                if name not in known or name in (ID, MODIFIED)]
        out += [f"values are mapped for {name!r}, which no header feeds"
                for name in self.value_maps if name not in self.columns]
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "object": self.object_name,
            "id": self.id_column,
            "modified_at": self.modified_column,
            "columns": dict(sorted(self.columns.items())),
            "format": {"decimal": self.format.decimal, "date_order": self.format.date_order,
                       "timezone": self.format.timezone},
            "values": {t: dict(sorted(m.items())) for t, m in sorted(self.value_maps.items())},
        }

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.as_json(), sort_keys=True).encode()).hexdigest()[:24]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileMapping:
        try:
            fmt = data.get("format") or {}
            decimal = fmt.get("decimal")
            order = fmt.get("date_order")
            if decimal not in (None, ".", ","):
                raise ValueError(f"decimal must be '.' or ',', not {decimal!r}")
            if order not in (None, "MDY", "DMY", "YMD"):
                raise ValueError(f"date_order must be MDY, DMY or YMD, not {order!r}")
            columns = data.get("columns") or {}
            if not isinstance(columns, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in columns.items()):
                raise ValueError("columns must map column names to headers")
            value_maps = data.get("values") or {}
            if not isinstance(value_maps, Mapping) or not all(
                    isinstance(m, Mapping) and all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in m.items())
                    for m in value_maps.values()):
                raise ValueError("values must map each column to {file text: value}")
            mapping = cls(
                object_name=str(data["object"]),
                id_column=str(data["id"]),
                columns={k: v for k, v in columns.items() if v},
                modified_column=data.get("modified_at") or None,
                format=ValueFormat(decimal, order, str(fmt.get("timezone") or "UTC")),
                value_maps={t: dict(m) for t, m in value_maps.items()},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a file mapping: {exc}") from None
        targets(mapping.object_name)
        return mapping

    def with_format(self, fmt: ValueFormat) -> FileMapping:
        return replace(self, format=fmt)


@dataclass(frozen=True)
class Match:
    header: str
    target: str
    score: float
    how: str  # exact | normalised | export name | fuzzy


def _aliases(object_name: str, target: str) -> tuple[str, ...]:
    return _OBJECT_ALIASES.get(object_name, {}).get(target, ()) + _COMMON_ALIASES.get(target, ())


def _score(header: str, object_name: str, target: str) -> tuple[float, str] | None:
    if header.strip().lower() == target:
        return 100.0, "exact"
    norm = normalise(header)
    if norm and norm == normalise(target):
        return 97.0, "normalised"
    aliases = _aliases(object_name, target)
    if any(header.strip().lower() == alias.lower() for alias in aliases):
        return 99.0, "export name"
    if norm and any(norm == normalise(alias) for alias in aliases):
        return 96.0, "export name"
    words = _words(header)
    if target.endswith("_id") and "id" not in words.split() and "ids" not in words.split():
        return None  # a name ("Deal owner", "Organization") is not an id
    candidates = [_words(target), *(_words(alias) for alias in aliases)]
    best = max(fuzz.token_sort_ratio(words, c) for c in candidates)
    if best >= FUZZY_THRESHOLD:
        return float(best) * 0.95, "fuzzy"
    return None


def propose_columns(object_name: str, headers: Sequence[str]) -> list[Match]:
    """The best one-to-one matches of headers to the object's columns."""
    scored = []
    for target in targets(object_name):
        for header in headers:
            found = _score(header, object_name, target)
            if found:
                scored.append(Match(header, target, found[0], found[1]))
    # Generic aliases ("Id", "Name") lose to the object's own ("Opportunity ID") on a tie.
    scored.sort(key=lambda m: (-m.score, headers.index(m.header), m.target))
    used_headers: set[str] = set()
    used_targets: set[str] = set()
    chosen = []
    for match in scored:
        if match.header in used_headers or match.target in used_targets:
            continue
        used_headers.add(match.header)
        used_targets.add(match.target)
        chosen.append(match)
    return chosen


def mapping_from_matches(
    object_name: str, matches: Sequence[Match], fmt: ValueFormat | None = None
) -> FileMapping | None:
    """The mapping the matches make, or None when no header holds the record id."""
    by_target = {m.target: m.header for m in matches}
    if ID not in by_target:
        return None
    columns = {t: h for t, h in by_target.items() if t not in (ID, MODIFIED)}
    return FileMapping(object_name, by_target[ID], columns, by_target.get(MODIFIED),
                       fmt or ValueFormat())


def mapping_from_choices(
    object_name: str, choices: Mapping[str, str], base: FileMapping | None = None
) -> FileMapping:
    """The mapping an admin chose, header by header ("" for a header not imported), e.g.
    in the concierge's selects. `base` (the proposal) gives the file's conventions and
    its value maps, kept for the headers still imported. A ValueError says what to fix."""
    known = targets(object_name)
    by_target: dict[str, str] = {}
    for header, target in choices.items():
        if not target:
            continue
        if target not in known:
            raise ValueError(f"{object_name} has no column {target!r}")
        if target in by_target:
            raise ValueError(f"{by_target[target]!r} and {header!r} are both mapped to "
                             f"{target}: choose one")
        by_target[target] = header
    if not by_target.get(ID):
        raise ValueError("choose the column that holds the record id")
    id_column = by_target.pop(ID)
    modified = by_target.pop(MODIFIED, None)
    value_maps: dict[str, Mapping[str, str]] = {}
    for target, words in (base.value_maps if base else {}).items():
        fed_by = (base.columns if base else {}).get(target)
        if fed_by and choices.get(fed_by) and by_target.setdefault(target, fed_by) == fed_by:
            value_maps[target] = dict(words)
    return FileMapping(object_name, id_column, by_target, modified,
                       base.format if base else ValueFormat(), value_maps)


# Words CRM exports use for a deal's outcome: Pipedrive's status, HubSpot's default
# pipeline's stage ids, Salesforce's default closed stages.
_WON = frozenset({"won", "closedwon", "closed won"})
_LOST = frozenset({"lost", "closedlost", "closed lost"})
_OPEN = frozenset({"open"})
_STATUS_HEADERS = ("status", "dealstatus")


def propose_outcome(
    mapping: FileMapping, headers: Sequence[str], distinct: Mapping[str, set[str]]
) -> tuple[FileMapping, list[str]]:
    """An opportunity's is_closed / is_won from its status or stage words, when the file
    has no such columns and its words are the known ones: a proposal the admin sees."""
    if mapping.object_name != "opportunity" or {"is_won", "is_closed"} & set(mapping.columns):
        return mapping, []
    status = next((h for h in headers if normalise(h) in _STATUS_HEADERS and h in distinct
                   and distinct[h] and {v.lower() for v in distinct[h]} <= _WON | _LOST | _OPEN
                   | {"deleted"}), None)
    stage = mapping.columns.get("stage")
    source = status or stage
    if source is None or not distinct.get(source):
        return mapping, []
    words = distinct[source]
    lowered = {w: w.lower() for w in words}
    if not set(lowered.values()) & (_WON | _LOST):
        return mapping, []
    won = {w: "true" if low in _WON else "false" for w, low in lowered.items()}
    closed = {w: "true" if low in _WON | _LOST else "false" for w, low in lowered.items()}
    columns = {**mapping.columns, "is_won": source, "is_closed": source}
    maps = {**mapping.value_maps, "is_won": won, "is_closed": closed}
    note = (f"is_won and is_closed read from {source!r}: closed "
            f"{sorted(w for w, v in closed.items() if v == 'true')}, won "
            f"{sorted(w for w, v in won.items() if v == 'true')}, every other word open; "
            "correct the mapping's values if a stage of yours means otherwise")
    return replace(mapping, columns=columns, value_maps=maps), [note]
