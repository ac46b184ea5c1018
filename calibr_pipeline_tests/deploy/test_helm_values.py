"""deploy/helm: the values file for Dagster's Helm chart and the Celery workers' manifest.

No cluster here: the values are validated against an excerpt of the chart's published values
schema (deploy/helm/chart-values-schema.excerpt.json, closed where the chart is closed), and
what they point at is checked against this repository (module, settings, instance limits).
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from calibr_pipeline import settings

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / "deploy" / "helm"
SECRET_VARIABLES = {"CALIBR_WAREHOUSE_URL", "CALIBR_SECRETS_KEYS", "CALIBR_CELERY_BROKER_URL", "CALIBR_CELERY_BACKEND_URL",
                    "CALIBR_DAGSTER_PG_URL"}


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((HELM / "values.yaml").read_text())


@pytest.fixture(scope="module")
def workers() -> dict:
    return yaml.safe_load((HELM / "celery-workers.yaml").read_text())


def test_values_match_the_charts_schema(values):
    schema = json.loads((HELM / "chart-values-schema.excerpt.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)
    # Every top-level key is one the chart knows (the excerpt lists the ones the file may set).
    assert set(values) <= set(schema["properties"]), set(values) - set(schema["properties"])


def test_the_schema_excerpt_catches_a_misspelt_key(values):
    schema = json.loads((HELM / "chart-values-schema.excerpt.json").read_text())
    broken = json.loads(json.dumps(values))
    broken["runLauncher"]["config"]["k8sRunLauncher"]["envSecret"] = [{"name": "calibr-env"}]
    broken["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurrentRun"] = 4
    messages = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(broken)]
    assert any("'envSecret'" in m for m in messages) and any("'maxConcurrentRun'" in m for m in messages), messages


def test_user_code_deployment_loads_this_package_like_the_workspace(values):
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("--module-name") + 1]
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    assert module == workspace["load_from"][0]["python_module"]["module_name"] == "calibr_pipeline.definitions"
    assert hasattr(importlib.import_module(module), "defs")
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True  # runs get its env and secrets
    assert deployment["env"]["CALIBR_EXECUTOR"] == "celery"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"


def test_secrets_come_from_kubernetes_secrets_never_from_the_files(values, workers):
    def env_maps(node):
        if isinstance(node, dict):
            for key, child in node.items():
                if key == "env":
                    yield child
                yield from env_maps(child)
        elif isinstance(node, list):
            for child in node:
                yield from env_maps(child)

    names = set()
    for env in [*env_maps(values), *env_maps(workers)]:
        names |= set(env) if isinstance(env, dict) else {item["name"] for item in env}
    assert names and not names & SECRET_VARIABLES, names & SECRET_VARIABLES
    for path in (HELM / "values.yaml", HELM / "celery-workers.yaml"):
        text = path.read_text()
        assert not re.search(r"://[^\s/@]*:[^\s/@]+@", text), f"{path.name} holds a URL with a password"
    assert values["generatePostgresqlPasswordSecret"] is False and values["postgresql"]["postgresqlPassword"] == ""
    assert values["global"]["postgresqlSecretName"]
    secret_refs = {s["name"] for s in values["dagsterDaemon"]["envSecrets"]} & {s["name"] for s in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]}
    (container,) = workers["spec"]["template"]["spec"]["containers"]
    assert secret_refs == {ref["secretRef"]["name"] for ref in container["envFrom"]} == {"calibr-env"}


def test_workers_run_this_packages_celery_app_on_the_executors_queue(values, workers):
    assert workers["kind"] == "Deployment" and workers["apiVersion"] == "apps/v1"
    (container,) = workers["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:4] == ["celery", "--app", "calibr_pipeline.celery_worker", "worker"]
    assert command[command.index("--queues") + 1] == "dagster"  # dagster-celery's default queue
    script = (REPO / "deploy" / "celery-worker.sh").read_text()
    assert "--app calibr_pipeline.celery_worker worker" in script and "--queues dagster" in script
    image = values["dagster-user-deployments"]["deployments"][0]["image"]
    assert container["image"] == f"{image['repository']}:{image['tag']}"  # steps run the runs' code
    assert {e["name"]: e.get("value") for e in container["env"]}["CALIBR_EXECUTOR"] == "celery"


def test_every_calibr_variable_in_the_deploy_files_is_a_setting(values, workers):
    known = set(settings.variable_names())
    text = "\n".join(p.read_text() for p in sorted((REPO / "deploy").rglob("*")) if p.is_file() and p.suffix in (".yaml", ".sh"))
    used = set(re.findall(r"\bCALIBR_[A-Z0-9_]*[A-Z0-9]\b", text))
    assert used and used <= known, used - known


def test_run_queue_limits_match_the_instance_files(values):
    helm = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    celery_instance = yaml.safe_load((REPO / "deploy" / "dagster.celery.yaml").read_text())
    instance = celery_instance["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert helm == instance
    assert values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] == celery_instance["run_coordinator"]["config"]["max_concurrent_runs"]


def test_docs_name_only_keys_the_values_file_sets(values):
    """Dotted value paths quoted in docs/deployment.md (`runLauncher.type` ...) exist in the file."""
    docs = (REPO / "docs" / "deployment.md").read_text()
    roots = tuple(values)
    quoted = {m for m in re.findall(r"`([A-Za-z][\w-]*(?:\.[\w-]+)+)`", docs) if m.split(".")[0] in roots}
    assert len(quoted) >= 5, quoted
    for path in sorted(quoted):
        node = values
        for part in path.split("."):
            if isinstance(node, list):
                node = node[0]
            assert isinstance(node, dict) and part in node, f"docs/deployment.md quotes `{path}`, not in deploy/helm/values.yaml"
            node = node[part]
