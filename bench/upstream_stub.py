"""An OpenAI-compatible upstream that answers at once, for the router benchmark (row 7).

Serves ``POST /v1/completions`` and ``POST /v1/chat/completions`` on 127.0.0.1 with a fixed short
answer, and prints ``listening on PORT`` once it accepts connections.

    python bench/upstream_stub.py [--port 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

USAGE = {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}


async def completions(request: Request) -> Response:
    body = await request.json()
    return Response(json.dumps({"id": "stub", "object": "text_completion", "created": 0, "model": body.get("model"),
                                "choices": [{"index": 0, "text": " ok", "finish_reason": "stop"}], "usage": USAGE}),
                    media_type="application/json")


async def chat(request: Request) -> Response:
    body = await request.json()
    return Response(json.dumps({"id": "stub", "object": "chat.completion", "created": 0, "model": body.get("model"),
                                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                             "finish_reason": "stop"}], "usage": USAGE}),
                    media_type="application/json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    port = p.parse_args().port
    app = Starlette(routes=[Route("/v1/completions", completions, methods=["POST"]),
                            Route("/v1/chat/completions", chat, methods=["POST"])])
    # IPPROTO_TCP named, as the router does, so accepted connections get TCP_NODELAY (no 40 ms Nagle stalls)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            print(f"listening on {sock.getsockname()[1]}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


if __name__ == "__main__":
    main()
