"""The dashboard in a real browser: ``tollgate dashboard`` on 127.0.0.1 against a copy of the demo's
store, driven by headless Chromium (Debian's ``chromium`` through Playwright; ``make test`` installs it).

Every page is opened and its key elements checked against the store (the verdict, a known failing
example, the charts); a viewer's rollback is refused; a release manager logs in, rolls back and
advances, and ``tollgate rollout history`` names them. Screenshots of each page go to a folder this
module names (printed), or to ``docs/img/dashboard/`` with ``TOLLGATE_SCREENSHOTS=1`` (``TOLLGATE_DEMO_DIR``
reuses a demo folder already made); each page's first render time is printed and written beside them
as ``timings.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

# the session's full demo (tests/conftest.py: full_demo) runs inside the first test that asks for it
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
TOKEN = "correct horse battery staple"
TIMINGS: dict[str, float] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_copy(request, tmp_path_factory) -> Path:
    """The demo project copied (the demo's own folder is never touched), with one release manager.

    ``TOLLGATE_DEMO_DIR`` names an existing ``tollgate demo`` folder to copy instead of the session's demo
    (e.g. to refresh the guide's screenshots without running the demo again).
    """
    from dashboard.auth import hash_token

    given = os.environ.get("TOLLGATE_DEMO_DIR")
    src = Path(given) if given else request.getfixturevalue("full_demo")[2]
    root = tmp_path_factory.mktemp("dash") / "tollgate-demo"
    shutil.copytree(src, root)
    with (root / "tollgate.yaml").open("a") as f:
        f.write(f"dashboard:\n  release_managers:\n    rita: '{hash_token(TOKEN, iterations=20_000)}'\n")
    return root


@pytest.fixture(scope="module")
def server(demo_copy, tmp_path_factory):
    """``tollgate dashboard`` on a free port; stopped (the whole process group) at the end."""
    import httpx

    port = _free_port()
    log = tmp_path_factory.mktemp("dash-log") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "--project", str(demo_copy), "dashboard",
                                 "--port", str(port), "--host", "127.0.0.1"], cwd=demo_copy, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/_stcore/health", timeout=2).text.strip() == "ok":
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the dashboard did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    yield url, log
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    if os.environ.get("TOLLGATE_SCREENSHOTS") == "1":
        d = REPO / "docs" / "img" / "dashboard"
        d.mkdir(parents=True, exist_ok=True)
    else:
        d = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"\ndashboard screenshots: {d}")
    return d


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium. Missing chromium or playwright is a failure, never a skip: CI must run this."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed: the dashboard's browser tests need Debian's chromium package "
                    "(`apt-get install chromium`; `make test` installs it when it is missing).")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `pip install -e '.[dev]'` (its browser download is not needed).")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def viewer(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    yield ctx.new_page()
    ctx.close()


@pytest.fixture(scope="module", autouse=True)
def _report_timings(shots, server):
    yield
    _, log = server
    script: dict[str, float] = {}
    for line in log.read_text().splitlines():  # the app logs each page's script time
        if line.startswith("tollgate-dashboard: page "):
            name, seconds = line.split()[2], float(line.split()[-2])
            script.setdefault(name, seconds)
    if TIMINGS:
        if not _in_docs(shots):
            (shots / "timings.json").write_text(json.dumps({"browser_s": TIMINGS, "script_s": script}, indent=2))
        print("\ndashboard first render, browser (navigation to the page fully drawn), s: "
              + ", ".join(f"{k} {v:.2f}" for k, v in TIMINGS.items())
              + "\n  of which the page's script on the server, s: "
              + ", ".join(f"{k} {v:.2f}" for k, v in script.items()))


def _in_docs(path: Path) -> bool:
    return REPO in path.parents


def _wait_drawn(page, timeout: float = 60_000) -> None:
    """Until the page's script has finished: its last line ('Data last refreshed') is drawn and the app idles."""
    page.get_by_text("Data last refreshed").first.wait_for(timeout=timeout)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)
    page.wait_for_timeout(400)  # charts draw after the script ends


def _open(page, url: str, path: str, name: str, shots: Path) -> None:
    t0 = time.perf_counter()
    page.goto(f"{url}/{path}")
    _wait_drawn(page)
    TIMINGS.setdefault(name, time.perf_counter() - t0)
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def _shot(page, shots: Path, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main pane, so the viewport grows to fit it first."""
    size = page.viewport_size
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), 8000)})
    page.wait_for_timeout(600)
    path = shots / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    if _in_docs(shots):  # 256 colours: a third of the bytes in git, no visible difference for a UI
        from PIL import Image

        Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def _charts(page) -> int:
    return page.locator('[data-testid="stVegaLiteChart"]').count()


def _select(page, label: str, option: str) -> None:
    box = page.get_by_role("combobox", name=label, exact=True).first
    box.click()
    choice = page.get_by_role("option", name=option, exact=True)
    with contextlib.suppress(Exception):
        choice.wait_for(timeout=2_000)
    if not choice.count():  # a focused combobox opens its list on the down arrow
        box.press("ArrowDown")
    choice.click()
    page.wait_for_timeout(300)  # the rerun starts
    _wait_drawn(page)


def _store(root: Path):
    from harness.store import Store

    return Store(root / ".tollgate" / "tollgate.duckdb")


def _history(root: Path) -> list[dict]:
    res = run_cli("rollout", "history", "--json", cwd=root)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


# -- every page -----------------------------------------------------------------------------------------------
def test_release_page_shows_the_verdict_the_gate_table_and_the_audit_trail(server, viewer, shots, demo_copy):
    from harness import queries as q

    url, _ = server
    with _store(demo_copy).read() as con:
        decision = q.latest_decision(con, "candidate", "production")
    _open(viewer, url, "?candidate=candidate&reference=production", "release", shots)
    verdict = viewer.get_by_test_id("tollgate-verdict").first
    assert verdict.inner_text().strip() == f"Verdict: {decision['verdict'].upper()}" == "Verdict: PASS"
    gate = viewer.locator('[data-testid="stTable"]').filter(has_text="heldout · json_fields").first
    gate.wait_for(timeout=30_000)
    assert gate.inner_text().count("pass") >= len(decision["evidence"]["rules"])
    assert decision["decision_id"][:12] in viewer.content()
    assert _charts(viewer) >= 1  # the paired differences against their margins
    assert "Audit trail" in viewer.inner_text("body") and viewer.locator('[data-testid="stDataFrame"]').count() >= 1
    _shot(viewer, shots, "release")
    _select(viewer, "Candidate", "overfit")
    assert viewer.get_by_test_id("tollgate-verdict").first.inner_text().strip() == "Verdict: FAIL"


def test_suites_page_shows_pass_rates_and_a_known_failing_example_linked_to_its_source(server, viewer, shots,
                                                                                        demo_copy):
    from harness.failures import failure_report

    url, _ = server
    with _store(demo_copy).read() as con:  # the CLI's own report names the failures to look for
        _, failing = failure_report(con, "candidate", ["edge-auto"], by="perturbation", limit=1000)
    injected = sorted(f.example_id for f in failing if "perturbation:injection" in f.tags)
    assert injected
    _open(viewer, url, "failures", "failures", shots)
    assert _charts(viewer) >= 1
    assert "failing example(s) of candidate" in viewer.inner_text("body")
    _shot(viewer, shots, "failures")
    _select(viewer, "Perturbation", "injection")
    assert f"{len(injected)} failing example(s) of candidate" in viewer.inner_text("body")
    first = viewer.locator('[data-testid="stExpander"]').filter(has_text=injected[0]).first
    first.click()
    source = injected[0].split("~")[0]
    link = viewer.get_by_text(f"Open the source example {source}").first
    link.wait_for()
    _shot(viewer, shots, "failures-example")
    link.click()
    viewer.get_by_text(f"Example {source} in heldout").first.wait_for(timeout=60_000)
    _wait_drawn(viewer)


def test_overfitting_page_shows_the_gap_chart_and_the_raised_flags(server, viewer, shots):
    url, _ = server
    _open(viewer, url, "overfitting", "overfitting", shots)
    body = viewer.inner_text("body")
    assert _charts(viewer) >= 2  # the gap per model, and the before/after on general benchmarks
    assert "gap — RAISED" in body and "memorisation — RAISED" in body  # the overfit model, as the demo says
    _shot(viewer, shots, "overfitting")


def test_beta_page_shows_the_verdict_the_bands_and_what_users_said(server, viewer, shots, demo_copy):
    from harness.project import load_project
    from rollout.beta import beta_report

    url, _ = server
    project = load_project(demo_copy / "tollgate.yaml")
    with _store(demo_copy).read() as con:
        rep = beta_report(con, "candidate", project.rollout.beta)
    _open(viewer, url, "beta", "beta", shots)
    assert viewer.get_by_test_id("tollgate-verdict").first.inner_text().strip() == \
        f"Beta verdict: {rep.verdict.upper()}"
    assert _charts(viewer) >= 4  # thumbs-up bands, the anytime-valid difference, ratings, volume, latency
    body = viewer.inner_text("body")
    assert "What users said" in body and "anytime-valid:" in body
    _shot(viewer, shots, "beta")


def test_runs_page_lists_every_run(server, viewer, shots, demo_copy):
    from harness import queries as q

    url, _ = server
    with _store(demo_copy).read() as con:
        n = q.run_totals(con)["runs"]
    _open(viewer, url, "runs", "runs", shots)
    assert f"{n:,} run(s)" in viewer.inner_text("body")
    assert _charts(viewer) == 1 and viewer.locator('[data-testid="stDataFrame"]').count() == 1
    _shot(viewer, shots, "runs")


# -- the actions -----------------------------------------------------------------------------------------------
def _form(page, title: str):
    return page.locator('[data-testid="stForm"]').filter(has_text=title).first


def _submit(page, form_title: str, reason: str, button: str) -> None:
    form = _form(page, form_title)
    box = form.get_by_role("textbox").first
    box.fill(reason)
    box.press("Tab")
    form.get_by_role("button", name=button).click()


def test_a_viewer_cannot_roll_back(server, viewer, demo_copy):
    url, _ = server
    before = _history(demo_copy)
    viewer.goto(f"{url}/")
    _wait_drawn(viewer)
    _submit(viewer, "Roll back", "viewer tries", "Roll back")
    viewer.get_by_text("Refused: you are not logged in").first.wait_for(timeout=30_000)
    _submit(viewer, "Advance", "viewer tries", "Advance")
    _wait_drawn(viewer)
    assert viewer.get_by_text("Refused: you are not logged in").count() >= 1
    assert _history(demo_copy) == before


def test_a_release_manager_rolls_back_and_advances_under_their_own_name(server, browser, demo_copy, shots):
    url, _ = server
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = ctx.new_page()
    try:
        page.goto(f"{url}/")
        _wait_drawn(page)
        login = page.locator('[data-testid="stSidebar"] [data-testid="stForm"]')
        login.get_by_label("Name").fill("rita")
        login.get_by_label("Token").fill(TOKEN)
        login.get_by_label("Token").press("Tab")
        login.get_by_role("button", name="Log in").click()
        page.get_by_text("Logged in as").first.wait_for(timeout=30_000)
        _wait_drawn(page)
        before = len(_history(demo_copy))
        # production (the candidate, promoted by the demo) back to the model it replaced
        _submit(page, "Roll back", "dates misread on solicitors' letters", "Roll back")
        page.get_by_text("Rolled back by rita").first.wait_for(timeout=60_000)
        _wait_drawn(page)
        events = _history(demo_copy)
        assert len(events) == before + 2
        assert {(e["model"], e["to_stage"], e["actor"]) for e in events[before:]} == {
            ("production", "production", "rita"), ("candidate", "rolled_back", "rita")}
        # the overfit model is refused by its gate, with the evidence, and nothing is recorded
        _select(page, "Model", "overfit: candidate → shadow")
        _submit(page, "Advance", "try the long-trained one", "Advance")
        page.get_by_text("Refused by the gate: it says FAIL").first.wait_for(timeout=120_000)
        _wait_drawn(page)
        assert "Why the gate refused" in page.inner_text("body") and "no overfitting: gap: fail" in page.inner_text(
            "body")
        assert len(_history(demo_copy)) == before + 2
        if _in_docs(shots):
            _shot(page, shots, "release-refused")
        # the candidate starts again: the offline gate is judged, and passes
        _select(page, "Model", "candidate: rolled_back → shadow")
        _submit(page, "Advance", "retrained on solicitors' letters", "Advance")
        page.get_by_text("candidate: rolled_back → shadow").first.wait_for(timeout=120_000)
        page.get_by_text("recorded as rita's move").first.wait_for(timeout=120_000)
        _wait_drawn(page)
        last = _history(demo_copy)[-1]
        assert (last["model"], last["from_stage"], last["to_stage"], last["actor"], last["reason"]) == (
            "candidate", "rolled_back", "shadow", "rita", "retrained on solicitors' letters")
        assert last["decision_id"]
        if _in_docs(shots):
            _shot(page, shots, "release-manager")
    finally:
        ctx.close()
