"""Core ComfyUI values <-> the numpy / torch shapes emo_core takes.

IMAGE ``(B, H, W, C)`` float 0..1, MASK ``(B, H, W)`` float, AUDIO ``{"waveform": (B, C, T),
"sample_rate": int}``, LATENT ``{"samples": (F, 4, h, w)}`` in VAE space (unscaled, the SD1.5
convention of ComfyUI, so a core VAE Decode node reads EMO latents correctly).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from emo_core.errors import EMOInputError
from emo_core.image import to_rgb_uint8

logger = logging.getLogger(__name__)


def image_frames(images: torch.Tensor, name: str) -> list[np.ndarray]:
    """IMAGE ``(B, H, W, C)`` -> ``B`` arrays ``(H, W, 3)`` uint8 (RGBA / grey accepted)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = getattr(images, "shape", type(images).__name__)
        raise EMOInputError(f"{name}: expected an IMAGE batch (B, H, W, C), got {shape}")
    if images.shape[0] == 0:
        raise EMOInputError(f"{name}: the IMAGE batch is empty; connect at least one image")
    return [to_rgb_uint8(frame, name) for frame in images]


def first_image(images: torch.Tensor, name: str) -> np.ndarray:
    """First image of a batch as ``(H, W, 3)`` uint8; extra images are ignored with a warning."""
    if isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[0] > 1:
        logger.warning("%s: batch of %d images, using the first", name, images.shape[0])
        images = images[:1]
    return image_frames(images, name)[0]


def uint8_to_image(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` (or ``(H, W, 3)``) uint8 -> IMAGE ``(B, H, W, 3)`` float32 0..1 on CPU."""
    if isinstance(frames, np.ndarray):
        array = np.ascontiguousarray(frames)
        # torch warns on read-only arrays (PIL buffers, cached node outputs): copy those.
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    else:
        tensor = frames.cpu()
    if tensor.ndim == 3:
        tensor = tensor[None]
    return tensor.to(torch.float32) / 255.0


def with_fps(images, fps: float):
    """Tag an IMAGE tensor with the fps its frames were cut at (``images.emo_fps``), as the
    sampler's LATENT carries ``emo_fps``: Frames to Video refuses another fps on either path.
    ComfyUI hands the same tensor object to the next node, so the tag travels with it."""
    if isinstance(images, torch.Tensor):
        images.emo_fps = float(fps)
    return images


def image_to_uint8(images: torch.Tensor) -> np.ndarray:
    """IMAGE ``(B, H, W, C)`` float 0..1 -> ``(B, H, W, 3)`` uint8 (extra channels dropped)."""
    values = images[..., :3].detach().float().clamp(0, 1).cpu().numpy()
    return np.rint(values * 255.0).astype(np.uint8)


def core_vae_frames(vae, samples: torch.Tensor, batch: int):
    """Core VAE decode in chunks: ``samples (F, 4, h, w)`` in VAE space (ComfyUI's LATENT
    convention) -> yields ``(j, 8h, 8w, 3)`` uint8, ``batch`` frames at a time."""
    for start in range(0, samples.shape[0], batch):
        yield image_to_uint8(vae.decode(samples[start:start + batch]))


def audio_waveform(audio, name: str = "audio") -> tuple[torch.Tensor, int]:
    """AUDIO dict -> (waveform ``(C, T)`` float32 CPU, sample_rate); first item of a batch."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise EMOInputError(
            f"{name}: expected a ComfyUI AUDIO value {{'waveform': (B, C, T), 'sample_rate'}}, "
            f"got {type(audio).__name__}; connect a Load Audio node"
        )
    from emo_core.audio.waveform import channels_first, check_sample_rate

    try:  # one clip only (a batch of 2 would silently lose the second), int PCM scaled
        waveform = channels_first(audio["waveform"])
        rate = check_sample_rate(audio["sample_rate"])
    except EMOInputError as error:
        raise EMOInputError(f"{name}: {error}") from None
    return waveform, rate


def waveform_to_audio(waveform: torch.Tensor | np.ndarray, sample_rate: int) -> dict:
    """``(T,)`` or ``(C, T)`` -> AUDIO ``{"waveform": (1, C, T), "sample_rate"}``."""
    wave = torch.as_tensor(np.asarray(waveform), dtype=torch.float32)
    while wave.ndim < 3:
        wave = wave[None]
    return {"waveform": wave, "sample_rate": int(sample_rate)}


def mask_to_array(mask: torch.Tensor, size: int) -> np.ndarray:
    """MASK ``(B, H, W)`` or ``(H, W)`` -> ``(size, size)`` float32 0..1 (first mask, resized).

    A mask of another resolution is resized bilinearly: Face Locator masks are boxes, so
    interpolation only softens their edge by a pixel.
    """
    tensor = torch.as_tensor(mask).detach().float().cpu()
    if tensor.ndim == 3:
        tensor = tensor[:1]
    elif tensor.ndim == 2:
        tensor = tensor[None]
    else:
        raise EMOInputError(f"face_mask: expected a MASK (B, H, W), got {tuple(tensor.shape)}")
    if tensor.shape[-2:] != (size, size):
        logger.info("face_mask %s resized to the reference size %d", tuple(tensor.shape), size)
        tensor = torch.nn.functional.interpolate(tensor[None], size=(size, size),
                                                 mode="bilinear", align_corners=False)[0]
    return tensor[0].clamp(0, 1).numpy().astype(np.float32)


def latent_frames(latent, name: str = "latent") -> torch.Tensor:
    """LATENT dict -> ``samples: (F, 4, h, w)`` (a 5-D video latent ``(1, 4, F, h, w)`` too)."""
    if not isinstance(latent, dict) or "samples" not in latent:
        raise EMOInputError(f"{name}: expected a LATENT {{'samples': ...}}, got "
                            f"{type(latent).__name__}")
    samples = latent["samples"]
    if samples.ndim == 5 and samples.shape[0] == 1:
        samples = samples[0].permute(1, 0, 2, 3)
    if samples.ndim != 4 or samples.shape[1] != 4:
        raise EMOInputError(f"{name}: expected SD1.5 latents (F, 4, h, w), got "
                            f"{tuple(samples.shape)}; decode other models' latents with their VAE")
    return samples
