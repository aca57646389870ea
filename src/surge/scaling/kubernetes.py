"""Rendering surge.yaml's scaling as Kubernetes objects: for each service with `process`, a
Deployment and an `autoscaling/v2` HorizontalPodAutoscaler; for each job worker with
`scaling`, a Deployment and a KEDA ScaledObject. The scaling rules map 1:1: targets to HPA
metrics, stabilization windows to `stabilizationWindowSeconds`, `max_step` to Pods/Percent
policies over one control period. Pure: dicts in, dicts out; writing files is the command's job.

Pod metrics other than CPU (in-flight, p95) and the queue depth reach the HPA through a
custom/external metrics adapter (e.g. prometheus-adapter) under the names below."""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from surge.scaling.spec import PolicySpec, Rule, Step, config_seconds, config_value, policy_at

CONTAINER_PORT = 8000
# Metric names as the metrics adapter serves them from surge's Prometheus metrics.
POD_METRICS = {
    "inflight_per_replica": "surge_upstream_inflight_requests",
    "p95_latency": "surge_upstream_latency_p95_seconds",
}
QUEUE_METRIC = "surge_jobs_queue_depth"
# How the Redis broker names a queue's stream and its workers' consumer group.
# TODO(jobs): import these from surge.jobs.redis_streams (Keys.stream, GROUP) once it lands.
STREAM_KEY = "surge:jobs:stream:{queue}"
CONSUMER_GROUP = "workers"
# Health check defaults of surge.yaml, for a service that sets none.
HEALTH_DEFAULTS = {"path": "/healthz", "interval": "2s", "timeout": "1s", "rise": 2, "fall": 3}


@dataclass
class Rendered:
    """The objects in apply order, and what could not be expressed on Kubernetes."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def render(config: Any, image: str) -> Rendered:
    """Every Deployment, HPA and ScaledObject the config's scaling needs."""
    out = Rendered()
    for name, service in (config_value(config, "services") or {}).items():
        process = config_value(service, "process")
        if process is None:
            continue
        health = config_value(service, "health")
        out.objects.append(deployment(name, process, image, serves_http=True, health=health))
        scaling = config_value(service, "scaling")
        if scaling is not None:
            spec = policy_at(f"services.{name}", scaling)
            out.objects.append(horizontal_pod_autoscaler(name, spec))
            if spec.schedule:
                out.warnings.append(
                    f"services.{name}.scaling.schedule: an HPA has no schedule; floors are "
                    "not rendered (use KEDA's cron scaler)"
                )
    jobs = config_value(config, "jobs") or {}
    for name, worker in (config_value(jobs, "workers") or {}).items():
        out.objects.append(deployment(name, worker, image, serves_http=False))
        scaling = config_value(worker, "scaling")
        if scaling is not None:
            admin = config_value(config_value(config, "gateway") or {}, "admin", "127.0.0.1:9000")
            out.objects.append(scaled_object(
                name, policy_at(f"jobs.workers.{name}", scaling),
                str(config_value(jobs, "broker", "")),
                _worker_queues(worker), admin,
            ))
    return out


def deployment(
    name: str, process: Any, image: str, *, serves_http: bool, health: Any = None
) -> dict[str, Any]:
    """A Deployment that rolls one new pod in before one old goes (max surge 1, unavailable 0).
    A service's pods listen on CONTAINER_PORT and are probed on `health` (or its defaults)."""
    command = str(config_value(process, "command")).replace("{port}", str(CONTAINER_PORT))
    container: dict[str, Any] = {
        "name": _dns_name(name),
        "image": image,
        "command": shlex.split(command),
        "env": [{"name": k, "value": str(v)}
                for k, v in (config_value(process, "env") or {}).items()],
        "resources": {"requests": {"cpu": "1"}},  # so HPA utilization % equals surge's cpu %
    }
    if serves_http:
        container["ports"] = [{"name": "http", "containerPort": CONTAINER_PORT}]
        container.update(_probes(health))
    labels = _labels(name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": _dns_name(name), "labels": labels},
        "spec": {
            "replicas": int(config_value(process, "replicas", 1) or 1),
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def horizontal_pod_autoscaler(name: str, spec: PolicySpec) -> dict[str, Any]:
    metrics: list[dict[str, Any]] = []
    targets = spec.targets
    if targets.cpu_percent is not None:
        metrics.append({"type": "Resource", "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": round(targets.cpu_percent)},
        }})
    for target_name, metric in POD_METRICS.items():
        value = getattr(targets, target_name)
        if value is not None:
            metrics.append({"type": "Pods", "pods": {
                "metric": {"name": metric},
                "target": {"type": "AverageValue", "averageValue": _quantity(value)},
            }})
    if targets.queue_depth_per_replica is not None:
        metrics.append({"type": "External", "external": {
            "metric": {"name": QUEUE_METRIC, "selector": {"matchLabels": {"service": name}}},
            "target": {"type": "AverageValue",
                       "averageValue": _quantity(targets.queue_depth_per_replica)},
        }})
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": _dns_name(name), "labels": _labels(name)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": _dns_name(name)},
            "minReplicas": max(1, spec.min),
            "maxReplicas": spec.max,
            "metrics": metrics,
            "behavior": behavior(spec),
        },
    }


