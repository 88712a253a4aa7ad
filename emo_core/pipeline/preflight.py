"""Fail fast: check every input of a run before the first model is loaded.

A wrong path, a PNG given as the checkpoint or an unwritable output folder must cost seconds, not
the minutes of loading wav2vec2 and the EMO checkpoint first. Each check reads only what it needs
(a file's header, a folder listing, the safetensors JSON header of the checkpoint, never tensors)
and raises :class:`~emo_core.errors.EMOInputError` naming the input, what is wrong and what to do.

Used by ``python -m emo_core generate`` and ``demo`` before they load anything; the ComfyUI nodes
may call the single checks from ``validate_inputs``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import EMOInputError

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DTYPE_NAMES = ("auto", "fp32", "fp16", "bf16")


def check_output_file(path: str | os.PathLike, what: str = "--out",
                      suffix: str = ".mp4") -> Path:
    """``path`` can be written (see :func:`emo_core.paths.check_output_path`: right suffix, not a
    folder or device, no symlink loop, a writable folder above it). Returns the path as given."""
    from ..paths import check_output_path

    check_output_path(path, suffix, what=what)
    return Path(path)


def check_input_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` is an existing, readable, non-empty regular file."""
    path = Path(path)
    if not path.exists():
        raise EMOInputError(f"{what} {str(path)!r} does not exist; check the path")
    if not path.is_file():
        raise EMOInputError(f"{what} {str(path)!r} is not a file; give the file itself")
    if not os.access(path, os.R_OK):
        raise EMOInputError(f"{what} {str(path)!r} is not readable; check its permissions")
    if path.stat().st_size == 0:
        raise EMOInputError(f"{what} {str(path)!r} is empty; copy the file again")
    return path


def check_image_file(path: str | os.PathLike, what: str = "--image") -> Path:
    """An image PIL can identify, within the pixel limit (reads the header only, no pixels; see
    :func:`emo_core.image.check_image_file`, which also refuses decompression bombs)."""
    from ..image import check_image_file as check_image_header

    path = check_input_file(path, what)
    try:
        width, height = check_image_header(path)
    except EMOInputError as error:
        raise EMOInputError(f"{what}: {error}") from error
    if width < 1 or height < 1:
        raise EMOInputError(f"{what} {str(path)!r} has no pixels ({width}x{height})")
    return path


def check_media_file(path: str | os.PathLike, what: str, kind: str = "audio") -> Path:
    """A file FFmpeg can open with at least one ``kind`` ("audio" | "video") stream (container
    header only; nothing is decoded)."""
    import av

    path = check_input_file(path, what)
    try:
        with av.open(str(path)) as container:
            streams = container.streams.audio if kind == "audio" else container.streams.video
            if not streams:
                raise EMOInputError(
                    f"{what} {str(path)!r} has no {kind} stream; pass a file with "
                    + ("sound (wav, mp3, m4a, flac, ogg or a video with audio)" if kind == "audio"
                       else "pictures (mp4, mov, mkv, webm)"))
    except EMOInputError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as error:
        raise EMOInputError(f"{what} {str(path)!r} is not a readable {kind} file ({error}); "
                            + ("convert it to wav, mp3 or flac" if kind == "audio"
                               else "convert it to mp4")) from error
    if kind == "audio":
        from ..audio.waveform import check_audio_file

        check_audio_file(path)  # a WAV header that lies about its data size
    return path


def check_mediapipe_folder(folder: str | os.PathLike, what: str = "--mediapipe") -> Path:
    """Both MediaPipe model files are present and non-empty."""
    from ..face.mediapipe_models import MODEL_FILES, model_file

    for kind in MODEL_FILES:
        check_input_file(model_file(folder, kind), f"{what} model file")
    return Path(folder)


def check_wav2vec_header(folder: str | os.PathLike) -> Path:
    """The wav2vec2 folder's config.json and a weight file, no weights read (milliseconds; the
    full check is ``io.wav2vec.check_wav2vec_folder``)."""
    from ..io.wav2vec import _check_folder

    _check_folder(Path(folder))
    return Path(folder)


def check_checkpoint_header(path: str | os.PathLike) -> Path:
    """The EMO checkpoint file, its safetensors header and its emo_config metadata, including a
    model family this version knows (no tensor data is read, no model is built: milliseconds;
    the full check is ``io.emo_checkpoint.check_emo_checkpoint``). Returns the resolved file."""
    from ..families import family_class, family_name
    from ..io.emo_checkpoint import read_emo_configs, resolve_checkpoint_path
    from ..io.safe_load import read_safetensors_shapes

    file = resolve_checkpoint_path(path)
    configs = read_emo_configs(file)  # header + metadata; refuses non-EMO files with a hint
    missing = [name for name in ("reference_net", "backbone") if name not in configs]
    if missing or not read_safetensors_shapes(file):
        raise EMOInputError(f"EMO checkpoint {str(file)!r} lacks {missing or 'tensors'}; it is "
                            "damaged or not an EMO checkpoint: re-create it")
    try:
        family_class(family_name(configs))
    except EMOInputError as error:
        raise EMOInputError(f"EMO checkpoint {str(file)!r}: {error}") from None
    return file


