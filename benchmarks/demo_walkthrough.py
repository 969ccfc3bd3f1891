"""The demo as a person meets it: `make demo`, the Dagster UI, a new admin in the concierge.

Starts `make demo` (in the repository this file belongs to), then drives headless
Chromium (Playwright, Debian's /usr/bin/chromium):

* the demo tenants' first data and first price recommendations, timed from the start
  (the demo prints each milestone) against the promises of 2 and 4 minutes;
* a new admin signs up, connects the `new-signup` org with "Connect with Salesforce"
  and clicks "Finish and Close"; then the time until the status page shows the first
  data and the first recommendations;
* the new admin's results pages (deals, a deal with its win curve, opportunities, team),
  and a seller invited from the People page who accepts from the demo inbox and sees
  their own deals (and a 403 on People);
* screenshots of the Dagster UI (assets, runs), the status page and the pages above, in
  --shots;
* SIGTERM to the demo's process group, and whether every port is free afterwards.

`python -m benchmarks.demo_walkthrough --shots /tmp/shots` on an otherwise idle machine
with ports 3000, 5050, 1025, 8025 and 8701-8703 free.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.concierge_p1 import Typist, complete_setup, sign_up

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
PORTS = (3000, 5050, 1025, 8025, 8701, 8702, 8703)
MILESTONE = re.compile(r"^(\S+): first (data in|price recommendations) after (.+?) \(")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class DemoOutput:
    """Reads the demo's stdout in a thread, stamping each line with the time it arrived."""

    def __init__(self, proc: subprocess.Popen[str], started: float) -> None:
        self.lines: list[tuple[float, str]] = []
        self.started = started
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip()))
            print(f"  [demo] {line.rstrip()}", flush=True)

    def seen(self, text: str) -> float | None:
        return next((t for t, line in self.lines if text in line), None)

    def milestones(self) -> dict[tuple[str, str], float]:
        found = {}
        for t, line in self.lines:
            match = MILESTONE.match(line)
            if match:
                found[(match.group(1), match.group(2))] = t
        return found


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def _onboard(browser: Any, shots: Path) -> dict[str, float]:
    """A new admin: sign up, connect the new-signup org, finish; then watch the status page."""
    context = browser.new_context(base_url="http://127.0.0.1:5050",
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_up(page, Typist(page), "http://127.0.0.1:8025/", shots)  # via the demo inbox
    setup_s = complete_setup(page, None, Typist(page), "oauth")  # Start Now → Finish and Close
    finished = time.monotonic()
    page.screenshot(path=str(shots / "status-just-finished.png"), full_page=True)

    def progress() -> dict[str, Any]:
        # Through the context (the admin's cookies), not the page: the status page reloads
        # itself when a milestone arrives, which would cut a script running in it.
        result: dict[str, Any] = context.request.get("/status/progress.json").json()
        return result

    data_at = _wait(lambda: progress()["first_data_ready"] and time.monotonic(), 900,
                    "the new tenant's first data")
    recs_at = _wait(lambda: progress()["recommendations"]["state"] == "ready"
                    and time.monotonic(), 900, "the new tenant's first recommendations")
    page.reload()
    page.screenshot(path=str(shots / "status-recommendations.png"), full_page=True)
    report = {"setup_s": setup_s, "first_data_s": data_at - finished,
              "first_recommendations_s": recs_at - finished}
    report.update(_results_as_admin(page, shots))
    report.update(_invited_seller(browser, page, shots))
    context.close()
    return report


def _results_as_admin(page: Any, shots: Path) -> dict[str, Any]:
    """The results pages as the new admin reads them: deals, one deal, opportunities, team."""
    page.goto("/deals")
    deals = page.locator("a[href^='/deals/']").count()
    page.screenshot(path=str(shots / "results-deals.png"), full_page=False)
    page.locator("a[href^='/deals/']").first.click()
    page.wait_for_load_state("networkidle")
    chart = page.locator("img[src$='curve.svg']")
    chart_ok = chart.count() > 0 and page.evaluate(
        "img => img.complete && img.naturalWidth > 0", chart.first.element_handle())
    page.screenshot(path=str(shots / "results-deal.png"), full_page=True)
    for name in ("opportunities", "team"):
        page.goto(f"/{name}")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(shots / f"results-{name}.png"), full_page=False)
    return {"deal_links": deals, "deal_chart_loaded": bool(chart_ok)}


