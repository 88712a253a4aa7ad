"""FLOPs per generated frame per step of the Hallo variant at SD1.5 size (meta device, no weights).

Builds the Hallo-variant EMO models from Hallo's released settings (SD1.5 UNet, wav2vec2-base,
audio attention 768, motion heads 8) on the meta device and counts FLOPs with
``torch.utils.flop_counter`` for a clip after the first one (6 ReferenceNet rows, 2 motion frames):

* the denoiser forward as this project runs it (CFG rows [uncond, cond]; the uncond rows never
  compute the reference attention);
* the same forward as Hallo computes it: reference attention on all 32 rows, then the uncond
  rows' self-attention recomputed (their ``attn1`` cost, counted on a run without reference),
  and the motion modules' feed-forward + ``proj_out`` on the 2 prepended motion rows, whose
  output Hallo discards (this project drops those rows after the temporal attentions);
* the per-clip parts (ReferenceNet, projections, face locator, VAE encode of the motion frames
  and decode of the clip), amortised over ``clip x steps``.

    python benchmarks/bench_hallo_flops.py [--size 512] [--steps 40] [--limit 0.92]

Exit code 1 when ours / Hallo's (given figure 3424 GFLOP, measured on Hallo's code) > limit.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.flops_common import count as _count  # noqa: E402

HALLO_GFLOP = 3424.0  # Hallo's pipeline, per generated frame per step, 512 px, 40 steps, CFG 3.5
CLIP, MOTION = 16, 2


def sd15_hallo_configs() -> dict:
    """Hallo's released layout as shapes only (what convert-hallo reads from net.pth)."""
    return hallo_layout_configs("sd15")


def hallo_layout_configs(preset: str = "sd15", unet: dict | None = None,
                         vae: dict | None = None) -> dict:
    """Hallo-variant component configs from ``net.pth``-like shapes for a UNet ``preset``
    ("sd15": Hallo's release; "tiny": the test-sized UNet, for checking this benchmark);
    ``unet``/``vae``: other configs on the preset's wav2vec and token counts (audio modules then
    as wide as their sites)."""
    from emo_core.io.hallo import HALLO_UNET_KWARGS, hallo_configs
    from emo_core.models.presets import unet_config, vae_config, wav2vec2_config

    custom = unet is not None
    unet, wav2vec = unet or unet_config(preset), wav2vec2_config(preset)
    dim, tokens = unet["cross_attention_dim"], (32 if preset == "sd15" else 4)
    shapes = {}
    if preset == "sd15" and not custom:
        # Hallo's audio modules use heads * (block in_channels // heads) as their width.
        inner = {"down_blocks.0": (320, 320), "down_blocks.1": (320, 640),
                 "down_blocks.2": (640, 1280), "mid_block": (1280,), "up_blocks.1": (640,) * 3,
                 "up_blocks.2": (320,) * 3, "up_blocks.3": (320,) * 3}
        shapes.update({f"denoising_unet.{block}.audio_modules.{j}.proj_in.weight": (d, 1, 1, 1)
                       for block, dims in inner.items() for j, d in enumerate(dims)})
    channels = (16, 32, 64, 128)
    shapes["face_locator.conv_in.weight"] = (16, 3, 3, 3)
    for i in range(3):
        shapes[f"face_locator.blocks.{2 * i}.weight"] = (channels[i], channels[i], 3, 3)
        shapes[f"face_locator.blocks.{2 * i + 1}.weight"] = (channels[i + 1], channels[i], 3, 3)
    shapes["face_locator.conv_out.weight"] = (unet["block_out_channels"][0], 128, 3, 3)
    layers, hidden = wav2vec.num_hidden_layers, wav2vec.hidden_size
    shapes.update({"audioproj.proj1.weight": (dim, 5 * layers * hidden),
                   "audioproj.norm.weight": (dim,), "audioproj.proj3.weight": (tokens * dim, dim),
                   "imageproj.proj.weight": (4 * dim, 512), "imageproj.norm.weight": (dim,)})
    kwargs = {**HALLO_UNET_KWARGS, "audio_attention_dim": dim}
    return hallo_configs(shapes, unet, kwargs, {"num_hidden_layers": layers,
                                               "hidden_size": hidden}, vae or vae_config(preset))


def _attn1(counts: dict) -> float:
    """GFLOP of the denoiser's spatial self-attentions (not the audio modules' attn1)."""
    return sum(sum(ops.values()) for name, ops in counts.items()
               if name.endswith(".attn1") and ".attentions." in name) / 1e9


