"""Accessibility: axe-core in Chromium finds no serious or critical problem on the dashboard, in
every state (the add form and every panel open), light and dark.

axe-core is injected from a local file, never fetched: `npm pack axe-core` (its tarball ships
package/axe.min.js) and point DAVSYNC_AXE_JS at it, or keep it at node_modules/axe-core/axe.min.js.
"""

from __future__ import annotations

import pytest
from apphelp import start_app  # noqa: F401  (fixtures)
from browserhelp import axe_source
from conftest import wait_until
from test_app_browser import chromium  # noqa: F401  (fixture)
from test_app_words import _states

from davsync.app.status import StatusHub

RUN = """const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ["violations"]}).then((r) => done(r.violations
  .filter((v) => v.impact === "serious" || v.impact === "critical")
  .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ") + " " + (n.failureSummary || "")).join(" | ")}`)));"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_problem_in_any_state(scheme: str, start_app, chromium) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    axe = axe_source()
    running = start_app()
    driver = chromium
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
    driver.get(running.dash.login_url())
    wait_until(lambda: driver.find_element(By.ID, "overall").get_attribute("data-state") == "empty", 15, "the page")
    csrf = driver.execute_script("return csrf")
    # The app's own live updates would re-render its real (empty) state between our renders.
    driver.execute_script("source.onmessage = null; source.close();")
    driver.find_element(By.ID, "add-open").click()
    found = {}
    for state, pairs in [*_states(), ("lost", [])]:
        if state == "lost":
            driver.execute_script("lost()")
        else:
            hub = StatusHub()
            hub.set_pairs(pairs)
            snap = hub.snapshot() | {"csrf": csrf, "config_file": "/home/anna/.config/davsync/app.toml"}
            for view in snap["pairs"]:
                view["settings"] = {}
            driver.execute_script("render(arguments[0]);", snap)
        driver.execute_script("document.querySelectorAll('details').forEach((d) => { d.open = true; });")
        assert driver.find_element(By.ID, "overall").get_attribute("data-state") == state
        driver.execute_script(axe)
        problems = driver.execute_async_script(RUN)
        if problems:
            found[state] = problems
    assert not found, found
