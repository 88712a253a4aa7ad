"""EchoMimic v1 FLOPs per generated frame over all steps (meta device, no weights), at each
variant's defaults: normal 30 steps x 2 CFG rows, acc 6 steps x 1 row.

The SD1.5-size EchoMimic models (the SD1.5 UNet layout with cross_attention_dim 384, 8 motion
heads, EchoMimic's FaceLocator(320, 1, (16, 32, 96, 256)), whisper-tiny's encoder, the SD VAE)
are built on the meta device and counted with :mod:`benchmarks.flops_common`:

* per step, one sliding window (12 frames, ``denoise_window``: the Backbone over the window's
  rows), times the windows per frame of a long video: windows start every 12 - 3 = 9 frames,
  so each frame is denoised 12 / 9 times per step;
* per frame: the VAE decode of one frame; whisper's encoder on one 30 s segment / 750 frames
  (at ``fps`` 25); per video (ReferenceNet, face locator): left out (they vanish per frame).
"""

from __future__ import annotations

import torch

from benchmarks.flops_common import count
from emo_core.io.echomimic import ECHOMIMIC_SAMPLING, echomimic_configs
from emo_core.models.presets import unet_config, vae_config

WHISPER_TINY = {"num_mel_bins": 80, "max_source_positions": 1500, "d_model": 384,
                "encoder_attention_heads": 6, "encoder_layers": 4, "encoder_ffn_dim": 1536}
FACE_LOCATOR = {"conv_in.weight": (16, 1, 3, 3), "blocks.1.weight": (32, 16, 3, 3),
                "blocks.3.weight": (96, 32, 3, 3), "blocks.5.weight": (256, 96, 3, 3),
                "conv_out.weight": (320, 256, 3, 3)}
TIMESTEP = 500


def build_models(variant: str = "acc", preset: str = "sd15", device: str = "meta"):
    """EchoMimicModels of the release's layout (``preset`` "tiny": the test-size UNet/VAE)."""
    from emo_core.models.echomimic_models import EchoMimicModels

    unet = unet_config(preset)
    face = {**FACE_LOCATOR, "conv_out.weight": (unet["block_out_channels"][0], 256, 3, 3)}
    configs = echomimic_configs(unet, face, WHISPER_TINY, vae_config(preset),
                                variant)
    with torch.device(device):
        return EchoMimicModels.from_configs(configs).eval()


def measure(models, variant: str, size: int = 512, fps: float = 25.0, context: int = 12,
            overlap: int = 3) -> dict:
    """GFLOP per generated frame over all of the variant's steps, split by part."""
    from emo_core.families.echomimic_parts import denoise_window
    from emo_core.io.whisper import run_layers
    from emo_core.models.reference_net import ReferenceFeatures

    sampling = ECHOMIMIC_SAMPLING[variant]
    guidance = sampling["guidance_scale"] > 1.0
    rows = 2 if guidance else 1
    side = size // 8
    device = next(models.backbone.parameters()).device
    latents = torch.ones(1, context, 4, side, side, device=device)
    audio = torch.ones(1, context, 10 * (WHISPER_TINY["encoder_layers"] + 1), 384, device=device)
    face = torch.ones(1, models.face_locator.config.embedding_channels, side, side,
                      device=device)
    with torch.no_grad():
        bank = models.reference_net(torch.ones(1, 4, side, side, device=device)).bank
        reference = ReferenceFeatures(bank={k: v.expand(rows, *v.shape[1:]) for k, v in
                                            bank.items()})
        window, _ = count(lambda: denoise_window(models, latents, TIMESTEP, reference, audio,
                                                 face, guidance))
        vae, _ = count(lambda: models.vae.decode(latents[0, :1]))
        whisper, _ = count(lambda: run_layers(models.whisper, torch.ones(1, 80, 3000,
                                                                          device=device)))
    per_step = window / context * context / (context - overlap)
    split = {"backbone": per_step * sampling["steps"], "vae_decode": vae,
             "whisper": whisper / (30 * fps)}
    return {"family": "echomimic", "variant": variant, "size": size,
            "steps": sampling["steps"], "rows": rows, "windows_per_frame_step":
            round(context / (context - overlap), 4), "split": split,
            "gflops_per_frame": sum(split.values())}


def lines(size: int = 512, preset: str = "sd15", device: str = "meta"):
    for variant in ("normal", "acc"):
        result = measure(build_models(variant, preset, device), variant, size)
        yield {**result, "gflops_per_frame": round(result["gflops_per_frame"], 1),
               "split": {k: round(v, 2) for k, v in result["split"].items()}}
