"""Validates Kubernetes manifests (deploy/spinkube/*.yaml); scripts/check-manifests runs it.

A manifest that the API server would refuse, or that it would accept while dropping a
mistyped field (a custom resource's unknown fields are pruned, not refused), is caught here
instead of on a cluster:
- built-in kinds against the Kubernetes JSON schemas bundled in kubernetes-validate, in
  strict mode (an unknown field is an error);
- custom resources against the openAPIV3Schema of their CRD in deploy/spinkube/schemas/,
  with unknown fields made errors (see `closed`) and metadata checked as Kubernetes'
  ObjectMeta;
- spin-operator's admission rule on replicas and enableAutoscaling;
- references between the files: an autoscaler's target is the Deployment of an autoscaled
  SpinApp, a disruption budget selects a SpinApp's pods, and each secretKeyRef and
  loadFromSecret names a Secret (and key) among the files;
- the SpinApps' selected components are spin.toml's, and together they run them all;
  the variables they set are spin.toml's.

Usage: check.py KUBERNETES_VERSION FILE...   (e.g. check.py 1.30 deploy/spinkube/*.yaml)
Prints one OK line per file, the errors to stderr; exits 1 if there is any error.
"""
import importlib.resources
import json
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "spinkube" / "schemas"
SPIN_TOML = Path(__file__).resolve().parents[2] / "spin.toml"
CRD_FILES = ["spinapp-crd.yaml", "keda-scaledobject-crd.yaml"]
DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = DEFINITIONS_ID + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# The label spin-operator puts on a SpinApp's pods, Deployment and Service.
APP_NAME_LABEL = "core.spinkube.dev/app-name"


