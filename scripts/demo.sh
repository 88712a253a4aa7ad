#!/usr/bin/env bash
# The README's first command: set up the environment (scripts/setup_env.sh; reused when already
# built) and run the demo. Arguments go to the demo, e.g. `bash scripts/demo.sh --talking-cartoon`.
# Videos land in ./emo-output/ of the folder you run it from.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
emo_setup_env
exec "$EMO_REPO/.venv/bin/emo-portrait" demo "$@"
