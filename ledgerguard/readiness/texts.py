"""Readiness gaps said in the reader's language (zh-CN default, en).

A :class:`~ledgerguard.readiness.service.Gap` keeps an English ``message`` for logs and the
register; reports and the CLI say it from ``code`` and ``data`` instead, so the weekly report
reads as Chinese for a Chinese agency.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["REGISTER_LABELS", "ROLE_LABELS", "STATUS_LABELS", "describe", "register_label"]

REGISTER_LABELS = {
    "zh-CN": {"supplies": "应急物资", "resources": "外部资源", "regulations": "法规库", "training": "培训与演练",
              "raci": "职责分工（RACI）", "oncall": "值班负荷", "checkins": "事件后人员报到"},
    "en": {"supplies": "Emergency supplies", "resources": "External resources", "regulations": "Regulation library",
           "training": "Training and drills", "raci": "RACI", "oncall": "On-call load",
           "checkins": "Staff check-ins"},
}
ROLE_LABELS = {
    "zh-CN": {"owner": "负责人", "manager": "经理", "duty_lead": "值班负责人", "it": "IT", "accountants": "会计",
              "hr": "人事", "legal": "法务", "data_protection": "个人信息保护负责人", "reviewer": "复核"},
    "en": {"owner": "owner", "manager": "manager", "duty_lead": "duty lead", "it": "IT", "accountants": "accountants",
           "hr": "HR", "legal": "legal", "data_protection": "data protection", "reviewer": "reviewer"},
}
STATUS_LABELS = {
    "zh-CN": {"ok": "状态良好", "needs_support": "需要支持", "unavailable": "暂时无法工作"},
    "en": {"ok": "fine", "needs_support": "needs support", "unavailable": "not available"},
}

_TEXTS = {
    "zh-CN": {
        "register_missing": "准备度目录中缺少 {name}",
        "register_invalid": "{name} 无法读取，请修正：{error}",
        "never_checked": "{name}：从未检查",
        "check_overdue": "{name}：应于 {due} 检查，已逾期 {days} 天",
        "expired": "{name}：已于 {expires} 过期",
        "expiring": "{name}：将于 {expires} 过期（还剩 {days} 天）",
        "short": "{name}：现有 {quantity} 件，至少需要 {minimum} 件",
        "never_verified": "{name}：联系方式从未核实",
        "verification_overdue": "{name}：联系方式应于 {due} 重新核实，已逾期 {days} 天",
        "never_reviewed": "{title}：从未复核",
        "review_overdue": "{title}：应于 {due} 复核，已逾期 {days} 天",
        "no_recent_drill": "{person}：近 12 个月未参加演练{last}",
        "raci_missing": "{type_name}：未设定各部门职责分工（RACI）",
        "single_cover": "{role}值班：只有 {person} 一人，承担全部班次",
        "uneven_load": "{role}值班：{person} 未来 {days} 天值班 {hours} 小时，合理份额约 {fair_hours} 小时",
        "checkin_missing": "{type_name}（{level}，事件 {incident}）：{people} 尚未报到",
        "support_requested": "{person} 在{type_name}（{level}，事件 {incident}）后报到：需要支持{note_text}",
        "unavailable": "{person} 在{type_name}（{level}，事件 {incident}）后报到：暂时无法工作{note_text}",
    },
    "en": {
        "register_missing": "{name} is missing from the readiness folder",
        "register_invalid": "{name} cannot be read; fix it: {error}",
        "never_checked": "{name}: never checked",
        "check_overdue": "{name}: check was due {due}, {days} day(s) overdue",
        "expired": "{name}: expired on {expires}",
        "expiring": "{name}: expires on {expires} ({days} day(s) left)",
        "short": "{name}: {quantity} on hand, at least {minimum} needed",
        "never_verified": "{name}: contact never verified",
        "verification_overdue": "{name}: contact verification was due {due}, {days} day(s) overdue",
        "never_reviewed": "{title}: never reviewed",
        "review_overdue": "{title}: review was due {due}, {days} day(s) overdue",
        "no_recent_drill": "{person}: no drill in the last 12 months{last}",
        "raci_missing": "{type_name}: no RACI of departments",
        "single_cover": "{role} on call: {person} is the only member and carries every shift",
        "uneven_load": "{role} on call: {person} holds {hours} h in the next {days} days (a fair share is about "
                       "{fair_hours} h)",
        "checkin_missing": "{type_name} ({level}, incident {incident}): no check-in yet from {people}",
        "support_requested": "{person} checked in after {type_name} ({level}, incident {incident}): needs "
                             "support{note_text}",
        "unavailable": "{person} checked in after {type_name} ({level}, incident {incident}): not available"
                       "{note_text}",
    },
}


def _lang(language: str) -> str:
    return "en" if language == "en" else "zh-CN"


def register_label(register: str, language: str) -> str:
    return REGISTER_LABELS[_lang(language)].get(register, register)


def _get(gap: Any, name: str) -> Any:
    return gap.get(name) if isinstance(gap, Mapping) else getattr(gap, name)


def describe(gap: Any, *, language: str, names: Mapping[str, str] | None = None,
             type_names: Mapping[str, str] | None = None) -> str:
    """One line for a gap (a Gap or its dict): ``names`` maps person ids to names, ``type_names``
    emergency type ids to their catalog names in ``language``."""
    lang = _lang(language)
    zh = lang == "zh-CN"
    names = names or {}
    type_names = type_names or {}
    code, data = _get(gap, "code"), dict(_get(gap, "data") or {})
    due = _get(gap, "due")
    template = _TEXTS[lang].get(code)
    if template is None:
        return str(_get(gap, "message"))

    def person(pid: str | None) -> str:
        return names.get(pid, pid) if pid else "—"

    title = str(data.get("name", ""))
    last = data.get("last_drill")
    etype = data.get("emergency_type") or data.get("name") or ""
    level = data.get("level")
    values = {
        **data,
        "due": due.isoformat() if hasattr(due, "isoformat") else (due or ""),
        "title": (title if title.startswith("《") else f"《{title}》") if zh else title,
        "person": person(data.get("person")),
        "last": (f"（上次 {last}）" if last else "（无演练记录）") if zh else (f" (last {last})" if last else " (none on record)"),
        "type_name": type_names.get(etype, etype),
        "role": ROLE_LABELS[lang].get(data.get("role", ""), data.get("role", "")),
        "level": ({1: "一级", 2: "二级", 3: "三级", 4: "四级"}.get(level, str(level)) if zh else f"level {level}"),
        "incident": str(data.get("incident_id", ""))[:8],
        "people": ("、" if zh else ", ").join(person(p) for p in data.get("people", [])),
        "note_text": ((f"（{data['note']}）" if zh else f" ({data['note']})") if data.get("note") else ""),
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):  # a gap whose data lacks a number: its English words will do
        return str(_get(gap, "message"))