def behavior(spec: PolicySpec) -> dict[str, Any]:
    """HPA `behavior`: each direction's window, and its step as policies over one period."""
    period = min(1800, max(1, math.ceil(spec.control_period)))
    return {
        "scaleUp": _scaling_rules(spec.scale_up, spec.max, period),
        "scaleDown": _scaling_rules(spec.scale_down, spec.max, period),
    }


def scaled_object(
    name: str, spec: PolicySpec, broker: str, queues: list[str], admin: str
) -> dict[str, Any]:
    """A KEDA ScaledObject: queue depth per replica from Redis streams (or the admin API for a
    local broker), zero replicas after `cooldownPeriod` of an empty queue, the same behavior."""
    triggers = _queue_triggers(name, spec, broker, queues, admin)
    if spec.targets.cpu_percent is not None:
        triggers.append({"type": "cpu", "metricType": "Utilization",
                         "metadata": {"value": str(round(spec.targets.cpu_percent))}})
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": _dns_name(name), "labels": _labels(name)},
        "spec": {
            "scaleTargetRef": {"name": _dns_name(name)},
            "pollingInterval": max(1, math.ceil(spec.control_period)),
            "cooldownPeriod": math.ceil(spec.scale_down.stabilization),
            "minReplicaCount": spec.min,
            "maxReplicaCount": spec.max,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(spec)}},
            "triggers": triggers,
        },
    }


def _queue_triggers(
    name: str, spec: PolicySpec, broker: str, queues: list[str], admin: str
) -> list[dict[str, Any]]:
    target = spec.targets.queue_depth_per_replica
    if target is None:
        return []
    url = urlparse(broker)
    if url.scheme in ("redis", "rediss"):
        return [{
            "type": "redis-streams",
            "metadata": {
                "address": f"{url.hostname or '127.0.0.1'}:{url.port or 6379}",
                "databaseIndex": (url.path.strip("/") or "0"),
                "stream": STREAM_KEY.format(queue=queue),
                "consumerGroup": CONSUMER_GROUP,
                "lagCount": str(math.ceil(target)),
                "enableTLS": str(url.scheme == "rediss").lower(),
            },
        } for queue in queues]
    return [{
        "type": "metrics-api",
        "metadata": {
            "url": f"http://{admin}/api/scaling",
            "valueLocation": f"{name}.queue_depth",
            "targetValue": str(math.ceil(target)),
        },
    }]


def _scaling_rules(rule: Rule, max_replicas: int, period: int) -> dict[str, Any]:
    step = rule.max_step
    policies: list[dict[str, Any]] = []
    if step.pods is not None:
        policies.append({"type": "Pods", "value": step.pods, "periodSeconds": period})
    if step.percent is not None:
        policies.append({"type": "Percent", "value": round(step.percent),
                         "periodSeconds": period})
    if step == Step():  # no limit: as many as max allows, in one period
        policies.append({"type": "Pods", "value": max_replicas, "periodSeconds": period})
    live = [p for p in policies if p["value"] > 0]
    return {
        "stabilizationWindowSeconds": math.ceil(rule.stabilization),
        "selectPolicy": "Max" if live else "Disabled",
        "policies": live or policies,
    }


def _probes(health: Any) -> dict[str, Any]:
    def get(key: str) -> Any:
        value = config_value(health, key) if health is not None else None
        return HEALTH_DEFAULTS[key] if value is None else value

    probe = {
        "httpGet": {"path": get("path"), "port": "http"},
        "periodSeconds": max(1, math.ceil(config_seconds(get("interval")))),
        "timeoutSeconds": max(1, math.ceil(config_seconds(get("timeout")))),
        "failureThreshold": int(get("fall")),
    }
    return {
        "readinessProbe": probe | {"successThreshold": int(get("rise"))},
        "livenessProbe": probe | {"successThreshold": 1},  # Kubernetes requires 1 here
    }


def _worker_queues(worker: Any) -> list[str]:
    queues = config_value(worker, "queues")
    if queues:
        return [str(q) for q in queues]
    found = re.search(r"--queues[ =](\S+)", str(config_value(worker, "command", "")))
    return found.group(1).split(",") if found else ["default"]


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": _dns_name(name), "app.kubernetes.io/managed-by": "surge"}


def _dns_name(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "surge"


def _quantity(value: float) -> str:
    """A Kubernetes quantity: whole numbers plain, fractions in milli-units (0.25 -> 250m)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"
