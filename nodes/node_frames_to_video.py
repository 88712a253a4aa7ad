"""Frames to Video: IMAGE, or LATENT decoded in chunks, + AUDIO -> h264/aac mp4 + core VIDEO.

With ``original_image`` + ``crop_box`` (Encode Reference) every chunk is pasted back into the
full picture before it is encoded, so paste back streams like the rest (memory stays flat).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import PurePosixPath

import numpy as np
import torch

from emo_core.errors import EMOInputError

from . import comfy_bridge as bridge
from .comfy_bridge import InputImpl, io, ui
from .convert import (
    audio_waveform,
    core_vae_frames,
    first_image,
    image_to_uint8,
    latent_frames,
)
from .runtime import modules_on_device
from .settings_inputs import settings_input
from .types import EMOCrop, EMOCropType, EMOModelsBundle, EMOModelsType

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[\x00-\x1f<>:\"|?*\\]")


def prefix_problem(prefix) -> str | None:
    """What is wrong with ``prefix`` (a sentence without the input's name), or None if it is safe."""
    text = (prefix or "").strip().replace("\\", "/")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if (not parts or text.startswith("/") or ".." in parts or _UNSAFE.search("".join(parts))):
        return (f"{prefix!r} must be a relative name like 'EMO/portrait' inside the output folder "
                "(no absolute path, no '..', no control or <>:\"|?* characters)")
    return None


def safe_prefix(prefix: str) -> str:
    """Filename prefix confined to the output folder: relative, no ``..``, no odd characters."""
    problem = prefix_problem(prefix)
    if problem is not None:
        raise EMOInputError(f"filename_prefix {problem}")
    text = prefix.strip().replace("\\", "/")
    return "/".join(p for p in PurePosixPath(text).parts if p not in ("", "."))


def _image_chunks(images: torch.Tensor, batch: int) -> Iterator[np.ndarray]:
    for start in range(0, images.shape[0], batch):
        yield image_to_uint8(images[start:start + batch])


def _latent_chunks(samples: torch.Tensor, batch: int, vae, bundle) -> Iterator[np.ndarray]:
    """``samples: (F, 4, h, w)`` VAE space -> ``(j, 8h, 8w, 3)`` uint8, ``batch`` at a time."""
    if vae is not None:  # ComfyUI VAE: takes VAE-space latents, returns IMAGE 0..1
        yield from core_vae_frames(vae, samples, batch)
        return
    from emo_core.pipeline.decode import decode_latents

    model_vae = bundle.models.vae
    if model_vae is None:
        raise EMOInputError("emo_models: the EMO checkpoint has no VAE; connect a core VAE "
                            "to Frames to Video or to Load EMO Models")
    with modules_on_device(bundle, model_vae):
        fmt = bundle.family.latent_format
        latents = fmt.process_in(samples).to(bundle.device, bundle.dtype)
        yield from decode_latents(model_vae, latents, batch, fmt)


def frame_source(images, latent, emo_models, vae, batch: int, fps: float):
    """-> (frame count, iterator of uint8 chunks) from whichever input is connected."""
    if (images is None) == (latent is None):
        raise EMOInputError("connect exactly one of images or latent to Frames to Video")
    if images is not None:
        return images.shape[0], _image_chunks(images, batch)
    stored_fps = latent.get("emo_fps") if isinstance(latent, dict) else None
    if stored_fps is not None and abs(float(stored_fps) - fps) > 1e-6:
        raise EMOInputError(
            f"fps is {fps:g} but the latent was generated at {stored_fps:g} fps (Wav2Vec Audio "
            f"Features); set fps to {stored_fps:g} or the audio will drift out of sync")
    samples = latent_frames(latent).float().cpu()
    if vae is None and emo_models is not None and emo_models.core_vae is not None:
        vae = emo_models.core_vae
    if vae is None and emo_models is None:
        raise EMOInputError("latent needs a decoder: connect emo_models or a VAE")
    return samples.shape[0], _latent_chunks(samples, batch, vae, emo_models)


class EMOFramesToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EMOFramesToVideo",
            display_name="Frames to Video",
            category="EMO",
            description="Writes an H.264 + AAC mp4 to the output folder, streaming (frames are "
                        "decoded and encoded a few at a time), and shows it.",
            is_output_node=True,
            inputs=[
                settings_input("fps", note="Must equal the fps of Wav2Vec Audio Features or "
                                           "lips drift from the audio."),
                io.String.Input("filename_prefix", default="EMO/emo",
                                tooltip="Name inside ComfyUI's output folder; subfolders allowed "
                                        "('EMO/take1'), '..' and absolute paths are refused."),
                settings_input("decode_batch",
                               note="Memory does not grow with video length."),
                io.Image.Input("images", optional=True,
                               tooltip="Frames as an IMAGE batch (e.g. EMO Sampler images). "
                                       "Connect this or latent."),
                io.Latent.Input("latent", optional=True,
                                tooltip="Frames as SD1.5 latents (EMO Sampler latent): decoded "
                                        "in chunks, so long videos fit in little RAM."),
                EMOModelsType.Input("emo_models", optional=True,
                                    tooltip="Decodes latent with the checkpoint's VAE."),
                io.Vae.Input("vae", optional=True,
                             tooltip="Core SD1.5 VAE to decode latent instead (wins over "
                                     "emo_models)."),
                io.Audio.Input("audio", optional=True,
                               tooltip="Soundtrack, trimmed or padded to the video length (AAC). "
                                       "Leave empty for a silent video."),
                io.Image.Input("original_image", optional=True,
                               tooltip="Paste back: the full picture given to Encode Reference. "
                                       "With crop_box, every frame is blended into it (16 px "
                                       "feathered edges) and the video has its size."),
                EMOCropType.Input("crop_box", optional=True,
                                  tooltip="Paste back: Encode Reference's crop_box, where the "
                                          "face square lies in original_image."),
            ],
            outputs=[io.Video.Output(display_name="video")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
        )

    @classmethod
    def validate_inputs(cls, filename_prefix):
        if filename_prefix is None:  # linked from another node: checked when it runs
            return True
        # ComfyUI shows this as "filename_prefix - <message>": the message does not repeat it.
        return prefix_problem(filename_prefix) or True

    @classmethod
    def execute(cls, fps, filename_prefix, decode_batch, images=None, latent=None,
                emo_models: EMOModelsBundle | None = None, vae=None, audio=None,
                original_image=None, crop_box: EMOCrop | None = None):
        from emo_core.pipeline.video import Mp4Writer

        prefix = safe_prefix(filename_prefix)
        paste = paste_target(original_image, crop_box)
        _, chunks = frame_source(images, latent, emo_models, vae, decode_batch, float(fps))
        if paste is not None:
            chunks = _pasted(chunks, *paste)
        soundtrack = audio_waveform(audio) if audio is not None else None
        first = next(chunks)
        height, width = first.shape[1] - first.shape[1] % 2, first.shape[2] - first.shape[2] % 2
        path, filename, subfolder = bridge.save_path(prefix, width, height)
        with Mp4Writer(path, float(fps), width, height, audio=soundtrack,
                       metadata=workflow_metadata(cls.hidden)) as writer:
            for chunk in _chained(first, chunks):
                bridge.check_interrupted()
                writer.write(chunk[:, :height, :width])
        logger.info("wrote %d frames (%dx%d, %g fps) to %s", writer.frames_written, width,
                    height, fps, path)
        preview = ui.PreviewVideo([ui.SavedResult(filename, subfolder, io.FolderType.output)])
        return io.NodeOutput(InputImpl.VideoFromFile(str(path)), ui=preview)


def workflow_metadata(hidden) -> dict | None:
    """The tags core SaveVideo writes: ``extra_pnginfo`` (the frontend's ``{"workflow": ...}``)
    plus ``prompt``; None when ComfyUI passed neither or runs with ``--disable-metadata``."""
    if hidden is None or not bridge.metadata_enabled():  # hidden is None outside an executor
        return None
    metadata = dict(hidden.extra_pnginfo or {})
    if hidden.prompt is not None:
        metadata["prompt"] = hidden.prompt
    return metadata or None


def paste_target(original_image, crop_box: EMOCrop | None):
    """-> ``(original (H, W, 3) uint8, CropBox)`` when pasting back, else None."""
    if original_image is None and crop_box is None:
        return None
    if original_image is None or crop_box is None:
        missing = "original_image" if original_image is None else "crop_box"
        raise EMOInputError(
            f"paste back needs both original_image and crop_box; {missing} is not connected "
            "(connect the image given to Encode Reference and its crop_box output, or neither)")
    original = first_image(original_image, "original_image")
    if tuple(original.shape[:2]) != tuple(crop_box.image_size):
        height, width = crop_box.image_size
        raise EMOInputError(
            f"original_image is {original.shape[1]}x{original.shape[0]} but Encode Reference "
            f"cropped a {width}x{height} image; connect the same image to both")
    return original, crop_box.box


def _pasted(chunks: Iterator[np.ndarray], original: np.ndarray, box) -> Iterator[np.ndarray]:
    """Each ``(j, S, S, 3)`` chunk -> ``(j, H, W, 3)`` pasted into ``original`` (emo_core's
    paste back, the same as the CLI's ``--paste-back``), one chunk at a time."""
    from emo_core.face.crop import paste_back_frames

    for chunk in chunks:
        yield paste_back_frames(chunk, original, box)


def _chained(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest
