"""Salesforce record ids: 15-char case-sensitive ids and their 18-char safe form.

Real ids are `key prefix (3) + pod (2) + reserved (1) + counter (9)`, base62,
followed by a 3-char suffix that encodes which of the first 15 characters are
upper case. Clients and warehouses rely on that suffix (they compare ids
case-insensitively), so the sandbox produces and checks the genuine one.
"""

from __future__ import annotations

import re

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
POD = "5g"
_ID15 = re.compile(r"^[0-9A-Za-z]{15}$")
_ID18 = re.compile(r"^[0-9A-Za-z]{15}[A-Z0-5a-z]{3}$")

ORG_PREFIX = "00D"
QUERY_LOCATOR_PREFIX = "01g"
PROFILE_PREFIX = "00e"


_UPPER_FLAGS = str.maketrans({c: ("1" if "A" <= c <= "Z" else "0") for c in BASE62})


def checksum_suffix(id15: str) -> str:
    """The 3-char suffix: one base32 char per 5-char chunk, bit i = char i is upper."""
    flags = id15.translate(_UPPER_FLAGS)
    return (_SUFFIX_ALPHABET[int(flags[4::-1], 2)] + _SUFFIX_ALPHABET[int(flags[9:4:-1], 2)]
            + _SUFFIX_ALPHABET[int(flags[14:9:-1], 2)])


def to_18(id15: str) -> str:
    """Append the case-safe suffix to a 15-char id."""
    return id15 + checksum_suffix(id15)


def encode_base62(number: int, width: int) -> str:
    """Fixed-width base62 so that string order equals numeric order."""
    if number < 0:
        raise ValueError("id counters are non-negative")
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(BASE62[rem])
    text = "".join(reversed(digits)) or "0"
    if len(text) > width:
        raise ValueError("id counter overflow")
    return text.rjust(width, "0")


def make_id(prefix: str, counter: int) -> str:
    """The 18-char id of the `counter`-th record with this key prefix."""
    if len(prefix) != 3:
        raise ValueError(f"key prefix must have 3 characters: {prefix!r}")
    return to_18(prefix + POD + "0" + encode_base62(counter, 9))


def normalize_id(value: str) -> str | None:
    """The canonical 18-char id for a 15- or 18-char id, else None.

    18-char ids are accepted in any letter case (that is their purpose): the
    suffix says which letters were upper case, so the original is restored.
    """
    if _ID15.match(value):
        return to_18(value)
    if not _ID18.match(value):
        return None
    suffix = value[15:].upper()
    restored = []
    for chunk in range(3):
        bits = _SUFFIX_ALPHABET.index(suffix[chunk])
        for pos in range(5):
            char = value[chunk * 5 + pos]
            restored.append(char.upper() if bits & (1 << pos) else char.lower())
    id15 = "".join(restored)
    if checksum_suffix(id15) != suffix:
        return None
    return id15 + suffix


def key_prefix(record_id: str) -> str:
    """The object key prefix of an id (first three characters)."""
    return record_id[:3]
