"""The local provider server itself: bounded, routed per API, and recording what it got."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.provider_server import ProviderServer, delay, error, text, tool_call


def test_it_routes_each_api_to_its_own_script_and_records_every_request() -> None:
    with ProviderServer() as srv, httpx.Client(timeout=5.0) as client:
        srv.openai.push(text("from openai"))
        srv.anthropic.push(error(529, "Overloaded"))
        openai = client.post(f"{srv.openai.base_url}/chat/completions", json={"model": "gpt-4o-mini"})
        anthropic = client.post(f"{srv.anthropic.base_url}/v1/messages", json={"model": "claude"})

    assert openai.json()["choices"][0]["message"]["content"] == "from openai"
    assert (anthropic.status_code, anthropic.json()["error"]["type"]) == (529, "overloaded_error")
    assert [r.path for r in srv.requests] == ["/v1/chat/completions", "/v1/messages"]
    assert srv.anthropic.requests[0].body == {"model": "claude"}


def test_an_empty_queue_answers_with_the_default_it_was_given() -> None:
    with ProviderServer(default=tool_call("add", {"a": 1})) as srv, httpx.Client(timeout=5.0) as client:
        answer = client.post(f"{srv.anthropic.base_url}/v1/messages", json={"model": "claude"}).json()

    assert answer["content"][0] == {
        "type": "tool_use",
        "id": answer["content"][0]["id"],
        "name": "add",
        "input": {"a": 1},
    }
    assert answer["stop_reason"] == "tool_use"


def test_an_unknown_path_is_a_404_that_names_the_served_ones() -> None:
    with ProviderServer() as srv, httpx.Client(timeout=5.0) as client:
        response = client.post(f"{srv.url}/v1/responses", json={})

    assert response.status_code == 404
    assert "/v1/chat/completions" in response.json()["error"]["message"]


def test_it_stops_by_itself_after_its_lifetime() -> None:
    srv = ProviderServer(lifetime_s=0.1).start()
    time.sleep(0.3)

    with httpx.Client(timeout=1.0) as client, pytest.raises(httpx.ConnectError):
        client.post(f"{srv.openai.base_url}/chat/completions", json={})
    srv.stop()


def test_a_delayed_answer_does_not_hold_up_the_end_of_the_test() -> None:
    failures: list[BaseException] = []

    def call(url: str) -> None:
        try:
            with httpx.Client(timeout=10.0) as client:
                client.post(url, json={})
        except httpx.HTTPError as exc:
            failures.append(exc)

    with ProviderServer() as srv:
        srv.openai.push(delay(30.0))
        caller = threading.Thread(target=call, args=(f"{srv.openai.base_url}/chat/completions",))
        caller.start()
        while not srv.openai.requests:
            time.sleep(0.01)
        started = time.monotonic()
    caller.join(5.0)

    assert time.monotonic() - started < 2.0
    assert not caller.is_alive()
    assert len(failures) == 1  # the connection closed without an answer
