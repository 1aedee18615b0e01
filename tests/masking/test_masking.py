"""PII masking: table-driven positives and negatives, nested values, and log records."""

from __future__ import annotations

import logging

import pytest

from ledgerguard.masking import MaskingFilter, install_log_masking, luhn_valid, mask_text, mask_value

POSITIVES = [
    # resident ID, 18 chars: first 3 + last 2 kept
    ("110105199001011234", "110*************34"),
    ("11010519900307123X", "110*************3X"),
    ("11010519900307123x", "110*************3x"),
    ("身份证号：440301198512125678。", "身份证号：440*************78。"),
    ("ID 440301198512125678,", "ID 440*************78,"),
    # resident ID, 15 digits (first generation)
    ("老身份证110105900101123", "老身份证110**********23"),
    # bank cards in groups
    ("卡号 6222 0212 3456 7890", "卡号 **** **** **** 7890"),
    ("6222-0212-3456-7890", "****-****-****-7890"),
    ("6217 0012 3456 7890 123", "**** **** **** ***0 123"),
    # bank cards as one run: UnionPay prefix or Luhn-valid
    ("6222021234567890123", "6222***********0123"),
    ("卡6217001234567890号", "卡6217********7890号"),
    ("4111111111111111", "4111********1111"),
    ("5500005555555559", "5500********5559"),
    # mobiles
    ("13812345678", "138****5678"),
    ("电话13812345678，", "电话138****5678，"),
    ("+86 138 1234 5678", "+86 138****5678"),
    ("+8613812345678", "+86138****5678"),
    ("86-138-1234-5678", "86-138****5678"),
    ("call 199-0000-1111 now", "call 199****1111 now"),
    ("(15012345678)", "(150****5678)"),
    ("mail=13812345678@qq.com", "mail=138****5678@qq.com"),
    # several in one string
    (
        "王芳 110105199001011234 卡 6222 0212 3456 7890 手机 13812345678",
        "王芳 110*************34 卡 **** **** **** 7890 手机 138****5678",
    ),
]

NEGATIVES = [
    "20261127T021000Z",                                                  # ISO basic timestamp
    "2026-11-27T02:10:00+08:00",
    "20261127021000",                                                    # 14-digit timestamp
    "1795795923",                                                        # epoch seconds
    "1795795923123",                                                     # epoch millis (13 digits)
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # sha256
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # sha256 of ""
    "13812345678a9f",                                                    # hex-ish token with a phone-like run
    "a13812345678",
    "1234567.89",                                                        # amounts
    "¥13812345678.00",
    "12345678901234567.89",
    "0.13812345678",
    "91110108MA01ABCD2X",                                                # 统一社会信用代码 with letters
    "91350100M000100Y43",
    "913100007178839520",                                                # 18 digits, not Luhn, no ID date
    "913100007178800361",                                                # all-digit USCC, valid check char (and Luhn)
    "1234567890123456",                                                  # not Luhn, no card prefix
    "12812345678",                                                       # 12x is not a mobile prefix
    "1381234567",                                                        # 10 digits
    "138123456789",                                                      # 12 digits
    "2026-11-27",
    "INC-20261127-0001",
    "550e8400-e29b-41d4-a716-446655440000",                              # UUID
    "1234-5678-9012-1234567890ab",                                       # UUID-like groups
    "v1.2.3 build 4567",
    "",
]


@pytest.mark.parametrize(("text", "expected"), POSITIVES)
def test_masks(text, expected):
    assert mask_text(text) == expected


@pytest.mark.parametrize("text", NEGATIVES)
def test_leaves_alone(text):
    assert mask_text(text) == text


@pytest.mark.parametrize(("text", "_"), POSITIVES)
def test_idempotent(text, _):
    once = mask_text(text)
    assert mask_text(once) == once


def test_uscc_check():
    from ledgerguard.masking import uscc_valid

    assert uscc_valid("91350100M000100Y43")
    assert uscc_valid("913100007178800361")
    assert not uscc_valid("913100007178800362")
    assert not uscc_valid("9135")


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("41111x")


def test_mask_value_nested():
    data = {
        "client": {"phone": "13812345678", "ids": ["110105199001011234", 42, None]},
        "13900001111": ("6222 0212 3456 7890", {"ok": True}),
        "tags": {"13812345678"},
        "amount": 1234567.89,
    }
    masked = mask_value(data)
    assert masked == {
        "client": {"phone": "138****5678", "ids": ["110*************34", 42, None]},
        "139****1111": ("**** **** **** 7890", {"ok": True}),
        "tags": {"138****5678"},
        "amount": 1234567.89,
    }
    assert data["client"]["phone"] == "13812345678"  # input untouched


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logger_and_handler():
    logger = logging.getLogger("lg_masking_test")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = _ListHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)
    for f in list(logger.filters):
        logger.removeFilter(f)


def test_filter_masks_message_and_args(logger_and_handler):
    logger, handler = logger_and_handler
    handler.addFilter(MaskingFilter())
    logger.info("client %s phone %s card %d", "110105199001011234", "13812345678", 6222021234567890123)
    logger.info({"phone": "13812345678"})
    logger.info("id=%(id)s", {"id": "11010519900307123X"})
    assert handler.lines == [
        "INFO client 110*************34 phone 138****5678 card 6222***********0123",
        "INFO {'phone': '138****5678'}",
        "INFO id=110*************3X",
    ]


def test_filter_masks_tracebacks(logger_and_handler):
    logger, handler = logger_and_handler
    handler.addFilter(MaskingFilter())
    try:
        raise ValueError("bad phone 13812345678")
    except ValueError:
        logger.exception("failed for %s", "13900001111")
    text = handler.lines[0]
    assert "139****1111" in text and "138****5678" in text
    assert "13812345678" not in text and "13900001111" not in text


def test_install_covers_child_loggers_and_is_idempotent(logger_and_handler):
    logger, handler = logger_and_handler
    flt = install_log_masking(logger_names=("lg_masking_test",))
    again = install_log_masking(logger_names=("lg_masking_test",))
    assert again is flt
    assert sum(isinstance(f, MaskingFilter) for f in logger.filters) == 1
    assert sum(isinstance(f, MaskingFilter) for f in handler.filters) == 1
    child = logging.getLogger("lg_masking_test.child")
    child.warning("phone %s", "13812345678")  # propagates to the parent's handler
    logger.warning("direct 13900001111")
    assert handler.lines == ["WARNING phone 138****5678", "WARNING direct 139****1111"]


def test_install_on_root_by_default():
    root = logging.getLogger()
    handler = _ListHandler()
    root.addHandler(handler)
    try:
        flt = install_log_masking()
        assert flt in root.filters and flt in handler.filters
        logging.getLogger("some.library").error("leaked 13812345678")
        assert handler.lines[-1] == "leaked 138****5678"
    finally:
        root.removeHandler(handler)
        for f in list(root.filters):
            if isinstance(f, MaskingFilter):
                root.removeFilter(f)
        for h in root.handlers:
            for f in list(h.filters):
                if isinstance(f, MaskingFilter):
                    h.removeFilter(f)
