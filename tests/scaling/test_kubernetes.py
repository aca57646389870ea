"""`surge deploy k8s`: the scaling config rendered as Kubernetes objects, checked against the
real schemas (kubernetes-validate's bundled ones; KEDA's ScaledObject from a vendored subset)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from surge.cli import main
from surge.config import parse
from surge.config.models_services import ScalingSpec
from surge.errors import ConfigError
from surge.scaling.kubernetes import render
from surge.scaling.spec import PolicySpec

K8S_VERSION = "1.30"
KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas/keda-scaledobject-v1alpha1.json")
                         .read_text())

CONFIG = {
    "gateway": {"admin": "127.0.0.1:9000"},
    "services": {
        "api": {
            "process": {"command": "python -m myapp --port {port}", "env": {"APP_ENV": "prod"},
                        "replicas": 2},
            "health": {"path": "/healthz", "interval": "2s", "timeout": "1s", "rise": 2,
                       "fall": 3},
            "scaling": {
                "min": 1, "max": 8,
                "target": {"cpu_percent": 70, "inflight_per_replica": 32, "p95_latency": "250ms"},
                "scale_up": {"stabilization": "0s", "max_step": "100%"},
                "scale_down": {"stabilization": "300s", "max_step": 1},
            },
        },
        "fixed": {"upstreams": ["127.0.0.1:8101"]},
    },
    "jobs": {
        "broker": "redis://redis.default:6379/2",
        "workers": {
            "emails": {
                "command": "surge worker myapp.tasks:queue --queues default,bulk",
                "scaling": {"min": 0, "max": 8, "target": {"queue_depth_per_replica": 100}},
            },
        },
    },
}


def validate(obj: dict) -> None:
    if obj["kind"] == "ScaledObject":
        jsonschema.validate(obj, KEDA_SCHEMA)
        # The behavior block is an HPA's: check it against the real autoscaling/v2 schema.
        behavior = obj["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        kubernetes_validate.validate(_hpa_with(behavior), K8S_VERSION, strict=True)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _hpa_with(behavior: dict) -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "check"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 1,
                     "behavior": behavior}}


def by_kind(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_every_rendered_object_passes_its_kubernetes_schema():
    rendered = render(CONFIG, image="registry.example/app:1")
    assert [(o["kind"], o["metadata"]["name"]) for o in rendered.objects] == [
        ("Deployment", "api"), ("HorizontalPodAutoscaler", "api"),
        ("Deployment", "emails"), ("ScaledObject", "emails"),
    ]
    for obj in rendered.objects:
        validate(obj)
    assert rendered.warnings == []


def test_the_schema_check_catches_a_broken_object():
    hpa = by_kind(render(CONFIG, image="app:1").objects)["HorizontalPodAutoscaler", "api"]
    hpa["spec"]["behavior"]["scaleUp"]["policies"][0]["value"] = "lots"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(hpa)
    scaled = by_kind(render(CONFIG, image="app:1").objects)["ScaledObject", "emails"]
    del scaled["spec"]["triggers"][0]["metadata"]
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)


def test_the_deployment_rolls_one_new_pod_in_before_an_old_one_goes():
    spec = by_kind(render(CONFIG, image="app:1").objects)["Deployment", "api"]["spec"]
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    container = spec["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "myapp", "--port", "8000"]
    assert container["env"] == [{"name": "APP_ENV", "value": "prod"}]
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2,
        "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 2,
    }
    assert container["livenessProbe"]["successThreshold"] == 1


def test_hpa_behavior_maps_the_windows_and_steps_one_to_one():
    hpa = by_kind(render(CONFIG, image="app:1").objects)["HorizontalPodAutoscaler", "api"]
    assert hpa["spec"]["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 2}]},
        "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
                      "policies": [{"type": "Pods", "value": 1, "periodSeconds": 2}]},
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 8)
    metrics = hpa["spec"]["metrics"]
    assert metrics[0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert [m["pods"]["target"]["averageValue"] for m in metrics[1:]] == ["32", "250m"]


def test_a_worker_queue_becomes_a_keda_redis_streams_trigger_per_queue():
    scaled = by_kind(render(CONFIG, image="app:1").objects)["ScaledObject", "emails"]["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (0, 8)
    assert scaled["cooldownPeriod"] == 300  # the scale-down window before going to zero
    assert scaled["pollingInterval"] == 2
    assert [t["metadata"]["stream"] for t in scaled["triggers"]] == [
        "surge:jobs:stream:default", "surge:jobs:stream:bulk"]
    assert scaled["triggers"][0]["metadata"] == {
        "address": "redis.default:6379", "databaseIndex": "2",
        "stream": "surge:jobs:stream:default", "consumerGroup": "workers", "lagCount": "100",
        "enableTLS": "false",
    }


def test_a_worker_on_a_local_broker_reads_queue_depth_from_the_admin_api():
    config = CONFIG | {"jobs": CONFIG["jobs"] | {"broker": "sqlite:///.surge/jobs.db"}}
    scaled = by_kind(render(config, image="app:1").objects)["ScaledObject", "emails"]
    validate(scaled)
    assert scaled["spec"]["triggers"] == [{"type": "metrics-api", "metadata": {
        "url": "http://127.0.0.1:9000/api/scaling", "valueLocation": "emails.queue_depth",
        "targetValue": "100"}}]


@pytest.mark.parametrize(
    ("scale_up", "policies", "select"),
    [
        ({"max_step": 4}, [{"type": "Pods", "value": 4, "periodSeconds": 2}], "Max"),
        ({"max_step": [4, "100%"]}, [{"type": "Pods", "value": 4, "periodSeconds": 2},
                                     {"type": "Percent", "value": 100, "periodSeconds": 2}], "Max"),
        ({"max_step": 0}, [{"type": "Pods", "value": 0, "periodSeconds": 2}], "Disabled"),
    ],
)
def test_max_step_forms_become_hpa_policies(scale_up, policies, select):
    scaling = CONFIG["services"]["api"]["scaling"] | {"scale_up": scale_up}
    config = {"services": {"api": CONFIG["services"]["api"] | {"scaling": scaling}}}
    hpa = by_kind(render(config, image="app:1").objects)["HorizontalPodAutoscaler", "api"]
    assert hpa["spec"]["behavior"]["scaleUp"]["policies"] == policies
    assert hpa["spec"]["behavior"]["scaleUp"]["selectPolicy"] == select
    if select == "Max":
        validate(hpa)


def test_the_config_model_renders_like_the_plain_dict():
    model = ScalingSpec.model_validate(CONFIG["services"]["api"]["scaling"])
    assert PolicySpec.from_config(model) == PolicySpec.from_config(
        CONFIG["services"]["api"]["scaling"])


def test_the_loaded_config_model_renders_exactly_like_its_yaml_dict():
    model = parse(yaml.safe_dump(CONFIG), check_support=False)
    assert render(model, image="app:1") == render(CONFIG, image="app:1")


def test_a_schedule_is_reported_as_not_rendered():
    scaling = CONFIG["services"]["api"]["scaling"] | {"schedule": [{"cron": "0 8 * * *",
                                                                   "min": 4}]}
    config = {"services": {"api": CONFIG["services"]["api"] | {"scaling": scaling}}}
    assert "schedule" in render(config, image="app:1").warnings[0]


def test_surge_deploy_k8s_writes_one_file_per_object(tmp_path, capsys):
    config = tmp_path / "surge.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["deploy", "k8s", str(config), "-o", str(tmp_path / "out")]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["deployment-api.yaml", "deployment-emails.yaml",
                     "horizontalpodautoscaler-api.yaml", "scaledobject-emails.yaml"]
    for path in (tmp_path / "out").iterdir():
        validate(yaml.safe_load(path.read_text()))


def test_surge_deploy_k8s_prints_a_multi_document_stream(tmp_path, capsys):
    config = tmp_path / "surge.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["deploy", "k8s", str(config)]) == 0
    assert len(list(yaml.safe_load_all(capsys.readouterr().out))) == 4


def test_a_scaling_block_the_policy_refuses_is_reported_at_its_location():
    service = CONFIG["services"]["api"] | {"scaling": {"min": 0, "max": 2,
                                                       "target": {"cpu_percent": 70}}}
    with pytest.raises(ConfigError, match=r"services\.api\.scaling\.min: 0 needs a queue"):
        render({"services": {"api": service}}, image="app:1")


def test_surge_deploy_k8s_reports_a_bad_scaling_block_with_status_2(tmp_path, capsys):
    broken = CONFIG["services"]["api"] | {"scaling": {"min": 3, "max": 1,
                                                      "target": {"cpu_percent": 70}}}
    config = tmp_path / "surge.yaml"
    config.write_text(yaml.safe_dump({"services": {"api": broken}}))
    assert main(["deploy", "k8s", str(config)]) == 2
    assert "services.api.scaling.max" in capsys.readouterr().err
