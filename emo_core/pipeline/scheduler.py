"""Diffusers schedulers configured for SD1.5-based EMO weights."""

from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

# SD1.5's training noise schedule (stable-diffusion-v1-5/scheduler/scheduler_config.json).
SD15_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
}

_CLASSES = {
    "ddim": DDIMScheduler,
    "ddim-vpred-trailing": DDIMScheduler,
    "dpmpp-2m": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
    "unipc": UniPCMultistepScheduler,
}


def make_scheduler(name: str, prediction_type: str = "epsilon"):
    """A fresh scheduler (schedulers keep per-run state, so build one per clip).

    ``"ddim"`` is the paper's sampler. ``"ddim-vpred-trailing"`` is v-prediction with zero terminal
    SNR and trailing timestep spacing, what Hallo/EchoMimic-style weights were trained with.
    """
    config = dict(SD15_SCHEDULE, prediction_type=prediction_type)
    if name == "ddim":
        config.update(clip_sample=False, set_alpha_to_one=False)
    elif name == "ddim-vpred-trailing":
        config.update(
            clip_sample=False,
            set_alpha_to_one=False,
            prediction_type="v_prediction",
            rescale_betas_zero_snr=True,
            timestep_spacing="trailing",
        )
    elif name == "dpmpp-2m":
        config.update(algorithm_type="dpmsolver++", solver_order=2)
    try:
        scheduler_class = _CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {sorted(_CLASSES)}") from None
    return scheduler_class.from_config(config)
