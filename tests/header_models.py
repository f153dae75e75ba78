"""Checkpoints that are only a header: the tensor names, shapes and dtypes
of a real SD1.5-type UNet (and, on hosts with flow models, a small SD3-type
MMDiT), built by the host's own model classes on the meta device, written
as .safetensors whose data region is a hole (a sparse file: a few KB on
disk). Enough for anything that reads the header (the host's model
detection, our /sampler_lab/model route); loading the weights would read
zeros.

    python tests/header_models.py <ComfyUI dir> <out dir>   # prints the file names
"""
import json
import os
import struct
import sys

# safetensors' dtype names (its format: 8-byte little-endian header length,
# the JSON header, then the data, offsets relative to the data's start)
DTYPES = {"torch.float16": ("F16", 2), "torch.float32": ("F32", 4),
          "torch.bfloat16": ("BF16", 2)}

# The SD 1.x UNet, as published (320 channels, multipliers 1-2-4-4, two
# res blocks per level, attention on the first three levels, CLIP-L context 768).
SD15_UNET = dict(use_checkpoint=False, image_size=32, out_channels=4,
                 use_spatial_transformer=True, legacy=False, adm_in_channels=None,
                 in_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                 transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], channel_mult=[1, 2, 4, 4],
                 transformer_depth_middle=1, use_linear_in_transformer=False,
                 context_dim=768, num_heads=8,
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
                 use_temporal_attention=False, use_temporal_resblock=False)


def write_header_only(path, tensors, metadata=None):
    """tensors: name -> torch tensor (any device, meta included). Writes
    the header and leaves the data region a hole of the right length."""
    header, offset = {}, 0
    for name in sorted(tensors):
        t = tensors[name]
        code, size = DTYPES[str(t.dtype)]
        n = size
        for d in t.shape:
            n *= int(d)
        header[name] = {"dtype": code, "shape": [int(d) for d in t.shape],
                        "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        f.truncate(8 + len(blob) + offset)


def _meta_state(module, prefix):
    return {prefix + k: v for k, v in module.state_dict().items()}


def build(host_dir, out_dir):
    sys.path.insert(0, str(host_dir))
    try:
        import comfy.options
        comfy.options.enable_args_parsing()
    except (ImportError, AttributeError):
        pass
    sys.argv = ["main.py", "--cpu"]
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import torch
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    os.makedirs(out_dir, exist_ok=True)
    written = {}
    ops = comfy.ops.disable_weight_init
    with torch.device("meta"):
        unet = UNetModel(**SD15_UNET, dtype=torch.float16, device="meta", operations=ops)
    path = os.path.join(out_dir, "header_only_sd15.safetensors")
    write_header_only(path, _meta_state(unet, "model.diffusion_model."))
    written["sd15"] = os.path.basename(path)
    try:
        from comfy.ldm.modules.diffusionmodules.mmdit import OpenAISignatureMMDITWrapper
    except ImportError:  # a host without SD3 / flow models
        return written
    depth = 2  # the host reads depth from the hidden size (64 per block)
    with torch.device("meta"):
        mmdit = OpenAISignatureMMDITWrapper(
            in_channels=16, out_channels=16, patch_size=2, depth=depth,
            adm_in_channels=2048, pos_embed_max_size=8, num_patches=64,
            context_embedder_config={"target": "torch.nn.Linear",
                                     "params": {"in_features": 4096,
                                                "out_features": 64 * depth}},
            dtype=torch.float16, device="meta", operations=ops)
    path = os.path.join(out_dir, "header_only_sd3.safetensors")
    write_header_only(path, _meta_state(mmdit, "model.diffusion_model."))
    written["sd3"] = os.path.basename(path)
    return written


if __name__ == "__main__":
    print(json.dumps(build(sys.argv[1], sys.argv[2])))
