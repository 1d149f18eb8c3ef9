"""`team-labels` in Python: the twin of the Rust example adapters/examples/team-labels.

Each task becomes a Job with one container running `image` (with `command` when given),
labelled with the owning team and the tenant, sized by `cpu` and `memory` (requests = limits),
and given the task id, type and payload JSON in the environment (`TASK_ID`, `TASK_TYPE`,
`TASK_PAYLOAD`). It passes the same cases as the Rust adapter
(adapters/examples/team-labels/cases).

Configuration (JSON): {"image": "ghcr.io/acme/etl:1.4", "team": "Data Platform",
"command": ["etl", "run"], "cpu": "500m", "memory": "1Gi"} - `image` and `team` required.

Build: componentize-py -d ../../../wit -w pod-adapter componentize app -p . -p ../../sdk-python -o team_labels.wasm
"""

import taskpod_adapter as tp

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["image", "team"],
    "properties": {
        "image": {"type": "string", "minLength": 1},
        "team": {"type": "string", "minLength": 1},
        "command": {"type": "array", "items": {"type": "string"}},
        "cpu": {"type": "string"},
        "memory": {"type": "string"},
    },
}


def parse(text: str) -> dict:
    """The configuration, checked: known keys only, `image` and `team` non-empty strings."""
    config = tp.parse_config(text)
    for key in config:
        if key not in SCHEMA["properties"]:
            known = ", ".join(SCHEMA["properties"])
            raise tp.InvalidConfig(f"config.{key}: unknown key (known: {known})")
    for key in ("image", "team"):
        if not isinstance(config.get(key), str):
            raise tp.InvalidConfig(f"config.{key}: required, a string")
    for key in ("cpu", "memory"):
        if key in config and not isinstance(config[key], str):
            raise tp.InvalidConfig(f"config.{key}: must be a string such as 500m or 1Gi")
    command = config.get("command")
    if command is not None and not (
        isinstance(command, list) and all(isinstance(c, str) for c in command)
    ):
        raise tp.InvalidConfig("config.command: must be a list of strings")
    if not config["image"] or not tp.sanitize_label_value(config["team"]):
        raise tp.InvalidConfig("config.image and config.team: must not be empty")
    return config


class TeamLabels(tp.Adapter):
    name = "team-labels"
    version = "0.1.0"
    description = "Example: one container per task, labelled with its team"
    config_schema = SCHEMA

    def validate_config(self, config: str) -> None:
        parse(config)

    def adapt(self, task: tp.Task, ctx: tp.Context) -> dict:
        config = parse(ctx.config)
        if len(task.payload) > ctx.limits.max_inline_payload:
            raise tp.InvalidTask(
                f"payload: {len(task.payload)} bytes, over the inline limit of "
                f"{ctx.limits.max_inline_payload}"
            )
        container = {"name": "task", "image": config["image"]}
        if config.get("command") is not None:
            container["command"] = config["command"]
        sizes = {k: config[k] for k in ("cpu", "memory") if config.get(k) is not None}
        if sizes:
            container["resources"] = {"requests": dict(sizes), "limits": dict(sizes)}
        tp.set_env(container, "TASK_ID", task.id)
        tp.set_env(container, "TASK_TYPE", task.kind)
        tp.set_env(container, "TASK_PAYLOAD", task.payload)

        meta = {}
        ours = [
            ("team", tp.sanitize_label_value(config["team"])),
            ("tenant", tp.sanitize_label_value(task.tenant)),
        ]
        tp.merge_labels(meta, list(ctx.labels) + ours)
        if ctx.annotations:
            tp.merge_annotations(meta, ctx.annotations)
        template = {"metadata": dict(meta), "spec": {"containers": [container]}}
        job = tp.job_from_template(ctx.job_name, ctx.namespace, template)
        job["metadata"].update(meta)
        tp.apply_limits(job, ctx.limits)
        return job


# The component's world (componentize-py looks for `WitWorld`); None when run natively.
WitWorld = tp.export(TeamLabels)
