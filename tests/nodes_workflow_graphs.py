"""The example workflows as data, and their UI (litegraph) / API renderings.

``python -m tests.nodes_workflow_graphs`` rewrites ``example_workflows/`` (JSON + thumbnails);
``tests/test_nodes_schema.py`` checks the committed files equal this output and that the UI
files convert to the API files under ComfyUI's real node schemas.

Template cards: ComfyUI 0.3.75 lists a pack's ``example_workflows/*.json`` by file name only
(``/api/workflow_templates``) and frontend 1.32.9 shows that name as the card's title and, with
``-``/``_`` turned into spaces, as its description (workflowTemplatesStore.ts); it reads no
index or workflow metadata for custom-node templates. So the UI files carry readable names
(``TITLES_UI``), while the API copies keep stable ids (``api/<id>.json``) for scripts.

Saved view (``extra.ds``): litegraph draws a graph point ``p`` at ``(p + offset) * scale``. The
frontend 1.32.9 in a 1600x900 chromium window has a 1600x757 page with overlays: the sidebar
(59 px, left), banner + workflow tabs + breadcrumb / run button (top 126 px), the minimap
(x >= 1343, y 499..699) and zoom controls (bottom right), measured in tests/test_browser.py.
``fit_view`` puts the bounding box of all nodes (title bars included) inside ``VIEW``, the part
of the canvas free of them, at scale >= ``MIN_SCALE`` (below 0.6 litegraph stops drawing text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from emo_core.face.mask import DEFAULT_MASK_EXPAND

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / "example_workflows"

# (class_type) -> output sockets [(name, type)], as the node schemas declare them.
OUTPUTS = {
    "LoadImage": [("IMAGE", "IMAGE"), ("MASK", "MASK")],
    "LoadAudio": [("AUDIO", "AUDIO")],
    "EMOLoadModels": [("emo_models", "EMO_MODELS")],
    "EMOEncodeReference": [("reference", "EMO_REFERENCE"), ("portrait", "IMAGE"),
                           ("crop_box", "EMO_CROP")],
    "EMOAudioFeatures": [("emo_audio", "EMO_AUDIO"), ("audio_16k", "AUDIO"),
                         ("frame_count", "INT")],
    "EMOFaceLocatorMask": [("face_mask", "MASK"), ("bbox", "BBOX")],
    "EMOSpeedEmbedding": [("emo_speed", "EMO_SPEED")],
    "EMOSampler": [("latent", "LATENT"), ("images", "IMAGE")],
    "EMOFramesToVideo": [("video", "VIDEO")],
    "CheckpointLoaderSimple": [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
    "LoraLoader": [("MODEL", "MODEL"), ("CLIP", "CLIP")],
}
# (class_type) -> socket (non-widget) inputs [(name, type)] in schema order; the frontend keys
# link target slots by this order.
SOCKETS = {
    "EMOLoadModels": [("vae", "VAE"), ("style_model", "MODEL"), ("base_model", "MODEL")],
    "EMOEncodeReference": [("emo_models", "EMO_MODELS"), ("image", "IMAGE")],
    "EMOAudioFeatures": [("emo_models", "EMO_MODELS"), ("audio", "AUDIO")],
    "EMOFaceLocatorMask": [("image", "IMAGE"), ("mask_override", "MASK")],
    "EMOSpeedEmbedding": [("driving_video", "IMAGE")],
    "EMOSampler": [("emo_models", "EMO_MODELS"), ("reference", "EMO_REFERENCE"),
                   ("emo_audio", "EMO_AUDIO"), ("face_mask", "MASK"), ("emo_speed", "EMO_SPEED")],
    "EMOFramesToVideo": [("images", "IMAGE"), ("latent", "LATENT"), ("emo_models", "EMO_MODELS"),
                         ("vae", "VAE"), ("audio", "AUDIO"), ("original_image", "IMAGE"),
                         ("crop_box", "EMO_CROP")],
    "LoraLoader": [("model", "MODEL"), ("clip", "CLIP")],
}
TITLES = {
    "LoadImage": "Load Image", "LoadAudio": "Load Audio", "EMOLoadModels": "Load EMO Models",
    "EMOEncodeReference": "Encode Reference", "EMOAudioFeatures": "Wav2Vec Audio Features",
    "EMOFaceLocatorMask": "Face Locator Mask", "EMOSpeedEmbedding": "Speed Embedding",
    "EMOSampler": "EMO Sampler", "EMOFramesToVideo": "Frames to Video", "Note": "Note",
    "CheckpointLoaderSimple": "Load Checkpoint", "LoraLoader": "Load LoRA",
}
# Widgets the frontend adds after a widget input without an API value (upload buttons, seed
# control): name -> values stored in widgets_values right after it.
UI_ONLY_AFTER = {("LoadImage", "image"): ["image"], ("LoadAudio", "audio"): [None, None],
                 ("EMOSampler", "seed"): ["fixed"]}

NOTE = (
    "EMO Portrait example ({title}).\n\n"
    "1. The sample portrait_astronaut.png and speech_arctic_a0007.wav are copied into "
    "ComfyUI/input/ when the pack loads; pick your own photo and audio in Load Image / Load "
    "Audio.\n"
    "2. Put emo.safetensors into models/emo/ and a wav2vec2 folder into models/wav2vec2/. "
    "For a quick test: python -m emo_core demo-weights --comfyui-models ComfyUI/models (tiny random "
    "weights: the video is noise, but every node runs, in a few minutes on a CPU).\n\n"
    "These defaults (size 128, 2 steps) are for the demo weights. With real weights use size "
    "512, 40 steps (ddim), 25 fps, guidance 2.0 / 3.5.\n{extra}"
)


@dataclass
class Node:
    id: int
    type: str
    pos: tuple[int, int]
    widgets: dict = field(default_factory=dict)  # API name -> value, in schema order
    links: dict = field(default_factory=dict)  # input name -> (source node id, output slot)
    size: tuple[int, int] = (300, 130)


def _common(sampler_decode: bool, steps: int = 2) -> list[Node]:
    return [
        Node(1, "LoadImage", (0, 0), {"image": "portrait_astronaut.png"}, size=(300, 320)),
        Node(2, "LoadAudio", (0, 380), {"audio": "speech_arctic_a0007.wav"}, size=(300, 140)),
        Node(3, "EMOLoadModels", (0, 580), {
            "checkpoint": "emo.safetensors", "wav2vec2": "wav2vec2", "precision": "auto",
            "device": "auto", "style_strength": 1.0, "style_strength_backbone": 1.0,
            "style_strength_reference": 1.0}, size=(300, 260)),
        Node(4, "EMOEncodeReference", (380, 0), {"crop": "face", "size": 128, "face_index": 0,
                                                 "face_analysis": "auto"},
             {"emo_models": (3, 0), "image": (1, 0)}, size=(300, 170)),
        Node(5, "EMOAudioFeatures", (380, 380), {"fps": 25.0, "allow_silence": False,
                                                 "separate_vocals": "off"},
             {"emo_models": (3, 0), "audio": (2, 0)}, size=(300, 150)),
        Node(6, "EMOFaceLocatorMask", (760, 0),
             {"expand_ratio": DEFAULT_MASK_EXPAND, "face_index": 0},
             {"image": (4, 1)}, size=(300, 130)),
        Node(7, "EMOSpeedEmbedding", (380, 580), {
            "mode": "constant", "speed": 2.0, "keyframes": "0:1.5, 2:3, 4:1.5",
            "frame_count": 0}, size=(300, 170)),
        Node(8, "EMOSampler", (1140, 0), {
            "seed": 0, "steps": steps, "guidance_reference": 2.0, "guidance_audio": 3.5,
            "guidance_mode": "separate", "frames_per_clip": 12, "motion_frames": 4,
            "first_clip_motion": "zeros", "scheduler": "ddim", "decode_images": sampler_decode,
            "decode_batch": 8, "guidance_start": 0.0, "guidance_end": 1.0, "guidance_refresh": 3,
            "compile": False, "preset": "standard"},
            {"emo_models": (3, 0), "reference": (4, 0), "emo_audio": (5, 0),
             "face_mask": (6, 0), "emo_speed": (7, 0)}, size=(320, 420)),
    ]


def talking_portrait() -> list[Node]:
    nodes = _common(sampler_decode=True)
    nodes.append(Node(9, "EMOFramesToVideo", (1540, 0), {
        "fps": 25.0, "filename_prefix": "EMO/talking_portrait", "decode_batch": 8},
        {"images": (8, 1), "audio": (2, 0)}, size=(340, 420)))
    nodes.append(Node(10, "Note", (1140, 470), {"text": NOTE.format(
        title="all seven nodes, frames decoded in the sampler", extra="")}, size=(340, 330)))
    return nodes


def long_video_low_memory() -> list[Node]:
    nodes = _common(sampler_decode=False)
    nodes.append(Node(9, "EMOFramesToVideo", (1540, 0), {
        "fps": 25.0, "filename_prefix": "EMO/long_video", "decode_batch": 4},
        {"latent": (8, 0), "emo_models": (3, 0), "audio": (2, 0), "original_image": (1, 0),
         "crop_box": (4, 2)}, size=(340, 420)))
    extra = ("\nLow memory: the sampler keeps only latents (64 KB per 512px frame) and Frames "
             "to Video decodes 4 frames at a time while writing the mp4, so RAM does not grow "
             "with the audio length. Any length of audio works.\nPaste back: Frames to Video "
             "blends each frame into the full photo (original_image + Encode Reference's "
             "crop_box), so the video has the photo's size; disconnect both for the square "
             "crop only.")
    nodes.append(Node(10, "Note", (1140, 470), {"text": NOTE.format(
        title="long video, latent output, chunked decode", extra=extra)}, size=(340, 380)))
    return nodes


def civitai_style() -> list[Node]:
    """civit.ai look: Load Checkpoint -> Load LoRA -> style_model; plain SD1.5 -> base_model."""
    nodes = talking_portrait()[:-1]  # same graph, its own note
    nodes[-1].widgets["filename_prefix"] = "EMO/civitai_style"
    nodes[2].links.update({"style_model": (12, 0), "base_model": (13, 0)})
    # The loaders fill the free space under Face Locator Mask, so the whole graph fits one view.
    nodes += [
        Node(11, "CheckpointLoaderSimple", (760, 220),
             {"ckpt_name": "civitai_sd15_style.safetensors"}, size=(320, 100)),
        Node(12, "LoraLoader", (760, 370), {
            "lora_name": "civitai_sd15_lora.safetensors", "strength_model": 0.8,
            "strength_clip": 1.0}, {"model": (11, 0), "clip": (11, 1)}, size=(320, 130)),
        Node(13, "CheckpointLoaderSimple", (760, 560),
             {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}, size=(320, 100)),
    ]
    extra = ("\nStyle: any civit.ai SD1.5 checkpoint (+ LoRAs) goes into style_model; plain "
             "SD1.5 into base_model. EMO gets style_strength x (style - base) on its Backbone and "
             "ReferenceNet; temporal/audio/speed layers are untouched. SDXL/SD2/Flux are refused. "
             "File names here are placeholders: pick your own files in the loaders.")
    nodes.append(Node(10, "Note", (1140, 470), {"text": NOTE.format(
        title="civit.ai checkpoint + LoRA as style", extra=extra)}, size=(340, 400)))
    return nodes


HALLO_NOTE = (
    "EMO with Hallo weights: real talking faces today, from Hallo's public real weights.\n\n"
    "1. From the Hugging Face repository fudan-generative-ai/hallo convert Hallo's "
    "pretrained_models/ once: python -m emo_core convert-hallo --pretrained-models "
    "pretrained_models --out ComfyUI/models/emo/hallo.safetensors\n"
    "2. Copy pretrained_models/wav2vec/wav2vec2-base-960h into models/wav2vec2/ and "
    "pretrained_models/face_analysis/models into models/insightface/ (as models/insightface/"
    "models).\n"
    "3. Load a square photo with a clear, frontal face and your speech (the samples copied "
    "into ComfyUI/input/ when the pack loads are selected); queue.\n\n"
    "Hallo's settings: 512 px, 40 steps, 25 fps, clips of 16 + 2 motion frames, joint CFG 3.5 "
    "(guidance_reference), its DDIM (v-prediction, trailing). The Speed Embedding is ignored "
    "(Hallo has no speed layers) and Face Locator Mask is unused: Encode Reference computes "
    "Hallo's face embedding and face regions."
)


def hallo_weights() -> list[Node]:
    """The same seven nodes with a Hallo-converted checkpoint and Hallo's settings."""
    nodes = talking_portrait()[:-1]
    nodes[2].widgets.update(checkpoint="hallo.safetensors", wav2vec2="wav2vec2-base-960h")
    nodes[3].widgets.update(size=512)
    nodes[7].widgets.update(seed=42, steps=40, guidance_reference=3.5, guidance_mode="joint",
                            frames_per_clip=16, motion_frames=2, first_clip_motion="reference",
                            scheduler="ddim-vpred-trailing")
    nodes[-1].widgets["filename_prefix"] = "EMO/hallo"
    nodes.append(Node(10, "Note", (1140, 470), {"text": HALLO_NOTE}, size=(340, 400)))
    return nodes


