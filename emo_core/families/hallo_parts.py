"""The Hallo family's model calls: ReferenceNet rows, CFG inputs, one denoiser call, VAE round trip.

What a Hallo-converted checkpoint computes per clip (numbers equal to Hallo's released
inference; see docs/ARCHITECTURE.md "Hallo variant"):

* CFG batch ``[uncond, cond]``, one joint scale: ``u + s (c - u)``. Uncond inputs: context =
  ``image_projection(zeros)``, face-locator features = 0, audio tokens = 0, masks unchanged; the
  uncond row never reads the reference tokens.
* ReferenceNet once per clip at t = 0 on the reference + motion-frame latents. Hallo runs
  ``2 x (1 + n)`` rows whose cross-attention contexts alternate ``[u, c, u, c, ...]``; here each
  distinct (latents, context) pair runs once (2 rows instead of 6 for the first clip, whose
  motion frames are the reference). The features are rounded to float16 (Hallo's bank dtype).
* Hallo tiles the two reference rows over the ``2 x f`` denoiser rows (``repeat`` on a 3-D
  tensor), so denoiser row r reads the reference of group ``r % 2``: with f even the cond frames
  alternate between the u-context and the c-context reference. Reproduced as per-frame bank
  rows.
* Motion frames: the first clip uses the reference itself; later clips the last ``n`` DECODED
  frames, clamped to [0, 1], mapped back to [-1, 1] and re-encoded (posterior mean x 0.18215).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange

from ..models.reference_net import ReferenceFeatures
from ..models.sites import unet_sites
from .base import LatentFormat

SD15 = LatentFormat(0.18215)


def _round(tensor: torch.Tensor, dtype) -> torch.Tensor:
    return tensor if dtype is None else tensor.to(dtype).to(tensor.dtype)


@torch.no_grad()
def hallo_reference(models, reference: torch.Tensor, motion: torch.Tensor,
                    contexts: torch.Tensor, frames: int,
                    bank_dtype=torch.float16) -> ReferenceFeatures:
    """Reference features for the CFG batch ``[uncond, cond]``.

    ``reference: (1, 4, h, w)``, ``motion: (1, n, 4, h, w)`` latents; ``contexts: (2, L, D)`` =
    ``[uncond, cond]``. Returns the bank (per-frame reference tokens ``(2 f, L, c)``, see the
    module docstring; the uncond rows are never read) and, per temporal site, motion features
    ``(2, n, c, h_i, w_i)`` (None at sites without a spatial transformer).
    """
    n = motion.shape[1]
    latents = torch.cat([reference, motion[0]])  # index 0 = reference, 1..n = motion frames
    # Hallo's rows: group g, position p (0 = reference), context = row index parity.
    # Rows are independent, so each distinct (latents, context) pair runs once: the first clip's
    # motion frames ARE the reference, which makes Hallo's 6 rows 2.
    same = list(range(n + 1)) if latents.is_meta else [
        next(j for j in range(i + 1) if torch.equal(latents[j], latents[i])) for i in range(n + 1)]

    def key(g, p):
        return same[p], (g * (n + 1) + p) % 2

    pairs = sorted({key(g, p) for g in (0, 1) for p in range(n + 1)})
    row_of = {pair: i for i, pair in enumerate(pairs)}
    sample = torch.stack([latents[p] for p, _ in pairs])
    context = torch.stack([contexts[c] for _, c in pairs])
    tokens = models.reference_net.attn1_inputs(sample, context)

    def rows(g, p):
        return row_of[key(g, p)]

    # Denoiser row r (uncond frames, then cond frames) reads the reference of group r % 2.
    per_frame = [rows(r % 2, 0) for r in range(2 * frames)]
    bank = {name: _round(t[per_frame], bank_dtype) for name, t in tokens.items()}
    index = torch.tensor([[rows(g, p) for p in range(1, n + 1)] for g in (0, 1)])
    motion_features = site_motion_features(models, tokens, index, reference.shape[-2:])
    return ReferenceFeatures(bank=bank, motion=[None if f is None else _round(f, bank_dtype)
                                                for f in motion_features])


def site_motion_features(models, tokens: dict, index: torch.Tensor, size) -> list:
    """Per temporal site, the motion-frame features Hallo prepends: the ``attn1`` input tokens
    of the site's first transformer block, rows ``index: (b, n)`` of ``tokens`` (``attn1_inputs``
    output) -> ``(b, n, c, h_i, w_i)``; None at sites without a spatial transformer. ``size``:
    the latent (h, w)."""
    height, width = size
    features = []
    for site in unet_sites(models.backbone.unet):
        if not site.spatial:
            features.append(None)
            continue
        found = tokens[f"{site.block_name}.attentions.{site.index}.transformer_blocks.0.attn1"]
        scale = int(round((height * width / found.shape[1]) ** 0.5))
        features.append(rearrange(found[index.flatten()], "(b n) (h w) c -> b n c h w",
                                  b=index.shape[0], h=height // scale, w=width // scale))
    return features


@dataclass
class HalloClipInputs:
    """Everything one denoiser call needs besides the latents (CFG rows ``[uncond, cond]``)."""

    reference: ReferenceFeatures
    contexts: torch.Tensor  # (2, L, D)
    face: torch.Tensor  # (2, C0, h, w)
    audio: torch.Tensor  # (2, f, K, D)
    masks: tuple
    speed: torch.Tensor | None = None  # (2, f, S, Ds): checkpoints with speed layers only


def clip_inputs(models, conditions, audio_tokens: torch.Tensor,
                reference: torch.Tensor, motion: torch.Tensor, bank_dtype=torch.float16,
                speed_tokens: torch.Tensor | None = None,
                face: torch.Tensor | None = None) -> HalloClipInputs:
    """``audio_tokens: (1, f, K, D)`` (audio projection output), ``speed_tokens: (1, f, S, Ds)``
    (speed encoder output; speed is not a guidance condition: both rows get it) -> the clip's
    CFG inputs. ``face``: the face locator's output for ``conditions.face_region`` when the
    caller already has it (it is the same for every clip of a video)."""
    embedding = conditions.face_embedding
    contexts = models.image_projection(torch.cat([torch.zeros_like(embedding), embedding]))
    # Hallo repeats the face region per frame; the frames are identical: one locator pass.
    if face is None:
        face = models.face_locator(conditions.face_region)
    return HalloClipInputs(
        # Reference keys/values once per clip instead of per step (the Backbone's attn1 fast path).
        reference=models.backbone.project_reference(hallo_reference(
            models, reference, motion, contexts, audio_tokens.shape[1], bank_dtype)),
        contexts=contexts,
        face=torch.cat([torch.zeros_like(face), face]),
        audio=torch.cat([torch.zeros_like(audio_tokens), audio_tokens]),
        masks=clip_masks(conditions.masks, audio_tokens.shape[1]),
        speed=None if speed_tokens is None else torch.cat([speed_tokens, speed_tokens]),
    )


def clip_masks(masks: tuple, frames: int) -> tuple:
    """Region masks for a clip of ``frames`` frames: per-frame masks ``(f, hw)`` of a whole
    clip keep their first ``frames`` rows on a shorter last clip; ``(hw,)`` masks and masks of
    the clip's length are passed through unchanged."""
    def cut(mask):
        mask = torch.as_tensor(mask)
        return mask[:frames] if mask.ndim == 2 and mask.shape[0] > frames else mask

    return tuple([cut(mask) for mask in regional] for regional in masks)


