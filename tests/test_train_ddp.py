"""Multi-process training for real: ``accelerate launch`` starts two CPU processes of
``train --stage 2`` that talk over gloo (DDP), and their run equals one process with the same
global batch: the same logged losses and the same final weights.

Both runs are subprocesses through the user path (``python -m emo_core train`` and
``accelerate launch ... -m emo_core train``) on procedural clips in the shard format, at the tiny
preset, with every source of randomness on (condition dropout, noise offset, Min-SNR), LR warmup
and gradient accumulation (2 micro-batches per step).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import Wav2Vec2Model

from emo_core.io.emo_checkpoint import save_emo_checkpoint
from emo_core.models.emo_models import EMOModels
from emo_core.models.presets import emo_component_configs, vae_config, wav2vec2_config
from emo_core.training.procedural.shards import write_procedural_shards

REPO = Path(__file__).resolve().parents[1]
FRAMES, MOTION, PER_PROCESS, PROCESSES, STEPS, ACCUMULATE = 3, 2, 2, 2, 3, 2
# Each subprocess trains 3 steps of batch <= 4 at the tiny preset (a few seconds); imports and
# the gloo rendezvous dominate. A hang (a rank waiting on a dead peer) fails here, not in CI's
# global limit.
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(command: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run ``command`` in its own process group; on timeout kill the group (launcher + ranks)."""
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{command[:6]} did not finish in {TIMEOUT_S} s (a rank hung?):\n"
                    f"{output[-4000:]}")
    return subprocess.CompletedProcess(command, process.returncode, output, None)


def _env(tmp: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO),
               # An empty accelerate config folder: a developer's default_config.yaml must not
               # change the launch.
               HF_HOME=str(tmp / "hf_home"), MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(_free_port()))
    env.pop("WORLD_SIZE", None)
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo otherwise binds where the hostname resolves
    return env


def _config(tmp: Path, data: Path, name: str, batch_size: int) -> Path:
    values = dict(stage=2, data=str(data), output_dir=str(tmp / name),
                  init_checkpoint=str(tmp / "init.safetensors"), seed=0,
                  frames=FRAMES, motion_frames=MOTION, batch_size=batch_size,
                  gradient_accumulation=ACCUMULATE,
                  learning_rate=1e-4, warmup_steps=2, max_steps=STEPS, checkpoint_every=1000,
                  log_every=1, snr_gamma=5.0, noise_offset=0.05, ema=True, ema_decay=0.5,
                  dropout=dict(reference=0.2, audio=0.2, both=0.2, motion=0.3))
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def _logged(run: Path) -> dict[str, list[tuple[int, float]]]:
    """The TensorBoard scalars the run logged: ``{tag: [(step, value)]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # accelerate puts the hparams into a second file in a sub-folder; the scalars are here.
    events = sorted((run / "stage2").glob("events.out.tfevents*"))
    assert len(events) == 1, f"expected one TensorBoard event file (main process), got {events}"
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
            for tag in ("loss", "lr", "samples")}


def _launch(config: Path, port: str, max_steps: int = STEPS) -> list[str]:
    """``accelerate launch`` of ``train --stage 2`` on ``PROCESSES`` CPU ranks.

    accelerate's own ``--cpu`` launcher starts ONE process unless MPI is set up; its torchrun
    launcher (``--multi_gpu``) starts the ranks, and ``train --cpu`` makes them use gloo."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
            "--num_processes", str(PROCESSES), "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", port,
            "-m", "emo_core", "train", "--stage", "2", "--cpu", "--config", str(config),
            "--max-steps", str(max_steps)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(0)
    wav2vec = Wav2Vec2Model(wav2vec2_config("tiny")).eval()
    write_procedural_shards(tmp / "data", range(4), num_frames=FRAMES + MOTION + 2,
                            wav2vec=wav2vec, size=64, clips_per_shard=2)
    # The tiny preset with 2 channels per GroupNorm group instead of 1 (SD1.5 has 10). With 1,
    # a per-channel bias or time embedding before a GroupNorm cannot change the output: its
    # gradient is 0 up to float noise (1e-11..1e-6), and Adam, which steps ~lr whatever the
    # gradient's size, turns that noise into steps whose sign depends on summation order, so
    # two equally correct runs differ by up to 2 lr there (measured 1.6e-5 at lr 1e-5, against
    # 1.2e-7 with 2 channels per group at lr 1e-4).
    configs = emo_component_configs("tiny")
    configs["vae"] = vae_config("tiny")
    for name in ("reference_net", "backbone"):
        configs[name]["unet"]["norm_num_groups"] = 16
    torch.manual_seed(0)
    save_emo_checkpoint(EMOModels.from_configs(configs), tmp / "init.safetensors")
    return tmp, tmp / "data"


@pytest.fixture(scope="module")
def runs(data):
    tmp, shards = data
    single = [sys.executable, "-m", "emo_core", "train", "--stage", "2", "--cpu",
              "--config", str(_config(tmp, shards, "single", PER_PROCESS * PROCESSES))]
    env = _env(tmp)
    ddp = _launch(_config(tmp, shards, "ddp", PER_PROCESS), env["MASTER_PORT"])
    results = {"single": _run(single, env), "ddp": _run(ddp, env)}
    for name, result in results.items():
        assert result.returncode == 0, f"{name} run failed:\n{result.stdout[-6000:]}"
    return tmp, results


