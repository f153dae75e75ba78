"""Sampler Lab: diffusion samplers and noise schedules for ComfyUI.

This file only registers nodes with the host. The engine (`samplers/`,
`schedules/`) is plain torch and imports without ComfyUI, so tests and the
command-line report load this package outside the host too.
"""
import importlib.util

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
WEB_DIRECTORY = "./web"



def _inside_host():
    # The node layer needs the host; outside it (tests, `python -m sampler_lab`)
    # the engine alone is importable. Asked of `comfy.samplers`, not of a bare
    # `comfy`: any folder named comfy on the path (a ComfyUI checkout's own top
    # folder, say) is a namespace package of that name.
    try:
        return importlib.util.find_spec("comfy.samplers") is not None
    except (ImportError, ValueError):
        return False


if _inside_host():  # pragma: no cover - host only
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F401

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
