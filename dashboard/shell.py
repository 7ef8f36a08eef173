"""The app around the pages: page setup, the login in the sidebar, navigation, and a guard that turns
any failure to read into a message (never a traceback) and logs each page's render time."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import streamlit as st

from dashboard import auth, beta, failures, overfitting, release, runs, sweeps
from dashboard.context import load

PAGES: list[tuple[str, str, str, Callable[[], None]]] = [
    ("release", "Release", ":material/traffic:", release.render),
    ("failures", "Suites & failures", ":material/search:", failures.render),
    ("overfitting", "Overfitting", ":material/trending_down:", overfitting.render),
    ("beta", "Beta feedback", ":material/thumb_up:", beta.render),
    ("sweeps", "Sweeps", ":material/tune:", sweeps.render),
    ("runs", "Runs", ":material/list:", runs.render),
]


def guarded(key: str, render: Callable[[], None]) -> Callable[[], None]:
    def page() -> None:
        from harness.errors import StoreBusyError, TollgateInputError

        st.session_state["_page"] = key
        t0 = time.perf_counter()
        try:
            render()
        except StoreBusyError:
            st.warning("The store is busy: another Tollgate command has held it for several seconds (a long "
                       "transaction). Press **Refresh now** or reload the page in a moment; nothing is lost.")
            _refresh_button(key)
        except TollgateInputError as exc:
            st.error(f"Tollgate could not read this project: {exc}")
        except Exception as exc:  # a store this code cannot read must not show a traceback
            st.error("This page could not read the store. Run `tollgate validate` and `tollgate results` in the "
                     "project to see what is wrong, or `tollgate demo` to see an example with a fresh store.")
            with st.expander("Details"):
                st.code(f"{type(exc).__name__}: {exc}")
        finally:
            print(f"tollgate-dashboard: page {key} rendered in {time.perf_counter() - t0:.3f} s", file=sys.stderr,
                  flush=True)

    page.__name__ = key
    return page


def _refresh_button(key: str) -> None:
    if st.button("Refresh now", key=f"busy_refresh_{key}"):
        st.cache_data.clear()
        st.rerun()


def main(start: str = "release") -> None:
    st.set_page_config(page_title="Tollgate", page_icon="🚦", layout="wide")
    ctx = load()
    st.sidebar.markdown("## Tollgate")
    pages = {key: st.Page(guarded(key, fn), title=title, icon=icon, url_path=key, default=key == start)
             for key, title, icon, fn in PAGES}
    nav = st.navigation(list(pages.values()))
    auth.login_sidebar(ctx.settings)
    nav.run()
