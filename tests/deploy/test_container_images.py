"""The Dockerfiles: hadolint clean (ignores only inline, with a reason), base image as a build argument,
non-root, health-checked, serving-only installs, and a .dockerignore that lets in what they COPY.
Building the image is `make image` (deploy/build-image.sh), too slow for the test suite."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
from deploy_tools import DEPLOY_DIR, REPO_ROOT, find_tool, run_tool

DOCKERFILES = sorted(DEPLOY_DIR.glob("Dockerfile*"))
SERVICE_IMAGES = [path for path in DOCKERFILES if path.name in {"Dockerfile", "Dockerfile.gpu"}]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_the_images_exist() -> None:
    assert {path.name for path in DOCKERFILES} >= {"Dockerfile", "Dockerfile.gpu", "Dockerfile.models"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    run_tool([find_tool("hadolint"), "--no-color", str(dockerfile)])
    lines = dockerfile.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if "hadolint ignore=" in line:
            reason = lines[index - 1]
            assert reason.startswith("#") and "hadolint" not in reason, f"ignore without a reason: {line}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_image_is_a_build_argument(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    first_from = next(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    assert any(k == "ARG" and a.startswith("BASE_IMAGE=") for k, a in steps[:first_from])
    assert all(a.startswith("${BASE_IMAGE}") for k, a in steps if k == "FROM")
    default = next(a for k, a in steps if k == "ARG" and a.startswith("BASE_IMAGE=")).split("=", 1)[1]
    assert ":" in default and not default.endswith(":latest"), "the default base carries a pinned tag"


@pytest.mark.parametrize("dockerfile", SERVICE_IMAGES, ids=lambda p: p.name)
def test_service_image_contract(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    keywords = [k for k, _ in steps]
    assert keywords.count("FROM") == 2, "multi-stage: build and runtime"
    runtime = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    user = next(a for k, a in reversed(runtime) if k == "USER")
    assert user.split(":")[0] not in {"0", "root"} and user.split(":")[0].isdigit()
    healthcheck = next(a for k, a in runtime if k == "HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert next(a for k, a in runtime if k == "ENTRYPOINT") == '["translator-serve"]'
    env = " ".join(a for k, a in runtime if k == "ENV")
    assert "TRANSLATOR_HOST=0.0.0.0" in env and "TRANSLATOR_MODEL_STORE=/srv/model_store" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "read-only root filesystem: no .pyc writes"
    runs = " ".join(a for k, a in steps if k == "RUN")
    extras = re.findall(r'"\.\[([^\]]*)\]"', runs)
    assert extras and all("serve" in e.split(",") and "train" not in e.split(",") for e in extras)
    assert not re.search(r"pip install[^&;]*torch", runs), "no torch in a serving image"
    assert "import torch" in runs, "the build fails if a dependency pulls torch in"
    copies = [a for k, a in runtime if k == "COPY"]
    assert all(a.startswith("--from=build") for a in copies), "runtime copies only build outputs"


def dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    allowed = True
    for raw in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if (
            pattern == "**"
            or fnmatch.fnmatch(path, pattern)
            or path.startswith(pattern + "/")
            or (pattern.startswith("**/") and fnmatch.fnmatch(path.split("/")[-1], pattern[3:]))
        ):
            allowed = negate
    return allowed


def test_dockerignore_lets_in_exactly_what_the_images_copy() -> None:
    sources = set()
    for dockerfile in DOCKERFILES:
        for keyword, args in instructions(dockerfile):
            if keyword == "COPY" and not args.startswith("--from"):
                sources.update(part.rstrip("/") for part in args.split()[:-1] if "$" not in part)
    assert sources >= {"pyproject.toml", "model_store", "service"}
    for source in sources:
        assert dockerignore_allows(source), f"{source} is COPY'd but excluded by .dockerignore"
    for private in (".venv", ".git", "data", "runs", "checkpoints", "training", "build", "tests"):
        assert not dockerignore_allows(private), f"{private} would be sent to the image build"
    assert not dockerignore_allows("service/__pycache__")


def shipped_version_dir(model: str, version: str) -> Path:
    return REPO_ROOT / "model_store" / model / version


def test_model_bundle_names_a_shipped_model_version(rendered_overlays: dict[str, list[dict]]) -> None:
    """Dockerfile.models' default VERSION and the model-init overlay's bundle tag (`<model>-<version>`)
    name the same model version, and it is in model_store/: only the newest version stays in the
    repository, so a pin left behind when a new one ships would build or pull nothing."""
    build_args = dict(
        args.split("=", 1) for keyword, args in instructions(DEPLOY_DIR / "Dockerfile.models") if keyword == "ARG"
    )
    model, version = build_args["MODEL"], build_args["VERSION"]
    assert (shipped_version_dir(model, version) / "manifest.json").is_file(), (
        f"Dockerfile.models builds {model}/{version} by default, not in model_store/"
    )
    (deployment,) = [o for o in rendered_overlays["model-init"] if o["kind"] == "Deployment"]
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    tag = init["image"].rsplit(":", 1)[1]
    tag_model, _, tag_version = tag.rpartition("-")  # model names carry dashes themselves (en-de)
    assert (shipped_version_dir(tag_model, tag_version) / "manifest.json").is_file(), (
        f"overlays/model-init deploys bundle {tag}: no model_store/{tag_model}/{tag_version}/"
    )
    assert (tag_model, tag_version) == (model, version), "the overlay deploys a bundle Dockerfile.models does not build"
