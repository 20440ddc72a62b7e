"""``tunesmith deploy`` / ``tunesmith undeploy``: the manifests the gateway serves, onto a Kubernetes cluster.

    tunesmith deploy --manifests manifests --models-uri gs://my-bucket/models --namespace seldon-mesh
    tunesmith deploy --dry-run > seldon.yaml     # the YAML that would be applied; needs no cluster
    tunesmith undeploy --namespace seldon-mesh
    python -m tunesmith.gateway.deploy fields    # the README's table of what the local gateway serves

The same files that ``tunesmith gateway`` serves on a laptop go to a cluster with Seldon Core v2
installed. ``deploy``:

1. reads every ``*.yaml`` / ``*.yml`` below the manifests folder (sub-folders included: the
   notebooks write ``models/``, ``servers/``, ``pipelines/``) and checks them with the gateway's
   loader (:func:`tunesmith.gateway.manifests.load`), so a manifest fails here with the message it
   fails with there, against the same CRDs. Only what the *local* gateway cannot do (the
   ``refused`` rows of :data:`~tunesmith.gateway.manifests.FIELDS` such as autoscaling, a ``triton``
   server, experiments) is allowed, because a cluster does it (:func:`check`);
2. rewrites each Model's ``storageUri`` from the models URI the manifests use (the gateway's
   ``gs://tunesmith-workshop/models``, or ``$MODELS_URI``) to ``--models-uri``, and a local path into
   the models folder likewise, printing each rewrite. A path outside it is refused: the cluster's
   rclone cannot read this machine. ``--image`` rewrites the Server's ``mlserver`` container image;
3. checks pipeline references to output tensors against the ``model-settings.json`` of the local
   model folders, as the gateway does; warns about model folders missing from the local models
   folder; prints the command that uploads them to ``--models-uri`` (``gsutil``, ``aws s3`` or
   ``rclone``);
4. checks that ``kubectl`` has a current context (and says how to get one when it has not), then
   applies the documents kind by kind in dependency order, ServerConfig, Server, Model, Pipeline,
   Experiment, each group as YAML on the standard input of ``kubectl apply -f -``.
   ``--dry-run`` prints that YAML on stdout instead (messages go to stderr) and needs no cluster.

``undeploy`` deletes the same resources in the reverse order (``kubectl delete --ignore-not-found -f
-``). A ServerConfig named as a stock one (``mlserver``, ``triton``) is never deleted: the
installation's own Servers use it.

Exit codes: 0 done, 1 kubectl missing, no context or kubectl failed, 2 a manifest is invalid.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml

from tunesmith.gateway import manifests, storage
from tunesmith.gateway.manifests import ManifestError

APPLY_ORDER = ("ServerConfig", "Server", "Model", "Pipeline", "Experiment")
"""Kinds in dependency order: a Server needs its ServerConfig, a Model a Server, a Pipeline its
Models, an Experiment its Models or Pipelines. ``undeploy`` uses the reverse."""
STOCK_SERVER_CONFIGS = manifests.STOCK_SERVER_CONFIGS
"""The ServerConfigs every Seldon Core v2 installation has (``operator/config/serverconfigs/``)."""
DEFAULT_IMAGE = "tunesmith-mlserver:0.1.0"
"""The image ``make image`` builds from ``deploy/Dockerfile``; the notebooks' Server names it."""
MLSERVER_CONTAINER = "mlserver"
"""The container of Seldon's ``mlserver`` ServerConfig that runs MLServer; a Server's ``podSpec``
replaces its image by naming it (``patch_utils.go: MergePodSpecs`` merges containers by name)."""
DEFAULT_CONTEXT_HELP = """\
Get one, then run this again:
  GKE:   gcloud container clusters get-credentials CLUSTER --region REGION
  EKS:   aws eks update-kubeconfig --name CLUSTER --region REGION
  AKS:   az aks get-credentials --name CLUSTER --resource-group GROUP
  local: kind create cluster   (then install Seldon Core v2 into it)
  or choose one you have: kubectl config get-contexts, then kubectl config use-context NAME"""


