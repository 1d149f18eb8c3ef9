"""The taskpod adapter SDK for Python.

A pod adapter turns one task plus its configuration into the Kubernetes Job that runs it. In
Python it is a class deriving from :class:`Adapter`, written against the plain records of this
module (:class:`Task`, :class:`Context`, :class:`Limits`) and plain ``dict`` Kubernetes
objects, so the same code runs under ``python3`` for unit tests. One line makes it the
component's ``pod-adapter`` world (``wit/adapter.wit``)::

    WitWorld = taskpod_adapter.export(MyAdapter)

and ``componentize-py -d wit -w pod-adapter componentize app -o my_adapter.wasm`` builds the
component (componentize-py reads the class named ``WitWorld`` from the app module).

Errors: raise :class:`InvalidTask`, :class:`InvalidConfig` or :class:`Internal` with a message
that says what is wrong and where (``config.image: required``); any other exception becomes an
``internal`` adapter error carrying its type and message.

The helpers mirror the Rust SDK (``adapters/sdk``): the same label sanitising, Job shape and
limits, so an adapter ported from Rust produces the same Job.
"""

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

__all__ = [
    "MAX_LABEL_LEN",
    "Adapter",
    "AdapterError",
    "Context",
    "Internal",
    "InvalidConfig",
    "InvalidTask",
    "Limits",
    "Task",
    "apply_limits",
    "export",
    "job_from_template",
    "job_output",
    "log",
    "merge_annotations",
    "merge_labels",
    "parse_config",
    "sanitize_label_value",
    "set_env",
]

#: Longest label value (and DNS-1123 label) Kubernetes accepts.
MAX_LABEL_LEN = 63


class AdapterError(Exception):
    """Why an adapter could not produce a Job; ``kind`` is the WIT ``adapter-error`` case."""

    kind = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidTask(AdapterError):
    """The task cannot be run as given; the message says what is wrong and where."""

    kind = "invalid-task"


class InvalidConfig(AdapterError):
    """The adapter's configuration (or a template) is wrong; the message names the key."""

    kind = "invalid-config"


class Internal(AdapterError):
    """Anything else: a bug in the adapter."""

    kind = "internal"


@dataclass
class Task:
    """One task to be run as a Kubernetes Job (the WIT ``task`` record)."""

    id: str
    kind: str
    tenant: str = "default"
    group_id: Optional[str] = None
    datasource: Optional[str] = None
    #: The task document as JSON text; :meth:`payload_json` parses it.
    payload: str = "{}"
    labels: List[Tuple[str, str]] = field(default_factory=list)
    tags: List[Tuple[str, str]] = field(default_factory=list)

    def payload_json(self):
        """The payload parsed; :class:`InvalidTask` naming ``payload`` when it is not JSON."""
        try:
            return json.loads(self.payload)
        except ValueError as e:
            raise InvalidTask(f"payload: not JSON: {e}") from None


@dataclass
class Limits:
    """Host-side limits that apply to the Job (the WIT ``limits`` record)."""

    max_duration_seconds: int = 4 * 3600
    cleanup_delay_seconds: Optional[int] = None
    termination_grace_period_seconds: Optional[int] = None
    max_inline_payload: int = 130_048


@dataclass
class Context:
    """Everything the host knows that may shape the Job (the WIT ``context`` record)."""

    namespace: str = "default"
    #: The adapter's configuration as JSON text; :func:`parse_config` parses it.
    config: str = "{}"
    base_pod: Optional[str] = None
    templates: List[Tuple[str, str]] = field(default_factory=list)
    job_name: str = ""
    labels: List[Tuple[str, str]] = field(default_factory=list)
    annotations: List[Tuple[str, str]] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)

    def template(self, name: str) -> Optional[dict]:
        """The named pod template (a ``v1/PodTemplate``) parsed, or ``None``."""
        for key, value in self.templates:
            if key == name:
                try:
                    return json.loads(value)
                except ValueError as e:
                    raise InvalidConfig(f"templates.{name}: not JSON: {e}") from None
        return None


class Adapter:
    """Base class of a Python pod adapter: set the class attributes, override the methods."""

    #: Short machine name, DNS-1123 label characters only (e.g. ``team-labels``).
    name: str = ""
    #: The adapter's own version, semver.
    version: str = "0.1.0"
    #: One line for humans: what Jobs this adapter produces.
    description: str = ""
    #: JSON Schema (a dict) of the configuration; ``{}`` when it takes none.
    config_schema: dict = {}
    #: Task types this adapter is meant for; empty means any.
    task_types: List[str] = []

    def validate_config(self, config: str) -> None:
        """Checks a configuration (JSON text); raise :class:`InvalidConfig` when it is wrong."""
        parse_config(config)

    def adapt(self, task: Task, ctx: Context):
        """Builds the Job for ``task``: return the Job (a dict), or ``(job, [companions])``."""
        raise Internal(f"adapter {self.name!r} does not implement adapt")


