"""The on-disk cache of the nodes that fit something to the user's model
(Optimize Schedule, Tune Sampler): keys from the model's weights and the
conditioning, JSON entries in ComfyUI's user folder, written atomically.

Host-touching (folder_paths); one copy for every fitting node.
"""
import hashlib
import json
import os

import torch

from . import host


def _tensor_digest(h, t, samples=64):
    """Shape, dtype and evenly spaced values of a tensor: cheap, and enough
    to tell checkpoints apart without reading gigabytes of weights."""
    h.update(f"{tuple(t.shape)}{t.dtype}".encode())
    flat = t.detach().reshape(-1)
    if flat.numel():
        stride = max(1, flat.numel() // samples)
        h.update(flat[::stride][:samples].to("cpu", torch.float64).numpy().tobytes())


def model_fingerprint(model):
    """Identity of a ModelPatcher: its class, sampling, a sample of its
    weights and the strengths of its patches (LoRAs)."""
    h = hashlib.sha256()
    inner = getattr(model, "model", model)
    ms = host.model_sampling(model)
    h.update(f"{type(inner).__name__}|{type(ms).__name__}|{float(ms.sigma_min):.8g}|"
             f"{float(ms.sigma_max):.8g}".encode())
    state = inner.state_dict() if hasattr(inner, "state_dict") else {}
    names = sorted(state)
    step = max(1, len(names) // 64)
    for name in names[::step]:
        h.update(name.encode())
        _tensor_digest(h, state[name])
    for key in sorted(getattr(model, "patches", {}) or {}):
        h.update(str(key).encode())
        for patch in model.patches[key]:
            strength = patch[0] if isinstance(patch, (tuple, list)) and patch else None
            h.update(repr(strength).encode())
    return h.hexdigest()


def conditioning_fingerprint(conditioning):
    h = hashlib.sha256()
    for item in conditioning or []:
        tensor, extras = (item[0], item[1]) if len(item) > 1 else (item[0], {})
        if torch.is_tensor(tensor):
            _tensor_digest(h, tensor, samples=256)
        for key in sorted(extras):
            h.update(str(key).encode())
            value = extras[key]
            if torch.is_tensor(value):
                _tensor_digest(h, value, samples=256)
            elif isinstance(value, (int, float, str, bool)) or value is None:
                h.update(repr(value).encode())
    return h.hexdigest()


def cache_dir(kind="schedules"):
    """<ComfyUI user folder>/sampler_lab/<kind> (the temp folder is wiped
    at every server start)."""
    import folder_paths
    getter = getattr(folder_paths, "get_user_directory", None)
    base = getter() if getter is not None else getattr(folder_paths, "user_directory", None)
    if base is None:
        base = folder_paths.get_temp_directory()
    return os.path.join(base, "sampler_lab", kind)


def key_digest(key):
    """A file name stem for a JSON-safe key (sorted, so order-free)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def entry_path(kind, key):
    return os.path.join(cache_dir(kind), f"{key_digest(key)}.json")


def read_entry(path):
    """The JSON object at path, or None where it is absent or damaged (the
    caller then computes again)."""
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
    except (OSError, ValueError, TypeError):
        return None
    return entry if isinstance(entry, dict) else None


def write_entry(path, entry):
    """Writes entry as JSON; readers never see half a file (a temporary file,
    then an atomic rename). A read-only user folder is reported, not raised:
    it costs a re-run, not the result. Returns whether it was written."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(entry, f, indent=1)
        os.replace(tmp, path)
        return True
    except OSError as exc:
        print(f"[Sampler Lab] could not write the cache entry {path}: {exc}")
        try:
            os.remove(tmp)
        except OSError:
            pass
        return False