class DeployError(Exception):
    """kubectl is missing, has no cluster, or failed; ``str()`` says what to do."""


# --- the documents ----------------------------------------------------------------------------


@dataclass
class Document:
    """One YAML document of a manifest file, as it will be sent to the cluster."""

    file: Path
    kind: str
    name: str
    body: dict


def manifest_files(folder: Path | str) -> list[Path]:
    """Every ``*.yaml`` / ``*.yml`` file below ``folder``, sub-folders included, in path order.

    Hidden files and folders (``.ipynb_checkpoints``, editor backups) are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(folder, "folder", "no such folder: the stage-3 notebooks write the manifests there")
    files = sorted(
        p for p in folder.rglob("*")
        if p.suffix in (".yaml", ".yml") and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )  # fmt: skip
    if not files:
        raise ManifestError(folder, "folder", "no *.yaml manifests in this folder or below it: run the stage-3 notebooks")
    return files


def read_documents(files: Iterable[Path]) -> list[Document]:
    """The non-empty YAML documents of ``files``, with their kind and name (checked only for being there)."""
    found = []
    for file in files:
        try:
            docs = [d for d in yaml.safe_load_all(Path(file).read_text(encoding="utf-8")) if d is not None]
        except yaml.YAMLError as exc:
            raise ManifestError(file, "yaml", str(exc).replace("\n", " ")) from None
        for doc in docs:
            kind = doc.get("kind") if isinstance(doc, dict) else None
            metadata = doc.get("metadata") if isinstance(doc, dict) else None
            name = metadata.get("name") if isinstance(metadata, dict) else None
            if kind not in APPLY_ORDER or not isinstance(name, str):
                raise ManifestError(file, "kind", f"not a named Seldon Core v2 resource ({', '.join(APPLY_ORDER)})")
            found.append(Document(Path(file), kind, name, doc))
    return found


def ordered(documents: Iterable[Document], *, reverse: bool = False) -> list[tuple[str, list[Document]]]:
    """``[(kind, documents)]`` in :data:`APPLY_ORDER` (or its reverse), kinds without documents left out.

    Within a kind, documents keep their file order.
    """
    documents = list(documents)
    kinds = reversed(APPLY_ORDER) if reverse else APPLY_ORDER
    groups = [(kind, [d for d in documents if d.kind == kind]) for kind in kinds]
    return [(kind, docs) for kind, docs in groups if docs]


def to_yaml(documents: Iterable[Document]) -> str:
    """One YAML stream (``---`` between documents), as ``kubectl apply -f -`` reads it."""
    return yaml.safe_dump_all([d.body for d in documents], sort_keys=False, explicit_start=True)


# --- checks -----------------------------------------------------------------------------------


def check(files: Sequence[Path], *, crd_dir: Path | None = None) -> manifests.Manifests:
    """Load and check ``files`` as the gateway does, allowing what only a cluster does.

    Raises:
        ManifestError: the first problem, with the gateway's (and Seldon's) message.
    """
    return manifests.load(list(files), crd_dir=crd_dir, allow_experiments=True, for_cluster=True)


# --- rewrites ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rewrite:
    """One value changed on its way to the cluster."""

    kind: str
    name: str
    field: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.field} {self.old} -> {self.new}"


def _under(uri: str, prefix: str) -> str | None:
    """The part of ``uri`` below ``prefix`` ("" for the prefix itself), or None."""
    prefix = prefix.rstrip("/")
    if uri == prefix:
        return ""
    if uri.startswith(prefix + "/"):
        return uri[len(prefix) + 1 :]
    return None


def source_uris(target: str) -> list[str]:
    """The models URIs the manifests may use for the local models folder, other than ``target``:
    the gateway's default and ``$MODELS_URI`` (which ``make deploy MODELS_URI=...`` may have set
    to the target itself)."""
    uris = [storage.DEFAULT_MODELS_URI, os.environ.get(storage.MODELS_URI_ENV, "").rstrip("/")]
    return [u for u in dict.fromkeys(uris) if u and u != target.rstrip("/")]


def _join(prefix: str, rest: str) -> str:
    return prefix.rstrip("/") + ("/" + rest if rest else "")


def rewrite_storage(documents: Iterable[Document], target: str, models_dir: Path) -> list[Rewrite]:
    """Point every Model's ``storageUri`` that means the local models folder at ``target``.

    Rewritten: ``<source URI>/<folder>`` (:func:`source_uris`), and a local path (relative to its
    manifest file, ``file://`` or absolute) that lies inside ``models_dir``. Kept: URIs already
    under ``target``, other remote URIs (``gs://seldon-models/...``) and absolute paths elsewhere
    (a volume the cluster's rclone container may mount).

    Raises:
        ManifestError: a relative or ``file://`` path outside ``models_dir``, which only exists here.
    """
    target = target.rstrip("/")
    models_dir = Path(models_dir).resolve()
    changed = []
    for doc in documents:
        if doc.kind != "Model":
            continue
        spec = doc.body.get("spec") or {}
        uri = str(spec.get("storageUri", "")).strip()
        new = _cluster_uri(uri, target, models_dir, doc.file)
        if new != uri:
            spec["storageUri"] = new
            changed.append(Rewrite("Model", doc.name, "storageUri", uri, new))
    return changed


def _cluster_uri(uri: str, target: str, models_dir: Path, file: Path) -> str:
    if not uri:
        raise ManifestError(file, "spec.storageUri", "an empty storageUri names no model folder")
    if _under(uri, target) is not None:
        return uri
    for source in source_uris(target):
        rest = _under(uri, source)
        if rest is not None:
            return _join(target, rest)
    if "://" in uri and not uri.startswith("file://"):
        return uri
    path = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
    local = path if path.is_absolute() else file.parent / path
    try:
        rest = local.resolve().relative_to(models_dir)
    except ValueError:
        if path.is_absolute() and not uri.startswith("file://"):
            return uri
        raise ManifestError(
            file, "spec.storageUri",
            f"{uri} is a folder on this machine ({local.resolve()}), which the cluster cannot read: put it in "
            f"{models_dir} and upload that, or name it {target}/<folder>",
        ) from None  # fmt: skip
    return _join(target, rest.as_posix() if str(rest) != "." else "")


def rewrite_image(documents: Iterable[Document], image: str) -> list[Rewrite]:
    """Set the image of the ``mlserver`` container in every Server's ``podSpec`` to ``image``.

    A Server without one gets one, so the Server runs the image that was pushed for it.
    """
    changed = []
    for doc in documents:
        if doc.kind != "Server":
            continue
        spec = doc.body.setdefault("spec", {})
        pod = spec.setdefault("podSpec", {}) if isinstance(spec, dict) else None
        containers = pod.setdefault("containers", []) if isinstance(pod, dict) else None
        if not isinstance(containers, list):
            continue
        container = next((c for c in containers if isinstance(c, dict) and c.get("name") == MLSERVER_CONTAINER), None)
        if container is None:
            container = {"name": MLSERVER_CONTAINER}
            containers.append(container)
        old = container.get("image")
        if old != image:
            container["image"] = image
            field = f"spec.podSpec.containers[{MLSERVER_CONTAINER}].image"
            changed.append(Rewrite("Server", doc.name, field, str(old or "(the ServerConfig's)"), image))
    return changed


def local_folders(
    found: manifests.Manifests, documents: Iterable[Document], target: str, models_dir: Path
) -> tuple[dict[str, Path], list[str]]:
    """The local folder (the version folder, as Seldon's agent picks it) that the upload copies to
    each Model's ``storageUri`` under ``target``, and the problems found: one line each."""
    folders, problems = {}, []
    for doc in documents:
        if doc.kind != "Model":
            continue
        rest = _under(str((doc.body.get("spec") or {}).get("storageUri", "")), target.rstrip("/"))
        if rest is None:
            continue
        folder = Path(models_dir) / rest
        if not folder.is_dir():
            problems.append(f"Model {doc.name}: {folder} does not exist, so the upload will not bring it")
            continue
        try:
            folders[doc.name] = storage.version_folder(found.models[doc.name], folder, doc.file)
        except ManifestError as exc:
            problems.append(f"Model {doc.name}: {exc.message}")
    return folders, problems


def check_tensors(found: manifests.Manifests, folders: dict[str, Path]) -> None:
    """The gateway's check of pipeline references to output tensors
    (:func:`tunesmith.gateway.manifests.check_tensors`), for the models whose folder is here."""
    outputs = {}
    for name, folder in folders.items():
        try:
            settings = json.loads((folder / storage.SETTINGS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(settings, dict):
            outputs[name] = storage.declared_outputs(settings)
    manifests.check_tensors(found, outputs)


def upload_command(models_dir: Path | str, target: str) -> str:
    """The command that copies the model folders to ``target`` (what Seldon's rclone then reads)."""
    shown = os.path.relpath(models_dir) if Path(models_dir).resolve().is_relative_to(Path.cwd()) else str(models_dir)
    source = shlex.quote(shown.rstrip("/") + "/")
    target = target.rstrip("/")
    if target.startswith("gs://"):
        return f"gsutil -m rsync -r {source} {shlex.quote(target + '/')}"
    if target.startswith("s3://"):
        return f"aws s3 sync {source} {shlex.quote(target + '/')}"
    remote = target.replace("://", ":", 1) if "://" in target else target
    return f"rclone copy {source} {shlex.quote(remote)}   # with an rclone remote set up for {target}"


# --- kubectl ----------------------------------------------------------------------------------


def _kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if found is None:
        raise DeployError(
            "kubectl is not installed (or not on PATH): install it (https://kubernetes.io/docs/tasks/tools/) "
            "and point it at a cluster with Seldon Core v2. Nothing was applied; "
            "`tunesmith deploy --dry-run` shows what would be."
        )
    return found


def current_context() -> str:
    """kubectl's current context, or a :class:`DeployError` that says how to get one."""
    kubectl = _kubectl_binary()
    result = subprocess.run([kubectl, "config", "current-context"], capture_output=True, text=True)
    context = result.stdout.strip()
    if result.returncode != 0 or not context:
        said = (result.stderr or result.stdout).strip() or f"exit code {result.returncode}"
        raise DeployError(
            f"kubectl has no current context ({said}), so there is no cluster to deploy to.\n"
            f"{DEFAULT_CONTEXT_HELP}\nNothing was applied; `tunesmith deploy --dry-run` shows what would be."
        )
    return context


def _kubectl(args: list[str], yaml_text: str, namespace: str | None) -> subprocess.CompletedProcess:
    command = [_kubectl_binary(), *(["--namespace", namespace] if namespace else []), *args]
    return subprocess.run(command, input=yaml_text, capture_output=True, text=True)


def _failure(verb: str, kind: str, result: subprocess.CompletedProcess, done: list[str]) -> DeployError:
    said = (result.stderr or result.stdout).strip()
    hint = ""
    if "no matches for kind" in said or "the server doesn't have a resource type" in said:
        hint = ("\nSeldon Core v2 is not installed in this cluster (its CRDs are missing): install it "
                "(https://docs.seldon.io/projects/seldon-core/en/v2/), then run this again.")
    elif "namespaces" in said and "not found" in said:
        hint = "\nCreate the namespace (with a SeldonRuntime in it) or choose another with --namespace."
    before = f" ({', '.join(done)} done; running this again is safe)" if done else ""
    return DeployError(f"kubectl {verb} failed on the {kind} manifests{before}:\n{said}{hint}")


# --- the commands -----------------------------------------------------------------------------


def _say(text: str, stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stderr, flush=True)


def deploy(
    manifests_dir: Path | str,
    *,
    models_uri: str | None = None,
    models_dir: Path | str | None = None,
    namespace: str | None = None,
    image: str | None = None,
    dry_run: bool = False,
    crd_dir: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Check, rewrite and apply (or print, with ``dry_run``) a manifests folder. Returns an exit code.

    Args:
        manifests_dir: the folder of manifests (sub-folders included).
        models_uri: where the cluster reads the model folders; default ``$MODELS_URI`` or the
            gateway's ``gs://tunesmith-workshop/models``.
        models_dir: the local models folder the upload copies; default ``models/`` beside the manifests.
        namespace: the namespace to apply to; default the context's.
        image: the image for the Server's ``mlserver`` container; default: as the manifests say.
        dry_run: print the YAML on ``out`` (stdout) instead of applying it; no kubectl needed.
        crd_dir: Seldon's CRD files; default the loader's (``../shared/seldon-crds``).
    """
    out = out or sys.stdout
    manifests_dir = Path(manifests_dir)
    target = (models_uri or storage.models_uri()).rstrip("/")
    models_dir = Path(models_dir) if models_dir else manifests_dir.resolve().parent / "models"
    try:
        files = manifest_files(manifests_dir)
        found = check(files, crd_dir=crd_dir)
        documents = read_documents(files)
        rewrites = rewrite_storage(documents, target, models_dir)
        rewrites += rewrite_image(documents, image) if image else []
        folders, problems = local_folders(found, documents, target, models_dir)
        check_tensors(found, folders)
    except ManifestError as exc:
        _say(str(exc))
        return 2
    counts = ", ".join(f"{len(docs)} {kind}" + ("s" if len(docs) > 1 else "") for kind, docs in ordered(documents))
    _say(f"{manifests_dir}: {counts}; checked against Seldon's rules" + (" and CRDs" if _crds(crd_dir) else ""))
    for rewrite in rewrites:
        _say(f"  rewrote {rewrite}")
    for problem in problems:
        _say(f"  warning: {problem}")
    if any(d.kind == "ServerConfig" and d.name in STOCK_SERVER_CONFIGS for d in documents):
        _say(f"  warning: a ServerConfig named {'/'.join(STOCK_SERVER_CONFIGS)} replaces the installation's own")
    if target == storage.DEFAULT_MODELS_URI:
        _say(f"  note: the models URI is the workshop's default {target}; pass --models-uri (make deploy "
             f"MODELS_URI=...) for a bucket of your own that the cluster can read")
    _say(f"Upload the model folders first (the cluster reads them from {target}):\n  {upload_command(models_dir, target)}")

    code = _send(ordered(documents), "apply", namespace, out, dry_run)
    if code or dry_run:
        return code
    ns = f" -n {namespace}" if namespace else ""
    _say("applied. Wait for them, then call the mesh:\n"
         f"  kubectl wait --for condition=ready --timeout=300s{ns} models.mlops.seldon.io --all\n"
         f"  kubectl wait --for condition=ready --timeout=300s{ns} pipelines.mlops.seldon.io --all\n"
         f"  kubectl get service seldon-mesh{ns}     # its address; send Seldon-Model: <pipeline>.pipeline")
    return 0


def undeploy(
    manifests_dir: Path | str,
    *,
    namespace: str | None = None,
    dry_run: bool = False,
    out: TextIO | None = None,
) -> int:
    """Delete what :func:`deploy` applied, in the reverse order. Returns an exit code.

    Only each document's kind and name are sent (``kubectl delete`` needs no more), so a manifest
    edited into an invalid one can still be taken down. Stock ServerConfigs are kept.
    """
    out = out or sys.stdout
    try:
        documents = read_documents(manifest_files(manifests_dir))
    except ManifestError as exc:
        _say(str(exc))
        return 2
    identities = []
    for doc in documents:
        if doc.kind == "ServerConfig" and doc.name in STOCK_SERVER_CONFIGS:
            _say(f"  keeping ServerConfig {doc.name}: the installation's own Servers use it")
            continue
        identity = {"apiVersion": manifests.API_VERSION, "kind": doc.kind, "metadata": {"name": doc.name}}
        identities.append(Document(doc.file, doc.kind, doc.name, identity))
    return _send(ordered(identities, reverse=True), "delete", namespace, out, dry_run)


_KUBECTL = {  # action: (kubectl arguments, "... context", past tense)
    "apply": (["apply", "-f", "-"], "applying to", "applied"),
    "delete": (["delete", "--ignore-not-found", "-f", "-"], "deleting from", "deleted"),
}


def _send(groups: list, action: str, namespace: str | None, out: TextIO, dry_run: bool) -> int:
    """Print the documents (a dry run), or hand them to ``kubectl apply``/``delete`` one kind at a
    time in ``groups``' order, stopping at the first kind kubectl refuses. Returns an exit code."""
    arguments, heading, past = _KUBECTL[action]
    if dry_run:
        out.write(to_yaml(d for _, docs in groups for d in docs))
        out.flush()
        _say(f"dry run: nothing was {past}")
        return 0
    try:
        context = current_context()
        _say(f"{heading} context {context}, namespace {namespace or '(the context default)'}")
        done: list[str] = []
        for kind, docs in groups:
            result = _kubectl(arguments, to_yaml(docs), namespace)
            if result.returncode != 0:
                raise _failure(action, kind, result, done)
            if result.stdout.strip():
                _say(result.stdout.rstrip(), out)
            done.append(kind)
    except DeployError as exc:
        _say(str(exc))
        return 1
    return 0


def _crds(crd_dir: Path | None) -> bool:
    return (crd_dir or manifests.default_crd_dir()) is not None


# --- the table of fields ----------------------------------------------------------------------


def fields_table() -> str:
    """:data:`tunesmith.gateway.manifests.FIELDS` as a Markdown table (the README's), one row a field."""
    rows = ["| kind | `spec` field | local gateway | note |", "|---|---|---|---|"]
    for kind, fields in manifests.FIELDS.items():
        for path in fields:
            status, why = manifests.field_status(kind, path)
            why = why.replace("|", "\\|")
            rows.append(f"| {kind} | `{path}` | {status} | {why} |")
    return "\n".join(rows) + "\n"


# --- command line -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunesmith",
        description="Apply the Seldon Core v2 manifests to the cluster of kubectl's current context, or delete them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("deploy", help="check, rewrite and apply the manifests (Server, Models, Pipelines, Experiments)")
    down = sub.add_parser("undeploy", help="delete the manifests' resources, in the reverse order")
    sub.add_parser("fields", help="print the Markdown table of the fields the local gateway implements, ignores, refuses")
    for command in (up, down):
        command.add_argument("--manifests", default="manifests", help="folder of manifests, sub-folders included "
                                                                       "(default: manifests)")
        command.add_argument("--namespace", "-n", help="Kubernetes namespace (default: the context's)")
        command.add_argument("--dry-run", action="store_true", help="print the YAML on stdout; apply nothing, "
                                                                     "no cluster needed")
    up.add_argument("--models-uri", help=f"where the cluster reads the model folders (default: ${storage.MODELS_URI_ENV} "
                                         f"or {storage.DEFAULT_MODELS_URI})")
    up.add_argument("--models", help="local models folder to upload (default: models/ beside the manifests)")
    up.add_argument("--image", help="image of the Server's mlserver container, as pushed to a registry the cluster "
                                    f"pulls from (default: as the manifests say, {DEFAULT_IMAGE})")
    up.add_argument("--crds", type=Path, help="folder of Seldon's CRD files (default: ../shared/seldon-crds if there)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "fields":
        sys.stdout.write(fields_table())
        return 0
    if args.command == "undeploy":
        return undeploy(args.manifests, namespace=args.namespace, dry_run=args.dry_run)
    return deploy(
        args.manifests, models_uri=args.models_uri, models_dir=args.models, namespace=args.namespace,
        image=args.image, dry_run=args.dry_run, crd_dir=args.crds,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
