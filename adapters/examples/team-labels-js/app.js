// `team-labels` in JavaScript: the twin of the Rust example adapters/examples/team-labels.
//
// Each task becomes a Job with one container running `image` (with `command` when given),
// labelled with the owning team and the tenant, sized by `cpu` and `memory` (requests =
// limits), and given the task id, type and payload JSON in the environment (`TASK_ID`,
// `TASK_TYPE`, `TASK_PAYLOAD`). It passes the same cases as the Rust adapter
// (adapters/examples/team-labels/cases).
//
// Configuration (JSON): {"image": "ghcr.io/acme/etl:1.4", "team": "Data Platform",
// "command": ["etl", "run"], "cpu": "500m", "memory": "1Gi"} - `image` and `team` required.
//
// Build: npm ci && npm run build   (writes team_labels.wasm)

// The SDK, copied beside this file by `npm run build` (componentize-js resolves imports only
// inside the source's directory).
import * as tp from './taskpod-adapter.js';

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['image', 'team'],
  properties: {
    image: { type: 'string', minLength: 1 },
    team: { type: 'string', minLength: 1 },
    command: { type: 'array', items: { type: 'string' } },
    cpu: { type: 'string' },
    memory: { type: 'string' },
  },
};

// The configuration, checked: known keys only, `image` and `team` non-empty strings.
function parse(text) {
  const config = tp.parseConfig(text);
  for (const key of Object.keys(config)) {
    if (!(key in SCHEMA.properties)) {
      const known = Object.keys(SCHEMA.properties).join(', ');
      throw new tp.InvalidConfig(`config.${key}: unknown key (known: ${known})`);
    }
  }
  for (const key of ['image', 'team']) {
    if (typeof config[key] !== 'string') {
      throw new tp.InvalidConfig(`config.${key}: required, a string`);
    }
  }
  for (const key of ['cpu', 'memory']) {
    if (key in config && typeof config[key] !== 'string') {
      throw new tp.InvalidConfig(`config.${key}: must be a string such as 500m or 1Gi`);
    }
  }
  const command = config.command;
  if (command !== undefined && command !== null &&
      !(Array.isArray(command) && command.every((c) => typeof c === 'string'))) {
    throw new tp.InvalidConfig('config.command: must be a list of strings');
  }
  if (config.image === '' || tp.sanitizeLabelValue(config.team) === '') {
    throw new tp.InvalidConfig('config.image and config.team: must not be empty');
  }
  return config;
}

const teamLabels = {
  name: 'team-labels',
  version: '0.1.0',
  description: 'Example: one container per task, labelled with its team',
  configSchema: SCHEMA,
  validateConfig(config) {
    parse(config);
  },
  adapt(task, ctx) {
    const config = parse(ctx.config);
    if (task.payload.length > ctx.limits.maxInlinePayload) {
      throw new tp.InvalidTask(
        `payload: ${task.payload.length} bytes, over the inline limit of ${ctx.limits.maxInlinePayload}`,
      );
    }
    const container = { name: 'task', image: config.image };
    if (config.command !== undefined && config.command !== null) container.command = config.command;
    const sizes = {};
    for (const key of ['cpu', 'memory']) {
      if (config[key] !== undefined && config[key] !== null) sizes[key] = config[key];
    }
    if (Object.keys(sizes).length > 0) {
      container.resources = { requests: { ...sizes }, limits: { ...sizes } };
    }
    tp.setEnv(container, 'TASK_ID', task.id);
    tp.setEnv(container, 'TASK_TYPE', task.kind);
    tp.setEnv(container, 'TASK_PAYLOAD', task.payload);

    const meta = {};
    tp.mergeLabels(meta, [
      ...ctx.labels,
      ['team', tp.sanitizeLabelValue(config.team)],
      ['tenant', tp.sanitizeLabelValue(task.tenant)],
    ]);
    if (ctx.annotations.length > 0) tp.mergeAnnotations(meta, ctx.annotations);
    const job = tp.jobFromTemplate(ctx.jobName, ctx.namespace, {
      metadata: JSON.parse(JSON.stringify(meta)),
      spec: { containers: [container] },
    });
    Object.assign(job.metadata, meta);
    tp.applyLimits(job, ctx.limits);
    return job;
  },
};

// The component's exports (`info`, `validate-config`, `adapt` of the pod-adapter world).
const world = tp.exportAdapter(teamLabels);
export function info() {
  return world.info();
}
export function validateConfig(config) {
  return world.validateConfig(config);
}
export function adapt(task, ctx) {
  return world.adapt(task, ctx);
}
