"""`GET /health`: whether both zones answer, within about two seconds whatever they do."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import sqlalchemy as sa
from fastapi.responses import JSONResponse
from prefect.logging import get_logger

from zonesync.schemas.errors import short_message
from zonesync.schemas.settings import ZONES, Zone
from zonesync.tasks.zones.engines import health_engine
from zonesync.tasks.zones.profiles import HEALTH_SECONDS

logger = get_logger("zonesync.api")
# /health answers within ~2 s whatever the zones do: each is given this long (its engine gives up by itself soon
# after: psycopg waits at least 2 s to connect).
HEALTH_WAIT_SECONDS = HEALTH_SECONDS + 0.25


async def health() -> JSONResponse:
    """`ok` when both zones answer a trivial query; 503 naming the zone that does not (never its URL).

    Both zones are asked at once, each on its own short-limited engine (`health_engine`), and given up after
    HEALTH_WAIT_SECONDS: a zone that accepts connections and never answers cannot hold the answer up.
    """
    states = await asyncio.gather(*(_zone_state(zone) for zone in ZONES))
    zones = dict(zip(ZONES, states, strict=True))
    healthy = all(state == "up" for state in zones.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "zones": zones}, status_code=200 if healthy else 503
    )


async def _zone_state(zone: Zone) -> str:
    """'up' when the zone answers SELECT 1 within HEALTH_WAIT_SECONDS, else 'down' (the reason is logged).

    The check runs in a thread of its own, not a pool's: checks stuck on a silent zone (each ends within the
    health engine's limits, unawaited) must not hold up the next ones, nor the interpreter's exit.
    """
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[None] = loop.create_future()

    def check() -> None:
        try:
            _select_one(zone)
        except Exception as exc:
            outcome: Exception | None = exc
        else:
            outcome = None
        with contextlib.suppress(RuntimeError):  # the loop is gone (server stopped): nobody is waiting
            loop.call_soon_threadsafe(_answer, answered, outcome)

    threading.Thread(target=check, name=f"zonesync-health-{zone}", daemon=True).start()
    try:
        await asyncio.wait_for(answered, HEALTH_WAIT_SECONDS)
    except TimeoutError:
        logger.warning("health: %s zone is down: no answer within %.1f s", zone, HEALTH_WAIT_SECONDS)
        return "down"
    except Exception as exc:  # any failure means "down" here; the reason goes to the log, scrubbed, values hidden
        logger.warning("health: %s zone is down: %s", zone, short_message(exc))
        return "down"
    return "up"


def _select_one(zone: Zone) -> None:
    with health_engine(zone).connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def _answer(answered: asyncio.Future[None], outcome: Exception | None) -> None:
    if answered.done():  # given up already
        return
    if outcome is None:
        answered.set_result(None)
    else:
        answered.set_exception(outcome)
