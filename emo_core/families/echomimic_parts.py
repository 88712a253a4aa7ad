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


def context_windows(num_frames: int, step: int, context_frames: int = 12,
                    overlap: int = 3) -> list[list[int]]:
    """EchoMimic's sliding windows at denoising step ``step`` (its ``uniform`` schedule with
    stride 1, closed loop, evaluated once, then every index shifted by ``2 * step`` mod F).

    Windows start at ``0, c - o, 2 (c - o), ...`` while the start is ``< F``; indices wrap mod F
    (the last window joins the end to the start). ``F <= c``: one window of every frame (still
    shifted: a cyclic rotation of the frame order, as EchoMimic does)."""
    if num_frames < 1 or context_frames < 1 or not 0 <= overlap < context_frames:
        raise ValueError(f"need num_frames >= 1 and 0 <= overlap < context_frames, got "
                         f"{num_frames}, {context_frames}, {overlap}")
    if num_frames <= context_frames:
        base = [list(range(num_frames))]
    else:
        base = [[i % num_frames for i in range(start, start + context_frames)]
                for start in range(0, num_frames, context_frames - overlap)]
    shift = 2 * step
    return [[(i + shift) % num_frames for i in window] for window in base]


def sliding_predict(models, latents: torch.Tensor, timestep, step: int, reference, audio,
                    face: torch.Tensor, guidance: bool, context_frames: int = 12,
                    overlap: int = 3, cancel=None) -> torch.Tensor:
    """The merged model output of one denoising step over the whole video, one window's
    activations at a time.

    ``latents: (1, F, 4, h, w)``; ``audio``: ``WhisperFeatures`` (``chunks(frames)``);
    ``reference``: from ``guidance_rows``; ``face: (1, C0, h, w)``. Each window's prediction is
    summed into an ``(rows, F, 4, h, w)`` buffer and divided by how many windows hold each frame
    (EchoMimic's uniform average) -> ``(rows, F, 4, h, w)``, rows ``[uncond, cond]`` or ``[cond]``.
    """
    frames = latents.shape[1]
    rows = 2 if guidance else 1
    total = latents.new_zeros(rows, *latents.shape[1:])
    counter = latents.new_zeros(1, frames, 1, 1, 1)
    for window in context_windows(frames, step, context_frames, overlap):
        if cancel is not None and cancel():
            from ..errors import EMOCancelled

            raise EMOCancelled(f"cancelled at step {step + 1}")
        index = torch.tensor(window, device=latents.device)
        tokens = audio.chunks(window)[None].to(latents.device)
        pred = denoise_window(models, latents[:, index], timestep, reference, tokens, face,
                              guidance)
        total[:, index] += pred
        counter[:, index] += 1
    return total / counter
