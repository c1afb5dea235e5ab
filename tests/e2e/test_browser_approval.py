"""A person approves a deploy in real headless Chromium, through the signed link ``stepfold serve`` sent."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from functions.approvals import DONE_TITLES
from tests.e2e._browser import ARTIFACTS, launch, needs_chromium
from tests.e2e._serve import Served

pytestmark = pytest.mark.e2e


def _until(api: httpx.Client, thread_id: str, statuses: tuple[str, ...], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        summary: dict[str, Any] = api.get(f"/threads/{thread_id}").raise_for_status().json()
        if summary["status"] in statuses:
            return summary
        assert time.monotonic() < deadline, f"thread {thread_id} is still {summary['status']}"
        time.sleep(0.1)


@needs_chromium
def test_a_person_approves_in_chromium_and_the_thread_finishes(served: Served, api: httpx.Client) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[e2e]'")
    launched = api.post("/threads", json={"agent": "deploybot", "input": "deploy the latest backend to production"})
    thread_id = launched.raise_for_status().json()["thread_id"]
    waiting = _until(api, thread_id, ("awaiting_human",))
    link = served.link(waiting["approval_id"])

    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page()
            page.goto(link)
            expect = sync_api.expect
            expect(page.get_by_role("heading", level=1)).to_contain_text("deploybot")
            call = page.locator("pre")
            expect(call).to_contain_text('"tag": "v1.5.0"')
            expect(call).to_contain_text('"environment": "production"')
            expect(page.locator("code").first).to_have_text("deploy_backend")
            page.get_by_label("Your name").fill("Grace Hopper")
            page.screenshot(path=str(ARTIFACTS / "approval-page.png"), full_page=True)
            page.get_by_role("button", name="Approve", exact=True).click()
            expect(page.get_by_role("heading", level=1)).to_have_text(DONE_TITLES["approve"])
            expect(page.locator("main")).to_contain_text("Grace Hopper")
            page.screenshot(path=str(ARTIFACTS / "approval-approved.png"), full_page=True)
        finally:
            browser.close()

    final = _until(api, thread_id, ("done", "failed"))
    assert (final["status"], final["answer"]) == ("done", "Deployed backend v1.5.0 to production.")
    events = api.get(f"/threads/{thread_id}/events").raise_for_status().json()["events"]
    decision = next(e for e in events if e["type"] == "human_response")
    assert (decision["decision"], decision["by"], decision["channel"]) == ("approve", "Grace Hopper", "link")
