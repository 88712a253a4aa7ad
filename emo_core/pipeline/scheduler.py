"""Diffusers schedulers configured for SD1.5-based EMO weights: one registry, name -> class +
config overrides.

The CLI's ``--scheduler`` choices, the EMO Sampler's ``scheduler`` combo, ``validate()`` and
:func:`make_scheduler` all read :data:`SCHEDULERS`; adding an entry adds it everywhere. Classes are
named as diffusers names them (``_class_name`` in a ``scheduler_config.json``) and imported only
when a scheduler is built, so the CLI parser reads this module without importing diffusers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import EMOInputError

# SD1.5's training noise schedule (stable-diffusion-v1-5/scheduler/scheduler_config.json).
SD15_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
}


@dataclass(frozen=True)
class SchedulerEntry:
    """``class_name``: a scheduler class exported by ``diffusers``; ``overrides``: config keys on
    top of :data:`SD15_SCHEDULE` and the prediction type (they win over both); ``description``:
    the help text shown for this choice."""

    class_name: str
    description: str
    overrides: Mapping = field(default_factory=dict)


_DDIM = {"clip_sample": False, "set_alpha_to_one": False}

SCHEDULERS: dict[str, SchedulerEntry] = {
    "ddim": SchedulerEntry(
        "DDIMScheduler", "the paper's sampler (reads the model output as the checkpoint says: "
        "epsilon or v-prediction)", _DDIM),
    "ddim-vpred-trailing": SchedulerEntry(
        "DDIMScheduler", "v-prediction, zero terminal SNR, trailing spacing: for "
        "Hallo/EchoMimic-style weights",
        {**_DDIM, "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
         "timestep_spacing": "trailing"}),
    "dpmpp-2m": SchedulerEntry(
        "DPMSolverMultistepScheduler", "DPM-Solver++ (2M), good results in fewer steps",
        {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler": SchedulerEntry("EulerDiscreteScheduler", "Euler, fewer steps"),
    "unipc": SchedulerEntry("UniPCMultistepScheduler", "UniPC, good results in fewer steps"),
}


def scheduler_entry(name: str) -> SchedulerEntry:
    try:
        return SCHEDULERS[name]
    except (KeyError, TypeError):
        raise EMOInputError(f"unknown scheduler {name!r}; choose one of "
                            f"{', '.join(SCHEDULERS)}") from None


def schedulers_help() -> str:
    """``"ddim: ...; ddim-vpred-trailing: ...; ..."`` for the CLI help and the node tooltip."""
    return "; ".join(f"{name}: {entry.description}" for name, entry in SCHEDULERS.items())


def scheduler_config(name: str, prediction_type: str = "epsilon") -> dict:
    """The diffusers config of scheduler ``name`` for weights trained on ``prediction_type``."""
    return {**SD15_SCHEDULE, "prediction_type": prediction_type,
            **scheduler_entry(name).overrides}


def make_scheduler(name: str, prediction_type: str = "epsilon"):
    """A fresh scheduler (schedulers keep per-run state, so build one per clip)."""
    import diffusers

    entry = scheduler_entry(name)
    return getattr(diffusers, entry.class_name).from_config(
        scheduler_config(name, prediction_type))
