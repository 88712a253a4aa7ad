"""EchoMimic v1 per-call pieces: reference bank, guidance rows, one denoiser window call.

EchoMimic's rules reproduced here (see the echomimic_tiny fixture README):

* ReferenceNet runs once per video on the reference latents, batch 1, timestep 0; its banked
  ``norm1`` outputs are rounded to float16 (EchoMimic's ``update()`` casts the bank to fp16 even
  in fp32 runs) and used back in the compute dtype.
* With CFG the window batch is ``[uncond, cond]``: uncond rows attend WITHOUT reference tokens
  and get zero audio tokens and a zero face map (added, i.e. no face); cond rows get all three.
  Without CFG (the acc variant) only the cond row runs.
"""

from __future__ import annotations

import dataclasses

import torch

from ..models.reference_net import ReferenceFeatures


def echo_reference(models, reference_latents: torch.Tensor) -> ReferenceFeatures:
    """``reference_latents: (1, 4, h, w)`` -> bank of fp16-rounded ``(1, L_i, c_i)`` tokens."""
    with torch.inference_mode():
        features = models.reference_net(reference_latents)
    bank = {name: tokens.to(torch.float16).to(tokens.dtype)
            for name, tokens in features.bank.items()}
    return ReferenceFeatures(bank=bank)


def guidance_rows(reference: ReferenceFeatures, guidance: bool) -> ReferenceFeatures:
    """The bank for a window batch: ``[v, v]`` with CFG (row 0 is never read), ``v`` without."""
    if not guidance:
        return reference
    bank = {name: torch.cat([tokens, tokens]) for name, tokens in reference.bank.items()}
    return dataclasses.replace(reference, bank=bank, kv={})


def denoise_window(models, latents: torch.Tensor, timestep, reference: ReferenceFeatures,
                   audio: torch.Tensor, face: torch.Tensor, guidance: bool) -> torch.Tensor:
    """One EchoMimic denoiser call on one context window.

    ``latents: (1, f, 4, h, w)``, ``audio: (1, f, K, D)`` whisper tokens, ``face: (1, C0, h, w)``
    face-locator map, ``reference`` from ``guidance_rows`` -> v-prediction ``(rows, f, 4, h, w)``
    with rows ``[uncond, cond]`` (``guidance``) or ``[cond]``.
    """
    backbone = models.backbone
    dtype = latents.dtype
    if guidance:
        sample = latents.repeat(2, 1, 1, 1, 1)
        audio = torch.cat([torch.zeros_like(audio), audio])
        face = torch.cat([torch.zeros_like(face), face])
        rows = (False, True)
    else:
        sample, rows = latents, (True,)
    return backbone(sample, timestep, reference=reference, reference_rows=rows,
                    face_embedding=face.to(dtype), context=audio.to(dtype))
