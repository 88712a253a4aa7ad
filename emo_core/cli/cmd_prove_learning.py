"""``python -m emo_core prove-learning``: train a tiny EMO on procedural talking heads (CPU,
~35-45 min on 2 cores) and print lip-sync, identity, speed-control and long-video figures
measured on held-out identities and held-out audio."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from .help_format import HelpFormatter


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prove-learning", help="train a tiny EMO on procedural faces and measure what it learned",
        description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("emo-output/prove-learning"),
                        help="folder for proof.json, held_out_sample.mp4 and tiny_emo/ (the "
                             "committed figures in benchmarks/results/prove_learning are only "
                             "replaced when you name that folder)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every training step count (0.1 = quick smoke run)")
    parser.add_argument("--smoke", action="store_true",
                        help="minimal evaluation too (2 sampling steps, 1 sample): checks wiring")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of model initialisation, training audio and order, and sampling "
                             "noise (the held-out faces and audio stay the same)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the shards and per-stage checkpoints under OUT/work")
    return parser


def run(args) -> int:
    from ..errors import EMOInputError
    from ..paths import check_output_folder

    if args.threads < 1 or not args.scale > 0:
        raise EMOInputError(f"--threads must be >= 1 and --scale > 0, got {args.threads}, "
                            f"{args.scale}")
    check_output_folder(args.out, "--out")  # before torch: a refusal costs well under a second
    import torch

    from ..training.prove_learning import ProofPlan, prove_learning

    torch.set_num_threads(args.threads)
    plan = ProofPlan(seed=args.seed)
    if args.scale != 1.0:
        plan = ProofPlan(
            seed=args.seed, vae_steps=max(2, int(plan.vae_steps * args.scale)),
            stage_steps=tuple(max(2, int(s * args.scale)) for s in plan.stage_steps),
            train_identities=max(8, int(plan.train_identities * args.scale)),
        )
    if args.smoke:
        plan = dataclasses.replace(plan, eval_steps=2, eval_samples=1, eval_frames=16,
                                   speeds=(0.0, 3.0), long_clips=2, long_samples=1)
    figures = prove_learning(args.out, plan, keep_work=args.keep_work)
    print(json.dumps(figures["results"], indent=1))
    return 0