ECHOMIMIC_NOTE = (
    "EMO with EchoMimic weights: real talking faces from EchoMimic v1's public real weights, "
    "in 6 steps without CFG (its acc weights).\n\n"
    "1. From the Hugging Face repository BadToBest/EchoMimic convert its pretrained_weights/ "
    "once: python -m emo_core convert-echomimic --pretrained-weights pretrained_weights --acc "
    "--out ComfyUI/models/emo/echomimic_acc.safetensors (without --acc: the normal weights, "
    "30 steps, guidance 2.5).\n"
    "2. No wav2vec2 folder: whisper-tiny travels inside the converted checkpoint (wav2vec2 "
    "'none'); Wav2Vec Audio Features computes its whisper features.\n"
    "3. Load a photo with a clear, frontal face and your speech (the samples copied into "
    "ComfyUI/input/ when the pack loads are selected); queue.\n\n"
    "EchoMimic's settings: 512 px, 24 fps, 6 steps, guidance 1.0 (no CFG; acc), sliding "
    "12-frame windows over the whole video (one window in memory at a time), its DDIM. Face "
    "Locator Mask grows the face box by 0.1 (EchoMimic's facemask_dilation_ratio). The Speed "
    "Embedding and the EMO-only sampler options are ignored (a warning names them)."
)


