"""Mask personal data (PII) in text, nested values and log records.

What is masked, wherever it appears in a string:

* PRC resident ID numbers: 18 characters (17 digits + a digit or ``X``) or the old 15-digit form,
  recognised by their structure (6-digit region code starting 1–9, a plausible birth date).
  The check digit is *not* verified, so made-up numbers in tests and drills are masked too.
  Kept: first 3 and last 2 characters → ``110*************3X``.
* Bank-card numbers, 16–19 digits:
  - written in groups of four separated by spaces or dashes (``6222 0212 3456 7890``) → always
    masked, keeping the separators and the last four digits: ``**** **** **** 7890``;
  - written as one run of digits → masked when the number passes the Luhn check or starts with a
    China UnionPay prefix (``62``, ``60``); kept: first 4 and last 4 → ``6222***********0123``.
    Other long digit runs (snowflake ids, nanosecond timestamps) are left alone unless they happen
    to pass Luhn — over-masking is the safe side — except an 18-digit run that carries a valid
    统一社会信用代码 check character (a company, public information).
* Mainland mobile numbers: ``1[3-9]x`` + 8 digits, optional ``+86``/``86`` prefix, optional spaces
  or dashes between the 3-4-4 groups → ``138****5678`` (a prefix is kept as written).

What is deliberately *not* masked:

* digits inside longer alphanumeric tokens: ``20261127T021000Z``, sha256 hex digests, UUIDs,
  统一社会信用代码 with letters (``91110108MA01ABCD2X``) — a match must not touch an ASCII letter or
  digit on either side;
* an all-digit 统一社会信用代码 whose check character is valid (``913100007178800361``);
* amounts: a digit run followed by ``.<digit>`` or preceded by ``<digit>.`` is never a match;
* digit runs of other lengths (dates, epoch seconds, 14-digit timestamps).

Masking is idempotent: masked output never matches again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MaskingFilter",
    "install_log_masking",
    "luhn_valid",
    "uscc_valid",
    "mask_text",
    "mask_value",
]

# A match may not touch an ASCII letter or digit, nor be part of a decimal number.
_LEFT = r"(?<![0-9A-Za-z])(?<!\d\.)"
_RIGHT = r"(?![0-9A-Za-z])(?!\.\d)"

_DATE8 = r"(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
_DATE6 = r"\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"

_PATTERN = re.compile(
    _LEFT
    + r"(?:"
    # 1. bank card in groups of four: 4-4-4-4 with an optional last group of 1-3
    + r"(?P<card_grouped>\d{4}(?P<sep>[ \-])\d{4}(?P=sep)\d{4}(?P=sep)\d{4}(?:(?P=sep)\d{1,3})?)"
    # 2. 18-character resident ID
    + r"|(?P<id18>[1-9]\d{5}" + _DATE8 + r"\d{3}[0-9Xx])"
    # 3. 15-digit resident ID (first generation)
    + r"|(?P<id15>[1-9]\d{5}" + _DATE6 + r"\d{3})"
    # 4. mainland mobile, optional +86 / 86 prefix, optional separators in 3-4-4
    + r"|(?P<phone>(?P<cc>\+?86[ \-]?)?1[3-9]\d[ \-]?\d{4}[ \-]?\d{4})"
    # 5. bank card as one digit run (checked further in _replace)
    + r"|(?P<card>\d{16,19})"
    + r")"
    + _RIGHT
)

_CARD_PREFIXES = ("62", "60")

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_valid(code: str) -> bool:
    """The GB 32100-2015 check character of a 统一社会信用代码 (18 characters)."""
    code = code.upper()
    if len(code) != 18 or any(ch not in _USCC_CHARS for ch in code):
        return False
    total = sum(_USCC_CHARS.index(ch) * w for ch, w in zip(code[:17], _USCC_WEIGHTS))
    return _USCC_CHARS[(31 - total % 31) % 31] == code[17]


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check that bank-card numbers carry."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _replace(m: re.Match[str]) -> str:
    if m.group("card_grouped"):
        text = m.group("card_grouped")
        # Keep the separators and the last four digits; star every other digit.
        total = sum(ch.isdigit() for ch in text)
        seen = 0
        out = []
        for ch in text:
            if ch.isdigit():
                seen += 1
                out.append(ch if seen > total - 4 else "*")
            else:
                out.append(ch)
        return "".join(out)
    if m.group("id18") or m.group("id15"):
        text = m.group("id18") or m.group("id15")
        return text[:3] + "*" * (len(text) - 5) + text[-2:]
    if m.group("phone"):
        prefix = m.group("cc") or ""
        digits = re.sub(r"[ \-]", "", m.group("phone")[len(prefix):])
        return f"{prefix}{digits[:3]}****{digits[-4:]}"
    text = m.group("card")
    if len(text) == 18 and uscc_valid(text):
        return text  # an all-digit 统一社会信用代码 with a valid check character: a company, not a card
    if luhn_valid(text) or text.startswith(_CARD_PREFIXES):
        return text[:4] + "*" * (len(text) - 8) + text[-4:]
    return text


def mask_text(text: str) -> str:
    """Return ``text`` with resident ID numbers, bank-card numbers and mobile numbers masked."""
    if not text or not isinstance(text, str):
        return text
    # Cheap exit: nothing to mask without a run of digits.
    if not any(ch.isdigit() for ch in text):
        return text
    return _PATTERN.sub(_replace, text)


def mask_value(obj: Any) -> Any:
    """Mask every string inside ``obj`` (dicts, lists, tuples, sets; keys too). Others pass through."""
    if isinstance(obj, str):
        return mask_text(obj)
    if isinstance(obj, Mapping):
        return {mask_value(k): mask_value(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [mask_value(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(mask_value(v) for v in obj)
    if isinstance(obj, (set, frozenset)):
        return type(obj)(mask_value(v) for v in obj)
    return obj


class MaskingFilter(logging.Filter):
    """A logging filter that masks PII in the message, its arguments and any traceback text.

    The message is formatted once (``record.getMessage()``), masked, and stored back in
    ``record.msg`` with ``record.args`` cleared, so PII passed as a ``%s``/``%d`` argument of any
    type is masked too. It never drops a record.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: mask the pieces instead
            message = str(record.msg)
            if record.args:
                message += " " + repr(mask_value(record.args))
        record.msg = mask_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


def install_log_masking(logger_names: Iterable[str] = ("",)) -> MaskingFilter:
    """Attach one :class:`MaskingFilter` to the named loggers (``""`` is root) and their handlers.

    Filters on a logger only see records logged on that logger itself; filters on a handler see
    everything that reaches it, including records propagated from child loggers. So the filter goes
    on both. Calling this again is harmless (no filter is added twice); handlers added later need
    another call.
    """
    existing: MaskingFilter | None = None
    names = list(logger_names)
    for name in names:
        for f in logging.getLogger(name or None).filters:
            if isinstance(f, MaskingFilter):
                existing = f
                break
    flt = existing or MaskingFilter()
    for name in names:
        logger = logging.getLogger(name or None)
        if not any(isinstance(f, MaskingFilter) for f in logger.filters):
            logger.addFilter(flt)
        for handler in logger.handlers:
            if not any(isinstance(f, MaskingFilter) for f in handler.filters):
                handler.addFilter(flt)
    return flt
