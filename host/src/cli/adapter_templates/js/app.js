// `{{name}}`: a taskpod pod adapter in JavaScript.
//
// Each task becomes a Job with one container, `main`, running the configured image with the
// task's id and payload in its environment, labelled with the tenant and sized by `cpu` and
// `memory` (requests = limits).
//
// Build the component: npm run build   (writes {{crate}}.wasm)

import * as tp from './taskpod-adapter.js';

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['image'],
  properties: {
    image: { type: 'string', minLength: 1 },
    cpu: { type: 'string' },
    memory: { type: 'string' },
  },
};

// The configuration, checked: known keys only, `image` a non-empty string.
function parse(text) {
  const config = tp.parseConfig(text);
  for (const key of Object.keys(config)) {
    if (!(key in SCHEMA.properties)) {
      throw new tp.InvalidConfig(`config.${key}: unknown key (known: image, cpu, memory)`);
    }
  }
  if (typeof config.image !== 'string' || config.image === '') {
    throw new tp.InvalidConfig('config.image: required, a non-empty string');
  }
  return config;
}

const adapter = {
  name: '{{name}}',
  version: '0.1.0',
  description: 'One container per task running the configured image',
  configSchema: SCHEMA,
  validateConfig(config) {
    parse(config);
  },
  adapt(task, ctx) {
    const config = parse(ctx.config);
    const main = { name: 'main', image: config.image };
    const sizes = {};
    for (const key of ['cpu', 'memory']) {
      if (key in config) sizes[key] = config[key];
    }
    if (Object.keys(sizes).length > 0) {
      main.resources = { requests: { ...sizes }, limits: { ...sizes } };
    }
    tp.setEnv(main, 'TASK_ID', task.id);
    tp.setEnv(main, 'TASK_PAYLOAD', task.payload);
    const meta = {};
    tp.mergeLabels(meta, [...ctx.labels, ['tenant', tp.sanitizeLabelValue(task.tenant)]]);
    const job = tp.jobFromTemplate(ctx.jobName, ctx.namespace, {
      metadata: JSON.parse(JSON.stringify(meta)),
      spec: { containers: [main] },
    });
    Object.assign(job.metadata, meta);
    tp.applyLimits(job, ctx.limits);
    return job;
  },
};

// The component's exports (`info`, `validate-config`, `adapt` of the pod-adapter world).
const world = tp.exportAdapter(adapter);
export function info() {
  return world.info();
}
export function validateConfig(config) {
  return world.validateConfig(config);
}
export function adapt(task, ctx) {
  return world.adapt(task, ctx);
}
