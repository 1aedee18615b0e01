"""Render notification messages from Jinja2 templates, with PII masked in every value.

Template convention — a message named ``X`` is a set of files in ``<templates_dir>/<language>/``:

    X.subject.j2   the subject / title, one line (newlines are folded into spaces)   required
    X.txt.j2       the plain-text body (chat channels, and the text of the message)   required
    X.html.j2      the HTML body for email (autoescaped)                               optional
    X.md.j2        a markdown version (chat channels that render markdown, or a       optional
                   post-mortem / report attachment)

Files missing in ``<language>/`` are looked up in ``zh-CN/`` (the default language). Only
``.html.j2`` templates are autoescaped. Undefined variables are errors (``StrictUndefined``).
``trim_blocks`` and ``lstrip_blocks`` are on (a ``{% … %}`` line leaves no blank line behind).
The context also gets ``language`` (unless given) and the globals ``language`` and ``timezone``.
Every ``{{ … }}`` value passes through :func:`ledgerguard.masking.mask_text` before it is written,
so ID numbers, bank cards and phone numbers from facts and evidence come out masked in every
message (text written literally in a template is not touched).

Filters available in templates:

    {{ ts | dt }}            2026-11-27 10:05 (UTC+8)    datetime or ISO string, in the agency zone
    {{ ts | dt("%H:%M") }}   10:05                       a strftime format of your own
    {{ level | level_label }}  一级 / Level 1            a Level, 1–4, or "1"–"4"; by language
    {{ cents | money }}      ¥1,234.56                   integer cents
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from ledgerguard.masking import mask_text

__all__ = [
    "DEFAULT_LANGUAGE",
    "DEFAULT_TIMEZONE",
    "MessageTemplateError",
    "RenderedMessage",
    "format_dt",
    "format_money",
    "get_environment",
    "level_label",
    "render_message",
]

DEFAULT_LANGUAGE = "zh-CN"
DEFAULT_TIMEZONE = "Asia/Shanghai"
PARTS = ("subject", "txt", "html", "md")


class MessageTemplateError(LookupError):
    """A template is missing or failed to render; the message names the file."""


@dataclass(frozen=True)
class RenderedMessage:
    name: str
    subject: str
    text: str
    html: str | None = None
    markdown: str | None = None
    language: str = DEFAULT_LANGUAGE


# -- filters ---------------------------------------------------------------------------------

def _utc_offset_label(value: datetime) -> str:
    offset = value.utcoffset()
    if offset is None:
        return ""
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{mins:02d}" if mins else "")


def format_dt(value: Any, fmt: str | None = None, *, tz: str = DEFAULT_TIMEZONE) -> str:
    """A datetime (naive = UTC) or ISO string in the agency time zone: ``2026-11-27 10:05 (UTC+8)``."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.strftime(fmt or "%Y-%m-%d")
    if not isinstance(value, datetime):
        return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    local = value.astimezone(ZoneInfo(tz))
    if fmt:
        return local.strftime(fmt)
    return f"{local:%Y-%m-%d %H:%M} ({_utc_offset_label(local)})"


def level_label(value: Any, language: str = DEFAULT_LANGUAGE) -> str:
    """1 → 一级 (zh) / Level 1 (en). Accepts a Level, an int or a digit string."""
    try:
        n = int(getattr(value, "value", value))
    except (TypeError, ValueError):
        return str(value)
    if language.startswith("zh"):
        return {1: "一级", 2: "二级", 3: "三级", 4: "四级"}.get(n, f"{n}级")
    return f"Level {n}"


def format_money(cents: Any, symbol: str = "¥") -> str:
    """Integer cents → ``¥1,234.56`` (negative: ``-¥1,234.56``)."""
    if cents is None or cents == "":
        return ""
    amount = (Decimal(str(cents)) / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{abs(amount):,.2f}"


# -- environment -----------------------------------------------------------------------------

def _finalize(value: Any) -> Any:
    """Mask PII in every value written by ``{{ … }}``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Markup):
        return Markup(mask_text(str(value)))  # masking only replaces digits with '*': still safe
    if isinstance(value, str):
        return mask_text(value)
    text = str(value)
    masked = mask_text(text)
    return value if masked == text else masked


def _autoescape(template_name: str | None) -> bool:
    return bool(template_name) and template_name.endswith(".html.j2")


@functools.lru_cache(maxsize=32)
def _environment(templates_dir: str, language: str, tz: str) -> jinja2.Environment:
    base = Path(templates_dir)
    search = [base / language]
    if language != DEFAULT_LANGUAGE:
        search.append(base / DEFAULT_LANGUAGE)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(p) for p in search], encoding="utf-8"),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["dt"] = lambda value, fmt=None: format_dt(value, fmt, tz=tz)
    env.filters["level_label"] = lambda value, lang=None: level_label(value, lang or language)
    env.filters["money"] = format_money
    env.filters["mask"] = mask_text
    env.globals["language"] = language
    env.globals["timezone"] = tz
    return env


def get_environment(
    *, templates_dir: Path | None = None, language: str = DEFAULT_LANGUAGE, timezone_name: str | None = None
) -> jinja2.Environment:
    """The (cached) Jinja2 environment for one templates folder and language."""
    if templates_dir is None or timezone_name is None:
        from ledgerguard.config import get_settings

        settings = get_settings()
        templates_dir = templates_dir or settings.templates_dir
        timezone_name = timezone_name or settings.timezone or DEFAULT_TIMEZONE
    return _environment(str(Path(templates_dir).resolve()), language, timezone_name)


def _searched(env: jinja2.Environment, filename: str) -> str:
    loader = env.loader
    assert isinstance(loader, jinja2.FileSystemLoader)
    return " or ".join(str(Path(p) / filename) for p in loader.searchpath)


def _render_part(env: jinja2.Environment, filename: str, context: dict[str, Any], *, required: bool) -> str | None:
    try:
        template = env.get_template(filename)
    except jinja2.TemplateNotFound:
        if required:
            raise MessageTemplateError(f"message template not found: {_searched(env, filename)}") from None
        return None
    except jinja2.TemplateSyntaxError as exc:
        raise MessageTemplateError(f"{exc.filename or filename}:{exc.lineno}: template syntax error: {exc.message}") from exc
    try:
        return template.render(context)
    except jinja2.UndefinedError as exc:
        raise MessageTemplateError(f"{template.filename}: {exc.message}") from exc


def render_message(
    *,
    name: str,
    language: str = DEFAULT_LANGUAGE,
    context: dict[str, Any],
    templates_dir: Path | None = None,
    timezone_name: str | None = None,
) -> RenderedMessage:
    """Render message ``name`` (see the module docstring for the file convention)."""
    env = get_environment(templates_dir=templates_dir, language=language, timezone_name=timezone_name)
    ctx = dict(context)
    ctx.setdefault("language", language)
    subject = _render_part(env, f"{name}.subject.j2", ctx, required=True) or ""
    subject = " ".join(line.strip() for line in subject.splitlines() if line.strip())
    text = _render_part(env, f"{name}.txt.j2", ctx, required=True) or ""
    html = _render_part(env, f"{name}.html.j2", ctx, required=False)
    markdown = _render_part(env, f"{name}.md.j2", ctx, required=False)
    return RenderedMessage(
        name=name,
        subject=subject,
        text=text.strip() + "\n",
        html=html,
        markdown=markdown,
        language=language,
    )
