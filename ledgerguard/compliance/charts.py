"""The monthly report's charts as PNG images (matplotlib, Agg backend: no display needed).

Chinese labels need a font with CJK glyphs; without one matplotlib draws empty boxes (tofu).
:func:`find_cjk_font` looks for one (WenQuanYi Zen Hei, which scripts/test.sh installs as Debian's
``fonts-wqy-zenhei``, Noto/Source Han Sans CJK, …), confirming the font really has the glyphs;
when there is none the charts are labelled in English whatever the report's language — a chart
in the other language is readable, boxes are not.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a server has no display; Figure objects (no pyplot) keep no global state

import logging  # noqa: E402

# WenQuanYi Zen Hei ships one weight (medium): matplotlib says so at every text it draws.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ledgerguard.compliance.monthly import MonthlyFigures  # noqa: E402

__all__ = ["Chart", "CJK_FONT_NAMES", "chart_language", "find_cjk_font", "render_charts"]

CJK_FONT_NAMES = ("WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans SC",
                  "Source Han Sans SC", "Source Han Sans CN", "Noto Serif CJK SC", "AR PL UMing CN",
                  "Droid Sans Fallback", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC")
PROBE = "月度合规报告应急"  # glyphs the Chinese charts use


@dataclass(frozen=True)
class Chart:
    name: str      # file stem, also the placeholder in the templates: lgchart:<name>
    title: str     # alt text / caption, in the report's language
    png: bytes


def _has_glyphs(path: str, text: str) -> bool:
    try:
        from matplotlib.ft2font import FT2Font

        charmap = FT2Font(path).get_charmap()
    except Exception:  # noqa: BLE001 — an unreadable font file is simply not a candidate
        return False
    return all(ord(ch) in charmap for ch in text)


@functools.lru_cache(maxsize=1)
def find_cjk_font() -> str | None:
    """The family name of an installed font that draws Chinese, or None."""
    fonts = font_manager.fontManager.ttflist
    by_name: dict[str, str] = {}
    for font in fonts:
        by_name.setdefault(font.name, font.fname)
    for name in CJK_FONT_NAMES:
        if name in by_name and _has_glyphs(by_name[name], PROBE):
            return name
    # A font under another name (a distribution's own build) still counts if it has the glyphs.
    for name, path in sorted(by_name.items()):
        if any(k in name for k in ("CJK", "Hei", "Han", "Ming", "Song", "Kai", "Gothic")) and _has_glyphs(path, PROBE):
            return name
    return None


def chart_language(language: str) -> str:
    """The language the charts can be labelled in: Chinese only with a CJK font."""
    return "zh-CN" if language.startswith("zh") and find_cjk_font() else "en"


LABELS = {
    "zh-CN": {
        "mtta_mttr": "各类事件的 MTTA 与 MTTR（中位数）", "mtta": "MTTA 确认（分钟）", "mttr": "MTTR 解决（小时）",
        "sla": "SLA 达成情况（真实事件）", "ack": "确认时限", "resolve": "解决时限",
        "met": "达成", "missed": "未达成", "pending": "未到期", "no_target": "无目标",
        "delivery": "各渠道通知送达情况", "sent": "已送达", "failed": "失败", "deferred": "延后", "queued": "待发送",
        "rate": "送达率", "runs": "Prefect 应急流程运行（按最终状态）",
        "COMPLETED": "完成", "FAILED": "失败", "CRASHED": "崩溃", "CANCELLED": "取消", "IN_PROGRESS": "进行中",
        "none": "本月无数据", "count": "数量",
    },
    "en": {
        "mtta_mttr": "MTTA and MTTR by emergency type (median)", "mtta": "MTTA (minutes)", "mttr": "MTTR (hours)",
        "sla": "SLA met vs missed (real incidents)", "ack": "Acknowledge", "resolve": "Resolve",
        "met": "met", "missed": "missed", "pending": "not due yet", "no_target": "no target",
        "delivery": "Notification delivery per channel", "sent": "sent", "failed": "failed", "deferred": "deferred",
        "queued": "pending", "rate": "delivered", "runs": "Prefect emergency runs by final state",
        "COMPLETED": "completed", "FAILED": "failed", "CRASHED": "crashed", "CANCELLED": "cancelled",
        "IN_PROGRESS": "in progress", "none": "No data this month", "count": "count",
    },
}
COLORS = {"met": "#2e7d32", "missed": "#c62828", "pending": "#f9a825", "no_target": "#9e9e9e",
          "sent": "#2e7d32", "failed": "#c62828", "deferred": "#f9a825", "queued": "#90a4ae",
          "COMPLETED": "#2e7d32", "FAILED": "#c62828", "CRASHED": "#6a1b9a", "CANCELLED": "#757575",
          "IN_PROGRESS": "#1565c0", "mtta": "#1565c0", "mttr": "#ef6c00"}


def _figure(language: str, width: float = 7.5, height: float = 3.6) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="tight")
    # The font is chosen per figure, not in rcParams: other code in the process keeps its own.
    fig._lg_font = find_cjk_font() if language.startswith("zh") else None  # type: ignore[attr-defined]
    return fig


def _font(fig: Figure) -> dict:
    name = getattr(fig, "_lg_font", None)
    return {"fontfamily": [name, "DejaVu Sans"]} if name else {}


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _empty(ax, text: str, fig: Figure) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#757575", **_font(fig))
    ax.set_xticks([])
    ax.set_yticks([])


def _legend_right(ax, fig: Figure) -> None:
    """The legend beside the bars (never over them), in the chart's font, and the ticks too."""
    legend = ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    for text in legend.get_texts():
        if _font(fig):
            text.set_fontfamily(_font(fig)["fontfamily"])
    _style_ticks(ax, fig)


