"""``openai``: any OpenAI-compatible HTTP endpoint (chat or completions) as a model.

Requests run concurrently up to ``concurrency``, also across the chunks a run commits (a model
with ``max_in_flight`` lets the executor overlap chunks); timeouts, connection errors, 429 and 5xx are
retried with exponential backoff (honouring ``Retry-After``). An example that still fails is
stored as an error for that example: one flaky request must not throw away a whole run.
The endpoint's weights cannot be hashed, so the fingerprint covers the URL, the remote model
name, the settings and the project's ``version`` label: bump ``version`` when the server changes.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import Field

from harness.adapters.base import (
    Generation,
    GenerationSettings,
    Loglikelihood,
    ModelConfig,
    ProgressFn,
    StrictOptions,
    register_adapter,
    truncate_at_stop,
)
from harness.errors import TollgateInputError
from harness.hashing import hash_obj

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIOptions(StrictOptions):
    model: str
    api: Literal["chat", "completions"] = "chat"
    api_key_env: str | None = None
    system_prompt: str | None = None
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(3, ge=0, le=20)
    backoff_s: float = Field(0.5, ge=0)
    max_retry_after_s: float = Field(60.0, ge=0)
    concurrency: int = Field(4, ge=1, le=256)


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


class _FatalError(Exception):
    """A response that retrying will not fix (400, 401, 404, a malformed body)."""


class OpenAIModel:
    def __init__(self, cfg: ModelConfig) -> None:
        import httpx

        self.opts: OpenAIOptions = cfg.options
        headers = {"Content-Type": "application/json"}
        if self.opts.api_key_env:
            key = os.environ.get(self.opts.api_key_env)
            if not key:
                raise TollgateInputError(f"environment variable {self.opts.api_key_env} is not set.",
                                         field=f"models.{cfg.name}.options.api_key_env")
            headers["Authorization"] = f"Bearer {key}"
        base = (cfg.url or "").rstrip("/")
        self.endpoint = base + ("/chat/completions" if self.opts.api == "chat" else "/completions")
        self.httpx = httpx
        self.client = httpx.Client(headers=headers, timeout=self.opts.timeout_s,
                                   limits=httpx.Limits(max_connections=self.opts.concurrency))
        self._lock = threading.Lock()
        # one pool for the model's life: chunks answered at the same time (the local executor overlaps
        # them) share it, so ``concurrency`` requests stay in flight across chunk boundaries, never more
        self.max_in_flight = self.opts.concurrency
        self._pool = ThreadPoolExecutor(max_workers=self.opts.concurrency, thread_name_prefix="tollgate-http")

    def _payload(self, prompt: str, s: GenerationSettings) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.opts.model, "max_tokens": s.max_new_tokens,
                                "temperature": s.temperature, "top_p": s.top_p}
        if s.stop:
            body["stop"] = list(s.stop)
        if s.temperature > 0:
            body["seed"] = s.seed
        if self.opts.api == "chat":
            messages = [{"role": "system", "content": self.opts.system_prompt}] if self.opts.system_prompt else []
            body["messages"] = [*messages, {"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body

    def _post_once(self, body: dict[str, Any]) -> Generation:
        t0 = time.perf_counter()
        r = self.client.post(self.endpoint, json=body)
        ms = (time.perf_counter() - t0) * 1000
        if r.status_code in RETRY_STATUS:
            raise self.httpx.HTTPStatusError(f"HTTP {r.status_code}", request=r.request, response=r)
        if r.status_code >= 400:
            raise _FatalError(f"HTTP {r.status_code}: {r.text[:200]}")
        try:
            data = r.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.opts.api == "chat" else choice["text"]
            if text is not None and not isinstance(text, str):
                raise TypeError(f"content is a {type(text).__name__}, not text")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _FatalError(f"malformed response ({type(exc).__name__}: {exc}): {r.text[:200]}") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Generation(text=text or "", latency_ms=ms, prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
                          completion_tokens=_int_or_none(usage.get("completion_tokens")))

    def _request(self, prompt: str, s: GenerationSettings) -> Generation:
        body = self._payload(prompt, s)
        httpx = self.httpx
        t_start = time.perf_counter()
        last = ""
        for attempt in range(self.opts.max_retries + 1):
            try:
                g = self._post_once(body)
                g.text = truncate_at_stop(g.text or "", s.stop)
                g.details["attempts"] = attempt + 1
                return g
            except _FatalError as exc:
                last = str(exc)
                break
            except httpx.DecodingError as exc:
                last = f"undecodable response: {exc}"
                break
            except (httpx.RequestError, httpx.HTTPStatusError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                if attempt == self.opts.max_retries:
                    break
                delay = self.opts.backoff_s * (2 ** attempt) * (0.5 + random.random())
                resp = getattr(exc, "response", None)
                if resp is not None and resp.headers.get("retry-after", "").isdigit():
                    delay = max(delay, min(float(resp.headers["retry-after"]), self.opts.max_retry_after_s))
                time.sleep(delay)
        ms = (time.perf_counter() - t_start) * 1000
        return Generation(text=None, latency_ms=ms, error=last, details={"attempts": attempt + 1})

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 progress: ProgressFn | None = None) -> list[Generation]:
        def one(p: str) -> Generation:
            g = self._request(p, settings)
            if progress:
                with self._lock:
                    progress(1)
            return g

        return list(self._pool.map(one, prompts))

    def loglikelihood(self, requests: Sequence[tuple[str, str]],
                      progress: ProgressFn | None = None) -> list[Loglikelihood]:
        raise NotImplementedError("the openai adapter does not provide log-likelihoods")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


def _fingerprint(cfg: ModelConfig) -> str:
    o = cfg.options
    return hash_obj(cfg.adapter, cfg.url, o.model, o.api, o.system_prompt, cfg.version)


# "concurrent": generate() may be called from several threads at once (the live router does so);
# the shared pool still keeps at most ``concurrency`` requests in flight.
@register_adapter("openai", options=OpenAIOptions, fingerprint=_fingerprint, needs="url",
                  capabilities=("generate", "concurrent"))
def load_openai(cfg: ModelConfig) -> OpenAIModel:
    return OpenAIModel(cfg)
