"""Issue 13, "found in real use": the nodes called in process inside a real ComfyUI 0.3.75 (CPU).

One full node run (Load EMO Models -> Encode Reference -> Wav2Vec Audio Features -> Face Locator
Mask -> Speed Embedding -> EMO Sampler -> Frames to Video with paste back) is recorded once for the
module: Python warnings, log records of every logger, ComfyUI progress-bar updates and the model
calls in order. The tests read that record (warnings, prep progress) or call single nodes
(the default mask, no-face advice, validation messages, interrupts, paste back). The
same nodes run over HTTP in tests/test_nodes_server.py.
"""

from __future__ import annotations

import inspect
import json
import logging
import warnings
import wave
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from PIL import Image

from emo_core.errors import EMOInputError, NoFaceError
from emo_core.face.mask import DEFAULT_MASK_EXPAND, MAX_MASK_EXPAND
from tests.comfyui_harness import import_pack_in_process
from tests.conftest import fixture_path
from tests.test_face_mask import check_default_mask

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[1]
FPS = 4.0
SECONDS = 1.0
FRAMES = round(FPS * SECONDS)
SIZE = 64


def _photo() -> np.ndarray:
    return np.asarray(Image.open(fixture_path("portrait_astronaut.png")).convert("RGB"))


def _image(rgb: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ComfyUI IMAGE ``(1, H, W, 3)`` float 0..1."""
    return torch.from_numpy(rgb.copy()).float()[None] / 255


def _speech(seconds: float) -> dict:
    with wave.open(str(fixture_path("speech_arctic_a0007.wav")), "rb") as source:
        pcm = source.readframes(round(seconds * source.getframerate()))
        rate = source.getframerate()
    wave_ = torch.from_numpy(np.frombuffer(pcm, np.int16).astype(np.float32) / 32768)
    return {"waveform": wave_[None, None], "sample_rate": rate}


@pytest.fixture(scope="module")
def comfy(demo_weights, tmp_path_factory):
    node = import_pack_in_process("node_load_models", "node_encode_reference",
                                  "node_audio_features", "node_face_mask", "node_speed",
                                  "node_sampler", "node_frames_to_video")
    import comfy.model_management
    import comfy.utils
    import folder_paths

    folder_paths.add_model_folder_path("emo", str(demo_weights))
    folder_paths.add_model_folder_path("wav2vec2", str(demo_weights))
    output = tmp_path_factory.mktemp("comfy_output")
    folder_paths.set_output_directory(str(output))
    # ComfyUI 0.30.0's ProgressBar forwards an update to the hook only 0.1 s and 0.5 % after the
    # last one (first, last and preview updates always): on a fast machine the hook-recorded
    # event order below would miss reports. The pack checks Cancel itself after every update
    # (ProgressReporter), so these tests see every update the nodes make.
    throttle = {name: getattr(comfy.utils, name) for name in
                ("PROGRESS_THROTTLE_MIN_INTERVAL", "PROGRESS_THROTTLE_MIN_PERCENT")
                if hasattr(comfy.utils, name)}
    for name in throttle:
        setattr(comfy.utils, name, 0)
    yield SimpleNamespace(node=node, utils=comfy.utils, mm=comfy.model_management,
                          output=output)
    for name, value in throttle.items():
        setattr(comfy.utils, name, value)


def _load(comfy):
    loader = comfy.node["node_load_models"].EMOLoadModels
    return loader.execute("emo.safetensors", "wav2vec2", "fp32", "cpu").args[0]


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def _watch_models(bundle, events: list):
    """Forward pre-hooks appending the model's name to ``events`` (calls in order)."""
    models = bundle.models  # vae.encode()/decode() call these submodules (not vae.forward)
    watched = {"vae_encoder": models.vae.encoder, "vae_decoder": models.vae.decoder,
               "wav2vec": bundle.wav2vec.encoder, "reference_net": models.reference_net,
               "backbone": models.backbone}
    return [module.register_forward_pre_hook(lambda *_, name=name: events.append(name))
            for name, module in watched.items()]


def _sampler_options(**changes) -> dict:
    options = dict(seed=0, steps=1, guidance_reference=2.0, guidance_audio=3.5,
                   guidance_mode="joint", frames_per_clip=FRAMES, motion_frames=4,
                   first_clip_motion="zeros", scheduler="ddim")
    options.update(changes)
    return options


@pytest.fixture(scope="module")
def full_run(comfy):
    """Every node once, as a graph would run them, with warnings / logs / progress recorded."""
    node = comfy.node
    events: list = []
    recorder = _Recorder()
    loggers = [logging.getLogger(), logging.getLogger("diffusers"),
               logging.getLogger("transformers")]  # these two do not propagate to the root
    for logger in loggers:
        logger.addHandler(recorder)
    comfy.utils.set_progress_bar_global_hook(
        lambda value, total, preview, node_id=None: events.append(("progress", value, total)))
    photo, hooks = _photo(), []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bundle = _load(comfy)
            hooks = _watch_models(bundle, events)
            events.append("Encode Reference")
            reference, portrait, crop_box = node["node_encode_reference"].EMOEncodeReference \
                .execute(bundle, _image(photo), "face", SIZE, 0).args
            events.append("Wav2Vec Audio Features")
            emo_audio, audio_16k, _ = node["node_audio_features"].EMOAudioFeatures.execute(
                bundle, _speech(SECONDS), FPS).args
            mask, _ = node["node_face_mask"].EMOFaceLocatorMask.execute(
                portrait, DEFAULT_MASK_EXPAND, 0).args
            speed = node["node_speed"].EMOSpeedEmbedding.execute("constant", 2.0, "", 0).args[0]
            events.append("EMO Sampler")
            latent, _ = node["node_sampler"].EMOSampler.execute(
                bundle, reference, emo_audio, mask, speed, decode_images=False, decode_batch=2,
                **_sampler_options()).args
            events.append("Frames to Video")
            video = node["node_frames_to_video"].EMOFramesToVideo.execute(
                FPS, "real_use/pasted", 2, latent=latent, emo_models=bundle, audio=audio_16k,
                original_image=_image(photo), crop_box=crop_box)
    finally:
        for hook in hooks:
            hook.remove()
        comfy.utils.set_progress_bar_global_hook(None)
        for logger in loggers:
            logger.removeHandler(recorder)
    return SimpleNamespace(events=events, warnings=list(caught), logs=recorder.records,
                           bundle=bundle, crop_box=crop_box, portrait=portrait,
                           video=Path(video.args[0].get_stream_source()), photo=photo)


# -- item 6: no avoidable warnings --------------------------------------------------------------
def test_a_full_node_run_logs_no_warning(full_run):
    warned = [f"{w.category.__name__} {w.filename}:{w.lineno}: {w.message}"
              for w in full_run.warnings]
    logged = [f"{r.name}: {r.getMessage()}" for r in full_run.logs]
    # Before: "The given NumPy array is not writable" (nodes/convert.py) and diffusers' "should
    # be kept in float32: []" on every VAE move (the reference encode and the latent decode).
    assert warned == [] and logged == [], (warned, logged)


# -- item 5: progress and interrupt in the prep phase -------------------------------------------
def test_every_node_reports_progress_before_its_first_model_call(full_run):
    events = full_run.events
    for node, model in (("Encode Reference", "vae_encoder"),
                        ("Wav2Vec Audio Features", "wav2vec"),
                        ("EMO Sampler", "reference_net")):
        start = events.index(node)
        first_model = events.index(model, start)
        reports = [e for e in events[start:first_model] if isinstance(e, tuple)]
        assert reports, f"{node}: no progress before its first model call ({model})"
    sampler = events[events.index("EMO Sampler"):events.index("Frames to Video")]
    # The bar moves once ReferenceNet's pass is done, before the first denoising step.
    assert sampler.index("reference_net") < sampler.index(("progress", 1, 2)) \
        < sampler.index("backbone"), sampler


def test_interrupt_during_the_prep_phase_stops_before_the_next_model_call(comfy, full_run):
    """ComfyUI's Cancel sets a flag that our progress callback turns into its interrupt
    exception; set it while ReferenceNet's pass (and the audio encoder's) is reported."""
    bundle, node, events = full_run.bundle, comfy.node, []
    emo_audio = node["node_audio_features"].EMOAudioFeatures.execute(
        bundle, _speech(SECONDS), FPS).args[0]
    reference = node["node_encode_reference"].EMOEncodeReference.execute(
        bundle, _image(full_run.photo), "center", SIZE, 0).args[0]
    mask = torch.ones(1, SIZE, SIZE)
    speed = node["node_speed"].EMOSpeedEmbedding.execute("constant", 2.0, "", 0).args[0]

    def cancel_when(model=None):
        """Progress hook pressing Cancel once ``model`` ran (None: at the first report)."""
        def hook(value, total, preview, node_id=None):
            events.append(("progress", value, total))
            if model is None or model in events:
                comfy.mm.interrupt_current_processing(True)
        return hook

    hooks = _watch_models(bundle, events)
    try:
        comfy.utils.set_progress_bar_global_hook(cancel_when("reference_net"))
        with pytest.raises(comfy.mm.InterruptProcessingException):
            node["node_sampler"].EMOSampler.execute(
                bundle, reference, emo_audio, mask, speed, decode_images=False, decode_batch=2,
                **_sampler_options(steps=50, seed=1))
        assert [e for e in events if isinstance(e, str)] == ["reference_net"], events
        events.clear()
        comfy.mm.interrupt_current_processing(False)
        comfy.utils.set_progress_bar_global_hook(cancel_when())  # before the first chunk
        with pytest.raises(comfy.mm.InterruptProcessingException):
            node["node_audio_features"].EMOAudioFeatures.execute(bundle, _speech(2.0), FPS)
        assert [e for e in events if isinstance(e, str)] == [], events
    finally:
        comfy.mm.interrupt_current_processing(False)
        comfy.utils.set_progress_bar_global_hook(None)
        for hook in hooks:
            hook.remove()


# -- item 1: the node's default mask ------------------------------------------------------------
def test_face_locator_node_default_mask_covers_the_face_with_room_for_motion(comfy):
    from emo_core.face.detect import detect_faces

    node = comfy.node["node_face_mask"].EMOFaceLocatorMask
    spec = {i.id: i for i in node.define_schema().inputs}["expand_ratio"]
    assert spec.default == DEFAULT_MASK_EXPAND
    # The node's range is the library's: neither end can produce an invalid value.
    assert (spec.min, spec.max) == (0.0, MAX_MASK_EXPAND)
    # Encode Reference's face crop at the size EMO is trained at, as the workflows wire it.
    square = comfy.node["node_encode_reference"].square_portrait
    portrait, _ = square(_photo(), "face", 512, 0)
    (face,) = detect_faces(portrait, fixture_path("blaze_face_short_range.tflite").parent)
    mask = node.execute(_image(portrait), spec.default, 0).args[0]
    ratio = check_default_mask(mask[0].numpy(), face)
    print(f"node default mask: {ratio:.2f}x the face box area")
    for value in (spec.min, spec.max):
        assert node.execute(_image(portrait), value, 0).args[0].sum() > 0
    # Every example workflow uses the default (the API copies are what scripts send), but the
    # EchoMimic one: EchoMimic's face mask is its box grown by its facemask_dilation_ratio.
    from emo_core.families.echomimic import FACE_MASK_EXPAND

    own = {"emo_echomimic_weights.json": FACE_MASK_EXPAND}
    for path in sorted((REPO / "example_workflows" / "api").glob("*.json")):
        graph = json.loads(path.read_text(encoding="utf-8"))
        values = [n["inputs"]["expand_ratio"] for n in graph.values()
                  if n["class_type"] == "EMOFaceLocatorMask"]
        assert values == [own.get(path.name, DEFAULT_MASK_EXPAND)], (path.name, values)


# -- item 3: no-face advice names only what the node offers -------------------------------------
def test_no_face_advice_names_only_what_each_node_offers(comfy, full_run):
    flat = _image(np.full((256, 256, 3), 90, np.uint8))
    encode = comfy.node["node_encode_reference"].EMOEncodeReference
    with pytest.raises(NoFaceError) as info:
        encode.execute(full_run.bundle, flat, "face", SIZE, 0)
    message = str(info.value)
    assert "set crop to center or pad" in message and "mask_override" in message, message
    mask_node = comfy.node["node_face_mask"].EMOFaceLocatorMask
    with pytest.raises(NoFaceError) as info:
        mask_node.execute(flat, DEFAULT_MASK_EXPAND, 0)
    assert "connect a hand-painted mask to mask_override" in str(info.value), info.value
    with pytest.raises(NoFaceError, match="use a face_index below 1"):
        encode.execute(full_run.bundle, _image(full_run.photo), "face", SIZE, 3)
    for text in (message, str(info.value)):
        # Neither node has a confidence input or a "face mask" input of that name.
        assert "min_confidence" not in text and "own face mask" not in text, text


# -- item 2: validation messages, each once -----------------------------------------------------
def test_validation_names_each_input_once(comfy):
    loader = comfy.node["node_load_models"].EMOLoadModels
    # ComfyUI files the message under every input validate_inputs names: only checkpoint.
    assert inspect.getfullargspec(loader.validate_inputs).args == ["cls", "checkpoint"]
    assert loader.validate_inputs("emo.safetensors") is True
    message = loader.validate_inputs("missing.safetensors")
    assert message.startswith("no EMO checkpoint 'missing.safetensors' in models/emo"), message
    video = comfy.node["node_frames_to_video"].EMOFramesToVideo
    message = video.validate_inputs("../escape")
    # ComfyUI prefixes "filename_prefix - ": the message must not say it again.
    assert message.startswith("'../escape' must be a relative name"), message
    assert video.validate_inputs("EMO/take") is True


# -- item 8: paste back in ComfyUI --------------------------------------------------------------
def test_frames_to_video_pastes_the_crop_back_into_the_photo(comfy, full_run):
    from emo_core.face.crop import paste_back

    photo, box = full_run.photo, full_run.crop_box.box
    assert full_run.crop_box.image_size == photo.shape[:2]
    with av.open(str(full_run.video)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert frames.shape == (FRAMES, *photo.shape), frames.shape
    inside = np.zeros(photo.shape[:2], bool)
    inside[box.y0:box.y0 + box.size, box.x0:box.x0 + box.size] = True
    difference = np.abs(frames.astype(int) - photo).mean(axis=(0, 3))
    print(f"paste back in process: outside {difference[~inside].mean():.2f}, inside "
          f"{difference[inside].mean():.2f} levels from the photo")
    assert difference[~inside].mean() < 4.0 and difference[inside].mean() > 20.0
    # The crop box of every crop policy is exact: on a wide photo, a crop made at the box's own
    # size (no resampling) pasted back reproduces the photo bit for bit; a box off by a pixel
    # would not.
    square = comfy.node["node_encode_reference"].square_portrait
    wide = np.ascontiguousarray(photo[56:456])  # 512 x 400
    for policy, side in (("face", None), ("center", 400), ("pad", 512)):
        side = side or square(wide, policy, 64, 0)[1].size  # the detector decides the face box
        crop, crop_box = square(wide, policy, side, 0)
        assert crop_box.size == side, (policy, crop_box)
        np.testing.assert_array_equal(paste_back(crop, wide, crop_box), wide, err_msg=policy)
    ftv = comfy.node["node_frames_to_video"]
    with pytest.raises(EMOInputError, match="crop_box is not connected"):
        ftv.paste_target(_image(photo), None)
    with pytest.raises(EMOInputError, match="original_image is 256x256 but Encode Reference "
                                            "cropped a 512x512 image"):
        ftv.paste_target(_image(photo[:256, :256]), full_run.crop_box)
