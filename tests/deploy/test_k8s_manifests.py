"""Every kustomize overlay renders, validates strictly against KUBERNETES_VERSION, and keeps the
contract between the manifests and the service (probes, ports, drain timing, settings, selectors)."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml
from deploy_tools import DEPLOY_DIR, KUBERNETES_VERSION, by_kind, one, overlay_names, promql_metric_names

from service.settings import Settings

OVERLAYS = overlay_names()
# Settings the service reads; a typo in a manifest would be silently ignored by the service.
KNOWN_SETTINGS = {name.upper() for name in Settings.model_fields}


def deployment_parts(objects: list[dict]) -> tuple[dict, dict, dict]:
    """(pod spec, the translator container, the settings ConfigMap's data)."""
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "translator")
    config_name = container["envFrom"][0]["configMapRef"]["name"]
    config = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == config_name)
    return pod, container, config["data"]


def cpu_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_every_expected_overlay_exists() -> None:
    assert {"cpu", "gpu", "model-pvc", "model-init"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_strictly(overlay: str, rendered_overlays: dict[str, list[dict]]) -> None:
    objects = rendered_overlays[overlay]
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "ServiceAccount",
        "Namespace",
    } <= {o["kind"] for o in objects}
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field(rendered_overlays: dict[str, list[dict]]) -> None:
    deployment = copy.deepcopy(one(rendered_overlays["cpu"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_match_the_pods(overlay: str, rendered_overlays: dict[str, list[dict]]) -> None:
    objects = rendered_overlays[overlay]
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": one(objects, "Service")["spec"]["selector"],
        "PodDisruptionBudget": one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        "NetworkPolicy": one(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    }
    for spread in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]:
        selectors[f"topology spread {spread['topologyKey']}"] = spread["labelSelector"]["matchLabels"]
    for owner, selector in selectors.items():
        assert selector, f"{owner} selects every pod in the namespace"
        assert selector.items() <= pod_labels.items(), f"{owner} selector {selector} misses the pods"
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert namespaces == {one(objects, "Namespace")["metadata"]["name"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_matches_the_service_contract(overlay: str, rendered_overlays: dict[str, list[dict]]) -> None:
    pod, container, settings = deployment_parts(rendered_overlays[overlay])
    unknown = {key for key in settings if not key.startswith("TRANSLATOR_") or key[11:] not in KNOWN_SETTINGS}
    assert not unknown, f"settings the service does not read: {unknown}"

    # The service binds all interfaces on the port the probes and the Service use.
    assert settings["TRANSLATOR_HOST"] == "0.0.0.0"
    http_port = next(p for p in container["ports"] if p["name"] == "http")
    assert http_port["containerPort"] == int(settings["TRANSLATOR_PORT"])
    assert "args" not in container and "command" not in container, "the image entrypoint runs one worker"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "model load needs time"

    # SIGTERM drain: requests admitted before SIGTERM finish, and the kubelet waits for the drain.
    pre_stop_s = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain_s = float(settings["TRANSLATOR_DRAIN_TIMEOUT_S"])
    assert drain_s >= float(settings["TRANSLATOR_REQUEST_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_s + drain_s + 5

    # Service links would set TRANSLATOR_PORT=tcp://... for the Service named `translator`.
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False

    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts, "a read-only root filesystem needs a writable /tmp"

    # The API keys file lies inside the mounted Secret.
    keys_file = settings["TRANSLATOR_API_KEYS_FILE"]
    secret_volume = next(v for v in pod["volumes"] if "secret" in v)
    secret_mount = next(m for m in container["volumeMounts"] if m["name"] == secret_volume["name"])
    assert keys_file == f"{secret_mount['mountPath']}/{secret_volume['secret']['items'][0]['path']}"

    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[kind].keys()
    # Every thread that can be busy at once fits in the CPU limit, or on a node with free cores they
    # spend the CFS quota early in each period and the pod stalls for the rest of it: the encoder's
    # intra-op threads, each decoder lane's own thread (lanes step side by side) plus the decoder
    # session's shared pool (its intra-op threads - 1), and the event loop's. The pools are set
    # explicitly, since the service's defaults count the node's CPUs, not the pod's limit.
    assert cpu_cores(resources["requests"]["cpu"]) <= cpu_cores(resources["limits"]["cpu"])
    bounds = {b.strip() for b in settings["TRANSLATOR_DECODER_LANE_BOUNDS"].split(",") if b.strip()}
    lanes = len(bounds) + 1  # as Settings.decoder_threads counts them; "" is one lane
    encoder_threads = int(settings["TRANSLATOR_ENCODER_INTRA_OP_THREADS"])
    decoder_threads = int(settings["TRANSLATOR_INTRA_OP_THREADS"])
    assert encoder_threads >= 1 and decoder_threads >= 1, "0 picks the defaults, sized by the node's CPUs"
    event_loop = 1
    busy_threads = encoder_threads + lanes + (decoder_threads - 1) + event_loop
    limit = cpu_cores(resources["limits"]["cpu"])
    assert busy_threads <= limit, f"{busy_threads} threads can be busy at once, CPU limit {limit}"


def test_rolling_update_keeps_capacity(rendered_overlays: dict[str, list[dict]]) -> None:
    deployment = one(rendered_overlays["cpu"], "Deployment")
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0 and rolling["maxSurge"] >= 1
    assert one(rendered_overlays["cpu"], "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert one(rendered_overlays["cpu"], "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2


def test_gpu_rollout_needs_no_spare_gpu(rendered_overlays: dict[str, list[dict]]) -> None:
    """A surge pod needs a GPU no running pod holds; on a full GPU pool it would stay Pending and the
    rollout would never finish. The GPU overlay replaces one pod at a time instead."""
    rolling = one(rendered_overlays["gpu"], "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert rolling == {"maxSurge": 0, "maxUnavailable": 1}
    assert one(rendered_overlays["gpu"], "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2


def test_cpu_overlay_is_cpu_only(rendered_overlays: dict[str, list[dict]]) -> None:
    _, container, settings = deployment_parts(rendered_overlays["cpu"])
    assert settings["TRANSLATOR_PROVIDERS"] == "cpu"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    # Sized from measurements on a 2-core machine: a request of at most 2 cores; the limit only leaves
    # room for the threads that can run at once (checked above), not for a larger pod.
    assert cpu_cores(container["resources"]["requests"]["cpu"]) <= 2
    assert cpu_cores(container["resources"]["limits"]["cpu"]) <= 4
    assert container["image"].endswith("/translator:0.1.0")


def test_gpu_overlay_asks_for_a_gpu_and_cuda(rendered_overlays: dict[str, list[dict]]) -> None:
    objects = rendered_overlays["gpu"]
    pod, container, settings = deployment_parts(objects)
    assert settings["TRANSLATOR_PROVIDERS"] == "cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert "translator-gpu:" in container["image"]
    metrics = one(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Pods"]


@pytest.mark.parametrize("overlay", ["model-pvc", "model-init"])
def test_model_store_volume_is_where_the_service_looks(overlay: str, rendered_overlays: dict[str, list[dict]]) -> None:
    objects = rendered_overlays[overlay]
    pod, container, settings = deployment_parts(objects)
    store = settings["TRANSLATOR_MODEL_STORE"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == store)
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    if overlay == "model-pvc":
        claim = one(objects, "PersistentVolumeClaim")
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    else:
        (init,) = pod["initContainers"]
        assert any(m["name"] == mount["name"] and m["mountPath"] == store for m in init["volumeMounts"])
        assert init["command"][-1].rstrip("/") == store
        assert init["securityContext"]["readOnlyRootFilesystem"] is True


def test_hpa_queue_metric_is_served_by_the_adapter_rule(
    rendered_overlays: dict[str, list[dict]], exported_metrics: set[str]
) -> None:
    hpa = one(rendered_overlays["cpu"], "HorizontalPodAutoscaler")
    pods_metric = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Pods")["pods"]["metric"]["name"]
    adapter = yaml.safe_load((DEPLOY_DIR / "prometheus" / "adapter-rules.yaml").read_text())
    rule = next(r for r in adapter["rules"] if r["name"]["as"] == pods_metric)
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    query = rule["metricsQuery"].replace("<<.GroupBy>>", "pod").replace("<<.LabelMatchers>>", "")
    used = promql_metric_names(query) | promql_metric_names(rule["seriesQuery"])
    families = {name.removesuffix("_sum").removesuffix("_count") for name in used}
    assert families == {"translator_queue_wait_seconds"} <= exported_metrics
