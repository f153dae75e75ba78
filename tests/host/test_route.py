"""GET /sampler_lab/sigmas on the real host's PromptServer (aiohttp test
client): values equal schedules.get_sigmas; bad queries get 400 with a
message, never a traceback."""
import asyncio

import pytest

from hostlib import comfy  # noqa: F401  (fixture)

BAD = ["steps=20", "scheduler=nope&steps=20", "scheduler=karras",
       "scheduler=karras&steps=0", "scheduler=karras&steps=99999",
       "scheduler=karras&steps=ten", "scheduler=karras&steps=10&denoise=nan",
       "scheduler=karras&steps=10&family=sd9", "scheduler=karras&steps=10&rho=inf",
       "scheduler=karras&steps=10&alpha=0.5"]


def _fetch(queries, route="sigmas"):
    import server
    from aiohttp.test_utils import TestClient, TestServer

    from sampler_lab.nodes import routes

    async def go():
        ps = server.PromptServer(asyncio.get_running_loop())
        routes.register(ps)
        ps.add_routes()
        out = []
        async with TestClient(TestServer(ps.app)) as client:
            for q in queries:
                r = await client.get(f"/sampler_lab/{route}?{q}")
                out.append((r.status, await r.json()))
        return out
    return asyncio.run(go())


def test_route_values_and_errors(comfy):
    from sampler_lab import schedules
    results = _fetch(["scheduler=karras&steps=12&rho=5",
                      "scheduler=exponential&steps=6&denoise=0.5"] + BAD)
    (s1, b1), (s2, b2) = results[:2]
    assert s1 == 200 and b1["sigmas"] == schedules.get_sigmas("karras", 12, rho=5.0).tolist()
    assert s2 == 200 and b2["sigmas"] == schedules.get_sigmas("exponential", 12)[-7:].tolist()
    for q, (status, body) in zip(BAD, results[2:]):
        assert status == 400 and body.get("error"), (q, status, body)
        assert "Traceback" not in body["error"]
    # the widget's soft mode: the same messages with 200, and no sigmas
    soft = _fetch([q + "&soft=1" for q in BAD] + ["scheduler=karras&steps=3&soft=1"])
    for (status, body), (_, hard) in zip(soft, results[2:]):
        assert status == 200 and body == hard
    assert soft[-1][1]["sigmas"] == schedules.get_sigmas("karras", 3).tolist()


def test_info_route(comfy):
    from sampler_lab.schedules.widget_info import widget_info
    [(status, body)] = _fetch([""], route="info")
    assert status == 200 and body == widget_info()
