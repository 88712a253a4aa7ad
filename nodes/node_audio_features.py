"""Wav2Vec Audio Features: core AUDIO -> the checkpoint family's per-video-frame audio features
(EMO_AUDIO): wav2vec windows, or EchoMimic's whisper rows."""

from __future__ import annotations

import logging

from . import comfy_bridge as bridge
from .comfy_bridge import io
from .convert import audio_waveform, waveform_to_audio
from .runtime import modules_on_device
from .settings_inputs import settings_input
from .types import EMOAudio, EMOAudioType, EMOModelsBundle, EMOModelsType

logger = logging.getLogger(__name__)

RATE_16K = 16000


class EMOAudioFeatures(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EMOAudioFeatures",
            display_name="Wav2Vec Audio Features",
            category="EMO",
            description="Runs the checkpoint's audio encoder over the whole clip (chunked): "
                        "wav2vec2, or the whisper-tiny inside EchoMimic checkpoints, and cuts "
                        "one feature window per video frame. The frame count is "
                        "round(seconds x fps), any length.",
            inputs=[
                EMOModelsType.Input("emo_models", tooltip="Models from Load EMO Models."),
                io.Audio.Input(
                    "audio", tooltip="Speech or singing, any sample rate and channel count "
                                     "(mixed to mono, resampled to 16 kHz). The video will be "
                                     "exactly as long as this clip."),
                settings_input(
                    "fps", note="EMO is trained at 25; other rates work but change how much "
                                "audio each frame sees. Use the same value in Frames to Video. "
                                "More fps = more frames to generate."),
                io.Boolean.Input(
                    "allow_silence", default=False,
                    tooltip="Silent audio is refused (usually a wrong or muted track). Turn on to "
                            "generate anyway: the face then stays almost still."),
                io.Combo.Input(
                    "separate_vocals", options=bridge.list_vocal_separators(),
                    default=bridge.VOCALS_OFF, optional=True,
                    tooltip="Optional: isolate the voice before wav2vec with an MDX-Net model "
                            "from models/audio_separator (Hallo's Kim_Vocal_2.onnx), for songs "
                            "or noisy speech. The video keeps the original sound."),
            ],
            outputs=[
                EMOAudioType.Output(display_name="emo_audio"),
                io.Audio.Output(display_name="audio_16k",
                                tooltip="16 kHz mono audio trimmed to the frame count."),
                io.Int.Output(display_name="frame_count"),
            ],
        )

    @classmethod
    def execute(cls, emo_models: EMOModelsBundle, audio, fps, allow_silence=False,
                separate_vocals=bridge.VOCALS_OFF):
        from emo_core.audio.waveform import check_not_silent, to_mono_16k

        waveform, sample_rate = audio_waveform(audio, "audio")
        check_not_silent(waveform, "input (Wav2Vec Audio Features)", allow_silence)
        progress = bridge.ProgressReporter()  # per wav2vec chunk; also answers interrupts
        progress(0, 1)
        speech = (waveform, sample_rate)
        if separate_vocals not in (None, bridge.VOCALS_OFF):
            from emo_core.audio.separation import separate_vocals as isolate

            speech = isolate(waveform, sample_rate, bridge.vocal_separator_path(separate_vocals))
        family = emo_models.family
        encoder = family.audio_encoder(emo_models.wav2vec)  # wav2vec2, or the checkpoint's own
        with modules_on_device(emo_models, encoder):
            # the checkpoint family's front-end (Hallo: all layers, padded to whole clips, at
            # the checkpoint's fps; EchoMimic: whisper rows of every encoder layer)
            features = family.audio_features(
                encoder, *speech, fps, device=emo_models.device, progress=progress,
                cancel=bridge.check_interrupted)
            fps = features.fps
        frames = int(features.num_frames)
        samples = round(frames / float(fps) * RATE_16K)
        # the soundtrack is the original audio, also when wav2vec heard the vocals only
        trimmed = (features.waveform_16k if speech[0] is waveform
                   else to_mono_16k(waveform, sample_rate))[:samples]
        logger.info("audio %.2f s -> %d frames at %g fps", waveform.shape[-1] / sample_rate,
                    frames, fps)
        audio_16k = waveform_to_audio(trimmed, RATE_16K)
        audio_16k["emo_fps"] = float(fps)  # Frames to Video refuses another fps (IMAGE path too)
        return io.NodeOutput(EMOAudio(features=features), audio_16k, frames)
