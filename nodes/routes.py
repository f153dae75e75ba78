"""GET /sampler_lab/sigmas and /sampler_lab/info on the host's server
(PromptServer routes), for the web widget."""
from aiohttp import web

from ..schedules.preview import preview_info, sigmas_for_query


def register(prompt_server):
    @prompt_server.routes.get("/sampler_lab/sigmas")
    async def sigmas(request):
        query = dict(request.rel_url.query)
        # soft=1: the widget asks while the user is still typing; an invalid
        # combination is an expected answer there, not a failed request that
        # the browser would log as an error.
        soft = query.pop("soft", "") == "1"
        try:
            values = sigmas_for_query(query)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=200 if soft else 400)
        return web.json_response({"sigmas": values})

    @prompt_server.routes.get("/sampler_lab/info")
    async def info(request):
        return web.json_response(preview_info())
    return sigmas
