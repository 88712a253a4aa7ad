"""Fuzz suite for ``python -m emo_core convert-hallo``: malformed configs, tensors, kwargs, VAE
folders and output paths through the real command line (tests/fuzz_runner.py: one forked
process per case, exactly what ``python -m emo_core`` runs).

Each case is Hallo's tiny fixture folder (``$EMO_HALLO_FIXTURE``, as symlinks) with one thing
wrong; the ``hallo2_*`` cases break Hallo2's ``hallo2/net.pth`` or pass ``--hallo2`` (the error
must name the Hallo2 file, not ``hallo/net.pth`` beside it; the controls must record the Hallo2
variant). Classes as in tests/test_fuzz_cli.py: a refusal is exit code 2, exactly one ``error:``
line naming the input at fault (a word per case below), no traceback, nothing new in the output
folder and every input byte unchanged; the control case converts (exit 0, one checkpoint that
passes the loader's checks). Totals go to ``test-artifacts/fuzz_convert_hallo_totals.json``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.fuzz_inputs import malicious_pickle
from tests.hallo_media import FIXTURE, HAS_FIXTURE
from tests.hallo_pretrained import (
    HALLO2_NET,
    NET,
    PRETRAINED,
    VAE,
    VAE_WEIGHTS,
    replace,
    symlink_layout,
    write,
)
from tests.hallo_pretrained import UNET_CONFIG as UNET
from tests.hallo_pretrained import WAV2VEC_CONFIG as W2V

pytestmark = pytest.mark.skipif(not HAS_FIXTURE,
                                reason=f"Hallo golden fixture folder {FIXTURE} is absent")
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
KWARGS = json.loads((FIXTURE / "hallo_unet_kwargs.json").read_text()) if HAS_FIXTURE else {}


def _config(root: Path, rel: str, edit) -> None:
    config = json.loads((PRETRAINED / rel).read_text())
    edit(config)
    write(root / rel, json.dumps(config))


def _net(root: Path, edit) -> None:
    net = torch.load(PRETRAINED / NET, map_location="cpu", weights_only=True)
    edit(net)
    torch.save(net, replace(root / NET))


def _first(net: dict, part: str) -> str:
    return next(k for k in net if part in k)


def _set(net, part, value):
    net[_first(net, part)] = value


def _nan(net, part, value=float("nan")):
    key = _first(net, part)
    net[key] = net[key].clone()
    net[key].view(-1)[0] = value


def _vae(root: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(PRETRAINED / VAE_WEIGHTS))
    edit(state)
    save_file(state, str(replace(root / VAE_WEIGHTS)))


def _kwargs(edit=None, text=None):
    def make(root: Path) -> list[str]:
        path = root.parent / "kwargs.json"
        if text is not None:
            write(path, text)
        else:
            kwargs = json.loads(json.dumps(KWARGS))
            edit(kwargs)
            path.write_text(json.dumps(kwargs))
        return ["--unet-kwargs", str(path)]
    return make


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _vae_copy_as_out(root: Path) -> list[str]:
    # a real file, not the fixture's
    shutil.copy(PRETRAINED / VAE_WEIGHTS, replace(root / VAE_WEIGHTS))
    return ["--out", str(root / VAE_WEIGHTS)]


def _out(path_of) -> object:
    def make(root: Path) -> list[str]:
        return ["--out", str(path_of(root))]
    return make


def _out_in_file(root: Path) -> Path:
    (root.parent / "afile").write_text("x")
    return root.parent / "afile" / "x.safetensors"


def _out_folder(root: Path) -> Path:
    (root.parent / "taken.safetensors").mkdir()
    return root.parent / "taken.safetensors"


def _hallo2_net(data=None, edit=None, flag: bool = True):
    """Hallo2's net.pth at hallo2/net.pth (the fixture's net, ``edit``-ed, or ``data()``);
    hallo/net.pth stays intact beside it when ``--hallo2`` is passed, so a refusal that names
    hallo/net.pth instead blames the wrong file."""
    def make(root: Path) -> list[str]:
        (root / "hallo2").mkdir()
        if data is not None:
            write(root / HALLO2_NET, data())
        else:
            net = torch.load(PRETRAINED / NET, map_location="cpu", weights_only=True)
            (edit or (lambda n: None))(net)
            torch.save(net, root / HALLO2_NET)
        if not flag:
            replace(root / NET)
        return ["--hallo2"] if flag else []
    return make


def _hallo2_pickle(root: Path) -> list[str]:
    (root / "hallo2").mkdir()
    malicious_pickle(root / HALLO2_NET, root.parent / "MARKER_hallo2")
    return ["--hallo2"]


def _hallo2_nothing(root: Path, folder: bool = False) -> list[str]:
    replace(root / NET)
    if folder:
        (root / HALLO2_NET).mkdir(parents=True)
    return ["--hallo2"]


# name -> (change to the case's folder, returning extra CLI arguments or None; word the error
# line must contain)
CASES = {
    "unet_config_garbage": (lambda r: write(r / UNET, b"\x00\xff garbage {"), "config.json"),
    "unet_config_list": (lambda r: write(r / UNET, "[1, 2, 3]"), "config.json"),
    "unet_config_latin1": (lambda r: write(r / UNET, '{"x": "caf\xe9"}'.encode("latin-1")),
                           "config.json"),
    "unet_config_nested": (lambda r: write(r / UNET, '{"a": ' + _deep(50) + "}"),
                           "config.json"),
    "unet_config_empty": (lambda r: write(r / UNET, b""), "config.json"),
    "unet_widths_string": (lambda r: _config(r, UNET, lambda c: c.update(
        block_out_channels="32,32")), "config.json"),
    "unet_cross_dim_zero": (lambda r: _config(r, UNET, lambda c: c.update(
        cross_attention_dim=0)), "config.json"),
    "unet_cross_dim_other": (lambda r: _config(r, UNET, lambda c: c.update(
        cross_attention_dim=48)), "config.json"),
    "unet_layers_3": (lambda r: _config(r, UNET, lambda c: c.update(layers_per_block=3)),
                      "config.json"),
    "unet_groups_huge": (lambda r: _config(r, UNET, lambda c: c.update(norm_num_groups=10**9)),
                         "config.json"),
    "w2v_hidden_zero": (lambda r: _config(r, W2V, lambda c: c.update(hidden_size=0)),
                        "wav2vec"),
    "w2v_garbage": (lambda r: write(r / W2V, b"\x89PNG not json"), "wav2vec"),
    "w2v_layers_other": (lambda r: _config(r, W2V, lambda c: c.update(num_hidden_layers=3)),
                         "wav2vec"),
    "net_zero_element": (lambda r: _net(r, lambda n: _set(n, "audioproj.proj1.weight",
                                                           torch.zeros(0))), "net.pth"),
    "net_1d_matrix": (lambda r: _net(r, lambda n: _set(n, "imageproj.proj.weight",
                                                       torch.zeros(64))), "net.pth"),
    "net_0d_proj_in": (lambda r: _net(r, lambda n: _set(n, "audio_modules.0.proj_in.weight",
                                                        torch.tensor(1.0))), "net.pth"),
    "net_complex": (lambda r: _net(r, lambda n: _set(n, "denoising_unet.conv_in.weight",
                                                     torch.zeros(32, 4, 3, 3,
                                                                 dtype=torch.complex64))),
                    "net.pth"),
    "net_int": (lambda r: _net(r, lambda n: _set(n, "reference_unet.conv_in.weight",
                                                 torch.zeros(32, 4, 3, 3, dtype=torch.int8))),
                "net.pth"),
    "net_nan": (lambda r: _net(r, lambda n: _nan(n, "denoising_unet.conv_out.weight")),
                "net.pth"),
    "net_inf": (lambda r: _net(r, lambda n: _nan(n, "face_locator.conv_out.weight",
                                                 float("inf"))), "net.pth"),
    "net_mis_shaped": (lambda r: _net(r, lambda n: _set(n, "denoising_unet.conv_out.weight",
                                                        torch.zeros(4, 32, 1, 1))), "net.pth"),
    "net_truncated": (lambda r: write(r / NET, (PRETRAINED / NET).read_bytes()[:100_000]),
                      "net.pth"),
    "net_garbage": (lambda r: write(r / NET, b"PK\x03\x04 not a zip at all" * 100), "net.pth"),
    "net_empty": (lambda r: write(r / NET, b""), "net.pth"),
    "net_pickled_code": (lambda r: (r / NET).unlink() or malicious_pickle(
        r / NET, r.parent / "MARKER_net"), "net.pth"),
    "net_echomimic_unet": (lambda r: _net(r, lambda n: [n.pop(k) for k in list(n)
                                                         if not k.startswith("denoising_unet.")]
                                          ), "net.pth"),
    "net_missing": (lambda r: (r / NET).unlink(), "net.pth"),
    "kwargs_list": (_kwargs(text="[1, 2, 3]"), "--unet-kwargs"),
    "kwargs_string_for_dict": (_kwargs(lambda k: k.update(motion_module_kwargs="Vanilla")),
                               "--unet-kwargs"),
    "kwargs_zero_heads": (_kwargs(lambda k: k["motion_module_kwargs"].update(
        num_attention_heads=0)), "--unet-kwargs"),
    "kwargs_heads_3": (_kwargs(lambda k: k["motion_module_kwargs"].update(
        num_attention_heads=3)), "--unet-kwargs"),
    "kwargs_garbage": (_kwargs(text="unet_additional_kwargs: {yaml: not json}"),
                       "--unet-kwargs"),
    "kwargs_audio_dim_other": (_kwargs(lambda k: k.update(audio_attention_dim=48)),
                               "--unet-kwargs"),
    "kwargs_depth_string": (_kwargs(lambda k: k.update(stack_enable_blocks_depth="0123")),
                            "--unet-kwargs"),
    "kwargs_max_len_negative": (_kwargs(lambda k: k["motion_module_kwargs"].update(
        temporal_position_encoding_max_len=-32)), "--unet-kwargs"),
    "kwargs_missing_file": (lambda r: ["--unet-kwargs", str(r.parent / "absent.json")],
                            "--unet-kwargs"),
    "vae_config_garbage": (lambda r: write(r / VAE / "config.json", b"{{{"), VAE),
    "vae_config_other": (lambda r: _config(r, f"{VAE}/config.json", lambda c: c.update(
        latent_channels=8)), VAE),
    "vae_weights_missing": (lambda r: (r / VAE_WEIGHTS).unlink(), VAE),
    "vae_nan": (lambda r: _vae(r, lambda s: s.__setitem__(
        "decoder.conv_out.bias", torch.full_like(s["decoder.conv_out.bias"], float("nan")))),
        VAE),
    "vae_missing_tensor": (lambda r: _vae(r, lambda s: s.pop("encoder.conv_in.weight")), VAE),
    "out_existing_folder": (_out(_out_folder), "--out"),
    "out_inside_a_file": (_out(_out_in_file), "--out"),
    "out_wrong_suffix": (_out(lambda r: r.parent / "hallo.ckpt"), "--out"),
    "out_is_the_vae_input": (_vae_copy_as_out, "--out"),
    "pretrained_missing": (lambda r: shutil.rmtree(r), "--pretrained-models"),
    "pretrained_is_file": (lambda r: shutil.rmtree(r) or r.write_text("x"),
                           "--pretrained-models"),
    # --hallo2: the Hallo2 file is the one read and the one blamed
    "hallo2_net_garbage": (_hallo2_net(lambda: b"PK\x03\x04 not a zip at all" * 100),
                           HALLO2_NET),
    "hallo2_net_truncated": (_hallo2_net(lambda: (PRETRAINED / NET).read_bytes()[:100_000]),
                             HALLO2_NET),
    "hallo2_net_empty": (_hallo2_net(lambda: b""), HALLO2_NET),
    "hallo2_net_pickled_code": (_hallo2_pickle, HALLO2_NET),
    "hallo2_net_nan": (_hallo2_net(edit=lambda n: _nan(n, "denoising_unet.conv_out.weight")),
                       HALLO2_NET),
    "hallo2_net_mis_shaped_implied": (_hallo2_net(edit=lambda n: _set(
        n, "denoising_unet.conv_out.weight", torch.zeros(4, 32, 1, 1)), flag=False), HALLO2_NET),
    "hallo2_net_echomimic_unet": (_hallo2_net(edit=lambda n: [
        n.pop(k) for k in list(n) if not k.startswith("denoising_unet.")]), HALLO2_NET),
    "hallo2_no_net": (_hallo2_nothing, "net.pth"),
    "hallo2_net_is_a_folder": (lambda r: _hallo2_nothing(r, folder=True), "net.pth"),
    "hallo2_flag_with_value": (lambda r: ["--hallo2=yes"], "--hallo2"),
    "hallo2_flag_control": (lambda r: ["--hallo2"], None),
    "hallo2_folder_control": (_hallo2_net(flag=False), None),
    "success_control": (lambda r: None, None),
}


def _hashes(folder: Path) -> dict[str, str]:
    """Contents of every real file under ``folder`` (symlinked fixture files are not copied)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_convert_hallo")
    cases, before = [], {}
    for name, (make, _) in CASES.items():
        case_root = root / name
        pretrained = symlink_layout(case_root / "pretrained_models")
        out = case_root / "out" / "hallo.safetensors"
        out.parent.mkdir(parents=True)
        extra = make(pretrained)
        extra = extra if isinstance(extra, list) else []  # most changes only edit files
        argv = ["convert-hallo", "--pretrained-models", str(pretrained), "--out", str(out)]
        if "--unet-kwargs" not in extra:
            argv += ["--unet-kwargs", str(FIXTURE / "hallo_unet_kwargs.json")]
        argv += extra  # a later --out replaces the default one (argparse keeps the last)
        before[name] = _hashes(case_root)
        cases.append({"name": name, "argv": argv, "timeout": 240})
    (root / "cases.json").write_text(json.dumps(cases))
    subprocess.run([sys.executable, str(REPO / "tests" / "fuzz_runner.py"),
                    str(root / "cases.json"), str(root / "results.json")], check=True,
                   timeout=1200, cwd=root, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                                "OMP_NUM_THREADS": "1", "HOME": str(root)})
    results = json.loads((root / "results.json").read_text())
    classes = {name: classify(name, results[name], root / name, before[name])
               for name in CASES}
    totals = {kind: sum(1 for c, _ in classes.values() if c == kind)
              for kind in ("refusal", "success", "crash", "leak", "hang", "unclear")}
    summary = {"cases": len(CASES), "totals": totals,
               "pickle_markers_created": sorted(str(m) for m in root.rglob("MARKER_*"))}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fuzz_convert_hallo_totals.json").write_text(json.dumps(
        {"summary": summary, "cases": {k: {"class": c, "detail": d[:400]}
                                       for k, (c, d) in classes.items()}}, indent=1))
    print(f"\nfuzz convert-hallo: {json.dumps(summary)}")
    return {"classes": classes, "summary": summary}


