#!/usr/bin/env python3
"""Lints, renders and validates helm/carerecord for each CI values file (scripts/helm-check.sh runs it).

For the default values, ci/production-values.yaml and ci/swapped-identity-values.yaml:
  1. `helm lint --strict` (Helm's Go SDK through helm-python-sdk, no helm binary or cluster);
  2. `helm template` (the same SDK, offline);
  3. every rendered manifest against the Kubernetes JSON schemas (kubernetes-validate, strict: unknown
     fields fail) for the oldest and newest Kubernetes versions checked; cert-manager resources
     against the schemas below (a subset of cert-manager.io/v1, unknown fields fail);
  4. what the chart promises, per values file: security context, probes, secrets, TLS wiring,
     NetworkPolicy reachability, a swapped module, dev tokens off.
Then values that must be refused (e.g. two replicas on SQLite) must fail to render, with their message.

Exit status 0 only when everything passed; each failure is printed with the file and resource.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "carerecord"
RELEASE = "carerecord"
NAMESPACE = "carerecord"
KUBE_VERSIONS = ["1.30.0", "1.37.0"]
PREFIX = "carerecord"  # the release name contains the chart name, so resources are carerecord-<module>
MODULES = {"access": 50050, "identity": 50051, "records": 50052, "consent": 50053}

# --- cert-manager.io/v1: the fields this chart may use; anything else is a typo. ------------------
_ISSUER_REF = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "kind": {"type": "string", "enum": ["Issuer", "ClusterIssuer"]},
        "group": {"type": "string"},
    },
}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$"}
CERT_MANAGER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Certificate": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["secretName", "issuerRef"],
                "additionalProperties": False,
                "properties": {
                    "secretName": {"type": "string", "minLength": 1},
                    "commonName": {"type": "string", "maxLength": 64},
                    "dnsNames": {"type": "array", "items": {"type": "string"}},
                    "isCA": {"type": "boolean"},
                    "duration": _DURATION,
                    "renewBefore": _DURATION,
                    "usages": {
                        "type": "array",
                        "items": {
                            "enum": [
                                "signing", "digital signature", "content commitment",
                                "key encipherment", "key agreement", "data encipherment",
                                "cert sign", "crl sign", "encipher only", "decipher only",
                                "any", "server auth", "client auth", "code signing",
                                "email protection", "s/mime", "ipsec end system",
                                "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
                                "microsoft sgc", "netscape sgc",
                            ]
                        },
                    },
                    "privateKey": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                            "size": {"type": "integer"},
                            "encoding": {"enum": ["PKCS1", "PKCS8"]},
                            "rotationPolicy": {"enum": ["Never", "Always"]},
                        },
                    },
                    "issuerRef": _ISSUER_REF,
                },
            },
        },
    },
    "Issuer": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "maxProperties": 1,
                "properties": {
                    "selfSigned": {"type": "object"},
                    "ca": {
                        "type": "object",
                        "required": ["secretName"],
                        "additionalProperties": False,
                        "properties": {"secretName": {"type": "string", "minLength": 1}},
                    },
                },
            },
        },
    },
}


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.checks = 0

    def check(self, ok: bool, message: str) -> bool:
        self.checks += 1
        if not ok:
            self.failures.append(message)
        return ok


# --- helpers over rendered resources ----------------------------------------------------------------
Resource = dict[str, Any]


def component(resource: Resource) -> str | None:
    labels = resource.get("metadata", {}).get("labels") or {}
    return labels.get("app.kubernetes.io/component")


def find(resources: list[Resource], kind: str, name: str) -> Resource | None:
    for resource in resources:
        if resource["kind"] == kind and resource["metadata"]["name"] == name:
            return resource
    return None


def pod_spec(resource: Resource) -> dict[str, Any]:
    return resource["spec"]["template"]["spec"]


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env") or []}


def config_map_data(resources: list[Resource], module: str) -> dict[str, str]:
    cm = find(resources, "ConfigMap", f"{PREFIX}-{module}")
    return (cm or {}).get("data") or {}


# --- steps -----------------------------------------------------------------------------------------
def lint(values: dict[str, Any] | None, label: str, report: Report) -> None:
    result = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSIONS[0]}")
    for message in result.get("messages", []):
        severity = message.get("severity", 0)
        line = f"[{label}] helm lint: {message.get('path')}: {message.get('error')}"
        if severity >= 2:  # warning or error: --strict fails on both
            report.check(False, line)
        else:
            print(f"  info  {line}")
    for error in result.get("errors", []):
        report.check(False, f"[{label}] helm lint: {error}")
    report.check(result.get("total_charts_linted") == 1, f"[{label}] helm lint linted no chart")


def render(values: dict[str, Any] | None) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def parse(manifests: dict[str, str], label: str, report: Report) -> list[Resource]:
    resources: list[Resource] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            report.check(bool(text.strip()), f"[{label}] NOTES.txt rendered empty")
            continue
        try:
            documents = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as e:
            report.check(False, f"[{label}] {path}: not YAML: {e}")
            continue
        for document in documents:
            if not report.check(isinstance(document, dict) and "kind" in document,
                                f"[{label}] {path}: a document that is not a Kubernetes object"):
                continue
            document["__template"] = path
            resources.append(document)
    return resources


def validate_schemas(resources: list[Resource], label: str, report: Report) -> None:
    seen: set[tuple[str, str]] = set()
    for resource in resources:
        template = resource.pop("__template")
        name = resource.get("metadata", {}).get("name", "?")
        where = f"[{label}] {template}: {resource['kind']}/{name}"
        key = (resource["kind"], name)
        report.check(key not in seen, f"{where}: rendered twice")
        seen.add(key)
        report.check(resource.get("metadata", {}).get("namespace") == NAMESPACE,
                     f"{where}: metadata.namespace is not the release namespace")
        if resource["apiVersion"].startswith("cert-manager.io/"):
            schema = CERT_MANAGER_SCHEMAS.get(resource["kind"])
            if not report.check(schema is not None and resource["apiVersion"] == "cert-manager.io/v1",
                                f"{where}: no schema for {resource['apiVersion']} {resource['kind']}"):
                continue
            for error in jsonschema.Draft202012Validator(schema).iter_errors(resource):
                path = ".".join(str(p) for p in error.absolute_path)
                report.check(False, f"{where}: cert-manager.io/v1 schema: {path}: {error.message}")
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
                report.check(True, "")
            except kv_utils.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                report.check(False, f"{where}: Kubernetes {version} schema: {path}: {e.message}")
            except kv_utils.SchemaNotFoundError as e:
                report.check(False, f"{where}: {e.message}")


def check_workloads(resources: list[Resource], label: str, report: Report) -> None:
    """Security context, resources and probes of every pod the chart runs."""
    for resource in resources:
        if resource["kind"] not in ("Deployment", "Job"):
            continue
        where = f"[{label}] {resource['kind']}/{resource['metadata']['name']}"
        spec = pod_spec(resource)
        pod_sc = spec.get("securityContext") or {}
        report.check(pod_sc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot is not true")
        report.check(spec.get("automountServiceAccountToken") is False,
                     f"{where}: the service account token is mounted")
        for container in all_containers(spec):
            cwhere = f"{where} container {container['name']}"
            sc = container.get("securityContext") or {}
            report.check(sc.get("readOnlyRootFilesystem") is True, f"{cwhere}: root filesystem is writable")
            report.check(sc.get("allowPrivilegeEscalation") is False, f"{cwhere}: privilege escalation allowed")
            report.check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []),
                         f"{cwhere}: capabilities not dropped")
            seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
            report.check(seccomp == "RuntimeDefault", f"{cwhere}: seccomp profile is {seccomp}")
            requests = (container.get("resources") or {}).get("requests") or {}
            report.check("cpu" in requests and "memory" in requests, f"{cwhere}: no cpu/memory requests")
            report.check("memory" in ((container.get("resources") or {}).get("limits") or {}),
                         f"{cwhere}: no memory limit")
        if resource["kind"] == "Deployment" and component(resource) in ("fhir", "console"):
            continue  # the FHIR gateway and the web console: HTTP, no data (check_gateway, check_console)
        if resource["kind"] == "Deployment":
            module = component(resource)
            main = spec["containers"][0]
            for probe in ("readinessProbe", "livenessProbe"):
                grpc = (main.get(probe) or {}).get("grpc") or {}
                report.check(isinstance(grpc.get("port"), int),
                             f"{where}: {probe} is not a native gRPC probe")
            env = env_of(main)
            report.check("CARERECORD_TOKEN_SECRET" in env and "valueFrom" in env["CARERECORD_TOKEN_SECRET"],
                         f"{where}: CARERECORD_TOKEN_SECRET does not come from a Secret")
            url = env.get("DATABASE_URL", {})
            report.check("valueFrom" in url or url.get("value", "").startswith("sqlite://"),
                         f"{where}: DATABASE_URL is neither from a Secret nor SQLite")
            report.check(main.get("command") == [f"carerecord-{module}"],
                         f"{where}: runs {main.get('command')}, not carerecord-{module}")


def check_network_policies(resources: list[Resource], enabled: list[str], label: str, report: Report) -> None:
    """Only data access is reachable from outside; the others only from data access (or listed modules)."""
    for module in enabled:
        policy = find(resources, "NetworkPolicy", f"{PREFIX}-{module}")
        where = f"[{label}] NetworkPolicy/{PREFIX}-{module}"
        if not report.check(policy is not None, f"{where}: missing"):
            continue
        spec = policy["spec"]
        report.check(spec.get("policyTypes") == ["Ingress", "Egress"], f"{where}: not both Ingress and Egress")
        report.check(spec["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == module,
                     f"{where}: selects the wrong pods")
        for rule in spec.get("ingress") or []:
            ports = [p.get("port") for p in rule.get("ports") or []]
            report.check(ports == [MODULES[module]], f"{where}: ingress opens ports {ports}")
            if module == "access":
                continue
            peers = rule.get("from") or []
            report.check(bool(peers), f"{where}: ingress from anywhere")
            for peer in peers:
                labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
                caller = labels.get("app.kubernetes.io/component")
                report.check(set(peer) == {"podSelector"} and caller in MODULES and caller != module,
                             f"{where}: ingress from {peer}, not a module of this release")


def check_gateway(resources: list[Resource], label: str, report: Report) -> None:
    """The FHIR gateway: HTTP probes, no database or token secret, reaching only data access."""
    name = f"{PREFIX}-fhir"
    for kind in ("Deployment", "Service", "ServiceAccount", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"):
        report.check(find(resources, kind, name) is not None, f"[{label}] {kind}/{name} missing")
    deployment = find(resources, "Deployment", name)
    if deployment:
        main = pod_spec(deployment)["containers"][0]
        report.check(main.get("command") == ["carerecord-fhir"], f"[{label}] {name} runs {main.get('command')}")
        for probe in ("readinessProbe", "livenessProbe"):
            http = (main.get(probe) or {}).get("httpGet") or {}
            report.check(http.get("path") == "/metadata", f"[{label}] {name}: {probe} is not HTTP GET /metadata")
        env = env_of(main)
        report.check("DATABASE_URL" not in env and "CARERECORD_TOKEN_SECRET" not in env,
                     f"[{label}] {name} is given a database or a token secret: it holds no data")
    data = config_map_data(resources, "fhir")
    report.check(data.get("CARERECORD_FHIR_EXPORT_DIR", "").startswith("/data/"),
                 f"[{label}] {name} writes exports outside its /data volume")
    policy = find(resources, "NetworkPolicy", name)
    if policy:
        egress_ports = sorted(p.get("port") for rule in policy["spec"].get("egress") or []
                              for p in rule.get("ports") or [])
        report.check(MODULES["access"] in egress_ports or not find(resources, "Deployment", f"{PREFIX}-access"),
                     f"[{label}] {name} cannot reach data access: egress ports {egress_ports}")
        for rule in policy["spec"].get("egress") or []:
            for peer in rule.get("to") or []:
                labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
                report.check(labels.get("app.kubernetes.io/component") in (None, "access"),
                             f"[{label}] {name} may call {labels}: only data access")


def check_console(resources: list[Resource], label: str, report: Report) -> None:
    """The web console, when enabled: HTTP probes, no database or token secret, signing in with an
    issuer, reaching only data access."""
    name = f"{PREFIX}-console"
    deployment = find(resources, "Deployment", name)
    if deployment is None:
        return
    for kind in ("Service", "ServiceAccount", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"):
        report.check(find(resources, kind, name) is not None, f"[{label}] {kind}/{name} missing")
    main = pod_spec(deployment)["containers"][0]
    report.check(main.get("command") == ["carerecord-console"], f"[{label}] {name} runs {main.get('command')}")
    for probe in ("readinessProbe", "livenessProbe"):
        http = (main.get(probe) or {}).get("httpGet") or {}
        report.check(http.get("path") == "/healthz", f"[{label}] {name}: {probe} is not HTTP GET /healthz")
    env = env_of(main)
    report.check("DATABASE_URL" not in env and "CARERECORD_TOKEN_SECRET" not in env,
                 f"[{label}] {name} is given a database or a token secret: it holds no data")
    data = config_map_data(resources, "console")
    for key in ("AUTHORIZATION_URL", "TOKEN_URL"):
        report.check(data.get(f"CARERECORD_CONSOLE_OIDC_{key}", "").startswith("https://"),
                     f"[{label}] {name}: CARERECORD_CONSOLE_OIDC_{key} is not an https URL")
    policy = find(resources, "NetworkPolicy", name)
    if policy:
        for rule in policy["spec"].get("egress") or []:
            for peer in rule.get("to") or []:
                labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
                report.check(labels.get("app.kubernetes.io/component") in (None, "access"),
                             f"[{label}] {name} may call {labels}: only data access")
    access_policy = find(resources, "NetworkPolicy", f"{PREFIX}-access")
    if access_policy:
        peers = [peer for rule in access_policy["spec"].get("ingress") or [] for peer in rule.get("from") or []]
        report.check(not peers or any(((p.get("podSelector") or {}).get("matchLabels") or {})
                                      .get("app.kubernetes.io/component") == "console" for p in peers),
                     f"[{label}] data access does not admit the console")


def check_modules(resources: list[Resource], enabled: list[str], label: str, report: Report) -> None:
    for module in MODULES:
        name = f"{PREFIX}-{module}"
        for kind in ("Deployment", "Service", "ServiceAccount", "ConfigMap", "PodDisruptionBudget"):
            present = find(resources, kind, name) is not None
            if module in enabled:
                report.check(present, f"[{label}] {kind}/{name} missing")
            else:
                report.check(not present, f"[{label}] {kind}/{name} rendered for a disabled module")
        if module not in enabled:
            leftovers = [f"{r['kind']}/{r['metadata']['name']}" for r in resources if component(r) == module]
            report.check(not leftovers, f"[{label}] disabled {module} still renders {leftovers}")
    access = config_map_data(resources, "access")
    report.check(access.get("CARERECORD_DEV_TOKENS") == "false",
                 f"[{label}] data access accepts development tokens (CARERECORD_DEV_TOKENS="
                 f"{access.get('CARERECORD_DEV_TOKENS')})")
    for module in enabled:
        listen = config_map_data(resources, module).get("CARERECORD_LISTEN_ADDR")
        report.check(listen == f"0.0.0.0:{MODULES[module]}", f"[{label}] {module} listens on {listen}")


# --- what each values file must produce ----------------------------------------------------------------
def expect_default(resources: list[Resource], report: Report) -> None:
    label = "default"
    report.check(find(resources, "Deployment", f"{PREFIX}-console") is None,
                 f"[{label}] the web console is rendered without an issuer to sign in with")
    access = config_map_data(resources, "access")
    for module in ("identity", "records", "consent"):
        endpoint = access.get(f"CARERECORD_{module.upper()}_ENDPOINT")
        report.check(endpoint == f"http://{PREFIX}-{module}:{MODULES[module]}",
                     f"[{label}] data access calls {module} at {endpoint}")
    report.check(not any(r["kind"] in ("Certificate", "HorizontalPodAutoscaler", "Job") for r in resources),
                 f"[{label}] TLS, autoscaling or hook Jobs rendered by default")
    limits = {k: access.get(k) for k in ("CARERECORD_CLIENT_RATE_LIMIT", "CARERECORD_CLIENT_RATE_BURST",
                                         "CARERECORD_CLIENT_CONCURRENCY")}
    report.check(limits == {"CARERECORD_CLIENT_RATE_LIMIT": "200", "CARERECORD_CLIENT_RATE_BURST": "400",
                            "CARERECORD_CLIENT_CONCURRENCY": "64"},
                 f"[{label}] data access's per-client limits are {limits}")
    for module in MODULES:
        deployment = find(resources, "Deployment", f"{PREFIX}-{module}")
        init = [c["command"] for c in pod_spec(deployment).get("initContainers") or []] if deployment else []
        report.check(init == [[f"carerecord-{module}", "migrate"]],
                     f"[{label}] {module} does not migrate in an init container: {init}")
    policy = find(resources, "NetworkPolicy", f"{PREFIX}-access")
    if policy:
        rules = policy["spec"]["ingress"]
        report.check(len(rules) == 1 and "from" not in rules[0],
                     f"[{label}] data access is not reachable from outside the release")


def expect_production(resources: list[Resource], report: Report) -> None:
    label = "production"
    ingress = find(resources, "Ingress", f"{PREFIX}-fhir")
    report.check(ingress is not None and ingress["spec"]["rules"][0]["host"] == "fhir.ics.example",
                 f"[{label}] the FHIR gateway's Ingress is missing")
    report.check(config_map_data(resources, "fhir").get("CARERECORD_FHIR_BASE_URL") == "https://fhir.ics.example",
                 f"[{label}] the FHIR gateway's base URL is not its public https name")
    console = find(resources, "Ingress", f"{PREFIX}-console")
    report.check(console is not None and console["spec"]["rules"][0]["host"] == "console.ics.example",
                 f"[{label}] the web console's Ingress is missing")
    access = config_map_data(resources, "access")
    for module in ("identity", "records", "consent"):
        endpoint = access.get(f"CARERECORD_{module.upper()}_ENDPOINT")
        report.check(endpoint == f"https://{PREFIX}-{module}:{MODULES[module]}",
                     f"[{label}] data access calls {module} at {endpoint} (expected TLS)")
    for variable in ("CARERECORD_UPSTREAM_CA_FILE", "CARERECORD_UPSTREAM_CERT_FILE", "CARERECORD_UPSTREAM_KEY_FILE",
                     "CARERECORD_JWKS_URL", "CARERECORD_JWT_ISSUER", "CARERECORD_JWT_AUDIENCE",
                     "CARERECORD_PROJECTS_FILE", "CARERECORD_AUDIT_SIGNING_KEY_FILE"):
        report.check(variable in access, f"[{label}] data access has no {variable}")
    report.check(not any(r["kind"] == "Secret" for r in resources),
                 f"[{label}] the chart creates Secrets although every module names an existing one")
    check_issuers(resources, label, report)
    for module in MODULES:
        name = f"{PREFIX}-{module}"
        data = config_map_data(resources, module)
        for variable in ("CARERECORD_TLS_CERT_FILE", "CARERECORD_TLS_KEY_FILE", "CARERECORD_TLS_CLIENT_CA_FILE",
                         "CARERECORD_HEALTH_LISTEN_ADDR"):
            report.check(variable in data, f"[{label}] {module} has no {variable}")
        certificate = find(resources, "Certificate", name)
        if report.check(certificate is not None, f"[{label}] Certificate/{name} missing"):
            spec = certificate["spec"]
            report.check(spec["issuerRef"] == {"name": "ics-internal-ca", "kind": "ClusterIssuer",
                                               "group": "cert-manager.io"},
                         f"[{label}] Certificate/{name} issued by {spec['issuerRef']}")
            report.check({"server auth", "client auth"} <= set(spec.get("usages", [])),
                         f"[{label}] Certificate/{name} is not both server and client")
            report.check(f"{name}.{NAMESPACE}.svc" in spec.get("dnsNames", []),
                         f"[{label}] Certificate/{name} does not name the Service")
        deployment = find(resources, "Deployment", name)
        if deployment:
            spec = pod_spec(deployment)
            report.check("replicas" not in deployment["spec"], f"[{label}] {name} fixes replicas under an HPA")
            report.check(not spec.get("initContainers"), f"[{label}] {name} migrates in an init container")
            mounts = {v["name"]: v for v in spec["volumes"]}
            report.check(mounts.get("tls", {}).get("secret", {}).get("secretName") == f"{name}-tls",
                         f"[{label}] {name} does not mount its certificate")
            probe = spec["containers"][0]["readinessProbe"]["grpc"]["port"]
            report.check(probe == 8081, f"[{label}] {name} probes port {probe}, not the plaintext health port")
            env = env_of(spec["containers"][0])
            secret = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
            report.check(secret == f"carerecord-{module}-db", f"[{label}] {name} database URL from {secret}")
        job = find(resources, "Job", f"{name}-migrate")
        if report.check(job is not None, f"[{label}] Job/{name}-migrate missing"):
            hooks = job["metadata"]["annotations"].get("helm.sh/hook", "")
            report.check(hooks == "pre-install,pre-upgrade", f"[{label}] Job/{name}-migrate hook is {hooks!r}")
            report.check(pod_spec(job)["containers"][0]["command"] == [f"carerecord-{module}", "migrate"],
                         f"[{label}] Job/{name}-migrate does not run migrate")
        hpa = find(resources, "HorizontalPodAutoscaler", name)
        report.check(hpa is not None and hpa["spec"]["minReplicas"] == 3,
                     f"[{label}] HorizontalPodAutoscaler/{name} missing or not minReplicas 3")
        pdb = find(resources, "PodDisruptionBudget", name)
        report.check(pdb is not None and pdb["spec"].get("minAvailable") == 2,
                     f"[{label}] PodDisruptionBudget/{name} is not minAvailable 2")
    policy = find(resources, "NetworkPolicy", f"{PREFIX}-access")
    if policy:
        peers = policy["spec"]["ingress"][0].get("from")
        report.check(bool(peers), f"[{label}] data access is open to any source despite accessFrom")


def check_issuers(resources: list[Resource], label: str, report: Report) -> None:
    """The issuers file from a ConfigMap: mounted where CARERECORD_ACCESS_ISSUERS_FILE says, valid JSON
    naming CIS2 and NHS login, and each issuer's JWKS URL reachable through the NetworkPolicy."""
    import json
    access = config_map_data(resources, "access")
    report.check(access.get("CARERECORD_ACCESS_ISSUERS_FILE") == "/etc/carerecord/issuers/issuers.json",
                 f"[{label}] data access has no CARERECORD_ACCESS_ISSUERS_FILE")
    cm = find(resources, "ConfigMap", f"{PREFIX}-access-issuers")
    if not report.check(cm is not None, f"[{label}] ConfigMap/{PREFIX}-access-issuers missing"):
        return
    try:
        issuers = json.loads(cm["data"]["issuers.json"])["issuers"]
    except (KeyError, ValueError) as e:
        report.check(False, f"[{label}] issuers.json is not an issuers document: {e}")
        return
    report.check(sorted(i.get("claims") for i in issuers) == ["cis2", "nhs_login"],
                 f"[{label}] issuers.json maps {[i.get('claims') for i in issuers]}")
    deployment = find(resources, "Deployment", f"{PREFIX}-access")
    if deployment:
        spec = pod_spec(deployment)
        volumes = {v["name"]: v for v in spec["volumes"]}
        report.check(volumes.get("issuers", {}).get("configMap", {}).get("name") == f"{PREFIX}-access-issuers",
                     f"[{label}] data access does not mount the issuers ConfigMap")
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        report.check(mounts.get("issuers") == "/etc/carerecord/issuers",
                     f"[{label}] the issuers ConfigMap is mounted at {mounts.get('issuers')}")
    policy = find(resources, "NetworkPolicy", f"{PREFIX}-access")
    if policy:
        https = [rule for rule in policy["spec"].get("egress") or []
                 if any(p.get("port") == 443 for p in rule.get("ports") or [])]
        report.check(len(https) >= 1 + len(issuers),
                     f"[{label}] data access may not reach every issuer's JWKS URL: {https}")


