"""Proof of learning: train a tiny EMO through stages 1-3 on procedural talking heads (CPU),
then measure lip sync, identity, speed control and long-video drift on held-out identities and
held-out audio. Results go to ``out_dir/proof.json`` (+ an mp4 and the trained tiny weights).

Splits: training identities are seeds ``0..train_identities-1`` with audio seeds drawn from
``seed``; held-out identities are seeds >= 100000 and held-out audio seeds >= 200000, so no
held-out face or sentence is ever seen in training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import Wav2Vec2Model

from ..io.emo_checkpoint import load_emo_checkpoint, save_emo_checkpoint
from ..models.emo_models import EMOModels
from ..models.presets import emo_component_configs, unet_config, vae_config, wav2vec2_config
from .config import DropoutConfig, TrainConfig
from .procedural.shards import write_procedural_shards
from .procedural.vae import fit_vae, latent_scale

logger = logging.getLogger(__name__)

HELD_OUT_IDENTITY = 100_000
HELD_OUT_AUDIO = 200_000
# v-prediction: with epsilon, the loss at high noise (where only the reference can tell a face's
# colours) scales with SNR ~ 0.005, so the tiny model learned to ignore the reference; a v target
# is ~ -x0 there and rewards copying it (docs/TRAINING.md, "Proof of learning").
PREDICTION_TYPE = "v_prediction"


@dataclass(frozen=True)
class ProofPlan:
    """Sizes and step counts of the proof (defaults fit ~35 min of 2 shared CPU cores)."""

    size: int = 64
    fps: float = 25.0
    frames: int = 8
    motion_frames: int = 2
    train_identities: int = 192
    clip_frames: int = 24
    vae_steps: int = 400
    stage_steps: tuple[int, int, int] = (800, 800, 1000)
    stage_batch: tuple[int, int, int] = (8, 4, 4)
    learning_rate: float = 5e-4
    eval_steps: int = 20
    eval_samples: int = 4
    eval_frames: int = 32
    speeds: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    long_clips: int = 10
    long_samples: int = 3
    seed: int = 0


def initial_models(plan: ProofPlan, seed: int) -> EMOModels:
    """Tiny EMO (21 temporal / 16 audio sites kept) with ``plan.motion_frames`` zero maps.

    ReferenceNet and Backbone start as copies of ONE random UNet, the same kind of start that
    ``init-checkpoint`` gives real weights (one SD1.5 UNet copied into both).
    """
    configs = emo_component_configs("tiny")
    configs["backbone"]["motion_frames"] = plan.motion_frames
    configs["sampling"]["prediction_type"] = PREDICTION_TYPE
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(unet_config("tiny"))
    return EMOModels.from_unet2d(unet, configs, vae=AutoencoderKL.from_config(vae_config("tiny")))


def _stage_config(plan: ProofPlan, stage: int, data: Path, out: Path, init: Path) -> TrainConfig:
    return TrainConfig(
        stage=stage, data=str(data), output_dir=str(out / f"stage{stage}"),
        init_checkpoint=str(init), seed=plan.seed + stage, frames=plan.frames,
        motion_frames=plan.motion_frames, batch_size=plan.stage_batch[stage - 1],
        learning_rate=plan.learning_rate, max_steps=plan.stage_steps[stage - 1],
        warmup_steps=20, snr_gamma=5.0, prediction_type=PREDICTION_TYPE, noise_offset=0.02,
        ema=False, checkpoint_every=10**6, log_every=25,
        dropout=DropoutConfig(reference=0.05, audio=0.1, both=0.05, motion=0.2),
    )


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _write_json(path: Path, value) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def prepare(plan: ProofPlan, out: Path) -> tuple[Path, Wav2Vec2Model, dict]:
    """Tiny wav2vec, VAE fitted to faces, initial checkpoint, latent training shards.

    A work folder kept from an earlier run (``--keep-work``) with the same plan is reused.
    """
    init = out / "init.safetensors"
    if (out / "prepare.json").is_file() and (out / "data" / "index.json").is_file():
        from ..io.wav2vec import load_wav2vec

        logger.info("reusing the prepared VAE, init checkpoint and shards in %s", out)
        return init, load_wav2vec(out / "wav2vec2"), dict(_read_json(out / "prepare.json"),
                                                          reused=True)
    torch.manual_seed(plan.seed)
    wav2vec = Wav2Vec2Model(wav2vec2_config("tiny")).eval()
    models = initial_models(plan, plan.seed)
    started = time.time()
    vae_losses = fit_vae(models.vae, plan.vae_steps, plan.size, seed=plan.seed)
    models.vae.register_to_config(scaling_factor=latent_scale(models.vae, plan.size))
    save_emo_checkpoint(models, init)
    wav2vec.save_pretrained(out / "wav2vec2")
    data = out / "data"
    write_procedural_shards(data, range(plan.train_identities), plan.clip_frames, wav2vec,
                            plan.size, plan.fps, vae=models.vae, seed=plan.seed)
    info = {"vae_mse_first": vae_losses[0], "vae_mse_last": vae_losses[-1],
            "vae_scaling_factor": models.vae.config.scaling_factor,
            "prepare_seconds": time.time() - started}
    _write_json(out / "prepare.json", info)
    logger.info("prepared in %.0f s: %s", info["prepare_seconds"], info)
    return init, wav2vec, info


def train_stages(plan: ProofPlan, out: Path, init: Path) -> tuple[Path, dict]:
    """Stages 1, 2, 3, each from the previous stage's saved EMO checkpoint (a stage whose final
    checkpoint is already in a kept work folder is reused, not retrained)."""
    data, checkpoint, info = out / "data", init, {}
    for stage in (1, 2, 3):
        folder = out / f"stage{stage}"
        final = folder / f"step-{plan.stage_steps[stage - 1]:06d}" / "emo.safetensors"
        if final.is_file():
            logger.info("stage %d: reusing %s", stage, final)
            info[f"stage{stage}"] = dict(_read_json(folder / "info.json"), reused=True)
            checkpoint = final
            continue
        from .trainer import Trainer  # accelerate: training only, not the cartoon demo

        started = time.time()
        trainer = Trainer(_stage_config(plan, stage, data, out, checkpoint))
        losses = trainer.train()
        trainer.end()
        checkpoint = final
        window = max(len(losses) // 10, 1)
        info[f"stage{stage}"] = {
            "steps": len(losses), "seconds": time.time() - started,
            "loss_first_10pct": sum(losses[:window]) / window,
            "loss_last_10pct": sum(losses[-window:]) / window,
        }
        _write_json(folder / "info.json", info[f"stage{stage}"])
        logger.info("stage %d done: %s", stage, info[f"stage{stage}"])
    return checkpoint, info


def evaluate(plan: ProofPlan, checkpoint: Path, wav2vec, out: Path) -> dict:
    from ..pipeline.pipeline import EMOPipeline
    from ..pipeline.settings import GenerationSettings
    from ..pipeline.video import Mp4Writer
    from .procedural.evaluate import Evaluator

    started = time.time()
    pipeline = EMOPipeline(load_emo_checkpoint(checkpoint))
    settings = GenerationSettings(fps=plan.fps, steps=plan.eval_steps, seed=plan.seed,
                                  frames_per_clip=plan.frames, motion_frames=plan.motion_frames,
                                  size=plan.size)
    evaluator = Evaluator(pipeline, wav2vec, settings, plan.size)
    seeds = [(HELD_OUT_IDENTITY + i, HELD_OUT_AUDIO + i) for i in range(plan.eval_samples)]
    results = evaluator.lip_sync(seeds, plan.eval_frames)
    results.update(evaluator.speed_control(seeds, list(plan.speeds), plan.eval_frames))
    long_seeds = [(HELD_OUT_IDENTITY + 50 + i, HELD_OUT_AUDIO + 50 + i)
                  for i in range(plan.long_samples)]
    long_results, video, clip = evaluator.long_video(long_seeds, plan.long_clips)
    results.update(long_results)
    waveform = torch.from_numpy(clip.waveform)[None]
    with Mp4Writer(out / "held_out_sample.mp4", plan.fps, plan.size, plan.size,
                   audio=(waveform, 16000)) as writer:
        writer.write(video)
    results["eval_seconds"] = time.time() - started
    return results


def prove_learning(out_dir, plan: ProofPlan = ProofPlan(), keep_work: bool = False) -> dict:
    """Run everything; returns (and writes) the figures."""
    out = Path(out_dir)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    init, wav2vec, prep = prepare(plan, work)
    checkpoint, training = train_stages(plan, work, init)
    results = evaluate(plan, checkpoint, wav2vec, out)
    figures = {"plan": dataclasses.asdict(plan), "prepare": prep, "training": training,
               "results": results, "total_seconds": time.time() - started,
               "torch_threads": torch.get_num_threads()}
    weights = out / "tiny_emo"
    weights.mkdir(exist_ok=True)
    # float16 halves the committed file (tiny weights are for the demo, not for more training).
    save_emo_checkpoint(load_emo_checkpoint(checkpoint).half(), weights / "emo.safetensors")
    wav2vec.save_pretrained(weights / "wav2vec2")
    _write_json(out / "proof.json", figures)
    if not keep_work:
        shutil.rmtree(work)
    return figures
