#!/usr/bin/env bash
# `make image`: build the CPU image with podman (--isolation=chroot, no daemon) from a base image made
# locally with debootstrap (no registry needed), then smoke-test it: inside the image the service
# starts, turns ready and answers a translation.
#
#   deploy/build-image.sh                 build + smoke test
#   SKIP_SMOKE=1 deploy/build-image.sh    build only
#   deploy/build-image.sh --smoke-only    smoke-test an existing $IMAGE
#
# Environment: IMAGE (default localhost/attention-translator:<pyproject version>), BASE_IMAGE
# (default localhost/debian-py:bookworm, debootstrapped when missing; any other name is pulled),
# MODEL_STORE_DIR (default ./model_store: every <name>/<version>/manifest.json in it is baked in),
# DEBIAN_MIRROR, PIP_EXTRA_ARGS (passed to pip inside the build), SMOKE_TEXT, BUILD_CA_FILE (a CA
# bundle for pip behind a TLS-intercepting proxy, passed as a build secret; default: $PIP_CERT).
# Tools: deploy/install-tools.sh --image (podman, buildah, debootstrap).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)"
IMAGE="${IMAGE:-localhost/attention-translator:$VERSION}"
BASE_IMAGE="${BASE_IMAGE:-localhost/debian-py:bookworm}"
MODEL_STORE_DIR="${MODEL_STORE_DIR:-$REPO_ROOT/model_store}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SMOKE_TEXT="${SMOKE_TEXT:-one hundred and twenty-three}"
SMOKE_ONLY=0
[[ "${1:-}" == "--smoke-only" ]] && SMOKE_ONLY=1

for tool in podman buildah; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build-image: $tool missing: run deploy/install-tools.sh --image" >&2; exit 1; }
done

work="$(mktemp -d)"
container=""
cleanup() {
  [[ -n "$container" ]] && buildah rm "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

build_base() {
  if podman image exists "$BASE_IMAGE"; then
    return
  fi
  if [[ "$BASE_IMAGE" != localhost/debian-py:* ]]; then
    podman pull "$BASE_IMAGE"
    return
  fi
  command -v debootstrap >/dev/null 2>&1 || { echo "build-image: debootstrap missing: run deploy/install-tools.sh --image" >&2; exit 1; }
  echo "build-image: debootstrapping $BASE_IMAGE (bookworm minbase + python3, about 80 s)"
  local rootfs="$work/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

# The build context holds only what the Dockerfile copies, with the artifacts of MODEL_STORE_DIR.
stage_context() {
  local context="$work/context"
  mkdir -p "$context/model_store"
  cp pyproject.toml "$context/"
  cp -R service "$context/service"
  cp model_store/*.py "$context/model_store/"
  find "$context" -name __pycache__ -type d -prune -exec rm -rf {} +
  local found=0 manifest version_dir relative
  for manifest in "$MODEL_STORE_DIR"/*/*/manifest.json; do
    [[ -e "$manifest" ]] || continue
    version_dir="$(dirname "$manifest")"
    relative="${version_dir#"$MODEL_STORE_DIR"/}"
    mkdir -p "$context/model_store/$(dirname "$relative")"
    cp -R "$version_dir" "$context/model_store/$relative"
    echo "build-image: baking in model $relative" >&2
    found=1
  done
  if [[ $found == 0 ]]; then
    echo "build-image: no model under $MODEL_STORE_DIR/<name>/<version>/manifest.json (make train, or set MODEL_STORE_DIR)" >&2
    exit 1
  fi
  echo "$context"
}

# Runs inside the image (as its non-root user): start the service, wait for /readyz, translate.
SMOKE_PY='
import json, os, subprocess, sys, time, urllib.request
assert os.getuid() != 0, "the image must run as a non-root user"
try:
    import torch  # noqa: F401
    sys.exit("smoke: torch is installed in the serving image")
except ImportError:
    pass
base = "http://127.0.0.1:%s" % os.environ["TRANSLATOR_PORT"]
server = subprocess.Popen(["translator-serve"])
try:
    deadline = time.monotonic() + 180
    while True:
        if server.poll() is not None:
            sys.exit("smoke: service exited with %s before it was ready" % server.returncode)
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit("smoke: service not ready after 180 s")
        time.sleep(0.5)
    request = urllib.request.Request(
        base + "/v1/translate", data=json.dumps({"text": os.environ["SMOKE_TEXT"]}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    print("smoke: /v1/translate ->", json.dumps(body, ensure_ascii=False))
    assert body["translations"][0]["text"].strip(), body
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        assert b"translator_ready 1.0" in response.read(), "metrics do not report ready"
finally:
    server.terminate()
    server.wait(timeout=60)
print("smoke: ok (exit %s after SIGTERM)" % server.returncode)
'

smoke_test() {
  local port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  container="$(buildah from "$IMAGE")"
  # `podman run` needs a runtime this sandbox lacks; buildah run --isolation chroot works everywhere.
  buildah run --isolation chroot \
    --env TRANSLATOR_HOST=127.0.0.1 --env TRANSLATOR_PORT="$port" --env SMOKE_TEXT="$SMOKE_TEXT" \
    "$container" -- python3 -c "$SMOKE_PY"
}

if [[ $SMOKE_ONLY == 0 ]]; then
  build_base
  context="$(stage_context)"
  build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  [[ -n "${PIP_EXTRA_ARGS:-}" ]] && build_args+=(--build-arg "PIP_EXTRA_ARGS=$PIP_EXTRA_ARGS")
  ca_file="${BUILD_CA_FILE:-${PIP_CERT:-}}"
  [[ -n "$ca_file" && -f "$ca_file" ]] && build_args+=(--secret "id=build-ca,src=$ca_file")
  # --format docker keeps HEALTHCHECK (the OCI format has no such field).
  podman build --isolation=chroot --format docker -f deploy/Dockerfile "${build_args[@]}" -t "$IMAGE" "$context"
  echo "build-image: built $IMAGE ($(podman image inspect "$IMAGE" --format '{{.Size}}') bytes)"
fi
if [[ $SMOKE_ONLY == 1 || -z "${SKIP_SMOKE:-}" ]]; then
  smoke_test
fi
