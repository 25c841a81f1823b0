"""PII scrubbing (Llama 3 §3.1): emails, phone numbers, IP addresses and payment card numbers are
replaced by placeholders. Card numbers must pass the Luhn check and IPs must parse
(`ipaddress`), so ordinary numbers, dates and version strings stay."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

__all__ = ["PLACEHOLDERS", "luhn_ok", "scrub_pii"]

PLACEHOLDERS = {"email": "<EMAIL>", "card": "<CARD_NUMBER>", "ip": "<IP_ADDRESS>", "phone": "<PHONE>"}

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+.-])(?<!\d )(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?![\w-])(?! \d)"
    r"|(?<![\w+])\+\d{9,14}(?!\w)"
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match) -> str | None:
    digits = re.sub(r"\D", "", match.group())
    return PLACEHOLDERS["card"] if 13 <= len(digits) <= 19 and luhn_ok(digits) else None


def _ip(match: re.Match) -> str | None:
    text = match.group()
    if ":" in text and not re.search(r"\d", text):
        return None  # "::" or "a::b" in prose and code, not an address anyone has
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return None
    return PLACEHOLDERS["ip"]


def _phone(match: re.Match) -> str | None:
    digits = re.sub(r"\D", "", match.group())
    return PLACEHOLDERS["phone"] if 9 <= len(digits) <= 15 else None


def scrub_pii(text: str) -> tuple[str, Counter[str]]:
    """`text` with PII replaced by placeholders, and the number of replacements per kind."""
    counts: Counter[str] = Counter()
    rules = (("email", _EMAIL, lambda m: PLACEHOLDERS["email"]), ("card", _CARD, _card),
             ("ip", _IPV6, _ip), ("ip", _IPV4, _ip), ("phone", _PHONE, _phone))
    for kind, pattern, replace in rules:
        def sub(match: re.Match, kind: str = kind, replace=replace) -> str:
            out = replace(match)
            if out is None:
                return match.group()
            counts[kind] += 1
            return out

        text = pattern.sub(sub, text)
    return text, counts
