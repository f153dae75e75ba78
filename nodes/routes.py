"""The web widget's routes on the host's server (PromptServer):
GET /sampler_lab/sigmas  a schedule (and, given a sampler, its fresh-noise
                         fraction per step) for the preview;
GET /sampler_lab/info    samplers, their options, schedules, their parameters;
GET /sampler_lab/model   family / process / shift of a checkpoint (read from
                         its header, no weights loaded) or of a ModelSampling*
                         node's settings (the host's node run on a model
                         without a network)."""
import functools
import os

from aiohttp import web

from ..samplers.experts import boundary_sigma, switch_step
from ..schedules.preview import sigmas_for_query
from ..schedules.widget_info import noise_fraction, split_noise_query, widget_info

# loader input name -> the host's model folder it names a file in
MODEL_FOLDERS = {"ckpt_name": "checkpoints", "unet_name": "diffusion_models"}


def preview_boundary(schedule_query, value, unit):
    """The two-expert boundary as a sigma of the preview's model family (its
    own timestep map, as host.expert_boundary reads a real model's)."""
    from ..schedules.preview import family_sampling
    shift = schedule_query.get("shift")
    sampling = family_sampling(schedule_query.get("family") or "sd15",
                               float(shift) if shift not in (None, "") else None)

    def timestep_of(s):
        return float(sampling.timestep([s])[0])
    sig = boundary_sigma(value, unit, sampling.sigma_min, sampling.sigma_max, timestep_of)
    if unit == "timestep":
        direct = float(sampling.sigma([float(value)])[0])
        if direct > 0 and abs(timestep_of(direct) - float(value)) <= 0.5:
            return direct
    return sig


def sigmas_answer(query):
    """The /sampler_lab/sigmas body for a query (a dict of strings); raises
    ValueError naming the bad parameter."""
    query = dict(query)
    boundary = query.pop("boundary", None)
    unit = query.pop("boundary_unit", None) or "timestep"
    schedule_query, noise_query = split_noise_query(query)
    values = sigmas_for_query(schedule_query)
    body = {"sigmas": values}
    if boundary not in (None, ""):
        # two experts: where model_low takes over, for the preview to mark
        sigma_b = preview_boundary(schedule_query, boundary, unit)
        body["boundary_sigma"] = sigma_b
        body["switch_step"] = switch_step(values, sigma_b) if values else 0
    if noise_query is not None:
        family = schedule_query.get("family") or "sd15"
        body["noise_fraction"] = noise_fraction(values, family, noise_query)
    return body


def _model_path(key, name):
    """The file a loader's input names, or ValueError."""
    from . import host

    folder = MODEL_FOLDERS[key]
    path = host.model_file(folder, name)
    if path:
        return path
    raise ValueError(f"{key} {name!r} is not a file in the host's {folder} folder")


def model_answer(query):
    """The /sampler_lab/model body: {"family", "process", "shift", "model",
    "source", ...} for ckpt_name=... or unet_name=... (read from the file's
    header), or node=ModelSampling...&<its widget values>[&ckpt_name=...]
    (the host's node run on a model without a network). Raises ValueError
    for bad input, LookupError when the host does not recognise the file."""
    from . import host

    query = dict(query)
    node = query.pop("node", None)
    base = None
    for key in MODEL_FOLDERS:
        name = query.pop(key, None)
        if name:
            try:
                base = (key, name, _model_path(key, name))
            except ValueError:
                if not node:
                    raise
            break
    if node:
        # the node's sampling on the checkpoint's model where it can be read
        path = base[2] if base and base[2].endswith(".safetensors") else None
        try:
            return dict(host.sampling_node_family(node, query, path), source=node)
        except ValueError:
            raise
        except Exception:  # an unreadable checkpoint: the node on its own
            return dict(host.sampling_node_family(node, query, None), source=node)
    if base is None:
        raise ValueError(f"give one of {', '.join(MODEL_FOLDERS)}, or node=ModelSampling...")
    key, name, path = base
    if not path.endswith(".safetensors") or not os.path.isfile(path):
        raise LookupError(f"only .safetensors headers are read; {name!r} is not one")
    stat = os.stat(path)
    found = _header_family(path, stat.st_mtime_ns, stat.st_size)
    if found is None:
        raise LookupError(f"the host does not recognise the model in {name!r}")
    return dict(found, source=f"{key}: {name}")


@functools.lru_cache(maxsize=64)
def _header_family(path, mtime_ns, size):
    """host.checkpoint_family, once per file version; None if unreadable."""
    from . import host
    try:
        return host.checkpoint_family(path)
    except Exception:  # a damaged or foreign file: the widget keeps its guess
        return None


def register(prompt_server):
    routes = prompt_server.routes

    @routes.get("/sampler_lab/sigmas")
    async def sigmas(request):
        query = dict(request.rel_url.query)
        # soft=1: the widget asks while the user is still typing; an invalid
        # combination is an expected answer there, not a failed request that
        # the browser would log as an error.
        soft = query.pop("soft", "") == "1"
        try:
            body = sigmas_answer(query)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=200 if soft else 400)
        return web.json_response(body)

    @routes.get("/sampler_lab/info")
    async def info(request):
        return web.json_response(widget_info())

    @routes.get("/sampler_lab/model")
    async def model(request):
        query = dict(request.rel_url.query)
        soft = query.pop("soft", "") == "1"
        try:
            body = model_answer(query)
        except (ValueError, LookupError) as exc:
            return web.json_response({"error": str(exc)}, status=200 if soft else 404)
        return web.json_response(body)
    return sigmas