def echomimic_weights() -> list[Node]:
    """The same seven nodes with a converted EchoMimic acc checkpoint and its settings."""
    nodes = talking_portrait()[:-1]
    nodes[2].widgets.update(checkpoint="echomimic_acc.safetensors", wav2vec2="none")
    nodes[3].widgets.update(size=512)
    nodes[4].widgets.update(fps=24.0)
    nodes[5].widgets.update(expand_ratio=0.1)
    nodes[7].widgets.update(seed=420, steps=6, guidance_reference=1.0, motion_frames=0)
    nodes[-1].widgets.update(fps=24.0, filename_prefix="EMO/echomimic")
    nodes.append(Node(10, "Note", (1140, 470), {"text": ECHOMIMIC_NOTE}, size=(340, 400)))
    return nodes


GRAPHS = {"emo_talking_portrait": talking_portrait,
          "emo_long_video_low_memory": long_video_low_memory,
          "emo_civitai_style": civitai_style,
          "emo_hallo_weights": hallo_weights,
          "emo_echomimic_weights": echomimic_weights}
# Template card title (and description) = the UI file's name; see the module docstring.
# Short enough for one line on a card of either frontend (1.58 clamps the title to one line;
# tests/test_browser.py checks nothing is cut).
TITLES_UI = {
    "emo_talking_portrait": "EMO talking portrait",
    "emo_long_video_low_memory": "EMO long video, low memory",
    "emo_civitai_style": "EMO with a civitai style",
    "emo_hallo_weights": "EMO with Hallo weights",
    # issue 21 asked for "EMO with EchoMimic weights (fast, 6 steps)": frontend 1.32.9 cuts that
    # on the card (tests/test_browser_examples.py); the Note says "fast, 6 steps" instead.
    "emo_echomimic_weights": "EMO with EchoMimic weights",
}