def closed(schema):
    """A copy of a CRD schema in which every object that lists its properties refuses others.

    A structural schema drops unknown fields silently; for a check, a field the CRD does not
    know is a mistake. Maps (additionalProperties) and x-kubernetes-preserve-unknown-fields
    objects stay open.
    """
    s = dict(schema)
    if "properties" in s:
        s["properties"] = {name: closed(sub) for name, sub in s["properties"].items()}
        if "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = closed(s["additionalProperties"])
    if "items" in s:
        s["items"] = closed(s["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in s:
            s[key] = [closed(sub) for sub in s[key]]
    if "not" in s:
        s["not"] = closed(s["not"])
    return s


def crd_validators(k8s_version):
    """{(apiVersion, kind): (validator, CRD file name)} for every version of every CRD."""
    schemas = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    strict_dir = schemas / f"v{k8s_version}.0-local-strict"
    if not strict_dir.is_dir():
        sys.exit(f"kubernetes-validate has no schemas for Kubernetes {k8s_version}")
    definitions = json.loads((strict_dir / "_definitions.json").read_text())
    registry = Resource.from_contents(definitions) @ Registry()
    validators = {}
    for name in CRD_FILES:
        crd = yaml.safe_load((SCHEMA_DIR / name).read_text())
        for version in crd["spec"]["versions"]:
            schema = closed(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"$ref": OBJECT_META}
            schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
            key = (f'{crd["spec"]["group"]}/{version["name"]}', crd["spec"]["names"]["kind"])
            validators[key] = (jsonschema.Draft202012Validator(schema, registry=registry), name)
    return validators


def where(path):
    return ".".join(str(p) for p in path) or "(top)"


def describe(doc):
    return f'{doc.get("kind")} {(doc.get("metadata") or {}).get("name")}'


def check_schema(doc, k8s_version, crds):
    """Errors of one document against its schema, and the schema's name."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in crds:
        validator, crd_file = crds[key]
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
        return [f"{where(e.path)}: {e.message}" for e in errors], f"CRD schemas/{crd_file}"
    try:
        kubernetes_validate.validate(doc, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{where(e.path)}: {e.message}"], f"Kubernetes {k8s_version}"
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {key[0]} {key[1]} (add its CRD to deploy/spinkube/schemas/)"], "-"
    return [], f"Kubernetes {k8s_version}"


def check_spinapp(spec):
    """spin-operator's validating webhook: replicas and enableAutoscaling exclude each other."""
    if spec.get("enableAutoscaling") and "replicas" in spec:
        return ["spec.replicas: replicas cannot be set when autoscaling is enabled"]
    if not spec.get("enableAutoscaling") and not spec.get("replicas", 0) >= 1:
        return ["spec.replicas: replicas must be > 0 (or set enableAutoscaling)"]
    return []


def secret_refs(node):
    """Every secretKeyRef (name, key) in a document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "secretKeyRef" and isinstance(v, dict):
                yield v.get("name"), v.get("key")
            else:
                yield from secret_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from secret_refs(v)


def check_components(docs):
    """The SpinApps' `components` (Spin's selective deployment) name components of
    spin.toml, and together they run every one of them (a SpinApp without the field runs
    them all). The variables they set are spin.toml's: Spin ignores any other name."""
    declared = set(tomllib.loads(SPIN_TOML.read_text())["component"])
    errors, run = [], set()
    for path, doc in docs:
        if doc.get("kind") != "SpinApp":
            continue
        selected = (doc.get("spec") or {}).get("components")
        for component in selected or []:
            if component not in declared:
                errors.append((path, doc, f"component {component} is not in spin.toml"))
        run |= set(selected) if selected else declared
    spinapps = [(path, doc) for path, doc in docs if doc.get("kind") == "SpinApp"]
    variables = set(tomllib.loads(SPIN_TOML.read_text())["variables"])
    for path, doc in spinapps:
        for variable in (doc.get("spec") or {}).get("variables") or []:
            if variable.get("name") not in variables:
                errors.append((path, doc, f"variable {variable.get('name')} is not in spin.toml"))
    for component in sorted(declared - run):
        path, doc = spinapps[0]
        errors.append((path, doc, f"no SpinApp runs component {component}"))
    return errors


def check_references(docs):
    """Errors in the references between documents: [(file, document, message)]."""
    spinapps, secrets = {}, {}
    for _, doc in docs:
        name = (doc.get("metadata") or {}).get("name")
        if doc.get("kind") == "SpinApp":
            spinapps[name] = doc.get("spec") or {}
        if doc.get("apiVersion") == "v1" and doc.get("kind") == "Secret":
            secrets[name] = {**(doc.get("data") or {}), **(doc.get("stringData") or {})}
    errors = check_components(docs)
    for path, doc in docs:
        kind, spec = doc.get("kind"), doc.get("spec") or {}
        if kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            ref = spec.get("scaleTargetRef") or {}
            app = spinapps.get(ref.get("name"))
            if (ref.get("apiVersion"), ref.get("kind")) != ("apps/v1", "Deployment") or app is None:
                errors.append((path, doc, f"scaleTargetRef {ref} is not the Deployment of a SpinApp here"))
            elif not app.get("enableAutoscaling"):
                errors.append((path, doc, f"SpinApp {ref['name']} does not set enableAutoscaling"))
        if kind == "PodDisruptionBudget":
            wanted = (spec.get("selector") or {}).get("matchLabels") or {}
            pod_labels = [{**(app.get("podLabels") or {}), APP_NAME_LABEL: name} for name, app in spinapps.items()]
            if not wanted or not any(wanted.items() <= labels.items() for labels in pod_labels):
                errors.append((path, doc, f"selector {wanted} selects no SpinApp's pods"))
        for name, key in secret_refs(doc):
            if key not in secrets.get(name, {}):
                errors.append((path, doc, f"secretKeyRef {name}/{key}: no such Secret key here"))
        config_secret = (spec.get("runtimeConfig") or {}).get("loadFromSecret") if kind == "SpinApp" else None
        if config_secret is not None and config_secret not in secrets:
            errors.append((path, doc, f"runtimeConfig.loadFromSecret {config_secret}: no such Secret here"))
    return errors


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    k8s_version, paths = sys.argv[1], sys.argv[2:]
    crds = crd_validators(k8s_version)
    docs, failed, summaries = [], set(), {}
    for path in paths:
        try:
            file_docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
        except yaml.YAMLError as e:
            print(f"ERROR {path}: not YAML: {e}", file=sys.stderr)
            failed.add(path)
            continue
        if not file_docs:
            print(f"ERROR {path}: no document", file=sys.stderr)
            failed.add(path)
        summaries[path] = []
        for doc in file_docs:
            if not isinstance(doc, dict):
                print(f"ERROR {path}: a document is not a mapping", file=sys.stderr)
                failed.add(path)
                continue
            errors, against = check_schema(doc, k8s_version, crds)
            if doc.get("kind") == "SpinApp" and not errors:
                errors = check_spinapp(doc.get("spec") or {})
            for message in errors:
                print(f"ERROR {path}: {describe(doc)}: {message}", file=sys.stderr)
                failed.add(path)
            if not errors:  # the references are followed in valid documents only
                docs.append((path, doc))
            summaries[path].append(f"{describe(doc)} ({against})")
    for path, doc, message in check_references(docs):
        print(f"ERROR {path}: {describe(doc)}: {message}", file=sys.stderr)
        failed.add(path)
    for path in paths:
        if path not in failed:
            print(f"OK {path}: {', '.join(summaries[path])}")
    if failed:
        print(f"{len(failed)} of {len(paths)} files failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
