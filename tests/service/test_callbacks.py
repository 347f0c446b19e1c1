"""Callbacks: a job's `callback_url` receives its final record, signed, within a second of its end; failed
deliveries are retried; only allowed hosts are called; with two API processes, one delivers. A real local
receiver (an http.server thread) and two API processes with callbacks on (and API keys) run on the real stack.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cli.processes import stop
from tests.service.helpers import assert_problem, fast_request, queued_request, submit
from tests.service.stack import stack_env, start_api, wait_until
from tests.service.test_events import read_events

SECRET = "callback-secret-for-tests"
ALICE, BOB = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef00"


@dataclass
class Delivery:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local HTTP endpoint that records what it is sent and answers the statuses queued in `answers`
    (then 200)."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    answers: dict[str, list[int]] = field(default_factory=dict)

    def to(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.deliveries.append(Delivery(time.time(), self.path, dict(self.headers.items()), body))
            queued = state.answers.get(self.path, [])
            self.send_response(queued.pop(0) if queued else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def callback_apis(
    redis_url: str, tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[list[str]]:
    """Two API processes with callbacks on for the receiver's host:port only, and API keys."""
    env = stack_env(
        redis_url,
        tiny_registry,
        tmp_path_factory.mktemp("callbacks"),
        SEQATTR_CALLBACK_ALLOWED_HOSTS=receiver.url.removeprefix("http://") + ",example.invalid",
        SEQATTR_CALLBACK_SECRET=SECRET,
        SEQATTR_API_KEYS=f"alice:{ALICE},bob:{BOB}",
    )
    started = [start_api(env) for _ in range(2)]
    yield [url for _, url in started]
    for process, _ in started:
        stop(process, "API")


