"""The one module of the pack that imports ComfyUI.

Every other file in ``nodes/`` takes ComfyUI things from here, so a ComfyUI API change is fixed in
one place and ``emo_core`` stays host independent (DESIGN §2.11). Also owns the model folders:
``models/emo`` (EMO checkpoints), ``models/wav2vec2`` (Hugging Face wav2vec2 folders) and
``models/mediapipe`` (MediaPipe Tasks files) and ``models/insightface`` (insightface ONNX models, the
face embedding of Hallo-converted checkpoints), ``models/audio_separator`` (optional MDX-Net vocal
separation, e.g. Kim_Vocal_2.onnx), each also reachable through ``extra_model_paths.yaml`` keys
``emo:``, ``wav2vec2:``, ``mediapipe:``, ``insightface:`` and ``audio_separator:``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import comfy.lora
import comfy.model_management as model_management
import comfy.model_patcher
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import ComfyExtension, InputImpl, io, ui
from comfy_execution.graph_utils import ExecutionBlocker

from emo_core.errors import CheckpointError, EMOInputError

logger = logging.getLogger(__name__)

__all__ = [
    "ComfyExtension", "ExecutionBlocker", "InputImpl", "io", "ui", "MODEL_FOLDERS",
    "register_model_folders", "list_checkpoints", "checkpoint_path", "list_wav2vec2",
    "wav2vec2_path", "mediapipe_dir", "torch_device", "torch_dtype", "PRECISIONS", "offload_device",
    "make_patcher", "load_patchers", "unload_patchers",
    "check_interrupted", "ProgressReporter", "latent_previewer", "metadata_enabled",
    "output_directory", "save_path",
    "calculate_lora_weight", "node_warning", "list_face_analysis", "face_analysis_dir", "FACE_ANALYSIS_AUTO",
    "VOCALS_OFF", "list_vocal_separators", "vocal_separator_path", "SAMPLE_INPUTS",
    "WAV2VEC2_NONE", "list_wav2vec2_choices",
    "copy_samples_to_input",
]

EMO_FOLDER = "emo"
WAV2VEC2_FOLDER = "wav2vec2"
MEDIAPIPE_FOLDER = "mediapipe"
INSIGHTFACE_FOLDER = "insightface"  # the name other packs (IPAdapter FaceID, InstantID) use
AUDIO_SEPARATOR_FOLDER = "audio_separator"
# folder name -> file extensions listed by folder_paths. wav2vec2 entries are folders, listed by
# list_wav2vec2() instead, so its extension set only matters for ComfyUI's own file listings.
MODEL_FOLDERS: dict[str, set[str]] = {
    EMO_FOLDER: {".safetensors"},
    WAV2VEC2_FOLDER: {".json"},
    MEDIAPIPE_FOLDER: {".tflite", ".task"},
    INSIGHTFACE_FOLDER: {".onnx"},
    AUDIO_SEPARATOR_FOLDER: {".onnx"},
}
FACE_ANALYSIS_AUTO = "auto"
VOCALS_OFF = "off"
# The wav2vec2 choice for checkpoints whose audio encoder travels inside them (EchoMimic).
WAV2VEC2_NONE = "none"
MEDIAPIPE_FILES = ("blaze_face_short_range.tflite", "face_landmarker.task")
# Bundled Apache-2.0 MediaPipe models: used when models/mediapipe lacks them (never downloaded).
BUNDLED_MEDIAPIPE = Path(__file__).resolve().parents[1] / "emo_core" / "samples" / "mediapipe"
# The sample portrait and speech every example workflow loads (Load Image / Load Audio).
SAMPLE_INPUTS = ("portrait_astronaut.png", "speech_arctic_a0007.wav")
BUNDLED_SAMPLES = BUNDLED_MEDIAPIPE.parent
DEMO_HINT = ("or run `python -m emo_core demo-weights --comfyui-models <ComfyUI>/models` for tiny "
             "test weights")


def copy_samples_to_input() -> list[str]:
    """Copy the bundled sample portrait and speech into ComfyUI's input folder, so the example
    workflows open with their Load Image / Load Audio files present (no missing-input warning)
    and run as they are. A file already there is left alone (never overwritten: it may be the
    user's own); each copy goes through a temporary name, so a half-written file never shows.
    Returns the names copied; a read-only input folder is logged and skipped, never fatal."""
    folder = Path(folder_paths.get_input_directory())
    copied = []
    for name in SAMPLE_INPUTS:
        target = folder / name
        if target.exists():
            continue
        partial = folder / f".{name}.emo-partial"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(BUNDLED_SAMPLES / name, partial)
            partial.replace(target)
            copied.append(name)
        except OSError as error:
            partial.unlink(missing_ok=True)
            logger.warning("EMO Portrait: could not copy the sample %s into %s (%s); the example "
                           "workflows need it there", name, folder, error)
    if copied:
        logger.info("EMO Portrait: copied the example workflows' samples %s into %s",
                    ", ".join(copied), folder)
    return copied


def register_model_folders() -> None:
    """Add ``models/<name>`` for every EMO folder, keeping paths that extra_model_paths.yaml added.

    ComfyUI reads extra_model_paths.yaml before it imports custom nodes; a yaml key unknown to
    ComfyUI creates the entry with an empty extension set. We add the default folder next to those
    paths and merge our extensions, never replacing what the user configured.
    """
    for name, extensions in MODEL_FOLDERS.items():
        default = os.path.join(folder_paths.models_dir, name)
        folder_paths.add_model_folder_path(name, default)
        paths, known = folder_paths.folder_names_and_paths[name]
        folder_paths.folder_names_and_paths[name] = (paths, set(known) | extensions)
        logger.debug("EMO model folder %s: %s", name, paths)


def _folder_list(name: str) -> list[str]:
    register_model_folders()  # idempotent; keeps tests that skip comfy_entrypoint working
    return folder_paths.get_folder_paths(name)


def list_checkpoints() -> list[str]:
    """EMO checkpoint files (relative names, subfolders included) in every ``emo`` folder."""
    _folder_list(EMO_FOLDER)
    return folder_paths.get_filename_list(EMO_FOLDER)


def checkpoint_path(name: str) -> Path:
    """Absolute path of the checkpoint ``name``; ``CheckpointError`` naming the folders if absent."""
    found = folder_paths.get_full_path(EMO_FOLDER, name) if name else None
    if found is None or not os.path.isfile(found):
        raise CheckpointError(
            f"no EMO checkpoint {name!r} in models/{EMO_FOLDER} (looked in: "
            f"{', '.join(_folder_list(EMO_FOLDER))}); put emo.safetensors there {DEMO_HINT}"
        )
    return Path(found)


def list_wav2vec2() -> list[str]:
    """Sub-folders holding a ``config.json`` (a Hugging Face wav2vec2 model) in every folder."""
    names: set[str] = set()
    for root in _folder_list(WAV2VEC2_FOLDER):
        if not os.path.isdir(root):
            continue
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.is_dir() and os.path.isfile(os.path.join(entry.path, "config.json")):
                names.add(entry.name)
    return sorted(names)


def list_wav2vec2_choices() -> list[str]:
    """The wav2vec2 combo: every wav2vec2 folder, then ``WAV2VEC2_NONE`` (last, so a folder stays
    the default where there is one; the only choice where there is none)."""
    return [*(n for n in list_wav2vec2() if n != WAV2VEC2_NONE), WAV2VEC2_NONE]


def wav2vec2_path(name: str) -> Path:
    """Folder of the wav2vec2 model ``name``; ``CheckpointError`` naming the folders if absent."""
    roots = _folder_list(WAV2VEC2_FOLDER)
    if name and os.path.basename(name) == name and name not in (".", ".."):
        for root in roots:
            candidate = Path(root) / name
            if (candidate / "config.json").is_file():
                return candidate
    raise CheckpointError(
        f"no wav2vec2 model folder {name!r} (a folder with config.json and model weights) in "
        f"models/{WAV2VEC2_FOLDER} (looked in: {', '.join(roots)}); copy facebook/wav2vec2-base-960h "
        f"there as a folder {DEMO_HINT}"
    )


def mediapipe_dir(required: str = MEDIAPIPE_FILES[0]) -> Path:
    """First ``mediapipe`` folder that holds ``required``, else the copy bundled with the pack."""
    for root in [*_folder_list(MEDIAPIPE_FOLDER), str(BUNDLED_MEDIAPIPE)]:
        if os.path.isfile(os.path.join(root, required)):
            return Path(root)
    raise EMOInputError(
        f"MediaPipe model {required!r} not found in models/{MEDIAPIPE_FOLDER} (looked in: "
        f"{', '.join(_folder_list(MEDIAPIPE_FOLDER))}); download it from Google's "
        "storage.googleapis.com/mediapipe-models/ and put it there"
    )


def _onnx_folders(root: Path) -> list[Path]:
    """``root``, ``root/models`` and ``root/models/<pack>`` that hold ``.onnx`` files (the
    places emo_core.face.embedding searches), in that order."""
    candidates = [root, root / "models"]
    if (root / "models").is_dir():
        candidates += sorted(p for p in (root / "models").iterdir() if p.is_dir())
    return [c for c in candidates if c.is_dir() and any(c.glob("*.onnx"))]


def list_face_analysis() -> list[str]:
    """``auto`` + every insightface model folder (relative to its ``insightface`` root, e.g.
    ``models/antelopev2``): the face-embedding choices of Encode Reference."""
    names: list[str] = []
    for root in _folder_list(INSIGHTFACE_FOLDER):
        for folder in _onnx_folders(Path(root)):
            name = folder.relative_to(root).as_posix()
            if name not in names:
                names.append(name)
    return [FACE_ANALYSIS_AUTO, *sorted(names)]


def face_analysis_dir(choice: str) -> Path:
    """The insightface folder for ``choice`` (``auto``: the first ``insightface`` root holding
    ONNX models; the face embedder then picks the first folder with a detector and a recognizer).
    ``EMOInputError`` naming models/insightface and where to get the files when there is none."""
    from emo_core.face.embedding import HF_SOURCE

    roots = [Path(r) for r in _folder_list(INSIGHTFACE_FOLDER)]
    for root in roots:
        folders = _onnx_folders(root)
        if choice == FACE_ANALYSIS_AUTO and folders:
            return root
        for folder in folders:
            if folder.relative_to(root).as_posix() == choice:
                return folder
    raise EMOInputError(
        f"face_analysis: no insightface models {'' if choice == FACE_ANALYSIS_AUTO else repr(choice) + ' '}"
        f"in models/{INSIGHTFACE_FOLDER} (looked in: {', '.join(map(str, roots))}); a Hallo "
        f"checkpoint needs them for the face embedding: copy Hallo's face_analysis/models "
        f"folder there as models/{INSIGHTFACE_FOLDER}/models (from {HF_SOURCE})")


def list_vocal_separators() -> list[str]:
    """``off`` + the ONNX files in every ``audio_separator`` folder."""
    _folder_list(AUDIO_SEPARATOR_FOLDER)
    return [VOCALS_OFF, *folder_paths.get_filename_list(AUDIO_SEPARATOR_FOLDER)]


def vocal_separator_path(name: str) -> Path:
    """Absolute path of the separation model ``name``; ``EMOInputError`` naming the folder."""
    from emo_core.audio.separation import MODEL_HINT

    found = folder_paths.get_full_path(AUDIO_SEPARATOR_FOLDER, name) if name else None
    if found is None or not os.path.isfile(found):
        raise EMOInputError(
            f"separate_vocals: no model {name!r} in models/{AUDIO_SEPARATOR_FOLDER} (looked in: "
            f"{', '.join(_folder_list(AUDIO_SEPARATOR_FOLDER))}); {MODEL_HINT}")
    return Path(found)


def torch_device(policy: str) -> torch.device:
    """``policy``: ``"cpu"`` or anything else for ComfyUI's device (``--cpu`` respected)."""
    if policy == "cpu":
        return torch.device("cpu")
    return model_management.get_torch_device()


PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``"auto"``: fp16 where ComfyUI would use it for a UNet on ``device``, else fp32; never a
    dtype the CPU only emulates (ComfyUI's --force-fp16 on a CPU). An explicit emulated choice
    is kept and warned about once."""
    from emo_core.pipeline.runtime import cpu_safe, warn_if_emulated

    if precision in PRECISIONS:
        warn_if_emulated(PRECISIONS[precision], device)
        return PRECISIONS[precision]
    if model_management.should_use_fp16(device):
        return cpu_safe(torch.float16, device)
    return torch.float32


def offload_device(run_device: torch.device) -> torch.device:
    """Where ComfyUI keeps a UNet-like model while it is not loaded (RAM, or the GPU itself
    under --highvram / --gpu-only); always the CPU when the models run on the CPU."""
    if run_device.type == "cpu":
        return torch.device("cpu")
    return model_management.unet_offload_device()


class WholeModelPatcher(comfy.model_patcher.ModelPatcher):
    """``ModelPatcher`` for plain torch modules: ComfyUI may unload it, but only whole.

    When ComfyUI needs memory it first asks a model to give back part of its weights
    (``partially_unload``), which leaves the rest on the GPU and relies on ``comfy.ops`` layers
    to fetch the moved weights per call. Plain layers cannot, so this frees nothing partially:
    ``LoadedModel.model_unload`` then unloads the whole model and drops it from the list.
    """

    def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
        return 0


def make_patcher(module: torch.nn.Module, load_device: torch.device) -> WholeModelPatcher:
    """A ComfyUI ``ModelPatcher`` for ``module`` (which must sit on its offload device)."""
    return WholeModelPatcher(module, load_device, offload_device(load_device))


def load_patchers(patchers) -> None:
    """Load ``patchers`` through ``model_management.load_models_gpu`` (ComfyUI first unloads
    its other models until they fit, and counts them in its loaded-model list).

    EMO's layers are plain torch layers, not ``comfy.ops`` ones, so ComfyUI cannot stream their
    weights layer by layer the way it does for its own models in low-VRAM mode: a partially
    loaded EMO model would mix devices. They are therefore always loaded whole
    (``force_full_load``); under ``--novram``, where ComfyUI still asks for a minimal load, the
    load is completed through the patcher itself so its accounting stays right.
    """
    patchers = [p for p in patchers if p is not None]
    model_management.load_models_gpu(patchers, force_full_load=True)
    for patcher in patchers:
        if patcher.loaded_size() < patcher.model_size():
            logger.info("%s: ComfyUI loaded it partially (low-VRAM mode); EMO layers cannot "
                        "stream weights, loading it whole", type(patcher.model).__name__)
            # more than the model needs: partially_load then does a full load (.to() included)
            patcher.partially_load(patcher.load_device, extra_memory=1e32)


def unload_patchers(patchers) -> None:
    """Unload ``patchers`` the way ComfyUI's ``free_memory`` does (weights back to the offload
    device, entries removed from its loaded-model list), then release the allocator cache."""
    wanted = {id(p) for p in patchers if p is not None}
    loaded = model_management.current_loaded_models
    for index in range(len(loaded) - 1, -1, -1):
        if id(loaded[index].model) in wanted and loaded[index].model_unload():
            loaded.pop(index)
    model_management.soft_empty_cache()


def check_interrupted() -> bool:
    """Raise ComfyUI's interrupt exception when the user pressed Cancel; else ``False``.

    Used as emo_core's ``cancel`` callback: raising the host's own exception makes ComfyUI report
    an interrupted prompt (not a failed one).
    """
    model_management.throw_exception_if_processing_interrupted()
    return False


class ProgressReporter:
    """emo_core ``progress(done, total)`` callback -> ComfyUI progress bar + interrupt check.

    With a ``previewer`` (``latent_previewer``), ``preview(x0)`` renders the latent and the next
    progress update carries the image, as KSampler's callback does (``update_absolute(value,
    total, preview)``); ComfyUI's server sends it to the browser as a binary preview message.
    """

    def __init__(self, total: int = 1, previewer=None):
        self.bar = comfy.utils.ProgressBar(max(1, int(total)))
        self.previewer = previewer
        self._image = None

    def preview(self, x0: torch.Tensor) -> None:
        """``x0: (f, 4, h, w)`` scaled SD1.5 latents; ComfyUI's previewer shows the first frame."""
        self._image = self.previewer.decode_latent_to_preview_image("JPEG", x0)

    def __call__(self, done: int, total: int) -> None:
        image, self._image = self._image, None
        self.bar.update_absolute(int(done), int(total), image)
        check_interrupted()


