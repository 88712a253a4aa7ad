"""What a user meets in the browser, on every ComfyUI + frontend CI tests (issue 25).

1. Every example workflow opens ready to run: the sample portrait and speech it names are in
   ``input/`` because the pack copied them there when it loaded (nothing is placed by the test),
   every combo value is offered, no node is outlined red (``has_errors``), no issues popup, and
   every node is in view. A control opens one example naming an input that is not there and sees
   the frontend report it (on frontends that check inputs), so the checks can fail.
2. The template dialog shows the pack's cards under a readable category ("EMO Portrait", from
   ``locales/en/main.json``) with full, uncut titles (and description lines where the frontend
   shows them on the card).
3. Live previews: with the frontend's "Live preview method" setting on (frontend 1.36+ sends it
   with the prompt), preview images reach the page while EMO Sampler samples; frontends without
   the setting get them from the server's ``--preview-method``.

Screenshots: ``test-artifacts/comfyui-<version>/browser-example-*.png``,
``browser-template-dialog.png``, ``browser-live-preview.png``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from safetensors.torch import save_file

from tests.comfyui_browser import load_workflow_file, open_comfy_page, save_screenshot, wait_until
from tests.comfyui_harness import ComfyServer, comfy_server_fixture, comfyui_version
from tests.nodes_workflow_graphs import GRAPHS, TITLES_UI, ui_path

pytestmark = [pytest.mark.comfyui, pytest.mark.browser]

SAMPLES = ("portrait_astronaut.png", "speech_arctic_a0007.wav")
CATEGORY = "EMO Portrait"  # locales/en/main.json: templateWorkflows.category.<install folder>
SETTLE = 3.0  # s: the frontend scans a loaded graph for missing inputs/models asynchronously
# Model files each example names, by models/ sub-folder. Only listed, never loaded, by the tests
# that open the examples (the run itself is tests/test_browser.py's).
NAMED_MODELS = {
    "emo": ["emo.safetensors", "hallo.safetensors", "echomimic_acc.safetensors"],
    "checkpoints": ["civitai_sd15_style.safetensors", "v1-5-pruned-emaonly.safetensors"],
    "loras": ["civitai_sd15_lora.safetensors"],
}
NAMED_WAV2VEC2 = ["wav2vec2", "wav2vec2-base-960h"]


def _place_named_models(base: Path) -> None:
    """A small valid safetensors file under each model name the examples select, and a wav2vec2
    folder (``config.json``) under each wav2vec2 name: what the combos list."""
    import torch

    for folder, names in NAMED_MODELS.items():
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            save_file({"placeholder": torch.zeros(1)}, str(base / "models" / folder / name))
    for name in NAMED_WAV2VEC2:
        folder = base / "models" / "wav2vec2" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text("{}", encoding="utf-8")


def _prepare(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("examples_base")
    _place_named_models(base)
    return {"base_dir": base}


examples_server = comfy_server_fixture("examples_server", scope="module", prepare=_prepare,
                                       name="browser_examples")

# Every combo widget whose value this server does not offer.
UNOFFERED_COMBOS_JS = """
const missing = [];
for (const node of app.graph._nodes)
  for (const w of node.widgets || []) {
    const values = w.options && Array.isArray(w.options.values) ? w.options.values : null;
    if (values && !values.includes(w.value)) missing.push([node.type, w.name, w.value]);
  }
return missing;
"""
# Nodes the frontend outlines red, and the lines of the page that report issues (frontend 1.58:
# the "N issues found" / "<file> is missing" popup and the Run button's issue list).
PROBLEMS_JS = """
const flagged = app.graph._nodes.filter(n => n.has_errors).map(n => n.title);
const lines = document.body.innerText.split('\\n').map(l => l.trim())
  .filter(l => /issues? found|is missing|missing a required|Missing Inputs|Missing Models/i.test(l));
return {flagged, lines};
"""
# Every node's page rectangle (title bar included) and what the page shows at its corners and
# centre: "ok" when it is the graph canvas or the node's own DOM widget, else the element on top.
NODES_IN_VIEW_JS = """
const ds = app.canvas.ds, box = app.canvas.canvas.getBoundingClientRect();
const out = {scale: ds.scale, offset: Array.from(ds.offset), page: [innerWidth, innerHeight],
             nodes: []};
