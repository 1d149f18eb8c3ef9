"""`{{name}}`: a taskpod pod adapter in Python.

Each task becomes a Job with one container, `main`, running the configured image with the
task's id and payload in its environment, labelled with the tenant and sized by `cpu` and
`memory` (requests = limits).

Build the component:
    componentize-py -d wit -w pod-adapter componentize app -p . -o {{crate}}.wasm
"""

import taskpod_adapter as tp

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "minLength": 1},
        "cpu": {"type": "string"},
        "memory": {"type": "string"},
    },
}


def parse(text: str) -> dict:
    """The configuration, checked: known keys only, `image` a non-empty string."""
    config = tp.parse_config(text)
    for key in config:
        if key not in SCHEMA["properties"]:
            raise tp.InvalidConfig(f"config.{key}: unknown key (known: image, cpu, memory)")
    if not isinstance(config.get("image"), str) or not config["image"]:
        raise tp.InvalidConfig("config.image: required, a non-empty string")
    return config


class MyAdapter(tp.Adapter):
    name = "{{name}}"
    version = "0.1.0"
    description = "One container per task running the configured image"
    config_schema = SCHEMA

    def validate_config(self, config: str) -> None:
        parse(config)

    def adapt(self, task: tp.Task, ctx: tp.Context) -> dict:
        config = parse(ctx.config)
        main = {"name": "main", "image": config["image"]}
        sizes = {k: config[k] for k in ("cpu", "memory") if k in config}
        if sizes:
            main["resources"] = {"requests": dict(sizes), "limits": dict(sizes)}
        tp.set_env(main, "TASK_ID", task.id)
        tp.set_env(main, "TASK_PAYLOAD", task.payload)
        meta = {}
        tp.merge_labels(meta, list(ctx.labels) + [("tenant", tp.sanitize_label_value(task.tenant))])
        job = tp.job_from_template(
            ctx.job_name, ctx.namespace, {"metadata": dict(meta), "spec": {"containers": [main]}}
        )
        job["metadata"].update(meta)
        tp.apply_limits(job, ctx.limits)
        return job


# The component's world (componentize-py looks for `WitWorld`); None when run natively.
WitWorld = tp.export(MyAdapter)
