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


_ANY_SUFFIX = {
    **{k: Decimal(v) for k, v in _BINARY.items()}, "Ei": Decimal(2**60),
    **{k: Decimal(v) for k, v in _DECIMAL.items()}, "E": Decimal(10**18),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
}


def parse_quantity(text: str) -> Decimal:
    """Any quantity as a plain number: '500m' -> 0.5, '1Gi' -> 1073741824, '2' -> 2."""
    number, suffix = _split(text)
    if suffix not in _ANY_SUFFIX:
        raise QuantityError(f"{text!r}: unknown suffix {suffix!r}")
    return number * _ANY_SUFFIX[suffix]


def format_cpu_millis(millis: int) -> str:
    """500 -> '500m', 2000 -> '2': the form the API server would print back."""
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_bytes(size: int) -> str:
    """3221225472 -> '3Gi': the largest suffix that divides the size exactly."""
    for suffix, factor in [("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10),
                           ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3)]:
        if size and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)
