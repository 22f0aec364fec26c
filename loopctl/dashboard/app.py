"""The dashboard's routes: the page and its assets, JSON views, the live stream, actions.

Reads run in Starlette's thread pool (SQLite calls block), each on a fresh read-only
connection. The live stream (server-sent events) polls the events table's highest number,
a primary-key lookup, every half second and tells the page when it moved; the page then
fetches what it shows again. The model's leave-one-out check (``/api/model-check``) is
fitted in a worker thread of its own (:mod:`.model_check`).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from loopctl.dashboard.actions import TOKEN_HEADER, Gate, Refused, command_body, deliver
from loopctl.dashboard.data import Campaign
from loopctl.dashboard.model_check import ModelCheck
from loopctl.errors import LoopctlError

STATIC = Path(__file__).with_name("static")
POLL_S = 0.5  # how often the live stream looks for new events (the page promises 2 s)
KEEPALIVE_S = 15.0  # a comment line now and then, so proxies keep the stream open


def create_app(db: str, gate: Gate, operator: str | None = None) -> Starlette:
    campaign = Campaign(db)
    model_check = ModelCheck(campaign)
    default_operator = operator or _login()

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def config(request: Request) -> Response:
        return JSONResponse(
            {
                "campaign": campaign.spec.name,
                "actions": gate.actions,
                "read_only_reason": gate.why_read_only,
                "operator": default_operator,
                "objectives": campaign.objectives,
                "parameters": campaign.params,
            }
        )

    async def summary(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(campaign.summary))

    async def series(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(campaign.series))

    async def trials(request: Request) -> Response:
        q = request.query_params
        try:
            page, size = int(q.get("page", "1")), int(q.get("size", "25"))
        except ValueError:
            return JSONResponse({"error": "page and size must be whole numbers"}, 400)
        data = await run_in_threadpool(
            campaign.trials_page,
            page,
            size,
            q.get("sort", "number"),
            q.get("desc", "") in ("1", "true"),
            q.get("status", ""),
            q.get("q", ""),
        )
        return JSONResponse(data)

    async def trial(request: Request) -> Response:
        found = await run_in_threadpool(campaign.trial, request.path_params["tid"])
        if found is None:
            return JSONResponse({"error": "no such trial"}, 404)
        return JSONResponse(found)

    async def loo(request: Request) -> Response:
        # ?compute=1 starts the fit in its worker thread when nothing current is kept
        compute = request.query_params.get("compute", "") in ("1", "true")
        return JSONResponse(await run_in_threadpool(model_check.get, compute))

    async def stream(request: Request) -> Response:
        return StreamingResponse(
            _changes(campaign),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def action(request: Request) -> Response:
        try:
            try:
                form = await request.json()
            except json.JSONDecodeError:
                raise Refused(400, "expected a JSON object") from None
            token = request.headers.get(TOKEN_HEADER) or (
                form.get("token") if isinstance(form, dict) else None
            )
            gate.check(token)
            body = command_body(form)
        except Refused as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, exc.status)
        try:
            done = await run_in_threadpool(deliver, db, body)
        except (LoopctlError, sqlite3.Error) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, 409)
        return JSONResponse({"ok": True, "message": done})

    routes = [
        Route("/", index),
        Route("/api/config", config),
        Route("/api/summary", summary),
        Route("/api/series", series),
        Route("/api/trials", trials),
        Route("/api/trial/{tid}", trial),
        Route("/api/model-check", loo),
        Route("/api/stream", stream),
        Route("/api/action", action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    # the series of a 10,000-trial campaign is about 750 kB of JSON, a fifth of that gzipped
    # (the live stream is not compressed: Starlette's gzip passes text/event-stream through)
    return Starlette(routes=routes, middleware=[Middleware(GZipMiddleware, minimum_size=2000)])


async def _changes(campaign: Campaign) -> AsyncIterator[str]:
    """Server-sent events: ``change`` with the newest event's number whenever it moves."""
    last = -1
    quiet = 0.0
    while True:
        try:
            head = await run_in_threadpool(campaign.head)
        except sqlite3.Error:  # a writer's checkpoint, a moved file: try again shortly
            head = last
        if head != last:
            last = head
            quiet = 0.0
            yield f"event: change\ndata: {json.dumps({'head': head})}\n\n"
        elif quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_S)
        quiet += POLL_S


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def page_weight() -> dict[str, Any]:
    """Bytes of the page's own files (what a first load transfers besides the JSON)."""
    sizes = {p.name: p.stat().st_size for p in sorted(STATIC.iterdir()) if p.is_file()}
    return {"files": sizes, "total": sum(sizes.values())}