def _style_ticks(ax, fig: Figure) -> None:
    for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        if _font(fig):
            label.set_fontfamily(_font(fig)["fontfamily"])


def mtta_mttr_chart(figures: MonthlyFigures, *, language: str, type_names: dict[str, str]) -> Chart:
    lab = LABELS[language]
    fig = _figure(language, height=max(2.8, 0.5 * len(figures.mtta.by_type) + 1.6))
    ax_a, ax_r = fig.subplots(1, 2, sharey=True)
    fig.suptitle(lab["mtta_mttr"], **_font(fig))
    types = [s.key for s in figures.mtta.by_type]
    if not types:
        _empty(ax_a, lab["none"], fig)
        _empty(ax_r, lab["none"], fig)
    else:
        names = [type_names.get(t, t) for t in types]
        mtta = [s.median_minutes for s in figures.mtta.by_type]
        mttr_by = {s.key: s.median_minutes for s in figures.mttr.by_type}
        mttr = [None if mttr_by.get(t) is None else mttr_by[t] / 60 for t in types]
        y = list(range(len(types)))
        ax_a.set_yticks(y, names)
        for ax, values, color in ((ax_a, mtta, COLORS["mtta"]), (ax_r, mttr, COLORS["mttr"])):
            # No acknowledgement (or resolution) yet is not a time of zero: no bar, a dash.
            ax.barh(y, [v or 0 for v in values], color=color)
            for i, v in enumerate(values):
                ax.text(v or 0, i, " —" if v is None else f" {v:.1f}", va="center", fontsize=8)
            ax.set_xlim(0, max([v for v in values if v] or [1]) * 1.3)
        ax_a.invert_yaxis()
    ax_a.set_title(lab["mtta"], fontsize=9, **_font(fig))
    ax_r.set_title(lab["mttr"], fontsize=9, **_font(fig))
    _style_ticks(ax_a, fig)
    return Chart(name="mtta_mttr_by_type", title=lab["mtta_mttr"], png=_png(fig))