for (const n of app.graph._nodes) {
  const x0 = box.left + (n.pos[0] + ds.offset[0]) * ds.scale;
  const y0 = box.top + (n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT + ds.offset[1]) * ds.scale;
  const x1 = box.left + (n.pos[0] + n.size[0] + ds.offset[0]) * ds.scale;
  const y1 = box.top + (n.pos[1] + n.size[1] + ds.offset[1]) * ds.scale;
  const hits = [[x0 + 2, y0 + 2], [x1 - 2, y0 + 2], [x0 + 2, y1 - 2], [x1 - 2, y1 - 2],
                [(x0 + x1) / 2, (y0 + y1) / 2]].map(([x, y]) => {
    const e = document.elementFromPoint(x, y);
    if (e && (e === app.canvas.canvas || e.closest('.dom-widget'))) return 'ok';
    return e ? e.tagName + '.' + String(e.className).slice(0, 60) : 'outside the page';
  });
  out.nodes.push({title: n.title, rect: [x0, y0, x1, y1], hits});
}
return out;
"""
FRONTEND_VERSION_JS = "return window.__COMFYUI_FRONTEND_VERSION__ || null;"


def _frontend_version(driver) -> tuple[int, ...]:
    text = driver.execute_script(FRONTEND_VERSION_JS) or "0"
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _open_and_settle(driver, workflow: Path) -> None:
    load_workflow_file(driver, workflow)
    time.sleep(SETTLE)


def _assert_in_view(name: str, view: dict) -> None:
    width, height = view["page"]
    for node in view["nodes"]:
        x0, y0, x1, y1 = node["rect"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (name, node, view["page"])
        assert node["hits"] == ["ok"] * 5, (name, node)


def test_examples_open_ready_to_run(examples_server, tmp_path):
    version = comfyui_version(examples_server.comfyui)
    inputs = sorted(p.name for p in (examples_server.base_dir / "input").iterdir())
    assert set(SAMPLES) <= set(inputs), f"the pack did not copy its samples into input/: {inputs}"
    with open_comfy_page(examples_server) as driver:
        driver.set_window_size(1600, 900)
        for name in sorted(GRAPHS):
            workflow = ui_path(name)
            _open_and_settle(driver, workflow)
            shot = save_screenshot(driver, f"browser-example-{name}")
            assert driver.execute_script(UNOFFERED_COMBOS_JS) == [], (name, shot)
            problems = driver.execute_script(PROBLEMS_JS)
            assert problems == {"flagged": [], "lines": []}, (name, problems, shot)
            view = driver.execute_script(NODES_IN_VIEW_JS)
            saved = json.loads(workflow.read_text(encoding="utf-8"))["extra"]["ds"]
            # The frontend restored the saved view (not a default one that happens to fit).
            assert view["scale"] == pytest.approx(saved["scale"]), (name, view["scale"])
            _assert_in_view(name, view)
            print(f"ComfyUI {version}: {name} opens clean, {len(view['nodes'])} nodes in view")
        # Control: the same graph naming an input that is not in input/ is reported by frontends
        # that check inputs (1.58 does; 1.32.9 only fails at run time), so the checks above bite.
        broken = json.loads(ui_path("emo_talking_portrait").read_text(encoding="utf-8"))
        for node in broken["nodes"]:
            if node["type"] == "LoadImage":
                node["widgets_values"][0] = "not_in_input.png"
        control = tmp_path / "control.json"
        control.write_text(json.dumps(broken), encoding="utf-8")
        if _frontend_version(driver) >= (1, 58):
            _open_and_settle(driver, control)
            save_screenshot(driver, "browser-example-control-missing-input")
            problems = driver.execute_script(PROBLEMS_JS)
            assert "Load Image" in problems["flagged"] and problems["lines"], problems


# Opens the template dialog (the command the Templates button runs), selects this pack's
# category by its label and returns the label list, then every card's title and text lines with
# whether the card cuts them (scroll size above the box).
TEMPLATE_CARDS_JS = """
const [label, expected] = arguments, done = arguments[arguments.length - 1];
app.extensionManager.command.execute('Comfy.BrowseTemplates');
const wait = (test, then, tries = 120) => test() ? then() :
  tries ? setTimeout(() => wait(test, then, tries - 1), 250) : done('timeout: ' + label);
