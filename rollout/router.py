"""The live router behind ``tollgate serve``: OpenAI-compatible endpoints in front of the rollout.

Every request is answered by the production model, or, for a sticky share of known users, by
the beta model. While a model is in shadow, a copy of each production request goes to it in the
background; the user never waits for it nor sees it, and its answer is logged beside
production's under the same request id. The assignment is re-read from the store every
``refresh_s``, so ``tollgate rollout advance | rollback`` in another process takes effect on the
next request without a restart.

Who does what:
- the event loop parses requests and never touches a model or the store;
- models generate in starlette's threadpool, one lock per model (transformers models are not
  thread-safe);
- one shadow worker thread answers the shadow copies from its own bounded queue: a copy that
  finds it full is dropped and counted;
- one store thread owns every store access of the process (DuckDB does not let one process hold
  a read-only and a read-write connection to the same file at once): it writes logged rows in
  batches (one transaction per batch), re-reads the assignment, and answers reads such as
  ``/verdict`` through futures. A user's row is never dropped: when the log queue is full the
  request waits (backpressure); a shadow row that finds it full is dropped and counted.
On shutdown both queues are drained and every row written; if the store stays unwritable, what is
left goes to JSONL files that ``tollgate traffic ingest`` / ``tollgate feedback ingest`` accept.

Chat requests are answered on the content of the last ``user`` message (text, or the text parts
of a content list); the request's ``model``, ``temperature`` and other sampling fields are
ignored: each model generates with its own settings from tollgate.yaml, so production, shadow
and beta answers stay comparable. ``max_tokens`` can lower the model's ``max_new_tokens``,
never raise it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from harness import store as st
from harness.adapters import Generation, adapters
from rollout.ingest import FEEDBACK_KINDS, feedback_value
from rollout.promote import initial_production
from rollout.records import traffic_row
from rollout.stages import beta_bucket
from rollout.store_worker import Counters, StoreWorker

MAX_BODY = 1 << 20
VERDICT_STATUS = {"pass": 200, "fail": 409, "inconclusive": 202}


@dataclass
class _Slot:
    lock: threading.Lock
    model: Any = None


@dataclass
class Served:
    arm: str
    model: str | None
    gen: Generation | None = None
    unavailable: bool = False  # the model could not be loaded or is not in tollgate.yaml
    max_new_tokens: int = 0


@dataclass
class _ShadowJob:
    request_id: str
    model: str
    prompt: str
    max_tokens: int | None
    user_id: str


class Router:
    """Routing, generation and logging; the HTTP layer around it is :func:`create_app`."""

    def __init__(self, project: Any, store: st.Store, *, queue_size: int, batch_size: int, flush_s: float,
                 refresh_s: float, shadow_queue_size: int) -> None:
        self.project = project
        self.salt, self.shadow_share = project.rollout.salt, project.rollout.shadow_share
        self.counters = Counters()
        self.log = StoreWorker(store, initial_production(project), self.counters, queue_size=queue_size,
                               batch_size=batch_size, flush_s=flush_s, refresh_s=refresh_s)
        self._shadow_q: queue.Queue[_ShadowJob | None] = queue.Queue(maxsize=max(1, shadow_queue_size))
        self._shadow_thread = threading.Thread(target=self._shadow_loop, name="tollgate-shadow", daemon=True)
        self._draining = False
        self._slots: dict[str, _Slot] = {}
        self._slots_lock = threading.Lock()
        self.started = time.monotonic()
        self.startup_error: BaseException | None = None

    def start(self) -> None:
        self.log.start()
        self._shadow_thread.start()

    def warm(self) -> None:
        """Load the models of the current assignment before the first request needs them."""
        a = self.log.assignment
        for name in filter(None, (a.production, a.beta, a.shadow)):
            gen, unavailable, _ = self.generate(name, "", 1, load_only=True)
            if unavailable and gen is not None:
                print(f"tollgate serve: {gen.error}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Drain the shadow queue, then write every logged row; unload the models."""
        self._draining = True
        if self._shadow_thread.is_alive():
            self._shadow_q.put(None)
            self._shadow_thread.join()
        self.log.close()
        for slot in self._slots.values():
            with slot.lock:
                if slot.model is not None:
                    with contextlib.suppress(Exception):
                        slot.model.close()
                    slot.model = None

    # -- serving ------------------------------------------------------------------------------
    def answer(self, request_id: str, user_id: str, known_user: bool, prompt: str,
               max_tokens: int | None) -> Served:
        """Route, generate and log one request (runs in the threadpool: it may wait on the model and
        on a full log queue)."""
        a = self.log.assignment
        arm, model = "production", a.production
        if known_user and a.beta and beta_bucket(user_id, self.salt) < a.beta_share:
            arm, model = "beta", a.beta
        if model is None:
            return Served(arm, None)
        gen, unavailable, limit = self.generate(model, prompt, max_tokens)
        if unavailable and arm == "beta" and a.production:  # a broken beta model must not fail its users
            self.counters.add("requests.beta_fallback")
            arm, model = "production", a.production
            gen, unavailable, limit = self.generate(model, prompt, max_tokens)
        assert gen is not None
        self.log.put("traffic", self._row(request_id, model, arm, prompt, gen, user_id), block=True)
        self.counters.add(f"requests.{arm}")
        if gen.error:
            self.counters.add("requests.errors")
        elif arm == "production" and a.shadow and a.shadow != model and \
                beta_bucket(f"shadow:{request_id}", self.salt) < self.shadow_share:
            self.counters.add("shadow.selected")
            try:
                self._shadow_q.put_nowait(_ShadowJob(request_id, a.shadow, prompt, max_tokens, user_id))
                self.counters.add("shadow.sent")
            except queue.Full:
                self.counters.add("shadow.dropped")
        return Served(arm, model, gen, unavailable, limit)

    def generate(self, name: str, prompt: str, max_tokens: int | None,
                 load_only: bool = False) -> tuple[Generation | None, bool, int]:
        """(answer, unavailable, max_new_tokens used): one prompt; under the model's lock for a local model,
        concurrently for an adapter that declares it can be (an endpoint)."""
        cfg = self.project.models.get(name)
        if cfg is None:
            return Generation(None, 0.0, error=f"model '{name}' is not defined in {self.project.path.name}"), \
                True, 0
        settings = cfg.generation
        if max_tokens is not None and max_tokens < settings.max_new_tokens:
            settings = replace(settings, max_new_tokens=max_tokens)
        with self._slots_lock:
            slot = self._slots.setdefault(name, _Slot(threading.Lock()))
        spec = adapters.get(cfg.adapter)
        with slot.lock:
            if slot.model is None:
                try:
                    slot.model = spec.load(cfg)
                except Exception as exc:
                    return Generation(None, 0.0, error=f"cannot load model '{name}': {exc}"), True, 0
            if load_only:
                return None, False, 0
            model = slot.model
            if "concurrent" not in spec.capabilities_of(cfg):  # a local model answers one request at a time
                return self._generate(model, prompt, settings), False, settings.max_new_tokens
        return self._generate(model, prompt, settings), False, settings.max_new_tokens  # an endpoint: in parallel

    @staticmethod
    def _generate(model: Any, prompt: str, settings: Any) -> Generation:
        t0 = time.perf_counter()
        try:
            return model.generate([prompt], settings)[0]
        except Exception as exc:
            return Generation(None, (time.perf_counter() - t0) * 1000, error=f"{type(exc).__name__}: {exc}")

    def _row(self, request_id: str, model: str, arm: str, prompt: str, gen: Generation,
             user_id: str) -> dict[str, Any]:
        return traffic_row(request_id, model, arm, prompt, gen.text, user_id=user_id, latency_ms=gen.latency_ms,
                           prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens, error=gen.error)

    def _shadow_loop(self) -> None:
        while True:
            job = self._shadow_q.get()
            if job is None:
                return
            gen, _, _ = self.generate(job.model, job.prompt, job.max_tokens)
            assert gen is not None
            self.counters.add("shadow.answered")
            row = self._row(job.request_id, job.model, "shadow", job.prompt, gen, job.user_id)
            # While serving, a full log queue drops the copy; while draining, no user waits on it.
            if not self.log.put("traffic", row, block=self._draining):
                self.counters.add("shadow.dropped")
            self.counters.add("shadow.done")

    def metrics(self) -> dict[str, Any]:
        c = self.counters.snapshot()
        depth, batch = self.log.depth()
        a = self.log.assignment
        return {
            "requests": {"production": c["requests.production"], "beta": c["requests.beta"],
                         "errors": c["requests.errors"], "beta_fallback": c["requests.beta_fallback"]},
            "shadow": {"selected": c["shadow.selected"], "sent": c["shadow.sent"], "answered": c["shadow.answered"],
                       "dropped": c["shadow.dropped"], "pending": c["shadow.sent"] - c["shadow.done"]},
            "log": {"queue_depth": depth, "queue_size": self.log.queue_size, "batch_pending": batch,
                    "rows_written": c["log.rows_written"], "batches": c["log.batches"],
                    "write_errors": c["log.write_errors"], "backpressure_waits": c["log.waits"],
                    "recovered_from_journal": c["log.recovered"]},
            "feedback": {"received": c["feedback.received"]},
            "assignment": {"production": a.production, "shadow": a.shadow, "beta": a.beta,
                           "beta_share": a.beta_share},
            "uptime_s": round(time.monotonic() - self.started, 3),
        }

    def ready(self) -> tuple[bool, dict[str, Any]]:
        stale = max(5.0, 10 * self.log.refresh_s)
        fresh = self.log.last_ok > 0 and time.monotonic() - self.log.last_ok < stale
        ok = self.log.alive and self.log.last_error is None and fresh
        return ok, {"ready": ok, "store_thread_alive": self.log.alive, "store_error": self.log.last_error,
                    "store_fresh": fresh, "production": self.log.assignment.production}


