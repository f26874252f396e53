"""Katib's standalone install, changed by transforms before it is applied (infra/kubeflow.py).

What the transforms change, and why (kubeflow/katib@v0.19.0; the facts the tests check are in
tests/upstream/kubeflow-katib-install.yaml):

- katib-config (manifests/v1beta1/installs/katib-standalone/katib-config.yaml): the controller
  copies the trial container's securityContext into the metrics-collector sidecar it injects
  (`init.controller.injectSecurityContext`, pkg/apis/config/v1beta1/types.go L63-65,
  pkg/webhook/v1beta1/pod/inject_webhook.go L245-249), and each suggestion container gets a
  restricted securityContext (`runtime.suggestions[]` inlines a corev1.Container, types.go
  L100-109).  Both kinds of pod run in the team's namespace, which enforces `restricted`; the
  suggestion images run as root by default (cmd/suggestion/{hyperopt,optuna}/v1beta1/Dockerfile:
  python:3.11-slim; cmd/suggestion/skopt/v1beta1/Dockerfile: python:3.10-slim; none sets USER)
  and make their directory group 0 writable for an arbitrary uid (each Dockerfile L21-22),
  so they run as a non-root uid in group 0.
- The controller reads katib-config's `init` section, `injectSecurityContext` among it, once,
  at start (cmd/katib-controller/v1beta1/main.go L69-78), from a subPath mount (manifests/
  v1beta1/components/controller/controller.yaml L57-60), which a changed ConfigMap never
  updates; the `runtime` section (the suggestions' containers) it reads from the ConfigMap
  through the API each time it uses it (pkg/util/v1beta1/katibconfig/config.go L60-83,
  L162-175).  Its pod template carries a digest of our changes, so a change to `init` restarts
  it.
- The controller watches the job kinds trials run as only if their CRD exists when it starts
  (pkg/controller.v1beta1/trial/trial_controller.go L103-119: a missing CRD is logged and
  skipped until a restart): the install waits for the training operator's (infra/kubeflow.py),
  and the digest covers whether the operator is on, so switching it on later restarts the
  controller.
- The pod mutator (components/webhook/webhooks.yaml L51-74) sets no failurePolicy (so `Fail`)
  and sees every pod created in a namespace labelled for injection.  The bundle labels
  `kubeflow` itself (components/namespace/namespace.yaml L6-7): an evicted katib-controller pod,
  created by its ReplicaSet, would then wait on the webhook the controller itself serves, and
  while Katib is down no pod could start in `kubeflow` or a team's namespace.  So the bundle's
  Namespace loses that label, and the mutator gets an objectSelector on `TRIAL_POD_LABEL`,
  which only our trial pod templates carry (workloads/experiments.py).  Katib's cert generator
  changes nothing else: it sets `clientConfig.caBundle` on each webhook and updates the object
  it read (pkg/certgenerator/v1beta1/generator.go L37-57, which uses
  open-policy-agent/cert-controller@v0.13.0:pkg/rotator/rotator.go L420-442, L835-873).
- MySQL's root password: the bundle ships `test` (components/mysql/secret.yaml L8, the Secret
  `katib-mysql-secrets`), which MySQL reads as MYSQL_ROOT_PASSWORD (mysql/mysql.yaml L31-36, and
  its probes put it on a shell command line, L44-69) and the DB manager as DB_PASSWORD
  (db-manager/db-manager.yaml L26-30) in its DSN `user:password@tcp(host:port)/db`
  (pkg/db/v1beta1/mysql/mysql.go L36, L44-57).  The transform puts a generated password in that
  Secret instead (letters and digits only: nothing for the shell or the DSN to parse), and both
  Deployments' pod templates carry its digest, so they start with the one they share.  MySQL
  sets the root password only when it initialises an empty data directory: on an existing
  volume a changed password must also be set in MySQL, with ALTER USER (README).
- Every Deployment (controller, UI, DB manager, MySQL) runs on the system nodes.
- MySQL's claim (components/mysql/pvc.yaml, no class) gets the stack's block storage class from
  `BlockStorage.claim_transforms`, like Pipelines' claims.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import pulumi
import yaml

from infra import labels, names
from infra.scheduling import Placement

SECRET_TYPE = "kubernetes:core/v1:Secret"
CONFIG_MAP_TYPE = "kubernetes:core/v1:ConfigMap"
DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"
NAMESPACE_TYPE = "kubernetes:core/v1:Namespace"
MUTATING_WEBHOOK_TYPE = "kubernetes:admissionregistration.k8s.io/v1:MutatingWebhookConfiguration"
# components/webhook/webhooks.yaml L27-31, L51: the configuration and its pod mutator.
WEBHOOK_CONFIGURATION = "katib.kubeflow.org"
POD_MUTATOR = "mutator.pod.katib.kubeflow.org"
CONFIG_NAME = "katib-config"
CONFIG_KEY = "katib-config.yaml"
CONTROLLER = "katib-controller"
# manifests/v1beta1/components/*: the label every Katib Deployment carries.
COMPONENT_LABEL = "katib.kubeflow.org/component"
# Services the platform's users and the trials reach (components/ui/service.yaml,
# components/db-manager/service.yaml).
UI_SERVICE = ("katib-ui", 80)
DB_MANAGER_SERVICE = ("katib-db-manager", 6789)
# pkg/controller.v1beta1/consts/const.go L82-85: the gRPC port of a suggestion's Service and pod.
SUGGESTION_PORT = 6789
# The components' label values (components/controller/controller.yaml,
# components/db-manager/db-manager.yaml), which their Services select on.
CONTROLLER_COMPONENT = "controller"
DB_MANAGER_COMPONENT = "db-manager"
# The label the pod webhook puts on every trial pod (pkg/webhook/v1beta1/pod/utils.go L266-284,
# consts/const.go L71).
TRIAL_LABEL = "katib.kubeflow.org/trial"
# Labels on a suggestion's pods (pkg/controller.v1beta1/util/labels.go L27-36, consts L66-73).
SUGGESTION_LABEL = "katib.kubeflow.org/suggestion"
# components/webhook/webhooks.yaml L60-62: the pod mutator only sees namespaces with this label.
INJECTION_LABEL = {"katib.kubeflow.org/metrics-collector-injection": "enabled"}
# On every trial pod template: the only pods the pod mutator sees (its objectSelector, set here).
TRIAL_POD_LABEL = {f"{labels.PREFIX}/katib-trial": "true"}
# Any non-root uid works: the images' files are group 0 and group writable.
SUGGESTION_UID = 1000
CONFIG_DIGEST_ANNOTATION = f"{labels.PREFIX}/katib-config"
# components/mysql/secret.yaml L5-8; read by these Deployments (mysql.yaml L32-36,
# db-manager.yaml L26-30).
MYSQL_SECRET = "katib-mysql-secrets"
MYSQL_SECRET_KEY = "MYSQL_ROOT_PASSWORD"
MYSQL_PASSWORD_READERS = ("katib-mysql", "katib-db-manager")
MYSQL_PASSWORD_LENGTH = 32
MYSQL_PASSWORD_DIGEST_ANNOTATION = f"{labels.PREFIX}/katib-mysql-password"


def suggestion_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": SUGGESTION_UID,
        "runAsGroup": 0,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def configured(config_text: str) -> str:
    """katib-config.yaml with the sidecar's and the suggestions' security contexts set."""
    config = yaml.safe_load(config_text)
    controller = config.setdefault("init", {}).setdefault("controller", {})
    controller["injectSecurityContext"] = True
    for suggestion in (config.get("runtime") or {}).get("suggestions") or []:
        suggestion["securityContext"] = suggestion_security_context()
    return yaml.safe_dump(config, sort_keys=False)


def without_injection_label(namespace: dict[str, Any]) -> dict[str, Any]:
    """The bundle's Namespace without the label that puts its pods under the pod mutator."""
    metadata = namespace.setdefault("metadata", {})
    kept = {k: v for k, v in (metadata.get("labels") or {}).items() if k not in INJECTION_LABEL}
    if kept:
        metadata["labels"] = kept
    else:
        metadata.pop("labels", None)
    return namespace