TITLE_HEIGHT = 30  # LiteGraph.NODE_TITLE_HEIGHT: the title bar is drawn above node.pos
VIEW = (70, 130, 1330, 740)  # x0, y0, x1, y1 in page pixels, free of overlays (docstring)
MIN_SCALE = 0.6


def ui_path(name: str, folder: Path = WORKFLOWS) -> Path:
    """The UI-format file of the example ``name`` (what the template browser lists)."""
    return folder / f"{TITLES_UI[name]}.json"


def bounding_box(nodes: list[Node]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) in graph units around every node, title bars included."""
    return (min(n.pos[0] for n in nodes), min(n.pos[1] - TITLE_HEIGHT for n in nodes),
            max(n.pos[0] + n.size[0] for n in nodes), max(n.pos[1] + n.size[1] for n in nodes))


def fit_view(nodes: list[Node]) -> dict:
    """``extra.ds`` showing every node inside ``VIEW``, centred, as large as fits (<= 1)."""
    x0, y0, x1, y1 = bounding_box(nodes)
    width, height = VIEW[2] - VIEW[0], VIEW[3] - VIEW[1]
    scale = min(1.0, width / (x1 - x0), height / (y1 - y0))
    if scale < MIN_SCALE:
        raise ValueError(f"graph {x1 - x0}x{y1 - y0} needs scale {scale:.2f} < {MIN_SCALE}")
    scale = round(scale - 0.005, 2)  # rounded down: the box stays inside
    offset_x = (VIEW[0] + width / 2) / scale - (x0 + x1) / 2
    offset_y = (VIEW[1] + height / 2) / scale - (y0 + y1) / 2
    return {"scale": scale, "offset": [round(offset_x, 1), round(offset_y, 1)]}


def to_api(nodes: list[Node]) -> dict:
    """API format: ``{id: {"class_type", "inputs", "_meta"}}`` (Notes are UI only)."""
    api = {}
    for node in nodes:
        if node.type == "Note":
            continue
        inputs = dict(node.widgets)
        inputs.update({name: [str(src), slot] for name, (src, slot) in node.links.items()})
        api[str(node.id)] = {"class_type": node.type, "inputs": inputs,
                             "_meta": {"title": TITLES[node.type]}}
    return api


def _link_table(nodes: list[Node]) -> list[list]:
    """``[link id, source, source slot, target, target slot, type, input name]`` rows."""
    by_id = {n.id: n for n in nodes}
    table = []
    for node in nodes:
        names = [name for name, _ in SOCKETS.get(node.type, [])]
        for name, (src, slot) in node.links.items():
            kind = OUTPUTS[by_id[src].type][slot][1]
            table.append([len(table) + 1, src, slot, node.id, names.index(name), kind, name])
    return table


def _ui_inputs(node: Node, links: list[list]) -> list[dict]:
    linked = {row[6]: row[0] for row in links if row[3] == node.id}
    return [{"name": name, "type": kind, "link": linked.get(name)}
            for name, kind in SOCKETS.get(node.type, [])]


def to_ui(nodes: list[Node]) -> dict:
    """litegraph workflow: nodes with sockets, widgets_values and positions; links table."""
    links = _link_table(nodes)
    ui_nodes = []
    for order, node in enumerate(nodes):
        inputs = _ui_inputs(node, links)
        outputs = [{"name": name, "type": kind, "slot_index": slot,
                    "links": [r[0] for r in links if r[1] == node.id and r[2] == slot] or None}
                   for slot, (name, kind) in enumerate(OUTPUTS.get(node.type, []))]
        values = []
        for name, value in node.widgets.items():
            values.append(value)
            values.extend(UI_ONLY_AFTER.get((node.type, name), []))
        entry = {"id": node.id, "type": node.type, "pos": list(node.pos),
                 "size": list(node.size), "flags": {}, "order": order, "mode": 0,
                 "inputs": inputs, "outputs": outputs,
                 "properties": {"Node name for S&R": node.type}, "widgets_values": values}
        if node.type == "Note":
            entry.update(color="#432", bgcolor="#653", title="Read me")
        ui_nodes.append(entry)
    return {"last_node_id": max(n.id for n in nodes), "last_link_id": len(links),
            "nodes": ui_nodes, "links": [row[:6] for row in links], "groups": [], "config": {},
            "extra": {"ds": fit_view(nodes)}, "version": 0.4}


def thumbnail(nodes: list[Node], path: Path) -> None:
    """Draw the graph layout (boxes, titles, links) as a small JPEG for the template browser."""
    from PIL import Image, ImageDraw

    scale, margin = 0.4, 16
    left, top, right, bottom = bounding_box(nodes)
    width = int((right - left) * scale) + 2 * margin
    height = int((bottom - top) * scale) + 2 * margin
    picture = Image.new("RGB", (width, height), (32, 32, 36))
    draw = ImageDraw.Draw(picture)

    def box(n: Node):
        x, y = (margin + (n.pos[0] - left) * scale, margin + (n.pos[1] - top) * scale)
        return x, y, x + n.size[0] * scale, y + n.size[1] * scale

    by_id = {n.id: n for n in nodes}
    for node in nodes:
        for src, _slot in node.links.values():
            a, b = box(by_id[src]), box(node)
            draw.line([(a[2], a[1] + 10), (b[0], b[1] + 10)], fill=(140, 170, 220), width=2)
    for node in nodes:
        x0, y0, x1, y1 = box(node)
        colour = (101, 85, 51) if node.type == "Note" else (53, 53, 60)
        draw.rectangle([x0, y0, x1, y1], fill=colour, outline=(120, 120, 130))
        draw.rectangle([x0, y0, x1, y0 + 14], fill=(70, 90, 120))
        draw.text((x0 + 4, y0 + 2), TITLES[node.type], fill=(240, 240, 240))
    picture.save(path, quality=85)


def write_all(folder: Path = WORKFLOWS) -> None:
    (folder / "api").mkdir(parents=True, exist_ok=True)
    for name, build in GRAPHS.items():
        nodes = build()
        for target, data in ((ui_path(name, folder), to_ui(nodes)),
                             (folder / "api" / f"{name}.json", to_api(nodes))):
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            tmp.replace(target)
        thumbnail(nodes, ui_path(name, folder).with_suffix(".jpg"))


if __name__ == "__main__":
    write_all()