def check_face_analysis_folder(folder, what: str = "--face-analysis") -> Path:
    """The insightface models folder a Hallo checkpoint needs (a folder listing, no model is
    opened)."""
    from ..face.embedding import HF_SOURCE, model_folders

    if folder is None:
        raise EMOInputError(
            f"{what} is required with a Hallo checkpoint: the insightface models folder "
            f"(Hallo's pretrained_models/face_analysis, or ComfyUI's models/insightface) with a "
            f"detector and a recognizer .onnx; they are in {HF_SOURCE}")
    try:
        model_folders(folder)
    except EMOInputError as error:
        raise EMOInputError(f"{what}: {error}") from error
    return Path(folder)


def check_separator_model(path, what: str = "--separate-vocals") -> Path:
    """The MDX-Net vocal separation model file (or a folder holding Kim_Vocal_2.onnx)."""
    from ..audio.separation import MODEL_FILE, MODEL_HINT

    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise EMOInputError(f"{what} {str(file)!r} does not exist; {MODEL_HINT}")
    if file.suffix.lower() != ".onnx":
        raise EMOInputError(f"{what} {str(file)!r} is not an .onnx file; {MODEL_HINT}")
    return check_input_file(file, what)


def check_weight_source(path: str | os.PathLike, what: str) -> Path:
    """A style/base checkpoint or LoRA: a diffusers folder, or a weight file whose safetensors
    header is readable (pickle files are checked for existence only: never unpickled here)."""
    from ..io.safe_load import WEIGHT_SUFFIXES, read_safetensors_metadata

    path = Path(path)
    if path.is_dir():
        return path
    check_input_file(path, what)
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise EMOInputError(f"{what} {str(path)!r} has suffix {path.suffix!r}; expected one of "
                            f"{', '.join(WEIGHT_SUFFIXES)} or a diffusers folder")
    if path.suffix.lower() == ".safetensors":
        read_safetensors_metadata(path)
    return path


def check_device(device: str, dtype: str = "auto") -> None:
    if not _DEVICE.match(device):
        raise EMOInputError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    if dtype not in DTYPE_NAMES:
        raise EMOInputError(f"--dtype must be one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")


def check_options(settings, options) -> None:
    """The checks that need only option values, first of every preflight. ``options`` is a
    :class:`~emo_core.pipeline.run.GenerateRequest` or ``generate``'s parsed arguments (same
    attribute names); ``settings`` their :class:`GenerationSettings`. Light: no torch."""
    from ..face.mask_expand import check_mask_expand
    from ..speed import constant_speed, parse_keyframes

    settings.validate()
    check_device(options.device, options.dtype)
    if options.face_index < 0:
        raise EMOInputError(f"--face-index must be >= 0, got {options.face_index}")
    check_mask_expand(options.mask_expand, "--mask-expand")
    if options.speed_keyframes is not None:
        parse_keyframes(options.speed_keyframes)
    elif options.speed is not None:
        constant_speed(options.speed, 1)


def preflight_request(request, style_files: list[tuple[str, Path]] = ()) -> None:
    """Every check for a :class:`~emo_core.pipeline.run.GenerateRequest` (and the style files
    ``[(option name, path), ...]`` to apply), in the order a user fixes them: cheap first."""
    check_options(request.settings, request)
    check_output_file(request.out)
    check_image_file(request.image)
    check_media_file(request.audio, "--audio", "audio")
    if request.speed_video is not None:
        check_media_file(request.speed_video, "--speed-from-video", "video")
    check_mediapipe_folder(request.mediapipe)
    for option, path in style_files:
        check_weight_source(path, option)
    if getattr(request, "separate_vocals", None) is not None:
        check_separator_model(request.separate_vocals)
    check_family_request(request, check_checkpoint_header(request.checkpoint))


def check_family_request(request, file: str | os.PathLike):
    """The checkpoint family's own checks of the request: its settings against the checkpoint's
    config (read from the safetensors header: no tensors, no model) and the model folders it
    needs. Returns the settings the family runs with."""
    from ..families import family_of
    from ..io.emo_checkpoint import read_emo_configs

    family = family_of(configs=read_emo_configs(Path(file)))
    if family.audio_model is not None:
        if request.wav2vec is None:
            raise EMOInputError(f"--wav2vec is required for {family.title} checkpoints (a "
                                "Hugging Face wav2vec2 folder, e.g. facebook/wav2vec2-base-960h)")
        check_wav2vec_header(request.wav2vec)
    family.check_request(request)
    return family.resolve_settings(request.settings)
