#!/usr/bin/env bash
# `make deploy-check`: every offline check of deploy/ with the tools' own output, then the semantic
# tests (tests/deploy). Tools come from deploy/install-tools.sh; a missing tool is an error.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
VENV="${VENV:-$REPO_ROOT/.venv}"
CHECKOV_VENV="${CHECKOV_VENV:-$REPO_ROOT/build/checkov-venv}"
# Keep in sync with KUBERNETES_VERSION in tests/deploy/deploy_tools.py and deploy/README.md.
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.30.0}"

need() {
  if [[ ! -x "$1" ]] && ! command -v "$1" >/dev/null 2>&1; then
    echo "deploy-check: $1 not found: $2" >&2
    exit 1
  fi
}
need kubectl "install kubectl >= 1.27 (it carries kustomize)"
need promtool "run deploy/install-tools.sh"
need "$VENV/bin/kubernetes-validate" "run deploy/install-tools.sh"
need "$VENV/bin/hadolint" "run deploy/install-tools.sh"
need "$CHECKOV_VENV/bin/checkov" "run deploy/install-tools.sh"

rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT

echo "== kustomize + kubernetes-validate --strict (Kubernetes $KUBERNETES_VERSION)"
for overlay in deploy/k8s/overlays/*/; do
  name="$(basename "$overlay")"
  kubectl kustomize "$overlay" > "$rendered/$name.yaml"
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$rendered/$name.yaml"
  echo "   $name: $(grep -c '^kind:' "$rendered/$name.yaml") objects valid"
done

echo "== promtool"
promtool check rules deploy/prometheus/rules.yml
promtool test rules deploy/prometheus/rules_test.yml

echo "== hadolint"
for dockerfile in deploy/Dockerfile*; do
  "$VENV/bin/hadolint" "$dockerfile"
  echo "   $dockerfile: clean"
done

echo "== checkov (skips are justified inline in the manifests and Dockerfiles)"
"$CHECKOV_VENV/bin/checkov" --quiet --compact --skip-download --framework kubernetes -d "$rendered"
checkov_files=()
for dockerfile in deploy/Dockerfile*; do checkov_files+=(-f "$dockerfile"); done
"$CHECKOV_VENV/bin/checkov" --quiet --compact --skip-download --framework dockerfile "${checkov_files[@]}"

echo "== tests/deploy (selectors, drain timing, settings, scrape config, dashboard, Prometheus scrape)"
# checkov already ran above; the rest includes a real Prometheus scraping a real service process.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/deploy --deselect tests/deploy/test_checkov.py "$@"