def parse_config(text: str) -> dict:
    """The configuration JSON text as a dict (empty text is ``{}``)."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InvalidConfig(f"config: not JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidConfig("config: must be an object")
    return value


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def sanitize_label_value(value: str) -> str:
    """A valid label value from any text, as the Rust SDK's ``names::sanitize_label_value``:
    only ASCII alphanumerics and ``.``, ``_``, ``-`` kept, trimmed to start and end alphanumeric,
    at most 63 characters."""
    kept = "".join(c for c in value if _alnum(c) or c in "._-")
    start, end = 0, len(kept)
    while start < end and not _alnum(kept[start]):
        start += 1
    while end > start and not _alnum(kept[end - 1]):
        end -= 1
    cut = kept[start:end][:MAX_LABEL_LEN]
    while cut and not _alnum(cut[-1]):
        cut = cut[:-1]
    return cut


def set_env(container: dict, name: str, value: str) -> None:
    """Sets an environment variable, replacing one of the same name (order kept)."""
    env = container.setdefault("env", [])
    for var in env:
        if var.get("name") == name:
            var.clear()
            var.update({"name": name, "value": value})
            return
    env.append({"name": name, "value": value})


def _merge(meta: dict, key: str, pairs) -> None:
    target = meta.setdefault(key, {})
    for k, v in pairs:
        target[k] = v


def merge_labels(meta: dict, pairs) -> None:
    """Adds ``(key, value)`` labels to an object's metadata; later pairs win."""
    _merge(meta, "labels", pairs)


def merge_annotations(meta: dict, pairs) -> None:
    """Adds ``(key, value)`` annotations to an object's metadata; later pairs win."""
    _merge(meta, "annotations", pairs)


def job_from_template(name: str, namespace: str, template: dict) -> dict:
    """Wraps a pod template spec (``{"metadata": …, "spec": …}``) into a ``batch/v1`` Job with
    one attempt per task: ``backoffLimit: 0`` and the pod's ``restartPolicy: Never``."""
    if isinstance(template.get("spec"), dict):
        template["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"backoffLimit": 0, "template": template},
    }


def apply_limits(job: dict, limits: Limits) -> None:
    """Copies the host's limits into the Job: ``activeDeadlineSeconds``,
    ``ttlSecondsAfterFinished`` (removed when finished Jobs are kept) and the pod's
    ``terminationGracePeriodSeconds`` (when configured)."""
    spec = job.setdefault("spec", {})
    spec["activeDeadlineSeconds"] = limits.max_duration_seconds
    if limits.cleanup_delay_seconds is None:
        spec.pop("ttlSecondsAfterFinished", None)
    else:
        spec["ttlSecondsAfterFinished"] = limits.cleanup_delay_seconds
    if limits.termination_grace_period_seconds is not None:
        pod = spec.setdefault("template", {}).setdefault("spec", {})
        pod["terminationGracePeriodSeconds"] = limits.termination_grace_period_seconds


def job_output(job: dict, companions=()) -> Tuple[str, List[str]]:
    """The ``adapter-output`` record's fields: the Job and companions as JSON text."""
    return json.dumps(job, separators=(",", ":")), [
        json.dumps(c, separators=(",", ":")) for c in companions
    ]


#: Log messages recorded when running natively (``python3``), as ``(level, message)``.
native_log: List[Tuple[str, str]] = []


def log(level: str, message: str) -> None:
    """Logs through the host (``trace``, ``debug``, ``info``, ``warn``, ``error``); natively the
    message is appended to :data:`native_log`."""
    try:
        from wit_world.imports import log as wit_log  # only inside the component
    except ImportError:
        native_log.append((level, message))
        return
    wit_log.log(getattr(wit_log.Level, level.upper()), message)


def export(adapter_class):
    """The ``WitWorld`` class componentize-py exports, calling ``adapter_class``'s methods with
    the plain records of this module and mapping :class:`AdapterError` to the WIT variant.

    Natively (``python3``, no component bindings) there is no world to export: returns ``None``,
    so the adapter's module also imports in unit tests."""
    try:
        import wit_world
        from componentize_py_types import Err
        from wit_world.imports import types
    except ImportError:
        return None

    adapter = adapter_class()

    def to_wit_error(error: Exception):
        if not isinstance(error, AdapterError):
            error = Internal(f"{type(error).__name__}: {error}")
        case = {
            "invalid-task": types.AdapterError_InvalidTask,
            "invalid-config": types.AdapterError_InvalidConfig,
        }.get(error.kind, types.AdapterError_Internal)
        return Err(case(error.message))

    class World(wit_world.WitWorld):
        def info(self):
            return types.AdapterInfo(
                name=adapter.name,
                version=adapter.version,
                description=adapter.description,
                config_schema=json.dumps(adapter.config_schema, separators=(",", ":")),
                task_types=list(adapter.task_types),
            )

        def validate_config(self, config):
            try:
                adapter.validate_config(config)
            except Exception as e:  # every failure crosses as an adapter-error
                raise to_wit_error(e) from None

        def adapt(self, task, ctx):
            try:
                result = adapter.adapt(
                    Task(
                        id=task.id,
                        kind=task.kind,
                        tenant=task.tenant,
                        group_id=task.group_id,
                        datasource=task.datasource,
                        payload=task.payload,
                        labels=list(task.labels),
                        tags=list(task.tags),
                    ),
                    Context(
                        namespace=ctx.namespace,
                        config=ctx.config,
                        base_pod=ctx.base_pod,
                        templates=list(ctx.templates),
                        job_name=ctx.job_name,
                        labels=list(ctx.labels),
                        annotations=list(ctx.annotations),
                        limits=Limits(
                            max_duration_seconds=ctx.limits.max_duration_seconds,
                            cleanup_delay_seconds=ctx.limits.cleanup_delay_seconds,
                            termination_grace_period_seconds=(
                                ctx.limits.termination_grace_period_seconds
                            ),
                            max_inline_payload=ctx.limits.max_inline_payload,
                        ),
                    ),
                )
                job, companions = result if isinstance(result, tuple) else (result, [])
                job_text, companion_texts = job_output(job, companions)
                return types.AdapterOutput(job=job_text, companions=companion_texts)
            except Exception as e:  # every failure crosses as an adapter-error
                raise to_wit_error(e) from None

    return World