@torch.no_grad()
def hallo_denoise(models, latents: torch.Tensor, timestep, inputs: HalloClipInputs,
                  sampling) -> torch.Tensor:
    """``latents: (1, f, 4, h, w)`` -> model output rows ``[uncond, cond]`` ``(2, f, 4, h, w)``."""
    return models.backbone(
        torch.cat([latents, latents]), timestep, reference=inputs.reference,
        reference_rows=torch.tensor([False, True]), audio_tokens=inputs.audio,
        face_embedding=inputs.face, context=inputs.contexts, audio_masks=inputs.masks,
        speed_tokens=inputs.speed,
        motion_scale=sampling.motion_scale, motion_mode=sampling.motion_mode)


@torch.no_grad()
def encode_pixels(vae, pixels: torch.Tensor, latents: LatentFormat = SD15) -> torch.Tensor:
    """``(k, 3, H, W)`` in [-1, 1] -> posterior-mean model latents ``(k, 4, H/8, W/8)``."""
    return latents.process_in(vae.encode(pixels.to(vae.dtype)).latent_dist.mean)


@torch.no_grad()
def decode_frames(vae, latents: torch.Tensor, fmt: LatentFormat = SD15) -> torch.Tensor:
    """``(k, 4, h, w)`` model latents -> frames ``(k, 3, H, W)`` in [0, 1] (Hallo's ``x / 2 +
    0.5`` clamp)."""
    pixels = vae.decode(fmt.process_out(latents.to(vae.dtype))).sample
    return (pixels / 2 + 0.5).clamp(0, 1)
