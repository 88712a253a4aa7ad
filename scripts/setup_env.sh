#!/usr/bin/env bash
# The Python environment shared by the demo (scripts/demo.sh) and the tests (.ci/run): one recipe,
# so a newcomer and CI cannot diverge. Run it (`bash scripts/setup_env.sh` prints the interpreter
# to use) or source it and call `emo_setup_env` (sets EMO_DEPS_VENV and EMO_PY).
#
# Two layers, each built once and reused while its inputs are unchanged:
#   1. deps venv   ${EMO_CI_CACHE}/venv-<key>: .ci/requirements-ci.txt (the runtime requirements,
#                  the pinned torch 2.9.1 / torchvision 0.24.1 / torchaudio 2.9.1 trio, ComfyUI's
#                  requirements, test tools); key = sha256(requirements.txt +
#                  .ci/requirements-ci.txt + python -VV). Shared by every clone on the machine
#                  (it is ~8 GB); reused when its .complete marker exists. ~3-10 min to build.
#   2. clone venv  <repo>/.venv: this clone's package installed editable (`emo-portrait`,
#                  `python -m emo_core` from any folder), seeing layer 1 through a .pth file.
#                  Seconds to build; rebuilt when layer 1 or pyproject.toml changes.
#
# Knobs:
#   EMO_CI_CACHE      cache root (default $HOME/.cache/emo-portrait-ci)
#   EMO_CI_PYTHON     interpreter that creates the venvs (default python3; 3.10+)
#   EMO_CI_BASE_VENV  build layer 1 on top of this complete venv (a .pth file, nothing
#                     downloaded) instead of installing the requirements: the first-run path in
#                     seconds, used by tests/test_readme_commands.py
set -euo pipefail

EMO_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EMO_CACHE="${EMO_CI_CACHE:-${HOME:-/root}/.cache/emo-portrait-ci}"
EMO_BOOT_PYTHON="${EMO_CI_PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

declare -F log >/dev/null || log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

emo_venv_key() {
    { cat "$EMO_REPO/requirements.txt" "$EMO_REPO/.ci/requirements-ci.txt"; "$EMO_BOOT_PYTHON" -VV; } \
        | sha256sum | cut -c1-16
}

emo_site_packages() {  # emo_site_packages PYTHON -> its purelib folder
    "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
}

emo_link_venv() {  # emo_link_venv VENV BASE_VENV: VENV sees BASE_VENV's packages (after its own)
    local base_site
    base_site="$(emo_site_packages "$2/bin/python")"
    printf 'import site; site.addsitedir(%s)\n' "'$base_site'" \
        >"$(emo_site_packages "$1/bin/python")/_emo_base_venv.pth"
}

emo_prune_venvs() {  # keep $1 and the newest other one: each venv is ~8 GB
    local old
    for old in $(ls -dt "$EMO_CACHE"/venv-* 2>/dev/null | grep -vxF "$1" | tail -n +2); do
        log "removing old venv $old"
        rm -rf "$old"
    done
}

emo_build_deps_venv() {  # emo_build_deps_venv VENV (holds the cache lock while building)
    local venv="$1"
    flock 9
    if [[ -f "$venv/.complete" ]]; then
        log "venv reused: $venv"
    else
        # No marker: a previous build was interrupted (or never ran). Start clean.
        rm -rf "$venv"
        log "building venv $venv with $("$EMO_BOOT_PYTHON" -V)"
        "$EMO_BOOT_PYTHON" -m venv "$venv"
        if [[ -n "${EMO_CI_BASE_VENV:-}" ]]; then
            [[ -f "$EMO_CI_BASE_VENV/.complete" ]] || {
                log "EMO_CI_BASE_VENV=$EMO_CI_BASE_VENV is not a complete venv"; exit 1; }
            log "layering it on $EMO_CI_BASE_VENV (EMO_CI_BASE_VENV)"
            emo_link_venv "$venv" "$EMO_CI_BASE_VENV"
        else
            "$venv/bin/python" -m pip install -q --upgrade pip
        fi
        "$venv/bin/python" -m pip install -q -r "$EMO_REPO/.ci/requirements-ci.txt"
        "$venv/bin/python" -m pip check || log "pip check reported conflicts (see above)"
        date -u +%FT%TZ >"$venv/.complete"
        emo_prune_venvs "$venv"
    fi
    flock -u 9
}

emo_build_clone_venv() {  # emo_build_clone_venv DEPS_VENV -> $EMO_REPO/.venv with the package
    local clone="$EMO_REPO/.venv" stamp
    stamp="$1 $EMO_REPO $(sha256sum "$EMO_REPO/pyproject.toml" | cut -c1-16)"
    if [[ -f "$clone/.emo-stamp" && "$(cat "$clone/.emo-stamp")" == "$stamp" \
          && -x "$clone/bin/emo-portrait" ]]; then
        log "package env reused: $clone"
        return
    fi
    log "installing the package (editable) into $clone"
    rm -rf "$clone"
    "$EMO_BOOT_PYTHON" -m venv "$clone"
    emo_link_venv "$clone" "$1"
    # --no-deps: every dependency comes from the deps venv; the build backend (setuptools,
    # wheel) is fetched into pip's isolated build environment.
    "$clone/bin/python" -m pip install -q --no-deps -e "$EMO_REPO"
    printf '%s' "$stamp" >"$clone/.emo-stamp"
}

emo_setup_env() {  # sets EMO_DEPS_VENV (tools: ruff, pytest, cm-cli) and EMO_PY (the package)
    mkdir -p "$EMO_CACHE"
    # Two runs sharing one cache must not build the same venv at once.
    exec 9>"$EMO_CACHE/.lock"
    EMO_DEPS_VENV="$EMO_CACHE/venv-$(emo_venv_key)"
    emo_build_deps_venv "$EMO_DEPS_VENV"
    emo_build_clone_venv "$EMO_DEPS_VENV"
    EMO_PY="$EMO_REPO/.venv/bin/python"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    emo_setup_env
    echo "$EMO_PY"
fi
