"""Fuzz suite, round 2 (issue 23): hostile cases for every command through the real command line.

Same machinery as tests/test_fuzz_cli.py (one tests/fuzz_runner.py process forks a child per
case running exactly ``python -m emo_core ARGS``). Classes of issue 23:

- ``c1`` an output that is an input, however spelled (symlinks, ``..``, ``//``, hard links, a
  file inside an input folder, a quoted ``~``): refusal naming both options, and the input's
  bytes unchanged (sha256 before/after);
- ``c3`` unwritable places for demo / demo-weights / prove-learning (a file, /proc, /sys, an
  immutable folder when ``chattr +i`` works here): refusal;
- ``c6`` NaN/inf samples in the audio: success with the exact frame count;
- ``c7`` SIGHUP / SIGQUIT while loading or sampling: cancelled (exit 129 / 131, nothing left);
  a quoted ``~/x.mp4``: written under $HOME (success), refused under $HOME when it cannot be;
- ``c8`` messages: ``dir/.mp4``, a /dev/shm output (not a "system folder"), option errors;
- ``c9`` refusals that need only options/paths/headers (timed in benchmarks/bench_startup.py).

A refusal: exit 2, exactly one ``error:`` line that names the input, no traceback, nothing new in
the case's folder. Totals by class go to test-artifacts/fuzz_cli_round2_totals.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emo_core.cli.main import COMMANDS
from tests.conftest import fixture_path
from tests.fuzz_inputs import speech_clip, wav_bytes
from tests.test_fuzz_cli import ERROR_LINE, frame_count

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
FPS, SECONDS = 10.0, 1.0
SIGNAL_RC = {"SIGHUP": 129, "SIGQUIT": 131}


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if Path(path).is_file() else ""


def _immutable(folder: Path) -> bool:
    """``chattr +i`` on ``folder`` (root in a container usually may); False where it cannot."""
    folder.mkdir(parents=True, exist_ok=True)
    chattr = shutil.which("chattr") or "/usr/bin/chattr"
    done = subprocess.run([chattr, "+i", str(folder)], capture_output=True) \
        if Path(chattr).exists() else None
    return bool(done and done.returncode == 0)


class Cases:
    """Builds the files and the case list: ``{key: case}`` with ``expect``, ``names`` (texts the
    error line must hold), ``keep`` (input files whose bytes must not change), ``folder``."""

    def __init__(self, root: Path, demo: Path):
        self.root, self.demo = root, demo
        self.mediapipe = fixture_path("blaze_face_short_range.tflite").parent
        self.cases: dict[str, dict] = {}
        self._files()

    # ------------------------------------------------------------------ inputs
    def _files(self) -> None:
        r = self.root
        self.portrait = r / "p.png"
        shutil.copy(fixture_path("portrait_astronaut.png"), self.portrait)
        clip = speech_clip(SECONDS)
        self.speech = r / "speech.wav"
        self.speech.write_bytes(wav_bytes(clip))
        self.audio_mp4 = r / "in.mp4"  # a WAV named .mp4 used as --audio
        self.audio_mp4.write_bytes(wav_bytes(clip))
        self.image_mp4 = r / "img.mp4"  # a PNG named .mp4 used as --image
        shutil.copy(self.portrait, self.image_mp4)
        nan = clip.astype("float32")
        nan[100:140] = float("nan")
        nan[900] = float("inf")
        self.nan_wav = r / "nan.wav"
        self.nan_wav.write_bytes(wav_bytes(nan, fmt="f32"))
        inf = clip.astype("float32")
        inf[::97] = float("-inf")
        self.inf_wav = r / "inf.wav"
        self.inf_wav.write_bytes(wav_bytes(inf, fmt="f32"))
        (r / "sub").mkdir()
        (r / "afile").write_text("x")
        (r / "linkdir").symlink_to(r)
        os.link(self.audio_mp4, r / "hard.mp4")
        (r / "soft.mp4").symlink_to(self.audio_mp4)
        (r / "soft2.mp4").symlink_to(r / "soft.mp4")
        self.ckpt = r / "ck"  # checkpoint folder copy with hard links inside
        shutil.copytree(self.demo, self.ckpt)
        os.link(self.ckpt / "emo.safetensors", self.ckpt / "emo.mp4")
        os.link(self.ckpt / "wav2vec2" / "model.safetensors", self.ckpt / "wav2vec2" / "m.mp4")
        self.mp = r / "mp"
        shutil.copytree(self.mediapipe, self.mp)
        tflite = next(self.mp.glob("*.tflite"))
        os.link(tflite, self.mp / "t.mp4")
        self.style = r / "style.safetensors"
        shutil.copy(self.ckpt / "emo.safetensors", self.style)
        os.link(self.style, r / "style.mp4")
        self.onnx = r / "vocals.onnx"
        self.onnx.write_bytes(b"onnx" * 100)
        os.link(self.onnx, r / "vocals.mp4")
        self.face = r / "face_analysis"
        (self.face / "models").mkdir(parents=True)
        (self.face / "models" / "det.onnx").write_bytes(b"x" * 64)
        os.link(self.face / "models" / "det.onnx", self.face / "det.mp4")
        self.home = r / "home"
        (self.home / "tilde").mkdir(parents=True)
        self.imm = r / "imm"
        self.immutable = _immutable(self.imm)
        self._hallo()
        self._sources()
        self._training()

    def _hallo(self) -> None:
        """A Hallo pretrained_models/ layout; the guard runs before any file is parsed."""
        h = self.hallo = self.root / "pretrained_models"
        for rel, data in (("hallo/net.pth", b"net" * 100),
                          ("stable-diffusion-v1-5/unet/config.json", b"{}"),
                          ("sd-vae-ft-mse/config.json", b"{}"),
                          ("sd-vae-ft-mse/diffusion_pytorch_model.safetensors", b"vae" * 100)):
            (h / rel).parent.mkdir(parents=True, exist_ok=True)
            (h / rel).write_bytes(data)
        self.vae_weights = h / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors"
        os.link(self.vae_weights, self.root / "vae_hard.safetensors")
        (self.root / "vae_soft.safetensors").symlink_to(self.vae_weights)
        self.kwargs = self.root / "unet_kwargs.json"
        self.kwargs.write_text("{}")

    def _sources(self) -> None:
        r = self.root
        self.sd15 = r / "sd15.safetensors"
        self.sd15.write_bytes(b"sd15" * 100)
        self.motion = r / "motion.safetensors"
        self.motion.write_bytes(b"motion" * 100)
        self.vae = r / "vae.safetensors"
        self.vae.write_bytes(b"vae!" * 100)
        self.sd15_dir = r / "sd15_diffusers"
        (self.sd15_dir / "unet").mkdir(parents=True)
        (self.sd15_dir / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"u" * 99)
        (r / "sd15_soft.safetensors").symlink_to(self.sd15)
        os.link(self.motion, r / "motion_hard.safetensors")

    def _training(self) -> None:
        r = self.root
        self.videos = r / "videos"
        self.videos.mkdir()
        (self.videos / "a.mp4").write_bytes(b"v" * 100)
        self.outwith = r / "shards_out"  # an output folder that holds the videos
        (self.outwith / "videos").mkdir(parents=True)
        (self.outwith / "videos" / "b.mp4").write_bytes(b"v" * 100)
        (r / "videos_link").symlink_to(self.videos)
        self.runs = r / "runs"
        step = self.runs / "step-000010"
        step.mkdir(parents=True)
        (step / "emo.safetensors").write_bytes(b"ckpt" * 100)
        (step / "shards").mkdir()
        (step / "shards" / "index.json").write_text("{}")
        (step / "cfg.yaml").write_text(f"stage: 1\ndata: {self.videos}\n")
        self.configs = {}
        for name, values in (
                ("init_in_step", {"init_checkpoint": str(step / "emo.safetensors"),
                                  "output_dir": str(self.runs)}),
                ("data_in_step", {"preset": "tiny", "data": str(step / "shards"),
                                  "output_dir": str(self.runs)}),
                ("init_in_step_dotdot", {"init_checkpoint": str(self.runs / "x" / ".." / step.name
                                                                / "emo.safetensors"),
                                         "output_dir": str(self.runs)}),
                ("init_via_link", {"init_checkpoint": str(r / "runs_link" / step.name
                                                          / "emo.safetensors"),
                                   "output_dir": str(self.runs)})):
            path = r / f"train_{name}.yaml"
            path.write_text(json.dumps({"stage": 1, "data": str(self.videos), **values}))
            self.configs[name] = path
        (r / "runs_link").symlink_to(self.runs)

    # ------------------------------------------------------------------ case helpers
    def add(self, key: str, argv: list, expect: str = "refusal", names=(), keep=(), env=None,
            cwd=None, folder=None, **extra) -> None:
        folder = folder or self.root / "out" / key.replace(":", "_")
        folder.mkdir(parents=True, exist_ok=True)
        self.cases[key] = {"name": key, "argv": [str(a) for a in argv], "expect": expect,
                           "names": [str(n) for n in names], "keep": [str(k) for k in keep],
                           "env": env or {}, "cwd": str(cwd or folder), "folder": str(folder),
                           "timeout": 300, **extra}

    def generate(self, out, **change) -> list:
        values = {"--checkpoint": self.demo, "--wav2vec": self.demo / "wav2vec2",
                  "--mediapipe": self.mediapipe, "--image": self.portrait,
                  "--audio": self.speech, "--out": out}
        values.update({f"--{k.replace('_', '-')}": v for k, v in change.items()})
        return ["generate", *[x for kv in values.items() for x in kv], "--size", "64",
                "--steps", "1", "--fps", str(FPS)]

    # ------------------------------------------------------------------ class 1
    def class1(self) -> None:
        r, a = self.root, self.audio_mp4
        spellings = {"plain": a, "dotdot": r / "sub" / ".." / "in.mp4", "dot": r / "." / "in.mp4",
                     "doubleslash": Path(str(r) + "//in.mp4"), "symlink_folder": r / "linkdir"
                     / "in.mp4", "symlink_file": r / "soft.mp4", "symlink_chain": r / "soft2.mp4",
                     "hardlink": r / "hard.mp4", "linkdir_dotdot": r / "linkdir" / "sub" / ".."
                     / "in.mp4", "relative": Path("../../in.mp4")}
        for name, out in spellings.items():
            self.add(f"c1:generate_audio_{name}", self.generate(out, audio=a),
                     names=["--out", "--audio"], keep=[a])
        img = self.image_mp4
        for name, out in {"plain": img, "dotdot": r / "sub" / ".." / "img.mp4",
                          "symlink_folder": r / "linkdir" / "img.mp4"}.items():
            self.add(f"c1:generate_image_{name}", self.generate(out, image=img),
                     names=["--out", "--image"], keep=[img])
        self.add("c1:generate_tilde_audio", self.generate("~/in.mp4", audio=a),
                 names=["--out", "--audio"], keep=[a], env={"HOME": str(r)})
        self.add("c1:generate_speed_video", [*self.generate(a), "--speed-from-video", a],
                 names=["--out", "--speed-from-video"], keep=[a])
        self.add("c1:generate_style_hardlink", [*self.generate(r / "style.mp4"),
                                                "--style-checkpoint", self.style],
                 names=["--out", "--style-checkpoint"], keep=[self.style])
        self.add("c1:generate_lora_hardlink", [*self.generate(r / "style.mp4"),
                                               "--lora", f"{self.style}:0.5"],
                 names=["--out", "--lora"], keep=[self.style])
        self.add("c1:generate_vocals_hardlink", [*self.generate(r / "vocals.mp4"),
                                                 "--separate-vocals", self.onnx],
                 names=["--out", "--separate-vocals"], keep=[self.onnx])
        self.add("c1:generate_file_in_checkpoint_folder",
                 self.generate(self.ckpt / "emo.mp4", checkpoint=self.ckpt),
                 names=["--out", "--checkpoint"], keep=[self.ckpt / "emo.safetensors"])
        self.add("c1:generate_file_in_wav2vec_folder",
                 self.generate(self.ckpt / "wav2vec2" / "m.mp4", wav2vec=self.ckpt / "wav2vec2"),
                 names=["--out", "--wav2vec"], keep=[self.ckpt / "wav2vec2" / "model.safetensors"])
        self.add("c1:generate_file_in_mediapipe_folder",
                 self.generate(self.mp / "t.mp4", mediapipe=self.mp),
                 names=["--out", "--mediapipe"], keep=[next(self.mp.glob("*.tflite"))])
        self.add("c1:generate_file_in_face_analysis",
                 [*self.generate(self.face / "det.mp4"), "--face-analysis", self.face],
                 names=["--out", "--face-analysis"], keep=[self.face / "models" / "det.onnx"])
        self.class1_demo()
        self.class1_convert()
        self.class1_init()
        self.class1_prepare()
        self.class1_train()

    def class1_demo(self) -> None:
        r, a = self.root, self.audio_mp4
        cache = {"EMO_PORTRAIT_CACHE": str(self.root / "democache")}
        for name, out in {"plain": a, "symlink": r / "soft.mp4", "hardlink": r / "hard.mp4",
                          "dotdot": r / "sub" / ".." / "in.mp4"}.items():
            self.add(f"c1:demo_audio_{name}", ["demo", "--audio", a, "--out", out],
                     names=["--out", "--audio"], keep=[a], env=cache)
        self.add("c1:demo_file_in_weights", ["demo", "--weights", self.ckpt, "--out",
                                             self.ckpt / "emo.mp4"],
                 names=["--out", "--weights"], keep=[self.ckpt / "emo.safetensors"], env=cache)

    def class1_convert(self) -> None:
        h, r = self.hallo, self.root
        outs = {"vae_weights": self.vae_weights,
                "vae_dotdot": h / "hallo" / ".." / "sd-vae-ft-mse"
                / "diffusion_pytorch_model.safetensors",
                "vae_hardlink": r / "vae_hard.safetensors", "vae_symlink": r / "vae_soft.safetensors",
                "net_pth": h / "hallo" / "net.pth", "unet_config": h / "stable-diffusion-v1-5"
                / "unet" / "config.json", "folder_itself": h,
                "via_linkdir": r / "linkdir" / "pretrained_models" / "sd-vae-ft-mse"
                / "diffusion_pytorch_model.safetensors"}
        for name, out in outs.items():
            self.add(f"c1:convert_hallo_{name}", ["convert-hallo", "--pretrained-models", h,
                                                  "--out", out],
                     names=["--out", "--pretrained-models"], keep=[self.vae_weights,
                                                                   h / "hallo" / "net.pth"])
        self.add("c1:convert_hallo_unet_kwargs", ["convert-hallo", "--pretrained-models", h,
                                                  "--unet-kwargs", self.kwargs, "--out",
                                                  self.kwargs],
                 names=["--out", "--unet-kwargs"], keep=[self.kwargs])

    def class1_init(self) -> None:
        r = self.root

        def init(out, *extra, sd15=None):
            return ["init-checkpoint", "--preset", "tiny", "--sd15", sd15 or self.sd15,
                    "--motion-module", self.motion, "--out", out, "--overwrite", *extra]

        for key, argv, option, keep in (
                ("sd15", init(self.sd15), "--sd15", self.sd15),
                ("sd15_symlink", init(r / "sd15_soft.safetensors"), "--sd15", self.sd15),
                ("sd15_dotdot", init(r / "sub" / ".." / "sd15.safetensors"), "--sd15", self.sd15),
                ("motion", init(self.motion), "--motion-module", self.motion),
                ("motion_hardlink", init(r / "motion_hard.safetensors"), "--motion-module",
                 self.motion),
                ("vae", init(self.vae, "--vae", self.vae), "--vae", self.vae),
                ("file_in_sd15_folder", init(self.sd15_dir / "unet"
                                             / "diffusion_pytorch_model.safetensors",
                                             sd15=self.sd15_dir), "--sd15",
                 self.sd15_dir / "unet" / "diffusion_pytorch_model.safetensors")):
            self.add(f"c1:init_checkpoint_{key}", argv, names=["--out", option], keep=[keep])
        self.add("c1:init_checkpoint_from_hallo", ["init-checkpoint", "--from-hallo", self.sd15,
                                                   "--out", self.sd15, "--overwrite"],
                 names=["--out", "--from-hallo"], keep=[self.sd15])

    def class1_prepare(self) -> None:
        w2v = self.demo / "wav2vec2"

        def prep(out, videos=None, wav2vec=None, mediapipe=None):
            return ["prepare-data", "--videos", videos or self.videos, "--out", out,
                    "--wav2vec", wav2vec or w2v, "--mediapipe", mediapipe or self.mp]

        keep = [self.videos / "a.mp4"]
        self.add("c1:prepare_data_out_is_videos", prep(self.videos), names=["--out", "--videos"],
                 keep=keep)
        self.add("c1:prepare_data_out_is_videos_link", prep(self.root / "videos_link"),
                 names=["--out", "--videos"], keep=keep)
        self.add("c1:prepare_data_out_holds_videos", prep(self.outwith,
                                                          videos=self.outwith / "videos"),
                 names=["--out", "--videos"], keep=[self.outwith / "videos" / "b.mp4"])
        self.add("c1:prepare_data_out_is_wav2vec", prep(self.ckpt / "wav2vec2",
                                                        wav2vec=self.ckpt / "wav2vec2"),
                 names=["--out", "--wav2vec"], keep=[self.ckpt / "wav2vec2" / "model.safetensors"])
        self.add("c1:prepare_data_out_is_mediapipe", prep(self.mp), names=["--out", "--mediapipe"],
                 keep=[next(self.mp.glob("*.tflite"))])

    def class1_train(self) -> None:
        step = self.runs / "step-000010"
        for name, path in self.configs.items():
            option = "data" if name.startswith("data") else "init_checkpoint"
            keep = step / ("shards/index.json" if option == "data" else "emo.safetensors")
            self.add(f"c1:train_{name}", ["train", "--stage", "1", "--config", path],
                     names=["output_dir", option], keep=[keep])
        self.add("c1:train_config_in_step", ["train", "--stage", "1", "--config",
                                             step / "cfg.yaml", "--output-dir", self.runs,
                                             "--init-checkpoint", self.sd15],
                 names=["output_dir", "--config"], keep=[step / "cfg.yaml"])

    # ------------------------------------------------------------------ class 3
    def class3(self) -> None:
        r, afile = self.root, self.root / "afile"
        places = {"file": afile, "under_file": afile / "sub", "proc": Path("/proc/emo_fuzz"),
                  "sys": Path("/sys/emo_fuzz")}
        if self.immutable:
            places["immutable"] = self.imm / "sub"
        for name, place in places.items():
            self.add(f"c3:demo_cache_{name}", ["demo"], names=[str(place)],
                     env={"EMO_PORTRAIT_CACHE": str(place)})
            self.add(f"c3:demo_weights_out_{name}", ["demo-weights", "--out", place],
                     names=["--out"])
            self.add(f"c3:demo_weights_comfyui_{name}", ["demo-weights", "--comfyui-models",
                                                         place], names=["--comfyui-models"])
            self.add(f"c3:demo_out_{name}", ["demo", "--out", place / "x.mp4"], names=["--out"],
                     env={"EMO_PORTRAIT_CACHE": str(r / "democache")})
            self.add(f"c3:prove_learning_out_{name}", ["prove-learning", "--out", place],
                     names=["--out"])
        self.add("c3:demo_home_proc", ["demo"], names=["/proc/self"],
                 env={"HOME": "/proc/self", "XDG_CACHE_HOME": "", "EMO_PORTRAIT_CACHE": ""})
        self.add("c3:demo_xdg_file", ["demo"], names=[str(afile)],
                 env={"XDG_CACHE_HOME": str(afile), "EMO_PORTRAIT_CACHE": ""})
        self.add("c3:demo_weights_option_under_file", ["demo", "--weights", afile / "w"],
                 names=["--weights"])
        models = r / "models_emo_file"
        models.mkdir()
        (models / "emo").write_text("x")
        self.add("c3:demo_weights_comfyui_emo_is_file", ["demo-weights", "--comfyui-models",
                                                         models], names=["emo"])
        cwd = r / "cwd_output_file"
        cwd.mkdir()
        (cwd / "emo-output").write_text("x")
        self.add("c3:demo_default_output_is_file", ["demo"], names=["emo-output"], cwd=cwd,
                 folder=cwd, env={"EMO_PORTRAIT_CACHE": str(r / "democache")})
        if self.immutable:
            self.add("c3:demo_cwd_immutable", ["demo"], names=["emo-output"], cwd=self.imm,
                     folder=self.imm, env={"EMO_PORTRAIT_CACHE": str(r / "democache")})
        self.add("c3:prove_learning_threads_zero", ["prove-learning", "--threads", "0"],
                 names=["--threads"])
        self.add("c3:prove_learning_scale_nan", ["prove-learning", "--scale", "nan"],
                 names=["--scale"])

    # ------------------------------------------------------------------ classes 6, 7, 8, 9
    def class6(self) -> None:
        for name, audio in (("nan", self.nan_wav), ("inf", self.inf_wav)):
            folder = self.root / "out" / f"c6_{name}"
            self.add(f"c6:generate_{name}_samples", self.generate(folder / "x.mp4", audio=audio),
                     expect="success", folder=folder)

    def class7(self) -> None:
        for sig in ("SIGHUP", "SIGQUIT"):
            for phase, after in (("sampling", "denoising"), ("loading", "")):
                folder = self.root / "out" / f"c7_{sig}_{phase}"
                argv = self.generate(folder / "x.mp4")
                argv[argv.index("--steps") + 1] = "200"
                self.add(f"c7:generate_{sig.lower()}_{phase}", argv, expect="cancelled",
                         folder=folder, signal=sig, signal_after=after,
                         signal_delay=1.0 if after else 2.0)
        self.add("c7:generate_quoted_tilde", self.generate("~/tilde/x.mp4"), expect="success",
                 env={"HOME": str(self.home)}, folder=self.home / "tilde")
        self.add("c7:generate_quoted_tilde_under_file", self.generate("~/afile/x.mp4"),
                 names=["afile"], env={"HOME": str(self.root)})

    def class8(self) -> None:
        r = self.root
        self.add("c8:generate_out_only_suffix", self.generate(r / "sub" / ".mp4"),
                 names=["no file name"])
        self.add("c8:demo_out_only_suffix", ["demo", "--out", r / "sub" / ".MP4"],
                 names=["no file name"])
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            self.add("c8:generate_dev_shm_not_system", self.generate(
                shm / f"emo_fuzz_{os.getpid()}.mp4", checkpoint=self.portrait),
                names=["p.png"])  # refused for the checkpoint, not the /dev/shm folder
        self.add("c8:generate_out_sys", self.generate(Path("/sys/x.mp4")), names=["system"])
        import numpy as np
        from PIL import Image

        wide = r / "ch100.wav"
        wide.write_bytes(wav_bytes(np.tile(speech_clip(0.2), 100), channels=100))
        self.add("c8:generate_wav_100_channels", self.generate(r / "o6.mp4", audio=wide),
                 names=["ch100.wav", "channels"])
        padded = r / "pad16.wav"  # 16 zero bytes after the samples: FFmpeg plays it
        padded.write_bytes(wav_bytes(speech_clip(SECONDS)) + b"\0" * 16)
        tiff = r / "float01.tif"  # float grey TIFF in 0..1: was decoded black ("no face")
        grey = np.asarray(Image.open(self.portrait).convert("L"), np.float32) / 255
        Image.fromarray(grey, "F").save(tiff)
        for name, change in (("wav_trailing_zeros", {"audio": padded}),
                             ("float_tiff_0_1", {"image": tiff})):
            folder = r / "out" / f"c8_{name}"
            self.add(f"c8:generate_{name}", self.generate(folder / "x.mp4", **change),
                     expect="success", folder=folder)

    def class9(self) -> None:
        """Header-only refusals (timed in bench_startup --refusals); here: the classes hold."""
        r = self.root
        png_st = r / "png.safetensors"
        shutil.copy(self.portrait, png_st)
        for key, argv, names in (
                ("png_checkpoint", self.generate(r / "o1.mp4", checkpoint=self.portrait),
                 ["p.png"]),
                ("png_named_safetensors", self.generate(r / "o2.mp4", checkpoint=png_st),
                 ["png.safetensors"]),
                ("checkpoint_folder_empty", self.generate(r / "o3.mp4", checkpoint=r / "sub"),
                 ["emo.safetensors"]),
                ("wav2vec_missing", self.generate(r / "o4.mp4", wav2vec=r / "nowhere"),
                 ["nowhere"]),
                ("image_is_wav", self.generate(r / "o5.mp4", image=self.speech),
                 ["speech.wav"])):
            self.add(f"c9:generate_{key}", argv, names=names)

    def build(self) -> dict[str, dict]:
        self.class1()
        self.class3()
        self.class6()
        self.class7()
        self.class8()
        self.class9()
        return self.cases


def classify(case: dict, result: dict, before: set[str], hashes: dict) -> tuple[str, str]:
    """(class, detail): refusal / success / cancelled / crash / leak / hang / changed / unclear."""
    text = result["stdout"] + result["stderr"]
    if result["hung"]:
        return "hang", f"killed after {result['seconds']} s"
    if "Traceback" in text or result["rc"] not in (0, 2, 129, 130, 131, 143):
        return "crash", f"rc {result['rc']}\n{result['stderr'][-3000:]}"
    changed = [k for k, h in hashes.items() if _sha(Path(k)) != h]
    if changed:
        return "changed", f"input bytes changed: {changed}"
    folder = Path(case["folder"])
    files = sorted(str(f) for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else []
    new = [f for f in files if f not in before]
    if case["expect"] == "success":
        videos = [f for f in new if f.endswith(".mp4")]
        if result["rc"] != 0 or len(new) != 1 or len(videos) != 1:
            return "unclear", f"rc {result['rc']}, files {new}\n{result['stderr'][-2000:]}"
        count = frame_count(Path(videos[0]))
        expected = round(SECONDS * FPS)
        return ("success" if count == expected else "unclear"), f"{count} frames of {expected}"
    if new:
        return "leak", f"left {new}"
    errors = ERROR_LINE.findall(result["stderr"])
    if case["expect"] == "cancelled":
        ok = result["rc"] == SIGNAL_RC[case["signal"]] and "cancelled:" in result["stderr"] \
            and not errors
        return ("cancelled", "") if ok else ("unclear", f"rc {result['rc']}\n{result['stderr']}")
    if result["rc"] != 2 or len(errors) != 1:
        return "unclear", f"rc {result['rc']}, {len(errors)} error lines\n{result['stderr']}"
    line = next(line for line in result["stderr"].splitlines() if ERROR_LINE.search(line))
    missing = [n for n in case["names"] if n not in line]
    if missing:
        return "unclear", f"the error line does not name {missing}: {line}"
    return "refusal", line


@pytest.fixture(scope="module")
def fuzz2(tmp_path_factory, demo_weights):
    started = time.monotonic()
    root = tmp_path_factory.mktemp("fuzz_cli2")
    builder = Cases(root, demo_weights)
    cases = builder.build()
    before = {k: {str(f) for f in Path(c["folder"]).rglob("*") if f.is_file()}
              for k, c in cases.items()}
    hashes = {k: {p: _sha(Path(p)) for p in c["keep"]} for k, c in cases.items()}
    cases_file, results_file = root / "cases.json", root / "results.json"
    cases_file.write_text(json.dumps(list(cases.values())))
    try:
        subprocess.run([sys.executable, str(REPO / "tests" / "fuzz_runner.py"), str(cases_file),
                        str(results_file)], check=True, timeout=1500, cwd=root,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                            "OMP_NUM_THREADS": "1", "HOME": str(root)})
    finally:
        if builder.immutable:
            subprocess.run(["chattr", "-i", str(builder.imm)], capture_output=True)
    results = json.loads(results_file.read_text())
    classes = {k: classify(c, results[k], before[k], hashes[k]) for k, c in cases.items()}
    found = ("refusal", "success", "cancelled", "crash", "leak", "hang", "changed", "unclear")
    by_class: dict[str, dict[str, int]] = {}
    for key, (kind, _) in classes.items():
        group = key.split(":", 1)[0]
        by_class.setdefault(group, dict.fromkeys(found, 0))[kind] += 1
    summary = {"cases": len(cases), "by_issue_class": by_class,
               "commands": sorted({c["argv"][0] for c in cases.values()}),
               "seconds": round(time.monotonic() - started, 1)}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fuzz_cli_round2_totals.json").write_text(json.dumps(
        {"summary": summary, "cases": {k: {"class": c, "detail": d[:400]}
                                       for k, (c, d) in classes.items()}}, indent=1))
    print(f"\nfuzz CLI round 2: {json.dumps(summary)}")
    return {"cases": cases, "classes": classes, "summary": summary}


def test_every_command_has_round2_cases_and_none_fails(fuzz2):
    commands = set(fuzz2["summary"]["commands"])
    # convert-echomimic's hostile cases (output inside its input folder included) live in its
    # own module, tests/test_fuzz_convert_echomimic.py (test_entry_points_fuzzed checks it).
    assert set(COMMANDS) - {"convert-echomimic"} <= commands, set(COMMANDS) - commands
    assert fuzz2["summary"]["cases"] >= 90
    bad = {k: v for k, v in fuzz2["classes"].items() if v[0] != fuzz2["cases"][k]["expect"]}
    assert not bad, bad


def test_output_is_input_refusals_name_both_options_and_keep_bytes(fuzz2):
    c1 = {k: v for k, v in fuzz2["classes"].items() if k.startswith("c1:")}
    assert len(c1) >= 45
    for key, (kind, detail) in c1.items():
        assert kind == "refusal", f"{key}: {kind}: {detail}"
        assert "an input of this command" in detail, detail
        assert fuzz2["cases"][key]["keep"], key  # every case checked some input's bytes


def test_lc_all_c_non_ascii_names(tmp_path, demo_weights):
    """Under LC_ALL=C without UTF-8 mode a non-ASCII file name reaches Python as surrogate
    escapes: the refusal prints it (no UnicodeEncodeError) and names it."""
    audio = tmp_path / "vidé.mp4"
    audio.write_bytes(wav_bytes(speech_clip(0.5)))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "LC_ALL": "C", "LANG": "C",
           "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "HOME": str(tmp_path)}
    base = [sys.executable, "-m", "emo_core", "generate", "--checkpoint", str(demo_weights),
            "--wav2vec", str(demo_weights / "wav2vec2"), "--mediapipe",
            str(fixture_path("blaze_face_short_range.tflite").parent),
            "--image", str(fixture_path("portrait_astronaut.png")), "--audio", str(audio)]
    for extra in (["--out", str(audio)], ["--out", str(tmp_path / "sortie_é.mp4"), "--fps", "0"],
                  ["--out", str(tmp_path / ("é" * 120 + ".mp4"))]):
        done = subprocess.run([*base, *extra], env=env, capture_output=True, timeout=120)
        stderr = done.stderr.decode("ascii", "replace")
        assert done.returncode == 2, stderr
        assert "Traceback" not in stderr and len(ERROR_LINE.findall(stderr)) == 1, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vidé.mp4"]
