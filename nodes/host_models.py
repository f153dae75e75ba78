"""Which model the web preview should assume: the family, process and shift
of a model the host has loaded, of a checkpoint read from its header alone,
or of the host's own ModelSampling* node settings.

Imported by host.py (which the nodes import first); the names stay
importable from host.
"""
import torch

from .host import model_sampling, process_of

def sampling_family(ms, model_name=""):
    """What the web preview needs to know of a model's sampling, as JSON:
    family ("flow" for the host's CONST sampling, "sdxl" for SDXL-class
    models, else "sd15": both VE families share the SD 1.x sigma table),
    process ("flow" / "ve"), shift (flow only: the SD3-form shift s such that
    sigma(t) = s t / (1 + (s - 1) t), read off the model's own sigma at t = 1/2,
    so Flux's exp(mu) form gives the same number), its sigma range and the
    host's model class name."""
    process = process_of(ms)
    out = {"process": process, "model": str(model_name),
           "sigma_min": float(ms.sigma_min), "sigma_max": float(ms.sigma_max), "shift": None}
    if process == "flow":
        out["family"] = "flow"
        half = float(ms.percent_to_sigma(0.5))
        if 0.0 < half < 1.0:
            out["shift"] = float(f"{half / (1.0 - half):.6g}")  # float32 noise off
    else:
        out["family"] = "sdxl" if str(model_name).upper().startswith("SDXL") else "sd15"
    return out


def model_family(model):
    """sampling_family of a ModelPatcher (the model a node was run with)."""
    inner = getattr(model, "model", model)
    return sampling_family(model_sampling(model), type(inner).__name__)


def _header_model(path, prefix=None):
    """(config, BaseModel without its network) of a .safetensors checkpoint or
    diffusion-model file, from its header alone: the host's own model
    detection runs on shape-only (meta) tensors, so no weight is read.
    None where the host does not recognise the file."""
    import comfy.model_detection
    from safetensors import safe_open

    dtypes = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
              "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
              "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
    with safe_open(path, framework="pt", device="cpu") as f:
        metadata = f.metadata()
        state = {}
        for key in f.keys():
            part = f.get_slice(key)
            state[key] = torch.empty(part.get_shape(), device="meta",
                                     dtype=dtypes.get(part.get_dtype(), torch.float32))
    if prefix is None:
        find = getattr(comfy.model_detection, "unet_prefix_from_state_dict", None)
        prefix = find(state) if find is not None else "model.diffusion_model."
    try:
        try:
            config = comfy.model_detection.model_config_from_unet(state, prefix,
                                                                  metadata=metadata)
        except TypeError:  # hosts before the metadata argument
            config = comfy.model_detection.model_config_from_unet(state, prefix)
        if config is None and prefix:  # a bare diffusion-model file
            return _header_model(path, prefix="")
        if config is None:
            return None
        # The model class decides the sampling (SD3's is flow whatever the
        # config says); built without its network, as the tests' models are.
        config.unet_config["disable_unet_model_creation"] = True
        return config, config.get_model(state, prefix, device=torch.device("cpu"))
    except (KeyError, IndexError, AttributeError, RuntimeError, ValueError, TypeError):
        return None


def checkpoint_family(path):
    """sampling_family of a .safetensors checkpoint or diffusion-model file,
    read from its header (see _header_model); None if not recognised."""
    found = _header_model(path)
    if found is None:
        return None
    config, model = found
    return sampling_family(model.model_sampling, type(config).__name__)


def sampling_node_family(class_type, values, base_path=None):
    """sampling_family after the host's own ModelSampling* node `class_type`
    ran with `values` (its widget values, as strings) on a model without a
    network: the checkpoint's at base_path, else an SD1.5-type one. Raises
    ValueError for a node that is not a ModelSampling* node or bad values."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    import nodes

    cls = nodes.NODE_CLASS_MAPPINGS.get(class_type)
    if cls is None or not class_type.startswith("ModelSampling"):
        raise ValueError(f"node must be a ModelSampling* node of this host, got {class_type!r}")
    found = _header_model(base_path) if base_path else None
    model_name = type(found[0]).__name__ if found else class_type
    if found is None:
        config = comfy.supported_models.SD15({"disable_unet_model_creation": True})
        found = config, comfy.model_base.BaseModel(config, comfy.model_base.ModelType.EPS,
                                                   device=torch.device("cpu"))
    config, base = found
    cpu = torch.device("cpu")
    model = comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)
    inputs = {}
    for group in ("required", "optional"):
        for name, decl in cls.INPUT_TYPES().get(group, {}).items():
            if name == "model" or name not in values:
                continue
            kind, raw = decl[0], values[name]
            try:
                if kind == "FLOAT":
                    inputs[name] = float(raw)
                elif kind == "INT":
                    inputs[name] = int(float(raw))
                elif kind == "BOOLEAN":
                    inputs[name] = str(raw).lower() in ("true", "1")
                elif isinstance(kind, (list, tuple)):
                    if raw not in kind:
                        raise ValueError
                    inputs[name] = raw
            except ValueError:
                raise ValueError(f"{class_type}.{name}: bad value {raw!r}") from None
    try:
        patched = getattr(cls(), cls.FUNCTION)(model=model, **inputs)[0]
    except (TypeError, KeyError, AttributeError, RuntimeError) as exc:
        raise ValueError(f"{class_type} could not run on its own: {exc}") from None
    return sampling_family(model_sampling(patched), model_name)


def model_file(folder, name):
    """The full path of `name` in the host's model folder `folder` (for
    diffusion_models also the older hosts' "unet"), or None."""
    import folder_paths

    for candidate in (folder, "unet") if folder == "diffusion_models" else (folder,):
        try:
            path = folder_paths.get_full_path(candidate, name)
        except KeyError:  # a folder name this host does not know
            path = None
        if path:
            return path
    return None