def expect_swapped_identity(resources: list[Resource], report: Report) -> None:
    label = "swapped-identity"
    access = config_map_data(resources, "access")
    endpoint = access.get("CARERECORD_IDENTITY_ENDPOINT")
    report.check(endpoint == "https://supplier-mpi.example:443",
                 f"[{label}] data access calls identity at {endpoint}, not the supplier's")
    report.check(access.get("CARERECORD_UPSTREAM_CA_FILE") == "/etc/carerecord/upstream-ca/ca.crt",
                 f"[{label}] data access does not trust the upstream CA bundle")
    policy = find(resources, "NetworkPolicy", f"{PREFIX}-access")
    if report.check(policy is not None, f"[{label}] data access has no NetworkPolicy"):
        egress = policy["spec"]["egress"]
        supplier = [r for r in egress
                    if [p.get("port") for p in r.get("ports", [])] == [443]
                    and r.get("to") == [{"ipBlock": {"cidr": "203.0.113.0/24"}}]]
        report.check(len(supplier) == 1, f"[{label}] data access may not reach the supplier on 443: {egress}")
        in_release = {((r.get("to") or [{}])[0].get("podSelector") or {}).get("matchLabels", {})
                      .get("app.kubernetes.io/component") for r in egress}
        report.check("identity" not in in_release and {"records", "consent"} <= in_release,
                     f"[{label}] data access egress to in-release modules is {in_release}")
    issuers = [r["metadata"]["name"] for r in resources if r["kind"] == "Issuer"]
    report.check(sorted(issuers) == ["carerecord-ca", "carerecord-selfsigned"],
                 f"[{label}] self-signed CA issuers rendered: {issuers}")
    deployment = find(resources, "Deployment", f"{PREFIX}-access")
    if deployment:
        volumes = {v["name"] for v in pod_spec(deployment)["volumes"]}
        report.check("upstream-ca" in volumes, f"[{label}] data access does not mount the upstream CA bundle")


