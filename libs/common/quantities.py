"""Kubernetes resource quantities ("500m", "1Gi", "5G") parsed to plain numbers."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_QUANTITY = re.compile(r"^(?P<num>[0-9]+(\.[0-9]+)?|\.[0-9]+)(?P<suffix>[a-zA-Z]*)$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity."""


def _split(text: str) -> tuple[Decimal, str]:
    match = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity")
    try:
        return Decimal(match["num"]), match["suffix"]
    except InvalidOperation as exc:  # pragma: no cover - the regex already checked
        raise QuantityError(str(exc)) from exc


def parse_bytes(text: str) -> int:
    """'1Gi' -> 1073741824; binary (Ki..Pi) and decimal (k..P) suffixes."""
    number, suffix = _split(text)
    factor = _BINARY.get(suffix) or _DECIMAL.get(suffix)
    if factor is None:
        raise QuantityError(f"{text!r}: unknown suffix {suffix!r}; use Mi, Gi, Ti (or M, G, T)")
    return int(number * factor)


def parse_cpu_millis(text: str) -> int:
    """'500m' -> 500, '2' -> 2000, '0.5' -> 500."""
    number, suffix = _split(text)
    if suffix == "m":
        return int(number)
    if suffix == "":
        return int(number * 1000)
    raise QuantityError(f"{text!r}: CPU takes cores ('2', '0.5') or millicores ('500m')")
