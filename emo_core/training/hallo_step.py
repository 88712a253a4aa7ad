"""Training forward of a Hallo-variant checkpoint (``train --stage 3`` after
``init-checkpoint --from-hallo``): Hallo's conditioning, one sample per row, no CFG batching.

Per sample, as Hallo's own training feeds its networks: the ReferenceNet runs at t = 0 on the
reference and the motion frames with the face-identity tokens as context; the reference row's
``attn1`` inputs are the bank and the motion rows' ``attn1`` inputs are prepended to the motion
modules; the face locator reads the face region; audio modules get full / face / lip masks.

The training shards carry a face box per frame but no insightface embedding and no landmarks,
so: the identity tokens are ``image_projection(zeros)`` (Hallo's unconditional tokens), and the
masks come from the box (face = box, lip = its lower-middle part, full = outside the box),
area-resized to each UNet level. Condition dropout maps onto Hallo's unconditional inputs:
dropped reference -> no reference tokens, dropped audio -> zero audio tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import repeat

from ..families.hallo_parts import site_motion_features
from ..models.reference_net import ReferenceFeatures


def box_region_masks(mask: torch.Tensor, latent: int, levels: int, frames: int):
    """``mask: (b, 1, S, S)`` 0/1 face box -> (full, face, lip) lists of ``(b, f, r*r)`` per
    level (r = latent / 2**i)."""
    rows = mask.amax(dim=3, keepdim=True)  # (b, 1, S, 1): rows inside the box
    cols = mask.amax(dim=2, keepdim=True)  # (b, 1, 1, S)
    index = torch.arange(mask.shape[-1], device=mask.device, dtype=mask.dtype)
    top, bottom = _extent(rows.flatten(1), index)
    left, right = _extent(cols.flatten(1), index)
    height, width = (bottom - top)[:, None], (right - left)[:, None]
    lip_rows = (index >= top[:, None] + 2 * height / 3) & (index <= bottom[:, None])
    lip_cols = (index >= left[:, None] + width / 4) & (index <= right[:, None] - width / 4)
    lip = mask * (lip_rows[:, None, :, None] & lip_cols[:, None, None, :]).to(mask.dtype)
    regions = (1 - mask, mask - lip, lip)  # Hallo: full = background, face = face minus lip
    out = []
    for region in regions:
        per_level = []
        for i in range(levels):
            size = max(1, latent // 2 ** i)
            small = F.interpolate(region, size=(size, size), mode="area").flatten(1)
            per_level.append(repeat(small, "b d -> b f d", f=frames))
        out.append(per_level)
    return tuple(out)


def _extent(inside: torch.Tensor, index: torch.Tensor):
    """First / last index where ``inside: (b, S)`` is 1 (0 / 0 for an empty row)."""
    big = index.numel()
    first = torch.where(inside > 0, index, torch.full_like(index, big)).amin(dim=1)
    last = torch.where(inside > 0, index, torch.full_like(index, -1)).amax(dim=1)
    empty = last < 0
    return first.masked_fill(empty, 0), last.masked_fill(empty, 0)


def hallo_training_reference(models, reference_latents: torch.Tensor,
                             motion_latents: torch.Tensor | None, context: torch.Tensor,
                             motion_keep: torch.Tensor | None) -> ReferenceFeatures:
    """``reference_latents: (b, 4, h, w)``, ``motion_latents: (b, n, 4, h, w) | None``,
    ``context: (b, L, D)`` -> bank ``(b, L_i, c_i)`` + per-site motion features."""
    batch = reference_latents.shape[0]
    rows, contexts = [reference_latents], [context]
    n = 0 if motion_latents is None else motion_latents.shape[1]
    if n:
        rows.append(motion_latents.flatten(0, 1).to(reference_latents.dtype))
        contexts.append(repeat(context, "b l d -> (b n) l d", n=n))
    tokens = models.reference_net.attn1_inputs(torch.cat(rows), torch.cat(contexts))
    bank = {name: t[:batch] for name, t in tokens.items()}
    if not n:
        return ReferenceFeatures(bank=bank, motion=None)
    index = batch + torch.arange(batch * n).view(batch, n)
    motion = site_motion_features(models, tokens, index, reference_latents.shape[-2:])
    if motion_keep is not None:  # dropped motion frames: zero features (a first clip's start)
        keep = motion_keep.to(reference_latents.dtype).view(-1, 1, 1, 1, 1)
        motion = [None if m is None else m * keep for m in motion]
    return ReferenceFeatures(bank=bank, motion=motion)


def hallo_forward(models, noisy, timesteps, reference_latents, motion_latents, mask, audio,
                  speed, reference_rows, audio_rows, motion_keep):
    """Same arguments as ``EMOTrainingModule.forward`` -> prediction ``(b, f, 4, h, w)``."""
    batch, frames = noisy.shape[:2]
    projection = models.image_projection
    identity = noisy.new_zeros(batch, projection.config.embedding_dim)
    context = projection(identity)
    reference = hallo_training_reference(models, reference_latents, motion_latents, context,
                                         motion_keep)
    audio_tokens = None
    if audio is not None:
        audio_tokens = models.audio_projection(audio)
        if audio_rows is not None:
            audio_tokens = audio_tokens * audio_rows.to(audio_tokens.dtype).view(-1, 1, 1, 1)
    speed_tokens = None
    if speed is not None and models.speed_encoder is not None:
        speed_tokens = models.speed_encoder(speed)
    channels = models.face_locator.config.conditioning_channels
    face = models.face_locator(mask.expand(-1, channels, -1, -1))
    unet = models.backbone.unet
    masks = box_region_masks(mask, noisy.shape[-1], len(unet.config.block_out_channels),
                             frames)
    return models.backbone(
        noisy, timesteps, reference=reference, reference_rows=reference_rows,
        audio_tokens=audio_tokens, speed_tokens=speed_tokens, face_embedding=face, context=context,
        audio_masks=masks, motion_scale=(1.0, 1.0, 1.0))
