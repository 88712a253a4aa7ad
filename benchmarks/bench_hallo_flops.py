"""FLOPs per generated frame per step of the Hallo variant at SD1.5 size (meta device, no weights).

Builds the Hallo-variant EMO models from Hallo's released settings (SD1.5 UNet, wav2vec2-base,
audio attention 768, motion heads 8) on the meta device and counts FLOPs with
``torch.utils.flop_counter`` for a clip after the first one (6 ReferenceNet rows, 2 motion frames):

* the denoiser forward as this project runs it (CFG rows [uncond, cond]; the uncond rows never
  compute the reference attention);
* the same forward as Hallo computes it: reference attention on all 32 rows, then the uncond
  rows' self-attention recomputed (their ``attn1`` cost, counted on a run without reference);
* the per-clip parts (ReferenceNet, projections, face locator, VAE encode of the motion frames
  and decode of the clip), amortised over ``clip x steps``.

    python benchmarks/bench_hallo_flops.py [--size 512] [--steps 40] [--limit 0.92]

Exit code 1 when ours / Hallo's (given figure 3424 GFLOP, measured on Hallo's code) > limit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HALLO_GFLOP = 3424.0  # Hallo's pipeline, per generated frame per step, 512 px, 40 steps, CFG 3.5
CLIP, MOTION = 16, 2


def sd15_hallo_configs() -> dict:
    """Hallo's released layout as shapes only (what convert-hallo reads from net.pth)."""
    from emo_core.io.hallo import hallo_configs
    from emo_core.models.presets import unet_config, vae_config

    # Hallo's audio modules use heads * (block in_channels // heads) as their width.
    inner = {"down_blocks.0": (320, 320), "down_blocks.1": (320, 640),
             "down_blocks.2": (640, 1280), "mid_block": (1280,), "up_blocks.1": (640,) * 3,
             "up_blocks.2": (320,) * 3, "up_blocks.3": (320,) * 3}
    shapes = {f"denoising_unet.{block}.audio_modules.{j}.proj_in.weight": (d, 1, 1, 1)
              for block, dims in inner.items() for j, d in enumerate(dims)}
    channels = (16, 32, 64, 128)
    shapes["face_locator.conv_in.weight"] = (16, 3, 3, 3)
    for i in range(3):
        shapes[f"face_locator.blocks.{2 * i}.weight"] = (channels[i], channels[i], 3, 3)
        shapes[f"face_locator.blocks.{2 * i + 1}.weight"] = (channels[i + 1], channels[i], 3, 3)
    shapes["face_locator.conv_out.weight"] = (320, 128, 3, 3)
    shapes.update({"audioproj.proj1.weight": (768, 5 * 12 * 768), "audioproj.norm.weight": (768,),
                   "audioproj.proj3.weight": (32 * 768, 768),
                   "imageproj.proj.weight": (4 * 768, 512), "imageproj.norm.weight": (768,)})
    return hallo_configs(shapes, unet_config("sd15"), None,
                         {"num_hidden_layers": 12, "hidden_size": 768}, vae_config("sd15"))


def _count(fn) -> tuple[float, dict]:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9, counter.get_flop_counts()


def _attn1(counts: dict) -> float:
    """GFLOP of the denoiser's spatial self-attentions (not the audio modules' attn1)."""
    return sum(sum(ops.values()) for name, ops in counts.items()
               if name.endswith(".attn1") and ".attentions." in name) / 1e9


def measure(size: int, steps: int) -> dict:
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
    with torch.device("meta"):
        models = EMOModels.from_configs(sd15_hallo_configs()).eval()
        masks = [[torch.ones(((side >> i) ** 2,)) for i in range(4)] for _ in range(3)]
        conditions = HalloConditions(torch.ones(1, 512), torch.ones(1, 3, size, size), *masks)
        reference = torch.ones(1, 4, side, side)
        motion = torch.ones(1, MOTION, 4, side, side)
        audio = torch.ones(1, CLIP, 5, 12, 768)
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
        hallo_all, _ = _count(lambda: models.backbone(
            torch.cat([latents, latents]), 500, reference=inputs.reference,
            reference_rows=torch.tensor([True, True]), audio_tokens=inputs.audio,
            face_embedding=inputs.face, context=inputs.contexts, audio_masks=inputs.masks))
        _, plain = _count(lambda: models.backbone(
            torch.cat([latents, latents]), 500, reference=inputs.reference,
            reference_rows=torch.tensor([False, False]), audio_tokens=inputs.audio,
            face_embedding=inputs.face, context=inputs.contexts, audio_masks=inputs.masks))
    hallo = hallo_all + _attn1(plain) / 2  # + the uncond rows' recomputed self-attention
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
