"""Training configuration: a frozen dataclass loaded from YAML and validated field by field."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import EMOInputError
from ..prediction import PREDICTION_TYPES

logger = logging.getLogger(__name__)

MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass(frozen=True)
class DropoutConfig:
    """Condition dropout rates for classifier-free guidance (per training sample).

    ``reference``: only the reference is dropped; ``audio``: only the audio; ``both``: both;
    the three events are exclusive, so their sum must be <= 1. ``motion``: the motion frames are
    zeroed (what the first clip of a video sees at inference), independent of the others.
    """

    reference: float = 0.05
    audio: float = 0.05
    both: float = 0.05
    motion: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """Everything one ``python -m emo_core train --stage S`` run needs besides the data itself."""

    stage: int = 1
    data: str = ""  # shard folder (holds index.json), from prepare-data or the procedural set
    output_dir: str = "runs/emo"
    init_checkpoint: str = ""  # stage 1: init-checkpoint output; stages 2/3: previous stage's
    preset: str = ""  # build random models from a preset instead of a checkpoint (tests, proof)
    seed: int = 0
    frames: int = 8  # f: frames per training clip (stage 1 always uses 1)
    motion_frames: int = 4  # n
    batch_size: int = 2
    gradient_accumulation: int = 1
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    max_steps: int = 1000
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    prediction_type: str = "epsilon"
    noise_offset: float = 0.0
    snr_gamma: float = 0.0  # 0: plain MSE; > 0: Min-SNR-gamma weighting per sample
    dropout: DropoutConfig = field(default_factory=DropoutConfig)
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False
    ema: bool = False
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    log_every: int = 10
    stage2_trains_spatial: bool = True
    num_workers: int = 0

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @property
    def clip_frames(self) -> int:
        """Frames per sample the stage reads: 1 target image in stage 1, ``f`` afterwards."""
        return 1 if self.stage == 1 else self.frames

    @property
    def clip_motion_frames(self) -> int:
        return 0 if self.stage == 1 else self.motion_frames

    def validate(self) -> TrainConfig:
        """Raise :class:`EMOInputError` naming the first bad field; return self."""
        if self.stage not in (1, 2, 3):
            raise EMOInputError(f"config 'stage' must be 1, 2 or 3, got {self.stage!r}")
        _int_range("frames", self.frames, 1, 32)
        _int_range("motion_frames", self.motion_frames, 0, 31)
        if self.frames + self.motion_frames > 32:
            raise EMOInputError(f"config frames + motion_frames must be <= 32, got "
                                f"{self.frames} + {self.motion_frames}; lower one of them")
        for name, low in (("batch_size", 1), ("gradient_accumulation", 1), ("max_steps", 1),
                          ("checkpoint_every", 1), ("log_every", 1), ("warmup_steps", 0),
                          ("num_workers", 0), ("seed", 0)):
            _int_range(name, getattr(self, name), low, 2**31)
        for name in ("learning_rate", "weight_decay", "max_grad_norm", "noise_offset",
                     "snr_gamma", "ema_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise EMOInputError(f"config {name!r} must be a finite number >= 0, got {value!r}")
        if not 0 < self.learning_rate < 1:
            raise EMOInputError(f"config 'learning_rate' must be in (0, 1), got "
                                f"{self.learning_rate}")
        if not self.ema_decay < 1:
            raise EMOInputError(f"config 'ema_decay' must be < 1, got {self.ema_decay}")
        _choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        _choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        self._validate_dropout()
        if not self.data:
            raise EMOInputError("config 'data' is empty; set it to a shard folder written by "
                                "`python -m emo_core prepare-data`")
        if bool(self.init_checkpoint) == bool(self.preset):
            raise EMOInputError("config needs exactly one of 'init_checkpoint' (an EMO checkpoint "
                                "from init-checkpoint or the previous stage) and 'preset'")
        return self

    def _validate_dropout(self) -> None:
        rates = dataclasses.asdict(self.dropout)
        for name, value in rates.items():
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise EMOInputError(f"config dropout.{name} must be in [0, 1], got {value!r}")
        exclusive = rates["reference"] + rates["audio"] + rates["both"]
        if exclusive > 1.0:
            raise EMOInputError(f"config dropout reference + audio + both must be <= 1, got "
                                f"{exclusive}")


def _int_range(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise EMOInputError(f"config {name!r} must be an integer in {low}..{high}, got {value!r}")


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise EMOInputError(f"config {name!r} must be one of {allowed}, got {value!r}")


def config_from_dict(values: dict, source: str = "config") -> TrainConfig:
    """Build and validate; unknown keys are refused (a typo must not silently do nothing)."""
    if not isinstance(values, dict):
        raise EMOInputError(f"{source} must be a YAML mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise EMOInputError(f"{source} has unknown keys {unknown}; known keys: {sorted(known)}")
    values = dict(values)
    dropout = values.pop("dropout", None) or {}
    dropout_known = {f.name for f in dataclasses.fields(DropoutConfig)}
    if not isinstance(dropout, dict) or set(dropout) - dropout_known:
        raise EMOInputError(f"{source} 'dropout' must map some of {sorted(dropout_known)} to "
                            f"rates, got {dropout!r}")
    return TrainConfig(dropout=DropoutConfig(**dropout), **values).validate()


def load_config(path, **overrides) -> TrainConfig:
    """YAML file -> validated :class:`TrainConfig`; ``overrides`` win over the file."""
    path = Path(path)
    if not path.is_file():
        raise EMOInputError(f"training config {str(path)!r} does not exist; pass a YAML file "
                            "(examples in configs/train_stage*.yaml)")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise EMOInputError(f"training config {str(path)!r} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise EMOInputError(f"training config {str(path)!r} must be a mapping of keys to values")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(values, source=f"training config {str(path)!r}")