CASES: list[tuple[str, str | None, list[str], Callable[[list[Resource], Report], None]]] = [
    ("default", None, list(MODULES), expect_default),
    ("production", "ci/production-values.yaml", list(MODULES), expect_production),
    ("swapped-identity", "ci/swapped-identity-values.yaml", ["access", "records", "consent"],
     expect_swapped_identity),
]

# Values the chart must refuse, and a fragment of the message it must give.
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("two replicas on SQLite", {"identity": {"replicaCount": 2}}, "identity runs on SQLite"),
    ("autoscaling on SQLite", {"records": {"autoscaling": {"enabled": True}}}, "records runs on SQLite"),
    ("disabled module without endpoint", {"consent": {"enabled": False}}, "consent.external.endpoint"),
    ("hook migrations without existing secrets",
     {"migrations": {"strategy": "hook"}, "moduleDefaults": {"database": {"url": "postgres://x@db/x"}}},
     "existingSecret"),
    ("unknown migration strategy", {"migrations": {"strategy": "manual"}}, "at '/migrations/strategy'"),
    ("TLS without cert-manager or secrets", {"tls": {"enabled": True, "certManager": {"enabled": False}}},
     "tls.existingSecrets"),
    ("allowFrom naming no module", {"identity": {"allowFrom": ["billing"]}}, "at '/identity/allowFrom/0'"),
    ("a misspelt setting", {"identity": {"enabled": False, "externl": {"endpoint": "mpi.example:443"}}},
     "'externl'"),
    ("a short token secret", {"records": {"tokenSecret": "short"}}, "at '/records/tokenSecret'"),
    ("a database URL of another kind", {"consent": {"database": {"url": "mysql://db/consent"}}},
     "at '/consent/database/url'"),
    ("the console without an issuer", {"console": {"enabled": True}}, "console.oidc.authorizationUrl"),
    ("the console's issuer over plain text", {"console": {"oidc": {"tokenUrl": "ftp://login.example/token"}}},
     "at '/console/oidc/tokenUrl'"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="print every rendered resource checked")
    args = parser.parse_args()
    report = Report()
    print(f"helm {helm.helm_sdk_version()} (helm-python-sdk), kubernetes-validate {kubernetes_validate.__version__}, "
          f"Kubernetes schemas {', '.join(KUBE_VERSIONS)}")

    for label, values_file, enabled, expectations in CASES:
        values = yaml.safe_load((CHART / values_file).read_text()) if values_file else None
        before = len(report.failures)
        lint(values, label, report)
        try:
            manifests = render(values)
        except helm.HelmError as e:
            report.check(False, f"[{label}] helm template failed: {e}")
            continue
        resources = parse(manifests, label, report)
        kinds: dict[str, int] = {}
        for resource in resources:
            kinds[resource["kind"]] = kinds.get(resource["kind"], 0) + 1
        validate_schemas(resources, label, report)
        check_modules(resources, enabled, label, report)
        check_workloads(resources, label, report)
        check_network_policies(resources, enabled, label, report)
        check_gateway(resources, label, report)
        check_console(resources, label, report)
        expectations(resources, report)
        status = "ok" if len(report.failures) == before else "FAILED"
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        print(f"{status:6} {label}: {values_file or 'values.yaml'}: lint, template, {len(resources)} resources "
              f"validated ({summary})")
        if args.verbose:
            for resource in resources:
                print(f"         {resource['kind']}/{resource['metadata']['name']}")

    for description, values, message in REFUSED:
        try:
            render(values)
            report.check(False, f"[refused] {description}: rendered, but the chart must refuse it")
        except helm.HelmError as e:
            report.check(message in str(e), f"[refused] {description}: failed with {e!s}, expected {message!r}")
    # The refusals above include the schema's, so the chart's schema must also be what lint checks.
    report.check((CHART / "values.schema.json").is_file(), "[refused] helm/carerecord/values.schema.json missing")
    print(f"{'ok' if not any(f.startswith('[refused]') for f in report.failures) else 'FAILED':6} "
          f"{len(REFUSED)} invalid values files refused with a message naming the setting")

    for failure in report.failures:
        print(f"FAIL {failure}", file=sys.stderr)
    passed = report.checks - len(report.failures)
    print(f"helm-check: {passed} passed, {len(report.failures)} failed")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