def latent_previewer(device: torch.device):
    """ComfyUI's previewer for SD1.5 latents under the server's ``--preview-method`` (latent2rgb,
    or taesd with models/vae_approx/taesd_decoder), or None when previews are off (the default)."""
    import comfy.latent_formats
    import latent_preview

    return latent_preview.get_previewer(device, comfy.latent_formats.SD15())


def metadata_enabled() -> bool:
    """False when the server runs with ``--disable-metadata`` (core savers then write none)."""
    from comfy.cli_args import args

    return not args.disable_metadata


def node_warning(text: str) -> None:
    """Log ``text`` as a warning and show it on the running node in the browser (ComfyUI's
    progress-text message, as its API nodes use), so a graph user sees it without the console.

    Sent to the client that queued the prompt only (``server.client_id``, which ComfyUI sets for
    the running prompt and addresses its own progress messages to): without an address the
    server would broadcast it to every open tab. A prompt queued without a client id (a script
    on the API) has nobody to show it to: the log line is all."""
    logger.warning(text)
    from comfy_execution.utils import get_executing_context
    from server import PromptServer

    context = get_executing_context()
    server = getattr(PromptServer, "instance", None)
    client_id = getattr(server, "client_id", None)
    if context is not None and client_id is not None:
        server.send_progress_text(f"warning: {text}", context.node_id, client_id)


def calculate_lora_weight(patches, weight: torch.Tensor, key: str) -> torch.Tensor:
    """ComfyUI's own patch arithmetic (LoRA, LoHa, LoKr, DoRA, ...) applied to one weight."""
    return comfy.lora.calculate_weight(patches, weight, key)


def output_directory() -> Path:
    return Path(folder_paths.get_output_directory()).resolve()


def save_path(prefix: str, width: int, height: int) -> tuple[Path, str, str]:
    """Next free ``<prefix>_NNNNN_.mp4`` under the output folder -> (path, filename, subfolder)."""
    root = output_directory()
    folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
        prefix, str(root), width, height
    )
    name = f"{filename}_{counter:05}_.mp4"
    return Path(folder) / name, name, subfolder