def trial_pods_only(configuration: dict[str, Any]) -> dict[str, Any]:
    """The mutating webhooks with the pod mutator limited to pods labelled `TRIAL_POD_LABEL`."""
    for webhook in configuration.get("webhooks") or []:
        if webhook.get("name") == POD_MUTATOR:
            webhook["objectSelector"] = {"matchLabels": dict(TRIAL_POD_LABEL)}
    return configuration


def config_digest(*, training_operator: bool) -> str:
    """A digest of what `configured` changes (not of the upstream text, which Pulumi keeps), and
    of whether the training operator's CRDs are there for the controller to watch."""
    changes = {
        "injectSecurityContext": True,
        "suggestions": suggestion_security_context(),
        "trainingOperator": training_operator,
    }
    return hashlib.sha256(json.dumps(changes, sort_keys=True).encode()).hexdigest()


def password_digest(password: pulumi.Input[str]) -> pulumi.Output[str]:
    """A digest of the password for a pod template (plain: a SHA-256 of 32 random letters and
    digits reveals nothing, and a visible change shows which pods restart)."""
    digest = pulumi.Output.from_input(password).apply(
        lambda p: hashlib.sha256(p.encode()).hexdigest()
    )
    return pulumi.Output.unsecret(digest)


def configure_katib(
    system: Placement, *, training_operator: bool, mysql_password: pulumi.Input[str]
) -> pulumi.ResourceTransform:
    """A transform of the Katib bundle's objects: katib-config, placement on `system`, the
    `kubeflow` Namespace, the pod mutator's scope and MySQL's password (`mysql_password`)."""
    digest = config_digest(training_operator=training_operator)
    password = pulumi.Output.secret(mysql_password)
    encoded = password.apply(lambda p: base64.b64encode(p.encode()).decode())
    mysql_digest = password_digest(mysql_password)

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        props: dict[str, Any] = dict(args.props)
        metadata = props.get("metadata") or {}
        name = str(metadata.get("name", ""))
        # Cluster-scoped objects first (kustomize gives them no namespace).
        if args.type_ == NAMESPACE_TYPE and name == names.KUBEFLOW:
            changed = without_injection_label(copy.deepcopy(props))
            return pulumi.ResourceTransformResult(props=changed, opts=args.opts)
        if args.type_ == MUTATING_WEBHOOK_TYPE and name == WEBHOOK_CONFIGURATION:
            changed = trial_pods_only(copy.deepcopy(props))
            return pulumi.ResourceTransformResult(props=changed, opts=args.opts)
        if metadata.get("namespace") != names.KUBEFLOW:
            return None
        changed = copy.deepcopy(props)
        if args.type_ == SECRET_TYPE and name == MYSQL_SECRET:
            changed["data"] = {**(changed.get("data") or {}), MYSQL_SECRET_KEY: encoded}
        elif args.type_ == CONFIG_MAP_TYPE and name == CONFIG_NAME:
            data = changed.get("data") or {}
            changed["data"] = {**data, CONFIG_KEY: configured(str(data.get(CONFIG_KEY, "")))}
        elif args.type_ == DEPLOYMENT_TYPE and COMPONENT_LABEL in (metadata.get("labels") or {}):
            template = changed.setdefault("spec", {}).setdefault("template", {})
            template.setdefault("spec", {}).update(system.pod_fields())
            annotations: dict[str, Any] = {}
            if name == CONTROLLER:
                annotations[CONFIG_DIGEST_ANNOTATION] = digest
            if name in MYSQL_PASSWORD_READERS:
                annotations[MYSQL_PASSWORD_DIGEST_ANNOTATION] = mysql_digest
            if annotations:
                template_metadata = template.setdefault("metadata", {})
                template_metadata["annotations"] = {
                    **(template_metadata.get("annotations") or {}),
                    **annotations,
                }
        else:
            return None
        return pulumi.ResourceTransformResult(props=changed, opts=args.opts)

    return transform