def _invited_seller(browser: Any, admin: Any, shots: Path) -> dict[str, Any]:
    """The admin invites a CRM user as seller; the seller accepts from the demo inbox."""
    admin.goto("/people/")
    admin.screenshot(path=str(shots / "people.png"), full_page=False)
    # A seller with deals of their own: the People page lists them after the managers.
    row = admin.get_by_role("row").filter(
        has=admin.get_by_role("button", name="Invite as seller")).filter(
        has=admin.locator("td.num:not(:empty)"))
    if row.count() == 0:
        return {"invited": "no CRM user with deals to invite as seller"}
    email = row.first.locator("td").nth(1).inner_text().strip()
    row.first.get_by_role("button", name="Invite as seller").click()
    admin.wait_for_load_state("networkidle")
    context = browser.new_context(base_url="http://127.0.0.1:5050",
                                  viewport={"width": 1280, "height": 900})
    seller = context.new_page()
    seller.goto("http://127.0.0.1:8025/")
    seller.get_by_role("row").filter(has_text=email).get_by_role("link").first.click()
    seller.locator("a[href*='/auth/invitation/']").click()
    seller.get_by_label("Password").fill("a long enough passphrase for a seller")
    seller.get_by_role("button", name="Accept and continue").click()
    seller.wait_for_url("**/home")
    seller.screenshot(path=str(shots / "seller-home.png"), full_page=False)
    seller.goto("/deals")
    own = seller.locator("a[href^='/deals/']").count()
    seller.screenshot(path=str(shots / "seller-deals.png"), full_page=False)
    refused = seller.goto("/people/")
    context.close()
    return {"invited": email, "seller_deal_links": own,
            "seller_people_status": refused.status if refused else None}


def _dagster_ui(browser: Any, shots: Path) -> None:
    context = browser.new_context(base_url="http://127.0.0.1:3000",
                                  viewport={"width": 1440, "height": 900})
    page = context.new_page()
    for name, path in (("dagster-assets", "/assets"), ("dagster-runs", "/runs"),
                       ("dagster-automation", "/automation"),
                       ("dagster-recommendations", "/assets/price_recommendations")):
        page.goto(path)
        page.wait_for_timeout(4000)
        page.screenshot(path=str(shots / f"{name}.png"), full_page=False)
    context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=Path, default=Path("/tmp/accrue-demo-shots"))
    args = parser.parse_args()
    busy = [p for p in PORTS if _listening(p)]
    if busy:
        print(f"ports {busy} are in use: stop what holds them first", file=sys.stderr)
        return 2
    args.shots.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    proc = subprocess.Popen(["make", "demo"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = DemoOutput(proc, started)
    report: dict[str, Any] = {}
    try:
        _wait(lambda: output.seen("Accrue demo is running"), 900, "the demo start")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=LAUNCH_ARGS)
            report["new_admin"] = _onboard(browser, args.shots)
            _wait(lambda: len([k for k in output.milestones() if k[1].startswith("price")]) >= 2,
                  600, "both demo tenants' recommendations")
            _dagster_ui(browser, args.shots)
            browser.close()
    finally:
        stop_sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        report["stop_s"] = time.monotonic() - stop_sent
        report["ports_still_busy"] = [p for p in PORTS if _listening(p)]
    print("\nDemo walkthrough")
    for (tenant, what), t in sorted(output.milestones().items(), key=lambda kv: kv[1]):
        promise = 120 if what == "data in" else 240
        print(f"  {tenant:12s} first {what:22s} {t:6.0f} s after `make demo` "
              f"(promise {promise} s: {'met' if t <= promise else 'MISSED'})")
    new = report.get("new_admin", {})
    if new:
        print(f"  new admin: Start Now → Finish and Close {new['setup_s']:.0f} s; then first "
              f"data {new['first_data_s']:.0f} s, first recommendations "
              f"{new['first_recommendations_s']:.0f} s after Finish and Close")
    if new:
        print(f"  results as the new admin: {new.get('deal_links')} deals on the first page, "
              f"win curve loaded: {new.get('deal_chart_loaded')}; invited seller "
              f"{new.get('invited')}: {new.get('seller_deal_links')} deals of their own, "
              f"People page answered {new.get('seller_people_status')}")
    print(f"  SIGTERM to the process group: stopped in {report['stop_s']:.1f} s; ports still "
          f"busy: {report['ports_still_busy'] or 'none'}")
    print(f"  screenshots in {args.shots}")
    return 0 if not report["ports_still_busy"] else 1


if __name__ == "__main__":
    sys.exit(main())
