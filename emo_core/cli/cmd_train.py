"""``python -m emo_core train --stage 1|2|3 --config FILE.yaml``: one EMO training stage.

Runs on one CPU or GPU as is; for several GPUs or nodes start it through accelerate
(``accelerate launch -m emo_core train ...``; FSDP / DeepSpeed come from ``accelerate config``).
``batch_size`` is per process: N processes train on global batches of N x batch_size, the same
samples, noise and losses as one process with N x batch_size. Several CPU processes (gloo):
``accelerate launch --multi_gpu --num_processes N -m emo_core train ... --cpu`` (accelerate's
own ``--cpu`` launcher starts one process unless MPI is set up).
Checkpoints go to ``output_dir/step-N/`` (``emo.safetensors`` = the next stage's
``init_checkpoint``); ``--resume latest`` continues exactly where the last checkpoint stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .help_format import HelpFormatter


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train EMO stage 1, 2 or 3 (accelerate: CPU, GPU, multi-GPU)",
        description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--stage", type=int, choices=(1, 2, 3), required=True,
                        help="1: images (ReferenceNet, Backbone, Face Locator); 2: + temporal and "
                             "audio layers on clips; 3: temporal + speed layers only")
    parser.add_argument("--config", type=Path, required=True,
                        help="YAML training config (see configs/train_stage*.yaml)")
    parser.add_argument("--init-checkpoint", default=None,
                        help="override the config's init_checkpoint (previous stage's weights)")
    parser.add_argument("--output-dir", default=None, help="override the config's output_dir")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="override the config's max_steps")
    parser.add_argument("--resume", default=None,
                        help="'latest' or a step-N folder: continue that run exactly")
    parser.add_argument("--cpu", action="store_true",
                        help="train on the CPU even where a GPU is present (several processes "
                             "talk over gloo)")
    return parser


def run(args) -> int:
    from ..training.config import load_config
    from .output_guard import refuse_output_over_inputs

    config = load_config(args.config, stage=args.stage, init_checkpoint=args.init_checkpoint,
                         output_dir=args.output_dir, max_steps=args.max_steps)
    # step-N folders are replaced when that step is saved again: nothing read may live there.
    refuse_output_over_inputs([], [("--config", args.config),
                                   ("init_checkpoint", config.init_checkpoint or None),
                                   ("data", config.data or None)],
                              [("output_dir", config.output_dir, ("step-", ".step-"))])
    from ..training.trainer import Trainer

    trainer = Trainer(config, resume=args.resume, cpu=args.cpu)
    losses = trainer.train()
    trainer.end()
    if not trainer.accelerator.is_main_process:
        return 0
    if losses:
        print(f"stage {config.stage}: {len(losses)} steps, last loss {losses[-1]:.4f}")
    print(f"checkpoints in {Path(config.output_dir).resolve()}")
    return 0
