"""Drive the real Prefect 3.9 UI (the new React UI under ``/v2``) with Playwright, headless.

Built for browser tests: start a deployment's custom run through its schema form, then resume a
paused or suspended run through the "Resume Flow Run" dialog. Proven against prefect 3.9.1 with
Debian's Chromium; see ``PREFECT_UI_NOTES.md`` next to this file for the selectors and pitfalls.

Form fields are addressed by their *label*, which is the JSON-schema title ("Client Id" for
``client_id``, or ``Field(title=...)``). Fields that have a default are labelled "<title> (Optional)"
by the UI; pass either form. Values:

- ``str``   → text input, or the option of a select (enum / Literal field)
- ``bool``  → switch (set to exactly that state)
- ``int`` / ``float`` → number input (for ``Optional[int]`` the "int" tab is chosen first)
- ``None``  → the "None" tab of an ``Optional[...]`` field

Playwright is imported lazily, so this module imports fine where it is not installed; call
:func:`browser_missing` to decide whether to skip.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:  # pragma: no cover
    from playwright.sync_api import Browser, BrowserContext, Locator, Page, Playwright, Response

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 30_000  # every explicit wait; the UI needs ~1–3 s per step on 2 cores
CREATE_ATTEMPTS = 4  # SQLite answers 503 "database is locked" now and then


class PrefectUIUnavailable(RuntimeError):
    """The browser or the playwright package is missing (tests should skip on this)."""


class PrefectUIError(AssertionError):
    """The UI did not do what a step expected (form rejected, API error, element missing)."""


# --------------------------------------------------------------------------- browser

def browser_missing(executable_path: str = CHROMIUM) -> str | None:
    """Why a browser test cannot run here, or ``None`` when the system Chromium and playwright are present."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the 'playwright' Python package (pip install playwright)")
    if not (os.path.isfile(executable_path) and os.access(executable_path, os.X_OK)):
        missing.append(f"the browser {executable_path} (apt-get install -y chromium fonts-wqy-zenhei)")
    return " and ".join(missing) + " missing" if missing else None


