"""GET /sampler_lab/sigmas on the host's server (PromptServer routes)."""
from aiohttp import web

from ..schedules.preview import sigmas_for_query


def register(prompt_server):
    @prompt_server.routes.get("/sampler_lab/sigmas")
    async def sigmas(request):
        try:
            values = sigmas_for_query(dict(request.rel_url.query))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"sigmas": values})
    return sigmas
