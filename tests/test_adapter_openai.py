"""The ``openai`` adapter against a real, local, OpenAI-compatible HTTP server.

The server runs in a daemon thread on 127.0.0.1 (port 0) and its behaviour is steered per test
through :class:`Behaviour`: it echoes the prompt in upper case unless told to fail, stall or garble.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from harness.adapters import adapters
from harness.adapters.base import Generation, GenerationSettings, ModelConfig
from harness.errors import TollgateInputError

# ---------------------------------------------------------------------------------------------
# The fake server
# ---------------------------------------------------------------------------------------------

# A reply the server can be told to send instead of the echo: (status, headers, raw body bytes).
Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Behaviour:
    """What the server does, set by each test; what it saw, read back by each test."""

    fail_first: int = 0  # the first N requests (over all prompts) fail with fail_status
    fail_status: int = 503
    fail_headers: dict[str, str] = field(default_factory=dict)
    delay_s: float | Callable[[str], float] = 0.0  # sleep before answering (per prompt if callable)
    reply_text: Callable[[str], str | None] = str.upper  # the model's "answer" to a prompt
    override: Callable[[str], Reply | None] | None = None  # a raw reply for some prompts
    # what the server saw
    requests: list[dict[str, Any]] = field(default_factory=list)  # {"path", "headers", "body"}
    completed: list[str] = field(default_factory=list)  # prompts, in the order answered
    in_flight: int = 0
    max_in_flight: int = 0
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]


def _prompt_of(body: dict[str, Any]) -> str:
    if "messages" in body:
        return body["messages"][-1]["content"]
    return body.get("prompt", "")


def _make_handler(b: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            headers = {"Content-Type": "application/json", **headers}
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw)
            prompt = _prompt_of(body)
            with b.lock:
                b.count += 1
                n = b.count
                b.in_flight += 1
                b.max_in_flight = max(b.max_in_flight, b.in_flight)
                b.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
            counted = True
            try:
                delay = b.delay_s(prompt) if callable(b.delay_s) else b.delay_s
                if delay:
                    time.sleep(delay)
                with b.lock:  # counted while it is worked on, not while the reply is written: the
                    b.in_flight -= 1  # client may send its next request before this thread is done
                    counted = False
                if n <= b.fail_first:
                    self._send(b.fail_status, b.fail_headers, b'{"error": {"message": "try again"}}')
                    return
                if b.override is not None and (reply := b.override(prompt)) is not None:
                    self._send(*reply)
                    return
                if self.path.endswith("/chat/completions"):
                    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant",
                                                                     "content": b.reply_text(prompt)}}
                elif self.path.endswith("/completions"):
                    choice = {"index": 0, "text": b.reply_text(prompt)}
                else:
                    self._send(404, {}, b'{"error": "no such route"}')
                    return
                out = {"id": f"r{n}", "object": "x", "model": body.get("model"), "choices": [choice],
                       "usage": {"prompt_tokens": len(prompt), "completion_tokens": 3,
                                 "total_tokens": len(prompt) + 3}}
                self._send(200, {}, json.dumps(out).encode())
                with b.lock:
                    b.completed.append(prompt)
            finally:
                if counted:
                    with b.lock:
                        b.in_flight -= 1

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up leaves a broken pipe: expected, not news


@dataclass
class Server:
    behaviour: Behaviour
    base_url: str  # ".../v1"


@pytest.fixture
def server() -> Iterator[Server]:
    b = Behaviour()
    httpd = _QuietServer(("127.0.0.1", 0), _make_handler(b))
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield Server(b, f"http://127.0.0.1:{httpd.server_address[1]}/v1")
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

SPEC = adapters.get("openai")


def make_cfg(url: str, *, version: str | None = None, generation: GenerationSettings | None = None,
             **options: Any) -> ModelConfig:
    opts: dict[str, Any] = {"model": "m", "api": "chat", "max_retries": 2, "backoff_s": 0.01, "timeout_s": 1.0,
                            "concurrency": 4}
    opts.update(options)
    return ModelConfig(name="api", adapter="openai", options=SPEC.options.model_validate(opts),
                       generation=generation or GenerationSettings(max_new_tokens=8), url=url, version=version)


@pytest.fixture
def run(server: Server) -> Iterator[Callable[..., list[Generation]]]:
    """``run(prompts, settings=None, **options)``: load a model against the server and generate."""
    models: list[Any] = []

    def go(prompts: list[str], settings: GenerationSettings | None = None, **options: Any) -> list[Generation]:
        cfg = make_cfg(server.base_url, generation=settings, **options)
        model = SPEC.load(cfg)
        models.append(model)
        return model.generate(prompts, cfg.generation)

    yield go
    for m in models:
        m.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Happy path and request shape
# ---------------------------------------------------------------------------------------------


def test_chat_api_returns_the_message_content_and_token_usage_for_each_prompt(server: Server, run: Any) -> None:
    gens = run(["p1", "p2"])
    assert [g.text for g in gens] == ["P1", "P2"]
    assert all(g.error is None for g in gens)
    assert [(g.prompt_tokens, g.completion_tokens) for g in gens] == [(2, 3), (2, 3)]
    assert all(g.latency_ms > 0 for g in gens)
    assert all(g.details["attempts"] == 1 for g in gens)
    assert {r["path"] for r in server.behaviour.requests} == {"/v1/chat/completions"}


def test_completions_api_posts_a_prompt_to_the_completions_endpoint_and_reads_choice_text(
        server: Server, run: Any) -> None:
    gens = run(["hello"], api="completions")
    assert gens[0].text == "HELLO"
    assert gens[0].error is None
    (req,) = server.behaviour.requests
    assert req["path"] == "/v1/completions"
    assert req["body"]["prompt"] == "hello"
    assert "messages" not in req["body"]


def test_a_trailing_slash_on_the_url_does_not_double_the_slash_in_the_endpoint(server: Server) -> None:
    cfg = make_cfg(server.base_url + "/")
    model = SPEC.load(cfg)
    try:
        assert model.generate(["x"], cfg.generation)[0].text == "X"
    finally:
        model.close()
    assert server.behaviour.requests[0]["path"] == "/v1/chat/completions"


def test_request_body_carries_model_max_tokens_temperature_top_p_and_stop(server: Server, run: Any) -> None:
    run(["q"], GenerationSettings(max_new_tokens=17, temperature=0.0, top_p=0.9, stop=("\n", "END")), model="remote-7b")
    (body,) = server.behaviour.bodies()
    assert body["model"] == "remote-7b"
    assert body["max_tokens"] == 17
    assert body["temperature"] == 0.0
    assert body["top_p"] == 0.9
    assert body["stop"] == ["\n", "END"]
    assert body["messages"] == [{"role": "user", "content": "q"}]


def test_greedy_requests_send_no_stop_and_no_seed_while_sampled_ones_send_the_seed(server: Server, run: Any) -> None:
    run(["greedy"], GenerationSettings(max_new_tokens=8))
    run(["sampled"], GenerationSettings(max_new_tokens=8, temperature=0.7, seed=1234))
    greedy, sampled = server.behaviour.bodies()
    assert "stop" not in greedy
    assert "seed" not in greedy
    assert sampled["temperature"] == 0.7
    assert sampled["seed"] == 1234


def test_system_prompt_option_is_sent_as_the_first_chat_message(server: Server, run: Any) -> None:
    run(["question"], system_prompt="You are terse.")
    (body,) = server.behaviour.bodies()
    assert body["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "question"}]


def test_api_key_env_sends_a_bearer_authorization_header(server: Server, run: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLGATE_TEST_KEY", "sk-secret-123")
    run(["a"], api_key_env="TOLLGATE_TEST_KEY")
    headers = {k.lower(): v for k, v in server.behaviour.requests[0]["headers"].items()}
    assert headers["authorization"] == "Bearer sk-secret-123"


def test_no_authorization_header_is_sent_without_api_key_env(server: Server, run: Any) -> None:
    run(["a"])
    headers = {k.lower() for k in server.behaviour.requests[0]["headers"]}
    assert "authorization" not in headers


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_an_unset_or_empty_api_key_env_var_raises_an_input_error_at_load(
        server: Server, monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("TOLLGATE_MISSING_KEY", raising=False)
    else:
        monkeypatch.setenv("TOLLGATE_MISSING_KEY", value)
    cfg = make_cfg(server.base_url, api_key_env="TOLLGATE_MISSING_KEY")
    with pytest.raises(TollgateInputError) as info:
        SPEC.load(cfg)
    assert "TOLLGATE_MISSING_KEY" in str(info.value)
    assert info.value.field == "models.api.options.api_key_env"
    assert server.behaviour.requests == []


def test_unknown_options_are_rejected_by_the_schema() -> None:
    with pytest.raises(ValueError, match="not_an_option"):
        SPEC.options.model_validate({"model": "m", "not_an_option": 1})


def test_stop_sequences_are_applied_client_side(server: Server, run: Any) -> None:
    server.behaviour.reply_text = lambda p: "abc\nxyz"
    gens = run(["p"], GenerationSettings(max_new_tokens=8, stop=("\n",)))
    assert gens[0].text == "abc"


def test_the_earliest_of_several_stop_sequences_wins(server: Server, run: Any) -> None:
    server.behaviour.reply_text = lambda p: "one two STOP three\n four"
    gens = run(["p"], GenerationSettings(max_new_tokens=8, stop=("\n", "STOP")))
    assert gens[0].text == "one two "


def test_a_null_message_content_becomes_empty_text_not_an_error(server: Server, run: Any) -> None:
    server.behaviour.reply_text = lambda p: None
    gens = run(["p"])
    assert gens[0].text == ""
    assert gens[0].error is None


def test_progress_is_reported_once_per_prompt(server: Server) -> None:
    cfg = make_cfg(server.base_url)
    model = SPEC.load(cfg)
    ticks: list[int] = []
    try:
        model.generate([f"p{i}" for i in range(6)], cfg.generation, progress=ticks.append)
    finally:
        model.close()
    assert ticks == [1] * 6


def test_loglikelihood_is_not_supported(server: Server) -> None:
    model = SPEC.load(make_cfg(server.base_url))
    try:
        with pytest.raises(NotImplementedError):
            model.loglikelihood([("ctx", " cont")])
    finally:
        model.close()
    assert "loglikelihood" not in SPEC.capabilities


# ---------------------------------------------------------------------------------------------
# Retries and errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_and_attempts_are_counted(server: Server, run: Any, status: int) -> None:
    server.behaviour.fail_first = 2
    server.behaviour.fail_status = status
    server.behaviour.fail_headers = {"Retry-After": "0"}
    gens = run(["p"], max_retries=2)
    assert gens[0].text == "P"
    assert gens[0].error is None
    assert gens[0].details["attempts"] == 3
    assert len(server.behaviour.requests) == 3


def test_an_example_that_fails_every_attempt_is_an_error_after_max_retries_plus_one_attempts(
        server: Server, run: Any) -> None:
    server.behaviour.fail_first = 100
    gens = run(["p"], max_retries=2)
    assert gens[0].text is None
    assert "503" in gens[0].error
    assert gens[0].details["attempts"] == 3
    assert len(server.behaviour.requests) == 3


def test_max_retries_zero_means_a_single_attempt(server: Server, run: Any) -> None:
    server.behaviour.fail_first = 100
    gens = run(["p"], max_retries=0)
    assert gens[0].error is not None
    assert gens[0].details["attempts"] == 1
    assert len(server.behaviour.requests) == 1


def test_retry_after_header_sets_a_minimum_wait_before_the_retry(server: Server, run: Any) -> None:
    server.behaviour.fail_first = 1
    server.behaviour.fail_status = 429
    server.behaviour.fail_headers = {"Retry-After": "1"}
    t0 = time.perf_counter()
    gens = run(["p"], backoff_s=0.001)
    elapsed = time.perf_counter() - t0
    assert gens[0].text == "P"
    assert gens[0].details["attempts"] == 2
    assert elapsed >= 0.95


def test_a_request_slower_than_the_timeout_is_retried_then_stored_as_a_timeout_error(
        server: Server, run: Any) -> None:
    server.behaviour.delay_s = 1.0
    t0 = time.perf_counter()
    gens = run(["slow"], timeout_s=0.2, max_retries=1)
    elapsed = time.perf_counter() - t0
    assert gens[0].text is None
    assert "Timeout" in gens[0].error
    assert gens[0].details["attempts"] == 2
    assert len(server.behaviour.requests) == 2
    assert elapsed < 0.9  # the client gave up; it did not wait for the server


def test_a_timeout_followed_by_a_fast_answer_succeeds_on_retry(server: Server, run: Any) -> None:
    seen: list[str] = []

    def delay(prompt: str) -> float:
        seen.append(prompt)
        return 1.0 if len(seen) == 1 else 0.0

    server.behaviour.delay_s = delay
    gens = run(["p"], timeout_s=0.2, max_retries=2)
    assert gens[0].text == "P"
    assert gens[0].details["attempts"] == 2


def test_400_is_not_retried_and_is_stored_as_an_error_with_the_status(server: Server, run: Any) -> None:
    server.behaviour.fail_first = 100
    server.behaviour.fail_status = 400
    gens = run(["p"], max_retries=3)
    assert gens[0].text is None
    assert "HTTP 400" in gens[0].error
    assert "try again" in gens[0].error  # the start of the server's message is kept
    assert gens[0].details["attempts"] == 1
    assert len(server.behaviour.requests) == 1


@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_other_client_errors_are_not_retried(server: Server, run: Any, status: int) -> None:
    server.behaviour.fail_first = 100
    server.behaviour.fail_status = status
    gens = run(["p"], max_retries=3)
    assert f"HTTP {status}" in gens[0].error
    assert len(server.behaviour.requests) == 1


@pytest.mark.parametrize("payload", [
    b"<html>bad gateway page</html>",
    b'{"no_choices": true}',
    b'{"choices": []}',
    b'{"choices": [{"index": 0}]}',
    b"[1, 2, 3]",
    b"null",
], ids=["not-json", "no-choices", "empty-choices", "choice-without-message", "json-list", "json-null"])
def test_a_malformed_body_is_stored_as_an_error_and_not_retried(server: Server, run: Any, payload: bytes) -> None:
    server.behaviour.override = lambda p: (200, {}, payload)
    gens = run(["p"], max_retries=3)
    assert gens[0].text is None
    assert gens[0].error.startswith("malformed response")
    assert gens[0].details["attempts"] == 1
    assert len(server.behaviour.requests) == 1


def test_one_failing_example_does_not_spoil_the_other_examples_of_the_batch(server: Server, run: Any) -> None:
    def override(prompt: str) -> Reply | None:
        if prompt == "bad-request":
            return 400, {}, b'{"error": "context too long"}'
        if prompt == "garbled":
            return 200, {}, b"not json"
        return None

    server.behaviour.override = override
    gens = run(["ok1", "bad-request", "ok2", "garbled", "ok3"])
    assert [g.text for g in gens] == ["OK1", None, "OK2", None, "OK3"]
    assert [g.error is None for g in gens] == [True, False, True, False, True]
    assert "HTTP 400" in gens[1].error
    assert "malformed" in gens[3].error
    assert all(isinstance(g.error, str) for g in gens if g.error is not None)


def test_an_unreachable_server_is_retried_then_stored_as_a_connection_error() -> None:
    cfg = make_cfg(f"http://127.0.0.1:{_free_port()}/v1", max_retries=1)
    model = SPEC.load(cfg)
    try:
        gens = model.generate(["a", "b"], cfg.generation)
    finally:
        model.close()
    for g in gens:
        assert g.text is None
        assert "ConnectError" in g.error
        assert g.details["attempts"] == 2


# ---------------------------------------------------------------------------------------------
# Concurrency and order
# ---------------------------------------------------------------------------------------------


def test_concurrency_option_caps_the_requests_in_flight(server: Server, run: Any) -> None:
    server.behaviour.delay_s = 0.15
    gens = run([f"p{i}" for i in range(8)], concurrency=2)
    assert all(g.error is None for g in gens)
    assert server.behaviour.max_in_flight == 2


def test_requests_do_run_in_parallel_up_to_the_concurrency(server: Server, run: Any) -> None:
    server.behaviour.delay_s = 0.15
    t0 = time.perf_counter()
    gens = run([f"p{i}" for i in range(8)], concurrency=8)
    elapsed = time.perf_counter() - t0
    assert all(g.error is None for g in gens)
    assert server.behaviour.max_in_flight > 2
    assert elapsed < 8 * 0.15  # not one after another


def test_concurrency_one_sends_requests_one_at_a_time(server: Server, run: Any) -> None:
    server.behaviour.delay_s = 0.02
    run([f"p{i}" for i in range(4)], concurrency=1)
    assert server.behaviour.max_in_flight == 1
    assert server.behaviour.completed == [f"p{i}" for i in range(4)]


def test_output_order_matches_input_order_when_responses_come_back_out_of_order(server: Server, run: Any) -> None:
    n = 10
    # the first prompts are the slowest, so the server answers roughly in reverse
    server.behaviour.delay_s = lambda p: (n - int(p[1:])) * 0.03
    prompts = [f"p{i}" for i in range(n)]
    gens = run(prompts, concurrency=n)
    assert [g.text for g in gens] == [p.upper() for p in prompts]
    assert server.behaviour.completed != prompts  # the test did provoke out-of-order answers


def test_output_order_matches_input_order_with_random_delays_and_some_failures(server: Server, run: Any) -> None:
    import random

    rng = random.Random(7)
    delays = {f"p{i}": rng.uniform(0, 0.08) for i in range(16)}
    server.behaviour.delay_s = lambda p: delays[p]
    server.behaviour.override = lambda p: (400, {}, b"{}") if int(p[1:]) % 5 == 0 else None
    prompts = list(delays)
    gens = run(prompts, concurrency=5)
    for p, g in zip(prompts, gens, strict=True):
        if int(p[1:]) % 5 == 0:
            assert g.text is None and "HTTP 400" in g.error
        else:
            assert g.text == p.upper() and g.error is None


# ---------------------------------------------------------------------------------------------
# Fingerprint
# ---------------------------------------------------------------------------------------------


BASE_URL = "http://example.invalid:8000/v1"


@pytest.mark.parametrize("change", [
    {"version": "2"},
    {"url": "http://example.invalid:8001/v1"},
    {"model": "other-model"},
    {"api": "completions"},
    {"system_prompt": "Be brief."},
], ids=lambda c: next(iter(c)))
def test_fingerprint_changes_when_version_url_remote_model_api_or_system_prompt_changes(
        change: dict[str, Any]) -> None:
    base = make_cfg(BASE_URL, version="1")
    url = change.get("url", BASE_URL)
    version = change.get("version", "1")
    options = {k: v for k, v in change.items() if k not in ("url", "version")}
    changed = make_cfg(url, version=version, **options)
    assert SPEC.fingerprint(changed) != SPEC.fingerprint(base)


@pytest.mark.parametrize("change", [
    {"concurrency": 16},
    {"timeout_s": 99.0},
    {"max_retries": 7},
    {"backoff_s": 3.0},
    {"api_key_env": "SOME_KEY"},
], ids=lambda c: next(iter(c)))
def test_fingerprint_does_not_change_with_transport_settings(change: dict[str, Any]) -> None:
    assert SPEC.fingerprint(make_cfg(BASE_URL, **change)) == SPEC.fingerprint(make_cfg(BASE_URL))


def test_fingerprint_is_stable_and_needs_no_server() -> None:
    a = SPEC.fingerprint(make_cfg(BASE_URL, version="1"))
    b = SPEC.fingerprint(make_cfg(BASE_URL, version="1"))
    assert a == b
    assert SPEC.needs == "url"


# ---------------------------------------------------------------------------------------------
# Malformed responses and options: one bad answer is that example's error, never the batch's
# ---------------------------------------------------------------------------------------------


def test_a_non_string_message_content_is_an_error_for_that_example_only(server: Server, run: Any) -> None:
    server.behaviour.override = lambda p: (
        (200, {}, json.dumps({"choices": [{"message": {"content": [{"type": "text", "text": "x"}]}}]}).encode())
        if p == "odd" else None)
    gens = run(["ok", "odd"], GenerationSettings(max_new_tokens=8, stop=("\n",)))
    assert gens[0].text == "OK"
    assert gens[1].text is None and "malformed" in gens[1].error


def test_a_malformed_usage_field_does_not_abort_the_batch(server: Server, run: Any) -> None:
    server.behaviour.override = lambda p: (
        (200, {}, json.dumps({"choices": [{"message": {"content": "hi"}}], "usage": [1, 2]}).encode())
        if p == "odd" else None)
    gens = run(["ok", "odd"])
    assert gens[0].text == "OK"
    assert gens[1].error is not None or gens[1].text == "hi"


def test_an_undecodable_response_body_is_an_error_for_that_example_only(server: Server, run: Any) -> None:
    not_gzip = b"\x1f\x8b this is not gzip data"
    server.behaviour.override = lambda p: (200, {"Content-Encoding": "gzip"}, not_gzip) if p == "odd" else None
    gens = run(["ok", "odd"], max_retries=0)
    assert gens[0].text == "OK"
    assert gens[1].text is None and gens[1].error is not None


@pytest.mark.parametrize("bad", [{"max_retries": -1}, {"concurrency": 0}, {"backoff_s": -1.0}],
                         ids=lambda b: next(iter(b)))
def test_out_of_range_options_are_rejected_by_the_schema(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        SPEC.options.model_validate({"model": "m", **bad})
