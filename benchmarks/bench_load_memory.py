"""Peak memory of ``convert-hallo`` and of loading its output, as ratios to the file/model size.

Builds a random stand-in of Hallo's ``pretrained_models/`` in a temporary folder: ``hallo/net.pth``
with the real key names and shapes (those ``convert-hallo`` maps, from Hallo's released layout),
float16 like the released file; stabilityai's ``sd-vae-ft-mse`` with its legacy mid-block
attention names (float32); the SD1.5 UNet and wav2vec configs. Then, each in a fresh process
(``/proc/self/status`` VmHWM, the peak resident set, mapped file pages included):

* ``convert-hallo``: peak / size of net.pth (target for ``added`` <= 1.3);
* ``load_emo_checkpoint`` in fp32 and in fp16 (the CLI's and ComfyUI's loader): peak / size of
  the model in that dtype (target for ``added`` <= 1.15);
* ``init-checkpoint --from-hallo --dtype fp16``: peak / size of the fp16 model written.

Each line also gives ``added``: (peak - resident size after imports) / size, the part the work
itself costs, on which the targets are judged (README: the imports' ~0.9 GB is the same for
every model), and the baseline split into anonymous and file-backed (library) pages. The CI
test checks ``added`` at a size that fits: tests/test_load_memory.py.

    python benchmarks/bench_load_memory.py [--size full|ci] [--keep DIR]

``full`` writes about 10 GB (net.pth 4.85 GB, the converted file 5.2 GB) and needs about 11 GB
of RAM for the fp32 load; it is not run in CI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

UNET_CONFIG = "stable-diffusion-v1-5/unet/config.json"
WAV2VEC_CONFIG = "wav2vec/wav2vec2-base-960h/config.json"
VAE = "sd-vae-ft-mse"
LEGACY = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}


def layout_configs(size: str) -> dict:
    """EMO component configs of the stand-in: Hallo's release (``full``) or the same layout at
    SD1.5's cross-attention and audio widths with narrower blocks and one layer (``ci``)."""
    from benchmarks.bench_hallo_flops import hallo_layout_configs
    from emo_core.models.presets import unet_config, vae_config

    if size == "full":
        return hallo_layout_configs("sd15")
    unet, vae = unet_config("sd15"), vae_config("sd15")
    unet.update(block_out_channels=[64, 128, 256, 256], layers_per_block=1)
    vae.update(block_out_channels=[32, 64, 64, 64], layers_per_block=1)
    return hallo_layout_configs("sd15", unet=unet, vae=vae)


def build_standin(root: Path, size: str, seed: int = 0) -> dict:
    """Write the stand-in ``pretrained_models/`` under ``root``; returns its facts."""
    import torch
    from safetensors.torch import save_file

    from emo_core.io.hallo import PREFIX_MAP
    from emo_core.models.emo_models import EMOModels

    configs = layout_configs(size)
    with torch.device("meta"):
        shapes = {k: (tuple(v.shape), v.dtype) for k, v in
                  EMOModels.from_configs(configs).state_dict().items()}
    to_hallo = {emo: hallo for hallo, emo in PREFIX_MAP.items()}
    generator = torch.Generator().manual_seed(seed)

    def random(shape, dtype):
        return (torch.randn(shape, generator=generator) * 0.02).to(dtype)

    net, vae = {}, {}
    for key, (shape, _) in shapes.items():
        if key.startswith("vae."):
            name = key[len("vae."):]
            if ".mid_block.attentions." in name:
                for new, old in LEGACY.items():
                    name = name.replace(new, old)
            vae[name] = random(shape, torch.float32)
        elif key != "context":
            emo = next(p for p in to_hallo if key.startswith(p))
            net[to_hallo[emo] + key[len(emo):]] = random(shape, torch.float16)
    (root / "hallo").mkdir(parents=True)
    torch.save(net, root / "hallo/net.pth")
    facts = {"net_tensors": len(net), "net_parameters": sum(t.numel() for t in net.values()),
             "net_bytes": (root / "hallo/net.pth").stat().st_size,
             "vae_legacy_tensors": sum(".query." in k or ".proj_attn." in k for k in vae)}
    del net
    (root / VAE).mkdir()
    save_file(vae, str(root / VAE / "diffusion_pytorch_model.safetensors"))
    (root / VAE / "config.json").write_text(json.dumps(configs["vae"]))
    for rel, config in ((UNET_CONFIG, configs["backbone"]["unet"]),
                        (WAV2VEC_CONFIG, {"hidden_size": configs["audio_projection"]["channels"],
                                          "num_hidden_layers": configs["audio_projection"][
                                              "blocks"]})):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(config))
    return facts


# --------------------------------------------------------------------------- child processes


def _status(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(step: str, args: list[str]) -> dict:
    """Run one step in this (fresh) process; its peak and post-import resident sizes."""
    import torch

    from emo_core.cli.main import main
    from emo_core.io import emo_checkpoint, hallo_convert  # noqa: F401 - imports in baseline
    from emo_core.models import emo_models, speed_layers  # noqa: F401

    torch.set_num_threads(2)
    baseline = _status("VmRSS")
    result: dict = {"baseline_anon": _status("RssAnon"), "baseline_file": _status("RssFile")}
    if step == "build":  # not measured: keeps the builder's memory out of the parent
        return build_standin(Path(args[0]), args[1])
    if step == "load":
        dtype = {"fp32": torch.float32, "fp16": torch.float16}[args[1]]
        models = emo_checkpoint.load_emo_checkpoint(args[0], dtype=dtype)
        result["size"] = sum(t.numel() * t.element_size() for t in models.state_dict().values())
    else:
        code = main(args)
        if code:
            raise SystemExit(code)
    result.update(peak=_status("VmHWM"), baseline=baseline)
    return result


def measure(step: str, args: list[str]) -> dict:
    """``child(step, args)`` in a fresh interpreter."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", step,
                           *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{step} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _line(name: str, result: dict, size: int, what: str) -> dict:
    return {"step": name, "size_of": what, "size_bytes": size, "peak_bytes": result["peak"],
            "baseline_bytes": result["baseline"], "baseline_anon_bytes": result["baseline_anon"],
            "baseline_file_bytes": result["baseline_file"],
            "ratio": round(result["peak"] / size, 3),
            "added": round((result["peak"] - result["baseline"]) / size, 3)}


def run(root: Path, size: str) -> list[dict]:
    """Build the stand-in under ``root`` and measure every step; the JSON lines."""
    pretrained = root / "pretrained_models"
    facts = measure("build", [str(pretrained), size])
    lines = [{"step": "stand-in", "size": size, **facts}]
    out = root / "hallo.safetensors"
    result = measure("convert", ["convert-hallo", "--pretrained-models", str(pretrained),
                                 "--out", str(out)])
    lines.append(_line("convert-hallo", result, facts["net_bytes"], "net.pth"))
    for dtype in ("fp32", "fp16"):
        result = measure("load", [str(out), dtype])
        lines.append(_line(f"load_emo_checkpoint {dtype}", result, result["size"],
                           f"model in {dtype}"))
    speed = root / "hallo_speed.safetensors"
    result = measure("init", ["init-checkpoint", "--from-hallo", str(out), "--dtype", "fp16",
                              "--out", str(speed)])
    lines.append(_line("init-checkpoint --from-hallo fp16", result, speed.stat().st_size,
                       "written fp16 model"))
    return lines


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3:])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("full", "ci"), default="full")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        lines = run(args.keep, args.size)
    else:
        with tempfile.TemporaryDirectory(prefix="emo_load_memory_") as folder:
            lines = run(Path(folder), args.size)
    for line in lines:
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