def sla_chart(figures: MonthlyFigures, *, language: str) -> Chart:
    lab = LABELS[language]
    fig = _figure(language, height=2.8)
    ax = fig.subplots()
    ax.set_title(lab["sla"], **_font(fig))
    tallies = [("ack", figures.sla.ack), ("resolve", figures.sla.resolve)]
    if not any(t.met + t.missed + t.pending + t.no_target for _, t in tallies):
        _empty(ax, lab["none"], fig)
    else:
        y = [0, 1]
        left = [0, 0]
        for key in ("met", "missed", "pending", "no_target"):
            values = [getattr(t, key) for _, t in tallies]
            if not any(values):
                continue
            ax.barh(y, values, left=left, color=COLORS[key], label=lab[key])
            for i, v in enumerate(values):
                if v:
                    ax.text(left[i] + v / 2, i, str(v), ha="center", va="center", color="white", fontsize=9)
            left = [a + b for a, b in zip(left, values)]
        ax.set_yticks(y, [lab[k] for k, _ in tallies])
        ax.invert_yaxis()
        ax.xaxis.get_major_locator().set_params(integer=True)
        _legend_right(ax, fig)
    return Chart(name="sla_met_missed", title=lab["sla"], png=_png(fig))


def delivery_chart(figures: MonthlyFigures, *, language: str) -> Chart:
    lab = LABELS[language]
    fig = _figure(language, height=max(2.6, 0.5 * len(figures.delivery) + 1.4))
    ax = fig.subplots()
    ax.set_title(lab["delivery"], **_font(fig))
    if not figures.delivery:
        _empty(ax, lab["none"], fig)
    else:
        channels = [c.channel for c in figures.delivery]
        y = list(range(len(channels)))
        left = [0] * len(channels)
        for key, attr in (("sent", "sent"), ("failed", "failed"), ("deferred", "deferred"), ("queued", "pending")):
            values = [getattr(c, attr) for c in figures.delivery]
            if not any(values):
                continue
            ax.barh(y, values, left=left, color=COLORS[key], label=lab[key])
            left = [a + b for a, b in zip(left, values)]
        for i, c in enumerate(figures.delivery):
            rate = "—" if c.delivery_rate is None else f"{c.delivery_rate:.1f}%"
            ax.text(left[i], i, f"  {lab['rate']} {rate}", va="center", fontsize=8, **_font(fig))
        ax.set_yticks(y, channels)
        ax.invert_yaxis()
        ax.set_xlim(0, max(left) * 1.45)  # room for the rate written after each bar
        ax.xaxis.get_major_locator().set_params(integer=True)
        _legend_right(ax, fig)
    return Chart(name="delivery_by_channel", title=lab["delivery"], png=_png(fig))


def runs_chart(figures: MonthlyFigures, *, language: str) -> Chart:
    lab = LABELS[language]
    flows = figures.runs.by_flow
    fig = _figure(language, height=max(2.6, 0.45 * len(flows) + 1.4))
    ax = fig.subplots()
    ax.set_title(lab["runs"], **_font(fig))
    if not flows:
        _empty(ax, lab["none"], fig)
    else:
        y = list(range(len(flows)))
        left = [0] * len(flows)
        for key, attr in (("COMPLETED", "completed"), ("FAILED", "failed"), ("CRASHED", "crashed"),
                          ("CANCELLED", "cancelled"), ("IN_PROGRESS", "in_progress")):
            values = [getattr(f, attr) for f in flows]
            if not any(values):
                continue
            ax.barh(y, values, left=left, color=COLORS[key], label=lab[key])
            left = [a + b for a, b in zip(left, values)]
        ax.set_yticks(y, [f.flow_name for f in flows])
        ax.invert_yaxis()
        ax.xaxis.get_major_locator().set_params(integer=True)
        _legend_right(ax, fig)
    return Chart(name="runs_by_state", title=lab["runs"], png=_png(fig))


def render_charts(figures: MonthlyFigures, *, language: str, type_names: dict[str, dict[str, str]]) -> list[Chart]:
    """The report's charts, labelled in ``language`` when a font can draw it (else English).
    ``type_names``: language → {emergency type id → name}."""
    lang = chart_language(language)
    names = type_names.get(lang) or {}
    return [mtta_mttr_chart(figures, language=lang, type_names=names), sla_chart(figures, language=lang),
            delivery_chart(figures, language=lang), runs_chart(figures, language=lang)]


def write_charts(charts: list[Chart], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for chart in charts:
        path = folder / f"{chart.name}.png"
        path.write_bytes(chart.png)
        paths.append(path)
    return paths