def launch_browser(playwright: Playwright, *, artifacts_dir: str | os.PathLike,
                   executable_path: str = CHROMIUM, viewport: tuple[int, int] = (1400, 1000),
                   trace: bool = True) -> tuple[Browser, BrowserContext, Page]:
    """Launch the system Chromium headless with a new empty profile; return ``(browser, context, page)``.

    ``playwright`` is the object from ``sync_playwright().start()`` (or the ``with`` block).
    ``playwright install`` cannot fetch a browser on these machines, so the Debian one is used.
    Raises :class:`PrefectUIUnavailable` naming what is missing. The page's console errors go to
    ``artifacts_dir/console.log``; with ``trace`` a Playwright trace is recorded, written by
    :func:`close_browser` (open it with ``playwright show-trace trace.zip``). Every wait defaults
    to 30 s.
    """
    reason = browser_missing(executable_path)
    if reason:
        raise PrefectUIUnavailable(reason)
    artifacts = Path(artifacts_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    # `launch` (not a persistent context) always starts from a new temporary profile.
    browser = playwright.chromium.launch(executable_path=executable_path, headless=True,
                                         args=list(CHROMIUM_ARGS))
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                  locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    if trace:
        context.tracing.start(screenshots=True, snapshots=True)
    page = context.new_page()
    console = artifacts / "console.log"

    def _log(message) -> None:
        if message.type in ("error", "warning"):
            with console.open("a", encoding="utf-8") as fh:
                fh.write(f"[{message.type}] {message.text}\n")

    page.on("console", _log)
    return browser, context, page


def close_browser(browser: Browser, context: BrowserContext, *, artifacts_dir: str | os.PathLike) -> None:
    """Stop tracing (writing ``artifacts_dir/trace.zip`` when it was on) and close the browser."""
    try:
        context.tracing.stop(path=str(Path(artifacts_dir) / "trace.zip"))
    except Exception:  # tracing was off, or the context is already gone
        pass
    browser.close()


def shot(page: Page, artifacts_dir: str | os.PathLike, name: str) -> Path:
    """Full-page screenshot to ``artifacts_dir/NN-name.png`` (NN counts up, so files sort by step)."""
    artifacts = Path(artifacts_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    number = len(list(artifacts.glob("[0-9][0-9]-*.png"))) + 1
    safe = re.sub(r"[^\w.-]+", "_", name)
    path = artifacts / f"{number:02d}-{safe}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --------------------------------------------------------------------------- runs

def start_custom_run(page: Page, ui_url: str, *, flow_name: str, deployment_name: str,
                     fields: dict[str, Any], artifacts_dir: str | os.PathLike | None = None,
                     attempts: int = CREATE_ATTEMPTS) -> str:
    """Start a run of ``flow_name/deployment_name`` through the UI's custom-run form; return its id.

    Deployments → (search) → the deployment's row → button "Run" → "Custom run" → fill ``fields``
    (label → value, see the module doc) → "Submit". The create-run API response is watched: a 503
    (SQLite "database is locked") is retried by pressing Submit again, up to ``attempts`` times.
    Raises :class:`PrefectUIError` when the form fails validation (the UI's own schema check) or
    the server rejects the run (e.g. 409 for invalid parameters). With ``artifacts_dir`` a
    screenshot is taken after each step.
    """
    ui_url = ui_url.rstrip("/")
    snap = (lambda name: shot(page, artifacts_dir, name)) if artifacts_dir else (lambda name: None)

    page.goto(f"{ui_url}/v2/deployments")
    main = page.get_by_role("main")
    search = main.get_by_role("textbox", name="Search deployments")
    search.fill(deployment_name)  # the list is paginated (10 a page); the search filters server-side
    # The search is debounced and lands in the URL (…&flowOrDeploymentName=<name>) ~1 s later; clicking
    # a row before that gets the click's navigation undone by the search's own navigation.
    page.wait_for_url(lambda url: parse_qs(urlsplit(url).query).get("flowOrDeploymentName") == [deployment_name])
    row = (main.get_by_role("row")
           .filter(has=page.get_by_role("link", name=deployment_name, exact=True))
           .filter(has=page.get_by_role("link", name=flow_name, exact=True)))
    # The deployment's link, not the flow's: a deployment is often named as its flow.
    row.first.locator("a[href*='/deployments/deployment/']").filter(has_text=deployment_name).first.click()
    page.wait_for_url(re.compile(r"/v2/deployments/deployment/[0-9a-f-]{36}"))
    run_button = main.get_by_role("button", name="Run", exact=True)
    run_button.wait_for()
    snap(f"deployment-{deployment_name}")

    run_button.click()
    page.get_by_role("menuitem", name="Custom run", exact=True).click()
    page.wait_for_url(re.compile(r"/v2/deployments/deployment/[0-9a-f-]{36}/run"))
    main.get_by_role("heading", name="Parameters").wait_for()
    main.get_by_role("button", name="Submit", exact=True).wait_for()
    fill_form(page, main, fields)
    snap("custom-run-filled")

    last = ""
    for attempt in range(1, attempts + 1):
        response = _submit(page, main.get_by_role("button", name="Submit", exact=True),
                           lambda r: r.request.method == "POST" and r.url.endswith("/create_flow_run"))
        if response.status == 201:
            flow_run = response.json()
            # the UI goes back to the deployment page with a toast "<run name> scheduled to start now"
            page.get_by_text(re.compile(r"scheduled to start")).first.wait_for()
            snap("custom-run-submitted")
            return flow_run["id"]
        last = f"{response.status} {response.text()[:500]}"
        snap(f"custom-run-error-{attempt}-{response.status}")
        if response.status != 503:
            break
        time.sleep(0.5 * attempt)
    raise PrefectUIError(f"creating a run of {flow_name}/{deployment_name} failed: {last}")


def resume_run(page: Page, ui_url: str, flow_run_id: str, *, fields: dict[str, Any],
               artifacts_dir: str | os.PathLike | None = None, api_url: str | None = None,
               wait_seconds: float = 60, attempts: int = CREATE_ATTEMPTS) -> None:
    """Resume a paused or suspended run through the UI's "Resume Flow Run" dialog.

    Waits (via the API, up to ``wait_seconds``) until the run is PAUSED — a suspended run is PAUSED
    too, shown as "Suspended" — then opens ``/v2/runs/flow-run/<id>`` → header "Open menu" →
    "Resume", fills the dialog's ``RunInput`` form (label → value, see the module doc), presses
    "Resume" and waits for the dialog to close. The resume API answer must be ACCEPT; a 503 is
    retried. ``api_url`` defaults to ``<ui_url>/api``.
    """
    ui_url = ui_url.rstrip("/")
    snap = (lambda name: shot(page, artifacts_dir, name)) if artifacts_dir else (lambda name: None)
    wait_for_run_state(page, api_url or f"{ui_url}/api", flow_run_id, ("PAUSED",), timeout=wait_seconds)

    page.goto(f"{ui_url}/v2/runs/flow-run/{flow_run_id}")
    main = page.get_by_role("main")
    main.get_by_role("tablist").first.wait_for()
    snap(f"run-{flow_run_id[:8]}-paused")
    # The header's kebab menu is the first "Open menu" in main; it lists "Resume" only for PAUSED runs.
    main.get_by_role("button", name="Open menu").first.click()
    page.get_by_role("menuitem", name="Resume", exact=True).click()
    dialog = page.get_by_role("dialog", name="Resume Flow Run")
    dialog.wait_for()
    fill_form(page, dialog, fields)
    snap(f"run-{flow_run_id[:8]}-resume-filled")

    last = ""
    for attempt in range(1, attempts + 1):
        response = _submit(page, dialog.get_by_role("button", name="Resume", exact=True),
                           lambda r: r.request.method == "POST"
                           and r.url.endswith(f"/flow_runs/{flow_run_id}/resume"))
        if response.ok:
            result = response.json()
            if result.get("status") != "ACCEPT":
                # e.g. REJECT "Validation failed. Failure reason: 'reason' is a required property" — the
                # dialog stays open with that toast; the resume dialog does no client-side validation.
                snap(f"run-{flow_run_id[:8]}-resume-rejected")
                raise PrefectUIError(f"resume of {flow_run_id} not accepted: {result.get('status')} "
                                     f"{(result.get('details') or {}).get('reason')!r}")
            dialog.wait_for(state="hidden")
            snap(f"run-{flow_run_id[:8]}-resumed")
            return
        last = f"{response.status} {response.text()[:500]}"
        snap(f"run-{flow_run_id[:8]}-resume-error-{attempt}-{response.status}")
        if response.status != 503:
            break
        time.sleep(0.5 * attempt)
    raise PrefectUIError(f"resuming {flow_run_id} failed: {last}")


def wait_for_run_state(page: Page, api_url: str, flow_run_id: str, state_types=("COMPLETED",), *,
                       timeout: float = 60) -> dict:
    """Poll ``GET /flow_runs/<id>`` (through the page's request context) until its state type is one of
    ``state_types``; return the flow run. Raises :class:`PrefectUIError` with the last state on time-out."""
    deadline = time.monotonic() + timeout
    flow_run: dict = {}
    while True:
        response = page.request.get(f"{api_url.rstrip('/')}/flow_runs/{flow_run_id}")
        if response.ok:
            flow_run = response.json()
            if flow_run.get("state_type") in state_types:
                return flow_run
        if time.monotonic() > deadline:
            state = (flow_run.get("state") or {})
            raise PrefectUIError(f"flow run {flow_run_id} is {state.get('type')}/{state.get('name')} "
                                 f"({state.get('message')!r}), expected one of {state_types}")
        time.sleep(0.5)


# --------------------------------------------------------------------------- forms

def fill_form(page: Page, scope: Locator, fields: dict[str, Any]) -> None:
    """Fill a Prefect schema form inside ``scope`` (the page's main, or the resume dialog): label → value."""
    for label, value in fields.items():
        field = _field(scope, label)
        _choose_type_tab(field, label, value)
        if isinstance(value, bool):
            switch = field.get_by_role("switch").first
            if (switch.get_attribute("aria-checked") == "true") != value:
                switch.click()
            _expect_attr(switch, "aria-checked", "true" if value else "false", label)
        elif value is None:
            pass  # the "None" tab was chosen (the only way to send null from the form)
        elif isinstance(value, (int, float)):
            number = field.get_by_role("spinbutton").first
            number.fill(str(value))
        elif isinstance(value, str):
            select = field.locator("button[aria-haspopup='listbox']")
            if select.count():
                _select_option(page, select.first, value, label)
            else:
                text = field.get_by_role("textbox").first
                text.fill(value)
        else:
            raise TypeError(f"{label!r}: unsupported value {value!r} (use str, bool, int, float or None)")


def _field(scope: Locator, label: str) -> Locator:
    """The container of one schema field: the nearest ``div`` holding its ``<label>`` and its ``<fieldset>``."""
    exact, optional = (_xpath_literal(t) for t in (label, f"{label} (Optional)"))
    labels = scope.locator(f"xpath=.//label[normalize-space(.)={exact} or normalize-space(.)={optional}]")
    scope.locator("label").first.wait_for()  # the form has rendered (all fields come with the schema)
    try:
        labels.first.wait_for(timeout=3_000)
    except Exception as exc:
        seen = scope.locator("label").all_inner_texts()
        raise PrefectUIError(f"no form field labelled {label!r} (or '{label} (Optional)'); labels: {seen}") from exc
    if labels.count() > 1:
        raise PrefectUIError(f"label {label!r} appears {labels.count()} times in the form; titles must be unique")
    return labels.locator("xpath=ancestor::div[fieldset][1]")


_TAB_NAMES = {bool: ("bool", "boolean"), int: ("int", "integer"), float: ("float", "number"),
              str: ("str", "string"), type(None): ("None", "null")}


def _choose_type_tab(field: Locator, label: str, value: Any) -> None:
    """``Optional[X]`` / unions render as tabs ("int" | "None"): pick the tab for the value's type."""
    tabs = field.get_by_role("tablist")
    if not tabs.count():
        if value is None:
            raise PrefectUIError(f"{label!r} is not an Optional field; cannot set None")
        return
    names = _TAB_NAMES.get(type(value), ())
    for name in names:
        tab = tabs.first.get_by_role("tab", name=name, exact=True)
        if tab.count():
            if tab.get_attribute("aria-selected") != "true":
                tab.click()
            _expect_attr(tab, "aria-selected", "true", label)
            return
    raise PrefectUIError(f"{label!r}: no tab for {type(value).__name__}; tabs: {tabs.first.inner_text()!r}")


def _select_option(page: Page, trigger: Locator, option: str, label: str) -> None:
    """Enum/Literal select: a popover trigger (aria-haspopup=listbox) → combobox + listbox "Suggestions"."""
    from playwright.sync_api import expect

    if trigger.get_attribute("aria-expanded") != "true":
        trigger.click()  # a plain click opens it headless in the new UI (the classic UI needs ArrowDown)
    expect(trigger, f"select {label!r} did not open").to_have_attribute("aria-expanded", "true",
                                                                     timeout=TIMEOUT_MS)
    controls = trigger.get_attribute("aria-controls")  # the popover's id (Radix) when present
    popover = page.locator(f"[id='{controls}']") if controls else page.get_by_role("dialog").last
    listbox = popover.get_by_role("listbox")
    listbox.wait_for()
    search = popover.get_by_role("combobox")
    if search.count():
        search.fill(option)  # filters long lists down to the matching options
    choice = listbox.get_by_role("option", name=option, exact=True)
    try:
        choice.wait_for(timeout=5_000)
    except Exception as exc:
        if search.count():
            search.fill("")  # show every option for the error message
        options = listbox.get_by_role("option").all_inner_texts()
        raise PrefectUIError(f"{label!r}: no option {option!r}; options: {options}") from exc
    choice.click()
    # the popover closes and the trigger shows the chosen value
    expect(trigger, f"select {label!r} did not take {option!r}").to_have_text(option, timeout=TIMEOUT_MS)
    expect(trigger).to_have_attribute("aria-expanded", "false", timeout=TIMEOUT_MS)


def _submit(page: Page, button: Locator, predicate) -> Response:
    """Click ``button`` and return the first API response matching ``predicate``.

    The new UI validates a form first (``POST /api/ui/schemas/validate``); when that answers
    ``valid: false`` no create/resume request follows, so its errors are raised at once instead
    of waiting out the time-out.
    """
    seen: list = []

    def record(response) -> None:
        seen.append(response)

    page.on("response", record)
    try:
        button.click()
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        checked = 0
        while time.monotonic() < deadline:
            for response in seen[checked:]:
                checked += 1
                if predicate(response):
                    return response
                if response.request.method == "POST" and response.url.endswith("/ui/schemas/validate"):
                    verdict = response.json()
                    if not verdict.get("valid", True):
                        raise PrefectUIError(f"the UI rejected the form: {verdict.get('errors')}")
            page.wait_for_timeout(100)  # lets Playwright dispatch the response events
        raise PrefectUIError(f"no matching API response within {TIMEOUT_MS / 1000:.0f} s of pressing the button")
    finally:
        page.remove_listener("response", record)


def _expect_attr(locator: Locator, name: str, value: str, label: str) -> None:
    from playwright.sync_api import expect

    expect(locator, f"{label!r}: expected {name}={value!r}").to_have_attribute(name, value, timeout=TIMEOUT_MS)


def _xpath_literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return "concat(" + ", \"'\", ".join(f"'{part}'" for part in text.split("'")) + ")"