def classify(name: str, result: dict, case_root: Path, before: dict) -> tuple[str, str]:
    """(class, detail) for one case: refusal / success / crash / leak / hang / unclear."""
    from emo_core.io.emo_checkpoint import check_emo_checkpoint
    from emo_core.io.hallo2 import is_hallo2

    text = result["stdout"] + result["stderr"]
    if result["hung"]:
        return "hang", f"killed after {result['seconds']} s"
    if "Traceback" in text or result["rc"] not in (0, 2):
        return "crash", f"rc {result['rc']}\n{result['stderr'][-3000:]}"
    after = _hashes(case_root)
    new = sorted(set(after) - set(before))
    changed = sorted(k for k in before if after.get(k) != before[k])
    if CASES[name][1] is None:
        written = [f for f in new if f.endswith(".safetensors")]
        if result["rc"] != 0 or new != ["out/hallo.safetensors"]:
            return "unclear", f"rc {result['rc']}, new files {new}\n{result['stderr'][-2000:]}"
        configs = check_emo_checkpoint(case_root / written[0])
        if is_hallo2(configs.get("sampling")) != name.startswith("hallo2"):
            return "unclear", f"variant recorded: {configs.get('sampling', {}).get('variant')}"
        return "success", written[0]
    if new or changed:
        return "leak", f"new files {new}, changed inputs {changed}"
    errors = [line for line in result["stderr"].splitlines() if "error:" in line]
    if result["rc"] != 2 or len(errors) != 1:
        return "unclear", f"rc {result['rc']}, {len(errors)} error lines\n{result['stderr']}"
    return "refusal", errors[0]


def test_at_least_50_cases_and_no_crash_leak_or_hang(fuzz):
    totals = fuzz["summary"]["totals"]
    assert fuzz["summary"]["cases"] >= 50
    assert totals["crash"] == totals["leak"] == totals["hang"] == totals["unclear"] == 0, {
        k: v for k, v in fuzz["classes"].items() if v[0] not in ("refusal", "success")}


def test_no_pickled_code_ran(fuzz):
    assert fuzz["summary"]["pickle_markers_created"] == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_has_its_class_and_names_its_input(fuzz, name):
    found, detail = fuzz["classes"][name]
    word = CASES[name][1]
    assert found == ("success" if word is None else "refusal"), f"{name}: {found}: {detail}"
    if word is not None:
        assert word in detail and len(detail) < 1500, detail
