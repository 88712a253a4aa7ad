"""The ``demo --talking-cartoon`` run: tiny trained EMO + a held-out cartoon face + any speech.

Imported only when that demo runs (it pulls in torch, diffusers and the training helpers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..audio.waveform import load_audio_file
from ..io.emo_checkpoint import load_emo_checkpoint
from ..io.wav2vec import load_wav2vec
from ..pipeline.pipeline import EMOPipeline
from ..pipeline.settings import GenerationSettings
from ..pipeline.video import Mp4Writer
from ..training.procedural.evaluate import correlation
from ..training.procedural.faces import measure_mouth, random_identity
from ..training.procedural.talking_cartoon import generate_talking_cartoon, loudness_per_frame
from ..training.prove_learning import HELD_OUT_IDENTITY, ProofPlan
from .cmd_demo import CARTOON_SIZE, CARTOON_STEPS
from .demo_progress import DemoProgress


def talking_cartoon(weights: Path, args, out: Path, progress: DemoProgress) -> tuple[int, float]:
    """Write the video to ``out``; returns ``(frames, r)``, r = correlation of the mouth opening
    measured in the frames with the audio loudness per frame."""
    torch.set_num_threads(args.threads)
    plan = ProofPlan()
    settings = GenerationSettings(fps=args.fps, steps=args.steps or CARTOON_STEPS,
                                  seed=args.seed, frames_per_clip=plan.frames,
                                  motion_frames=plan.motion_frames, size=CARTOON_SIZE).validate()
    progress.stage("audio, models")
    waveform, rate = load_audio_file(args.audio)
    # Held-out faces: training used identity seeds 0..191; 1000 above the proof's own held-out
    # seeds, so the demo face is not one the figures were measured on either.
    identity = random_identity(np.random.default_rng(HELD_OUT_IDENTITY + 1000 + args.seed))
    pipeline = EMOPipeline(load_emo_checkpoint(weights / "emo.safetensors"))
    frames = generate_talking_cartoon(pipeline, load_wav2vec(weights / "wav2vec2"), identity,
                                      waveform, rate, 1.0, settings, CARTOON_SIZE,
                                      progress=progress.denoising)
    progress.stage("encoding video")
    with Mp4Writer(out, args.fps, CARTOON_SIZE, CARTOON_SIZE, audio=(waveform, rate)) as writer:
        writer.write(frames)
    r = correlation(measure_mouth(frames), loudness_per_frame(waveform, rate, args.fps,
                                                              len(frames)))
    return len(frames), float(r)