@pytest.fixture
def alice(callback_apis: list[str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=callback_apis[0], headers={"X-API-Key": ALICE}, timeout=30) as http:
        yield http


def _verify(delivery: Delivery) -> dict[str, Any]:
    """The delivered job, after checking its signature as a receiver would."""
    parts = dict(part.split("=", 1) for part in delivery.headers["Seqattr-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + delivery.body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest())
    assert abs(int(parts["t"]) - delivery.at) < 5
    assert delivery.headers["Content-Type"] == "application/json"
    return orjson.loads(delivery.body)


@pytest.mark.usefixtures("worker")
def test_the_finished_job_is_posted_signed_within_a_second(alice: httpx.Client, receiver: Receiver) -> None:
    job = submit(alice, fast_request(callback_url=receiver.url + "/done"))
    assert job["request"]["callback_url"] == receiver.url + "/done"
    wait_until(lambda: receiver.to("/done"), 30, "the callback")
    time.sleep(0.5)  # a second API process would have delivered by now too
    [delivery] = receiver.to("/done")
    body = _verify(delivery)
    final = alice.get(f"/v1/jobs/{job['id']}").json()
    assert body == final and body["status"] == "finished"
    ended = datetime.fromisoformat(final["ended_at"]).timestamp()
    assert 0 <= delivery.at - ended < 1.0, delivery.at - ended
    # A tampered body no longer matches its signature.
    with pytest.raises(AssertionError):
        _verify(Delivery(delivery.at, delivery.path, delivery.headers, delivery.body + b" "))


@pytest.mark.usefixtures("worker")
def test_a_failing_receiver_gets_retries_with_backoff(alice: httpx.Client, receiver: Receiver) -> None:
    receiver.answers["/flaky"] = [500, 500]
    job = submit(alice, fast_request(callback_url=receiver.url + "/flaky"))
    wait_until(lambda: len(receiver.to("/flaky")) >= 3, 30, "three deliveries")
    time.sleep(1.0)  # no fourth: the third succeeded
    deliveries = receiver.to("/flaky")
    assert [d.headers["Seqattr-Delivery-Attempt"] for d in deliveries] == ["1", "2", "3"]
    gaps = [b.at - a.at for a, b in zip(deliveries, deliveries[1:], strict=False)]
    assert 0.4 < gaps[0] < gaps[1] < 2.0, gaps  # 0.5 s, then twice that
    assert all(_verify(d)["id"] == job["id"] for d in deliveries)


def test_hosts_outside_the_allow_list_are_refused_at_submit(
    alice: httpx.Client, client: httpx.Client, receiver: Receiver
) -> None:
    for url in ("http://10.0.0.1/hook", "http://127.0.0.1:1/hook", "https://localhost/hook"):
        body = assert_problem(alice.post("/v1/attributions", json=queued_request(callback_url=url)), 422,
                              "callback-not-allowed")  # fmt: skip
        assert "SEQATTR_CALLBACK_ALLOWED_HOSTS" in body["detail"]
        assert body["setting"] == "SEQATTR_CALLBACK_ALLOWED_HOSTS"
    context = {"model": "tiny-gpt2", "input_current_text": "Hi", "callback_url": "http://10.0.0.1/"}
    assert_problem(alice.post("/v1/attribute-context", json=context), 422, "callback-not-allowed")
    # A host without a port allows any port of it.
    allowed = alice.post(
        "/v1/attributions", json=queued_request(callback_url="https://example.invalid:8443/x")
    )
    assert allowed.status_code == 202, allowed.text
    assert_problem(alice.post("/v1/attributions", json=queued_request(callback_url="ftp://x/")), 422,
                   "validation-error")  # fmt: skip
    assert (
        alice.get("/v1/jobs").json()["jobs"][0]["request"]["callback_url"] == "https://example.invalid:8443/x"
    )
    assert len(alice.get("/v1/jobs").json()["jobs"]) == 1  # nothing refused was enqueued
    # Without an allow-list (the default) callbacks are off.
    refused = client.post("/v1/attributions", json=queued_request(callback_url=receiver.url + "/x"))
    assert "callbacks are off" in assert_problem(refused, 422, "callback-not-allowed")["detail"]


@pytest.mark.usefixtures("worker")
def test_event_streams_follow_api_key_ownership(alice: httpx.Client, callback_apis: list[str]) -> None:
    job = submit(alice, fast_request())
    with httpx.Client(base_url=callback_apis[1], headers={"Authorization": f"Bearer {BOB}"}) as bob:
        assert_problem(bob.get(f"/v1/jobs/{job['id']}/events"), 404, "unknown-job")
    assert_problem(httpx.get(f"{callback_apis[1]}/v1/jobs/{job['id']}/events"), 401, "unauthorized")
    with alice.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
        assert list(read_events(response))[-1][2]["status"] == "finished"


@pytest.mark.usefixtures("worker")
def test_a_batch_posts_its_final_record_once_when_its_last_chunk_ends(
    alice: httpx.Client, receiver: Receiver
) -> None:
    items = [{"input": f"The cat sat on the mat number {i}."} for i in range(6)]
    body = {"model": "tiny-gpt2", "items": items, "chunk_size": 2, "callback_url": receiver.url + "/batch"}
    response = alice.post("/v1/batches", json=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]
    wait_until(lambda: receiver.to("/batch"), 60, "the batch callback")
    time.sleep(0.5)  # the other API process, or another chunk's end, would have delivered by now too
    [delivery] = receiver.to("/batch")
    delivered = _verify(delivery)
    assert delivered["id"] == batch_id and delivered["status"] == "finished"
    assert delivered["done"] == delivered["total"] == 6


@pytest.mark.usefixtures("worker")
def test_a_job_canceled_while_queued_gets_its_callback(alice: httpx.Client, receiver: Receiver) -> None:
    job = submit(alice, queued_request(callback_url=receiver.url + "/canceled"))
    assert alice.delete(f"/v1/jobs/{job['id']}").status_code == 202
    wait_until(lambda: receiver.to("/canceled"), 30, "the callback of the canceled job")
    assert _verify(receiver.to("/canceled")[0])["status"] == "canceled"