# -- HTTP ---------------------------------------------------------------------------------------------
def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    from starlette.responses import Response

    def plain(o: Any) -> Any:
        return o.isoformat() if isinstance(o, datetime) else str(o)

    return Response(json.dumps(obj, ensure_ascii=False, default=plain), status_code=status, headers=headers,
                    media_type="application/json")


def _error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
           headers: dict[str, str] | None = None) -> Any:
    return _json({"error": {"message": message, "type": kind, "param": param, "code": None}}, status, headers)


class BadRequestError(Exception):
    """A request the client must fix: answered 400 with an OpenAI-style error naming ``param``."""

    def __init__(self, param: str | None, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class PromptRequest:
    """What the router takes from a ``/v1/completions`` or ``/v1/chat/completions`` body."""

    prompt: str
    max_tokens: int | None
    user: str | None  # None: an anonymous caller


@dataclass(frozen=True)
class FeedbackRequest:
    """A valid ``POST /feedback`` body, its value normalised as the store keeps it."""

    request_id: str
    kind: str
    value: str
    user_id: str | None


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or :class:`BadRequestError` (never another exception, whatever the bytes)."""
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, a number of 5000 digits, bad bytes
        raise BadRequestError(None, f"the body is not valid JSON: {_short(exc)}") from None
    except RecursionError:
        raise BadRequestError(None, "the body is not usable JSON: it is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequestError(None, "the body must be a JSON object")
    try:  # an escaped lone surrogate ("\ud800") decodes, but no answer, log row or store can hold it
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequestError(None, f"the body holds {exc.object[exc.start]!a}, a lone surrogate escape, "
                                    "which is not valid Unicode") from None
    except RecursionError:
        raise BadRequestError(None, "the body is not usable JSON: it is nested too deeply") from None
    return body


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _optional_int(body: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequestError(name, f"'{name}' must be a whole number of tokens >= 1; got {_shown(value)}")
        return value
    return None


def _shown(value: Any) -> str:
    import reprlib

    try:
        return reprlib.repr(value)
    except Exception:
        return f"a {type(value).__name__}"


def _user(body: dict[str, Any], header_user: str | None) -> str | None:
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or not user.strip()):
        raise BadRequestError("user", f"'user' must be a non-empty string; got {_shown(user)}")
    return user or (header_user or "").strip() or None


def _chat_prompt(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequestError("messages", "'messages' must be a non-empty list of {role, content} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequestError("messages", f"'messages[{i}]' must be an object with a 'role'")
    user = [m for m in messages if m["role"] == "user"]
    if not user:
        raise BadRequestError("messages", "'messages' holds no message with role 'user'")
    content = user[-1].get("content")
    if isinstance(content, list):  # content parts: the text ones, in order
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = "\n".join(t for t in texts if isinstance(t, str)) if texts else None
    if not isinstance(content, str):
        raise BadRequestError("messages", "the last 'user' message must have text 'content'")
    return content


def parse_prompt_request(raw: bytes, *, chat: bool, header_user: str | None = None) -> PromptRequest:
    """A completions (``chat=False``) or chat completions body, checked field by field; the user is the
    body's ``user`` or else the ``X-User-Id`` header."""
    body = parse_json_body(raw)
    if body.get("stream"):
        raise BadRequestError("stream", "streaming is not supported; send 'stream': false")
    if chat:
        prompt, max_tokens = _chat_prompt(body), _optional_int(body, "max_completion_tokens", "max_tokens")
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequestError("prompt", f"'prompt' must be a string; got {type(prompt).__name__}")
        max_tokens = _optional_int(body, "max_tokens")
    return PromptRequest(prompt, max_tokens, _user(body, header_user))


def parse_feedback(raw: bytes) -> FeedbackRequest:
    """A ``POST /feedback`` body: the answer's id, a known kind, a value valid for that kind."""
    body = parse_json_body(raw)
    rid, kind, user_id = body.get("request_id"), body.get("kind"), body.get("user_id")
    if not isinstance(rid, str) or not rid.strip():
        raise BadRequestError("request_id", "'request_id' must be the id of an answer (its 'id')")
    if not isinstance(kind, str) or kind not in FEEDBACK_KINDS:
        raise BadRequestError("kind", f"'kind' must be one of {', '.join(FEEDBACK_KINDS)}; got {_shown(kind)}")
    try:
        value = feedback_value(kind, body.get("value"))
    except (ValueError, OverflowError, TypeError, RecursionError):  # "inf", 1e400 as a rating, and the like
        value = None
    if value is None:
        hint = {"thumb": "up or down (1/0, true/false)", "rating": "a whole number 1 to 5",
                "comment": "non-empty text", "correction": "the right answer (a JSON object or text)"}[kind]
        raise BadRequestError("value", f"a {kind}'s 'value' must be {hint}; got {_shown(body.get('value'))}")
    if user_id is not None and not isinstance(user_id, str):
        raise BadRequestError("user_id", "'user_id' must be a string")
    return FeedbackRequest(rid, kind, value, user_id)


def create_app(project: Any, store: st.Store, *, queue_size: int = 10_000, batch_size: int = 256,
               flush_s: float = 0.2, refresh_s: float = 0.5, shadow_queue_size: int | None = None,
               api_key: str | None = None) -> Any:
    """The router as a Starlette app; its lifespan starts the threads and, on shutdown, drains them.

    Args:
        queue_size: rows waiting for the store before a user's request waits (backpressure) and a
            shadow copy is dropped.
        batch_size: rows per store transaction, at most.
        flush_s: the longest a logged row waits for its batch to fill.
        refresh_s: how often the stage assignment is re-read from the store.
        shadow_queue_size: shadow copies waiting for the shadow model (default: ``queue_size``).
        api_key: when set, ``/v1/*`` and ``/feedback`` need ``Authorization: Bearer <api_key>``;
            health, readiness, metrics and verdicts stay open to the platform.
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Route

    router = Router(project, store, queue_size=queue_size, batch_size=batch_size, flush_s=flush_s,
                    refresh_s=refresh_s, shadow_queue_size=shadow_queue_size or queue_size)

    async def serve_prompt(request: Any, chat: bool) -> Any:
        raw = await request.body()
        try:
            req = parse_prompt_request(raw, chat=chat, header_user=request.headers.get("x-user-id"))
        except BadRequestError as exc:
            return _error(400, str(exc), exc.param)
        user_id, known = (req.user, True) if req.user else (f"anon-{uuid.uuid4().hex}", False)
        rid = uuid.uuid4().hex
        served = await run_in_threadpool(router.answer, rid, user_id, known, req.prompt, req.max_tokens)
        headers = {"X-Tollgate-Request-Id": rid, "X-Tollgate-Arm": served.arm}
        gen = served.gen
        if served.model is None:
            return _error(503, "no model serves production: promote one with 'tollgate rollout advance'.",
                          kind="service_unavailable", headers=headers)
        assert gen is not None
        if gen.error:
            status, kind = (503, "service_unavailable") if served.unavailable else (502, "model_error")
            return _error(status, gen.error, kind=kind, headers=headers)
        text = gen.text or ""
        pt, ct = gen.prompt_tokens or 0, gen.completion_tokens or 0
        finish = "length" if gen.completion_tokens is not None and ct >= served.max_new_tokens else "stop"
        choice: dict[str, Any] = ({"index": 0, "message": {"role": "assistant", "content": text},
                                   "finish_reason": finish} if chat else
                                  {"index": 0, "text": text, "logprobs": None, "finish_reason": finish})
        return _json({"id": rid, "object": "chat.completion" if chat else "text_completion",
                      "created": int(time.time()), "model": served.model, "choices": [choice],
                      "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}},
                     headers=headers)

    def guarded(handler: Any) -> Any:
        if not api_key:
            return handler

        async def check(request: Any) -> Any:
            import hmac

            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'.",
                              kind="authentication_error")
            return await handler(request)

        return check

    async def completions(request: Any) -> Any:
        return await serve_prompt(request, chat=False)

    async def chat_completions(request: Any) -> Any:
        return await serve_prompt(request, chat=True)

    async def feedback(request: Any) -> Any:
        raw = await request.body()
        try:
            fb = parse_feedback(raw)
        except BadRequestError as exc:
            return _error(400, str(exc), exc.param)
        row = {"request_id": fb.request_id, "kind": fb.kind, "value": fb.value, "user_id": fb.user_id,
               "ts": st.utcnow()}
        await run_in_threadpool(router.log.put, "feedback", row, block=True)
        router.counters.add("feedback.received")
        return _json({"status": "queued", "request_id": fb.request_id}, 202)

    async def healthz(request: Any) -> Any:
        return _json({"status": "ok"})

    async def readyz(request: Any) -> Any:
        ok, detail = router.ready()
        return _json(detail, 200 if ok else 503)

    async def verdict(request: Any) -> Any:
        from harness.store import list_decisions

        model = request.path_params["model"]
        try:
            rows = await asyncio.wait_for(asyncio.wrap_future(
                router.log.read(lambda con: list_decisions(con, candidate=model)[:1])), timeout=30)
        except Exception as exc:
            return _error(503, f"the store cannot be read now: {exc}", kind="service_unavailable")
        if not rows:
            return _json({"candidate": model, "verdict": None, "message": f"no decision recorded for '{model}'"},
                         404)
        return _json(rows[0], VERDICT_STATUS.get(rows[0]["verdict"], 202))

    async def metrics(request: Any) -> Any:
        return _json(router.metrics())

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        router.start()
        try:
            await asyncio.wrap_future(router.log.first_refresh)
        except BaseException as exc:
            router.startup_error = exc
            await run_in_threadpool(router.close)
            raise
        await run_in_threadpool(router.warm)
        yield
        await run_in_threadpool(router.close)

    app = Starlette(routes=[
        Route("/v1/completions", guarded(completions), methods=["POST"]),
        Route("/v1/chat/completions", guarded(chat_completions), methods=["POST"]),
        Route("/feedback", guarded(feedback), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/verdict/{model}", verdict, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ], lifespan=lifespan, max_body_size=MAX_BODY)
    app.state.router = router
    return app


def serve(project: Any, host: str = "127.0.0.1", port: int = 8080, queue_size: int = 10_000,
          api_key: str | None = None) -> None:
    """Run the router until SIGINT/SIGTERM, then drain and flush. Port 0 picks a free port; the line
    ``serving on http://HOST:PORT`` is printed (and flushed) once requests are accepted."""
    import signal
    import socket

    import uvicorn

    from harness.traffic_parquet import project_store

    store = project_store(project)  # traffic as Parquet when the project says so
    # Fail fast, before any thread or socket: a store that cannot be opened is the user's to fix.
    if not store.path.exists():
        store.migrate()
    with store.read():
        pass
    app = create_app(project, store, queue_size=queue_size, api_key=api_key)
    # IPPROTO_TCP named, or asyncio leaves Nagle on for accepted connections (40 ms per answer)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    url = f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}"

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            """SIGINT/SIGTERM start the graceful shutdown; once drained, serve() returns normally
            (uvicorn would re-raise the signal, killing the process after a clean drain)."""
            old = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                a = app.state.router.log.assignment
                print(f"serving on {url}", flush=True)
                print(f"production: {a.production}; shadow: {a.shadow or '-'}; beta: "
                      f"{f'{a.beta} ({a.beta_share:.0%})' if a.beta else '-'}", flush=True)

    server = _Server(uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn's answer to a failed startup; the cause is ours to raise
        if app.state.router.startup_error is None:
            raise
    finally:
        sock.close()
    if app.state.router.startup_error is not None:
        raise app.state.router.startup_error
