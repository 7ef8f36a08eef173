"""What every page shares: its header with the time its data was read, the "nothing to show yet"
message, the verdict badge, and number formatting with intervals."""

from __future__ import annotations

import html
import math
from typing import Any

import streamlit as st

from dashboard.context import Context

VERDICT_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#9a6700"}
VERDICT_MARKS = {"pass": "✔ pass", "fail": "✘ fail", "inconclusive": "? inconclusive"}


def header(title: str, subtitle: str, ctx: Context) -> None:
    st.title(title)
    st.caption(subtitle)
    if ctx.project_path is not None:
        st.caption(f"Project **{ctx.project_path.parent.name}**", help=str(ctx.project_path))


def refreshed(ctx: Context) -> None:
    """'Data read at ...' with a button that reads again (placed at the end of a page, once its data is read)."""
    at = ctx.read_at
    cols = st.columns([4, 1])
    when = at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "—"
    cols[0].caption(f"Data last refreshed {when} (re-read automatically whenever the store changes).")
    if cols[1].button("Refresh now", key=f"refresh_{st.session_state.get('_page', '')}"):
        st.cache_data.clear()
        st.rerun()


def stop_if_nothing(ctx: Context) -> None:
    """The helpful page for a missing project, an empty or old store: never a traceback."""
    if ctx.problem is None:
        return
    st.info(f"**Nothing to show yet** — {ctx.problem}")
    if ctx.hint:
        st.markdown(ctx.hint)
    st.markdown("To see every page filled in, run the demo and open its dashboard:\n\n"
                "```\ntollgate demo --dir tollgate-demo\ntollgate --project tollgate-demo dashboard\n```")
    st.stop()


def verdict_badge(verdict: str | None, label: str = "Verdict", size: str = "3.2rem") -> None:
    """The overall verdict in large type (``data-testid="tollgate-verdict"`` for the browser tests)."""
    v = (verdict or "not judged").lower()
    colour = VERDICT_COLOURS.get(v, "#57606a")
    st.markdown(f'<div data-testid="tollgate-verdict" style="font-size:{size};font-weight:800;color:{colour};'
                f'line-height:1.1;margin:0.2rem 0 0.6rem 0">{html.escape(label)}: {html.escape(v.upper())}</div>',
                unsafe_allow_html=True)


def verdict_table(df: Any, column: str = "verdict") -> None:
    """A static table whose verdict column is coloured (pass green, fail red, inconclusive amber)."""
    def colour(v: Any) -> str:
        key = next((k for k in VERDICT_COLOURS if isinstance(v, str) and k in v), None)
        return f"color: {VERDICT_COLOURS[key]}; font-weight: 700" if key else ""

    st.table(df.style.map(colour, subset=[column]))


def num(x: Any, digits: int = 3, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def pval(p: Any) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def ci(value: Any, low: Any, high: Any, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "—"
    return f"{num(value, digits, sign)} [{num(low, digits, sign)}, {num(high, digits, sign)}]"


def pct(x: Any, digits: int = 0) -> str:
    return "—" if x is None else f"{x:.{digits}%}"