def _motion_rows(counts: dict) -> float:
    """GFLOP Hallo spends on the motion rows after the last temporal attention: per-frame
    feed-forward + ``proj_out`` of every motion module that ran, scaled from CLIP to MOTION rows."""
    tail = re.compile(r"\.motion_modules\.\d+\.temporal_transformer\."
                      r"(transformer_blocks\.0\.ff|proj_out)$")
    return sum(sum(ops.values()) for name, ops in counts.items()
               if tail.search(name)) / 1e9 * MOTION / CLIP


def measure(size: int, steps: int, configs: dict | None = None, device: str = "meta") -> dict:
    """GFLOP per generated frame per step at ``size`` px (``configs``: Hallo-variant component
    configs, default SD1.5 = :func:`sd15_hallo_configs`). ``device`` "meta" counts without
    computing; a real device runs the same calls (tests check both give the same counts)."""
    from emo_core.models.emo_models import EMOModels
    from emo_core.pipeline.hallo import (
        HalloConditions,
        HalloSampling,
        clip_inputs,
        decode_frames,
        encode_pixels,
        hallo_denoise,
    )

    side = size // 8
    configs = configs or sd15_hallo_configs()
    audio_cfg, face_cfg = configs["audio_projection"], configs["image_projection"]
    levels = len(configs["backbone"]["unet"]["block_out_channels"])
    with torch.device(device):
        models = EMOModels.from_configs(configs).eval()
        masks = [[torch.ones(((side >> i) ** 2,)) for i in range(levels)] for _ in range(3)]
        conditions = HalloConditions(torch.ones(1, face_cfg["embedding_dim"]),
                                     torch.ones(1, 3, size, size), *masks)
        reference = torch.ones(1, 4, side, side)
        # Motion frames unlike the reference and each other: a later clip, where all 6
        # ReferenceNet rows differ (on a real device identical rows would run once).
        motion = torch.arange(2.0, 2.0 + MOTION).view(1, MOTION, 1, 1, 1).expand(
            1, MOTION, 4, side, side)
        audio = torch.ones(1, CLIP, audio_cfg["seq_len"], audio_cfg["blocks"],
                           audio_cfg["channels"])
        latents = torch.ones(1, CLIP, 4, side, side)
        pixels = torch.ones(MOTION, 3, size, size)
    sampling = HalloSampling()
    with torch.no_grad():
        state = {}

        def per_clip():
            tokens = models.audio_projection(audio)
            state["inputs"] = clip_inputs(models, conditions, tokens, reference, motion)
            decode_frames(models.vae, latents[0])
            encode_pixels(models.vae, pixels)

        clip_gflop, _ = _count(per_clip)
        inputs = state["inputs"]
        ours, _ = _count(lambda: hallo_denoise(models, latents, 500, inputs, sampling))
        # Hallo itself re-projects the reference keys/values at every step: no precomputed K/V.
        generic = dataclasses.replace(inputs.reference, kv={})
        hallo_all, counts = _count(lambda: models.backbone(
            torch.cat([latents, latents]), 500, reference=generic,
            reference_rows=torch.tensor([True, True]), audio_tokens=inputs.audio,
            face_embedding=inputs.face, context=inputs.contexts, audio_masks=inputs.masks))
        _, plain = _count(lambda: models.backbone(
            torch.cat([latents, latents]), 500, reference=generic,
            reference_rows=torch.tensor([False, False]), audio_tokens=inputs.audio,
            face_embedding=inputs.face, context=inputs.contexts, audio_masks=inputs.masks))
    # + the uncond rows' recomputed self-attention + the discarded motion rows' tail
    hallo = hallo_all + _attn1(plain) / 2 + _motion_rows(counts)
    amortised = clip_gflop / (CLIP * steps)
    return {"ours_denoiser": ours / CLIP, "hallo_denoiser": hallo / CLIP,
            "per_clip_amortised": amortised, "ours_total": ours / CLIP + amortised}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--limit", type=float, default=0.92)
    args = parser.parse_args(argv)
    result = measure(args.size, args.steps)
    ratio = result["ours_total"] / HALLO_GFLOP
    print(f"denoiser, this project: {result['ours_denoiser']:.1f} GFLOP per frame per step")
    print(f"denoiser, as Hallo computes it: {result['hallo_denoiser']:.1f} GFLOP per frame per step")
    print(f"per-clip parts amortised: {result['per_clip_amortised']:.1f} GFLOP per frame per step")
    print(f"total: {result['ours_total']:.1f} GFLOP = {ratio:.3f} x Hallo's {HALLO_GFLOP:.0f}"
          f" (limit {args.limit})")
    return 0 if ratio <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