const dialog = () => document.querySelector('[role=dialog]');
const item = () => dialog() && Array.from(dialog().querySelectorAll('span, a, button, li'))
  .find(e => e.textContent.trim() === label && e.offsetParent !== null);
const cut = e => !!e && (e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1);
wait(item, () => {
  const found = item();
  (found.closest('button,a,li,[role=button],[role=option]') || found).click();
  const cards = () => dialog().querySelectorAll('[data-testid^=template-workflow-]');
  let last = -1, same = 0;
  const settled = () => { same = cards().length === last ? same + 1 : 0; last = cards().length;
                          return last === expected && same >= 4; };
  wait(settled, () => setTimeout(() => done(Array.from(cards()).map(card => {
    const title = card.querySelector('h3'), text = card.querySelector('p');
    return {title: title.textContent.trim(), title_cut: cut(title),
            text: text ? text.textContent.trim() : null, text_cut: cut(text),
            thumbnail: Array.from(card.querySelectorAll('img')).some(i => i.naturalWidth > 0)};
  })), 1000));
});
"""


def test_template_dialog_shows_full_titles_under_a_readable_category(examples_server):
    with open_comfy_page(examples_server) as driver:
        driver.set_window_size(1600, 900)
        cards = driver.execute_async_script(TEMPLATE_CARDS_JS, CATEGORY, len(TITLES_UI))
        shot = save_screenshot(driver, "browser-template-dialog")
    assert isinstance(cards, list), f"{cards} (screenshot {shot})"
    assert sorted(card["title"] for card in cards) == sorted(TITLES_UI.values()), cards
    for card in cards:
        assert not card["title_cut"], f"title cut on the card: {card} (screenshot {shot})"
        assert card["thumbnail"], f"no thumbnail shown for {card['title']!r}"
        if card["text"] is not None:  # frontend 1.32.9: a description line under the title
            assert card["text"] and not card["text_cut"], card


# In the page: count the preview images the frontend receives (both binary preview events).
COUNT_PREVIEWS_JS = """
window.__emoPreviews = 0;
for (const kind of ['b_preview', 'b_preview_with_metadata'])
  app.api.addEventListener(kind, () => { window.__emoPreviews += 1; });
"""
PREVIEW_SETTING = "Comfy.Execution.PreviewMethod"  # "Live preview method", frontend >= 1.36


def _queue_in_page(driver) -> None:
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "app.queuePrompt(0, 1).then(() => done(true), e => done(String(e)));")


def test_live_previews_arrive_in_the_browser(demo_weights, tmp_path):
    """Frontends with the "Live preview method" setting (1.58 on ComfyUI 0.30.0): the setting
    alone, the server started without --preview-method (default none). Older ones (1.32.9):
    the server's --preview-method, the only switch they have (README, "Live previews")."""
    from tests.comfyui_harness import require_comfyui

    comfyui = require_comfyui()
    new_frontend = comfyui_version(comfyui) not in (None, "0.3.75")
    base = tmp_path / "base"
    for sub in ("emo", "wav2vec2"):
        (base / "models" / sub).mkdir(parents=True)
    shutil.copy2(demo_weights / "emo.safetensors", base / "models" / "emo" / "emo.safetensors")
    shutil.copytree(demo_weights / "wav2vec2", base / "models" / "wav2vec2" / "wav2vec2")
    extra = [] if new_frontend else ["--preview-method", "latent2rgb"]
    with ComfyServer(comfyui, name="browser_live_preview", base_dir=base, extra_args=extra) as server:
        if new_frontend:
            server.post_json(f"/settings/{PREVIEW_SETTING}", "latent2rgb")
        with open_comfy_page(server) as driver:
            load_workflow_file(driver, ui_path("emo_talking_portrait"))
            driver.execute_script(COUNT_PREVIEWS_JS)
            _queue_in_page(driver)
            wait_until(driver, "return window.__emoPreviews > 0;", 600,
                       "a live preview image during sampling")
            shot = save_screenshot(driver, "browser-live-preview")
            server.interrupt()  # one preview proves it; the rest of the run adds nothing
            previews = driver.execute_script("return window.__emoPreviews;")
    assert previews >= 1, shot
    if new_frontend:  # the setting reached the server with the prompt, not a CLI flag
        assert "--preview-method" not in " ".join(server.command())