def test_two_processes_really_ran_over_gloo(runs):
    tmp, results = runs
    output = results["ddp"].stdout
    # Two ranks in one gloo group (the trainer reports what accelerate set up) ...
    assert "2 process(es) (MULTI_CPU, gloo), global batch 4 = 2 x 2" in output, output[-3000:]
    # ... and the logs count global batches of 2 x 2 samples, 2 micro-batches per step.
    assert [v for _, v in _logged(tmp / "ddp")["samples"]] == \
        [ACCUMULATE * PER_PROCESS * PROCESSES * (s + 1) for s in range(STEPS)]
    # The summary is printed once (main process), not once per rank.
    assert output.count("stage 2: 3 steps, last loss") == 1, output[-3000:]


def test_losses_equal_one_process_with_the_same_global_batch(runs):
    tmp, _ = runs
    single, ddp = _logged(tmp / "single"), _logged(tmp / "ddp")
    assert [s for s, _ in ddp["loss"]] == [s for s, _ in single["loss"]] == [1, 2, 3]
    # Warmup counts optimizer steps of the global batch in both (accelerate would otherwise step
    # a prepared scheduler once per process).
    assert [v for _, v in ddp["lr"]] == pytest.approx([v for _, v in single["lr"]], rel=1e-6)
    # Same samples, same per-sample t / noise / dropout, gradients averaged by DDP: the only
    # difference is float32 summation order (two half-batch means averaged vs one mean; the
    # gloo all-reduce sums the two ranks' gradients), ~1e-7 relative on losses of ~1.
    for (_, a), (_, b) in zip(ddp["loss"], single["loss"], strict=True):
        assert abs(a - b) < 1e-5, (ddp["loss"], single["loss"])
    # The losses are not all alike (fresh samples and noise each step), so equal means the same
    # data reached the same weights.
    values = [v for _, v in single["loss"]]
    assert max(values) - min(values) > 1e-3, values


def test_final_weights_equal_one_process_within_1e5(runs):
    tmp, _ = runs
    name = f"step-{STEPS:06d}"
    initial = load_file(str(tmp / "init.safetensors"))
    for checkpoint in ("emo.safetensors", "emo_ema.safetensors"):
        single = load_file(str(tmp / "single" / name / checkpoint))
        ddp = load_file(str(tmp / "ddp" / name / checkpoint))
        assert single.keys() == ddp.keys() == initial.keys()
        assert all(torch.equal(ddp[k], single[k]) for k in single
                   if torch.equal(single[k], initial[k])), "weights one process kept moved"
        trained = [k for k in single if not torch.equal(single[k], initial[k])]
        gap = torch.cat([(ddp[k] - single[k]).abs().flatten() for k in trained])
        moved = torch.cat([(single[k] - initial[k]).abs().flatten() for k in trained])
        # The gradients of the two runs differ by float32 summation order only (other batch
        # sizes in the matmuls; DDP averages two half-batch gradients over gloo; measured median
        # 8e-8 relative), and with real gradients everywhere (see `data`) Adam keeps that: the
        # measured worst gap is 1.2e-7 (one float32 step at |w| ~ 1), the mean 9e-11.
        assert float(gap.max()) < 1e-5, (checkpoint, float(gap.max()))
        # Other samples or other noise per rank change the steps of every weight instead: the
        # trained weights moved 5e-5 on average (lr 1e-4, warmup 0, 0.5, 1), 1.5e-4 at most.
        assert float(gap.mean()) < 1e-3 * float(moved.mean()), (float(gap.mean()),
                                                                 float(moved.mean()))
        assert float(moved.max()) > 10 * 1e-5, checkpoint


def test_only_the_main_process_wrote(runs):
    tmp, _ = runs

    def files(run):
        return sorted(str(p.relative_to(tmp / run)) for p in (tmp / run).rglob("*")
                      if p.is_file() and "events.out.tfevents" not in p.name
                      and p.name != "hparams.yml")

    # The same checkpoint files as one process writes: no per-rank training-1.* state, no
    # staging folder left behind (each file is written to a temporary name and renamed).
    assert files("ddp") == files("single")
    assert f"step-{STEPS:06d}/training.json" in files("ddp")
    assert not list((tmp / "ddp").rglob("*.tmp")) and not list((tmp / "ddp").glob(".step-*"))
    # TensorBoard files are named ...<host>.<pid>.<n>: one writer process, the main one.
    writers = {p.name.split(".")[-2] for p in (tmp / "ddp").rglob("events.out.tfevents*")}
    assert len(writers) == 1, writers


def test_a_failing_rank_ends_the_run_with_its_error(data):
    """Only the main process writes checkpoints; when that fails, the other rank must not wait
    at the next barrier forever: the launcher ends it and the run fails with the cause."""
    tmp, shards = data
    config = _config(tmp, shards, "failing", PER_PROCESS)
    blocker = tmp / "failing" / "step-000001"
    blocker.parent.mkdir()
    blocker.write_text("not a checkpoint", encoding="utf-8")
    env = _env(tmp)
    result = _run(_launch(config, env["MASTER_PORT"], max_steps=1), env)  # fails on timeout
    assert result.returncode != 0
    assert "step-000001 exists and is not a folder" in result.stdout, result.stdout[-4000:]
    assert blocker.read_text(encoding="utf-8") == "not a checkpoint"
    assert not list((tmp / "failing").glob(".step-*")), "staging folder left behind"
