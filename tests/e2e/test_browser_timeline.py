"""A person reads a finished deploybot thread's timeline in real headless Chromium, through the local front door.

The local stack and its front door run in this process. The approver's browser has no API key, as a person's
never does: it approves the deploy on the signed approval page, follows that page's link to the thread's
read-only timeline (signed by the same link), and finds each step, the approval and the total cost. An operator's
browser, which sends the API key (``extra_http_headers``), opens the authenticated timeline and what the model saw
at the last step. Screenshots go to ``test-artifacts/`` (not committed).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from core.kernel.events import LLMCall, ToolCall
from core.kernel.thread import fold
from functions.approvals import DONE_TITLES
from infra.local.http import FrontDoor, front_door
from infra.local.stack import LocalStack
from tests.e2e._browser import ARTIFACTS, launch, needs_chromium

pytestmark = pytest.mark.e2e

KEY = "browser-timeline-key-0123456789"


@pytest.fixture
def door() -> Iterator[tuple[LocalStack, FrontDoor]]:
    with (
        LocalStack(env={"POWERTOOLS_LOG_LEVEL": "WARNING", "STEPFOLD_API_KEY": KEY}) as stack,
        front_door(stack) as server,
    ):
        yield stack, server


@needs_chromium
def test_a_person_reads_the_timeline_of_a_finished_deploybot_thread(door: tuple[LocalStack, FrontDoor]) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[e2e]'")
    stack, server = door
    with httpx.Client(base_url=server.base_url, headers={"x-api-key": KEY}, timeout=10, trust_env=False) as api:
        launched = api.post("/threads", json={"agent": "deploybot", "input": "deploy the latest backend to production"})
        thread_id = launched.raise_for_status().json()["thread_id"]
    stack.wait(thread_id)
    sent = stack.notifier.last_for(thread_id)
    assert sent is not None
    expect = sync_api.expect

    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_context().new_page()  # a person's browser: no API key, no special headers
            problems: list[str] = []
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))

            page.goto(sent[1])
            page.get_by_label("Your name").fill("Grace Hopper")
            page.get_by_role("button", name="Approve", exact=True).click()
            expect(page.get_by_role("heading", level=1)).to_have_text(DONE_TITLES["approve"])
            thread = stack.wait(thread_id, until=("done", "failed"))
            assert fold(thread).status == "done"

            approval_id = sent[0].approval_id
            page.get_by_role("link", name="See the whole thread, step by step").click()
            assert page.url.startswith(f"{server.base_url}/approvals/{approval_id}/thread?exp=")
            expect(page.get_by_role("heading", level=1)).to_contain_text(f"deploybot · {thread_id}")
            calls = [e for e in thread.events if isinstance(e, LLMCall)]
            tools = [e.tool for e in thread.events if isinstance(e, ToolCall) and not e.prefetch]
            assert tools == ["deploy_backend", "done_for_now"]
            for step, (call, tool) in enumerate(zip(calls, tools, strict=True), start=1):
                item = page.locator(f"#seq-{call.seq}")
                expect(item.get_by_role("heading", level=3)).to_have_text(f"Step {step} · the model chose {tool}")
                expect(item).to_contain_text(call.prompt_hash[:12])
                expect(item.get_by_role("link", name="What the model saw")).to_have_count(0)  # needs an API key
            expect(page.get_by_role("heading", name="Approved deploy_backend by Grace Hopper")).to_be_visible()
            expect(page.locator("li.human").last).to_contain_text("via link")
            total = page.locator("dt", has_text="Total cost").locator("xpath=following-sibling::dd[1]")
            expect(total).to_have_text(f"${fold(thread).cost_usd:,.6f}")
            expect(page.locator("#current-status")).to_have_text("done")
            expect(page.locator("#status")).to_contain_text("Deployed backend v1.5.0 to production.")
            page.screenshot(path=str(ARTIFACTS / "timeline-page.png"), full_page=True)

            page.set_viewport_size({"width": 320, "height": 800})
            assert page.evaluate("document.documentElement.scrollWidth") <= 320, "the page scrolls sideways at 320px"
            page.screenshot(path=str(ARTIFACTS / "timeline-320px.png"), full_page=True)

            tampered = page.url.replace("sig=", "sig=0")
            with httpx.Client(timeout=10, trust_env=False) as anyone:
                assert anyone.get(tampered).status_code == 403  # the signature is the credential

            operator = browser.new_context(extra_http_headers={"x-api-key": KEY}).new_page()
            operator.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            operator.on("pageerror", lambda error: problems.append(str(error)))
            page = operator
            page.set_viewport_size({"width": 320, "height": 800})
            page.goto(f"{server.base_url}/threads/{thread_id}/view")
            page.get_by_role("link", name="What the model saw").last.click()
            expect(page.get_by_role("heading", level=1)).to_have_text(f"What the model saw at step {len(calls)}")
            expect(page.locator("pre").first).to_contain_text("You are deploybot")
            expect(page.locator("pre").last).to_contain_text("<user_input>deploy the latest backend to production")
            assert page.evaluate("document.documentElement.scrollWidth") <= 320
            page.screenshot(path=str(ARTIFACTS / "timeline-context.png"), full_page=True)
            page.get_by_role("link", name="Back to the timeline").click()
            assert page.url.endswith(f"/threads/{thread_id}/view#seq-{calls[-1].seq}")
            assert problems == []
        finally:
            browser.close()
