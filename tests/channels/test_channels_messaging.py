"""render_message(): file convention, language fallback, masking, escaping, filters, errors."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from ledgerguard.channels.messaging import (
    MessageTemplateError,
    format_dt,
    format_money,
    level_label,
    render_message,
)
from ledgerguard.models import Level

PII_CONTEXT = {
    "title": "员工导出客户资料 13900001111",
    "level": Level.TWO,
    "contact_phone": "+86 139-0000-1111",
    "note": "银行卡 6217001234567890123，身份证 440301198512125678",
    "observed_at": "2026-11-27T02:05:00Z",
    "facts": {"id_number": "440301198512125678", "card": "6222-0212-3456-7890", "amount_cents": 5},
}
RAW_PII = ["13900001111", "440301198512125678", "6217001234567890123", "6222-0212-3456-7890", "139-0000-1111"]


def test_parts_and_masking_everywhere(templates_dir):
    msg = render_message(name="incident", context=PII_CONTEXT, templates_dir=templates_dir)
    assert msg.name == "incident"
    assert msg.subject == "【二级】员工导出客户资料 139****1111 — 联系 +86 139****1111"
    assert "\n" not in msg.subject
    for part in (msg.subject, msg.text, msg.html, msg.markdown):
        assert part
        for raw in RAW_PII:
            assert raw not in part, (raw, part)
    assert "440*************78" in msg.text
    assert "****-****-****-7890" in msg.text
    assert "6217***********0123" in msg.html
    assert "金额：¥0.05" in msg.text
    assert "发现时间：2026-11-27 10:05 (UTC+8)" in msg.text


def test_autoescape_only_for_html(templates_dir):
    ctx = dict(PII_CONTEXT, title="A & B <i>", note="<b>x</b>")
    msg = render_message(name="incident", context=ctx, templates_dir=templates_dir)
    assert "A &amp; B &lt;i&gt;" in msg.html
    assert "&lt;b&gt;x&lt;/b&gt;" in msg.html
    assert "A & B <i>" in msg.text  # plain text is not escaped
    assert "A & B <i>" in msg.markdown


def test_english_with_fallback_to_zh_cn(templates_dir):
    msg = render_message(name="incident", language="en", context=PII_CONTEXT, templates_dir=templates_dir)
    assert msg.subject == "[Level 2] 员工导出客户资料 139****1111"
    assert msg.text.startswith("Incident:")
    assert "Amount: ¥0.05" in msg.text
    # html and md do not exist in en/: the zh-CN ones are used, with the en level label
    assert msg.html and "<h1>" in msg.html
    assert msg.markdown and "级别：Level 2" in msg.markdown
    assert msg.language == "en"


def test_optional_parts_absent(templates_dir):
    msg = render_message(name="plain", context={"name": "李娜"}, templates_dir=templates_dir)
    assert msg.html is None and msg.markdown is None
    assert msg.text == "你好 李娜\n"


def test_missing_template_names_the_file(templates_dir):
    with pytest.raises(MessageTemplateError) as err:
        render_message(name="nonexistent", context={}, templates_dir=templates_dir)
    text = str(err.value)
    assert str(templates_dir / "zh-CN" / "nonexistent.subject.j2") in text


def test_missing_text_template_names_the_file(templates_dir):
    (templates_dir / "zh-CN" / "halfdone.subject.j2").write_text("x", encoding="utf-8")
    with pytest.raises(MessageTemplateError, match=r"halfdone\.txt\.j2"):
        render_message(name="halfdone", context={}, templates_dir=templates_dir)


def test_undefined_variable_is_an_error_naming_the_file(templates_dir):
    ctx = {k: v for k, v in PII_CONTEXT.items() if k != "title"}
    with pytest.raises(MessageTemplateError, match=r"incident\.subject\.j2.*title"):
        render_message(name="incident", context=ctx, templates_dir=templates_dir)


def test_template_edits_are_picked_up(templates_dir):
    assert render_message(name="plain", context={"name": "a"}, templates_dir=templates_dir).text == "你好 a\n"
    path = templates_dir / "zh-CN" / "plain.txt.j2"
    path.write_text("您好 {{ name }}", encoding="utf-8")
    import os
    import time

    future = time.time() + 5
    os.utime(path, (future, future))
    assert render_message(name="plain", context={"name": "a"}, templates_dir=templates_dir).text == "您好 a\n"


def test_non_string_values_are_masked_too(templates_dir):
    (templates_dir / "zh-CN" / "num.subject.j2").write_text("{{ phone }}", encoding="utf-8")
    (templates_dir / "zh-CN" / "num.txt.j2").write_text("{{ phone }} {{ count }} {{ items }}", encoding="utf-8")
    msg = render_message(name="num", context={"phone": 13812345678, "count": 12, "items": ["13812345678"]},
                         templates_dir=templates_dir)
    assert msg.subject == "138****5678"
    assert msg.text.strip() == "138****5678 12 ['138****5678']"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 11, 27, 2, 5, tzinfo=timezone.utc), "2026-11-27 10:05 (UTC+8)"),
        (datetime(2026, 11, 27, 2, 5), "2026-11-27 10:05 (UTC+8)"),  # naive = UTC
        (datetime(2026, 11, 27, 10, 5, tzinfo=timezone(timedelta(hours=8))), "2026-11-27 10:05 (UTC+8)"),
        ("2026-11-27T02:05:00Z", "2026-11-27 10:05 (UTC+8)"),
        (date(2026, 11, 27), "2026-11-27"),
        (None, ""),
        ("not a date", "not a date"),
    ],
)
def test_dt_filter(value, expected):
    assert format_dt(value) == expected


def test_dt_filter_other_zone_and_format():
    ts = datetime(2026, 11, 27, 2, 5, tzinfo=timezone.utc)
    assert format_dt(ts, tz="UTC") == "2026-11-27 02:05 (UTC+0)"
    assert format_dt(ts, "%H:%M") == "10:05"


@pytest.mark.parametrize(
    ("value", "language", "expected"),
    [(1, "zh-CN", "一级"), (Level.FOUR, "zh-CN", "四级"), ("3", "zh-CN", "三级"), (2, "en", "Level 2"),
     (Level.ONE, "en", "Level 1"), ("x", "en", "x")],
)
def test_level_label(value, language, expected):
    assert level_label(value, language) == expected


@pytest.mark.parametrize(
    ("cents", "expected"),
    [(123456, "¥1,234.56"), (0, "¥0.00"), (5, "¥0.05"), (-123456, "-¥1,234.56"), (100000000, "¥1,000,000.00"),
     ("250", "¥2.50"), (None, "")],
)
def test_money(cents, expected):
    assert format_money(cents) == expected
