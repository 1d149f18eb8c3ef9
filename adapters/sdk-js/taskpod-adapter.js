// The taskpod adapter SDK for JavaScript (componentize-js).
//
// A pod adapter turns one task plus its configuration into the Kubernetes Job that runs it. In
// JavaScript it is an object with `name`, `version`, `description`, `configSchema` (an object),
// optional `taskTypes`, and the methods `validateConfig(configText)` and `adapt(task, ctx)`
// returning the Job (a plain object) or `{ job, companions }`. `exportAdapter(adapter)` returns
// the three functions the component exports (`info`, `validateConfig`, `adapt`); the adapter's
// module re-exports them and componentize-js builds the component:
//
//   componentize-js app.js --wit wit --world-name pod-adapter \
//     --disable stdio random clocks http fetch-event --out my-adapter.wasm
//
// Records arrive as componentize-js maps the WIT (`wit/adapter.wit`): camelCase fields
// (`task.groupId`, `ctx.jobName`), lists of `[key, value]` pairs, `u64` numbers as BigInt —
// `exportAdapter` turns the limits into plain Numbers so Jobs serialise as JSON.
//
// Errors: throw `InvalidTask`, `InvalidConfig` or `Internal` with a message that says what is
// wrong and where (`config.image: required`); anything else thrown becomes an `internal`
// adapter error carrying its message.
//
// The helpers mirror the Rust SDK (adapters/sdk): the same label sanitising, Job shape and
// limits, so an adapter ported from Rust produces the same Job.

import { log as hostLog } from 'taskpod:adapter/log@0.1.0';

/** Longest label value (and DNS-1123 label) Kubernetes accepts. */
export const MAX_LABEL_LEN = 63;

/** Why an adapter could not produce a Job; `kind` is the WIT `adapter-error` case. */
export class AdapterError extends Error {
  constructor(message, kind = 'internal') {
    super(message);
    this.kind = kind;
  }
}

/** The task cannot be run as given; the message says what is wrong and where. */
export class InvalidTask extends AdapterError {
  constructor(message) {
    super(message, 'invalid-task');
  }
}

/** The adapter's configuration (or a template) is wrong; the message names the key. */
export class InvalidConfig extends AdapterError {
  constructor(message) {
    super(message, 'invalid-config');
  }
}

/** Anything else: a bug in the adapter. */
export class Internal extends AdapterError {
  constructor(message) {
    super(message, 'internal');
  }
}

/** The configuration JSON text as an object (empty text is `{}`). */
export function parseConfig(text) {
  if (text.trim() === '') return {};
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new InvalidConfig(`config: not JSON: ${e.message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidConfig('config: must be an object');
  }
  return value;
}

/** The named pod template (a `v1/PodTemplate`) of the context, parsed, or `undefined`. */
export function template(ctx, name) {
  const found = ctx.templates.find(([key]) => key === name);
  if (!found) return undefined;
  try {
    return JSON.parse(found[1]);
  } catch (e) {
    throw new InvalidConfig(`templates.${name}: not JSON: ${e.message}`);
  }
}

const alnum = (c) => /^[A-Za-z0-9]$/.test(c);

/**
 * A valid label value from any text, as the Rust SDK's `names::sanitize_label_value`: only
 * ASCII alphanumerics and `.`, `_`, `-` kept, trimmed to start and end alphanumeric, at most 63
 * characters.
 */
export function sanitizeLabelValue(value) {
  const kept = [...value].filter((c) => alnum(c) || c === '.' || c === '_' || c === '-').join('');
  let start = 0;
  let end = kept.length;
  while (start < end && !alnum(kept[start])) start += 1;
  while (end > start && !alnum(kept[end - 1])) end -= 1;
  let cut = kept.slice(start, end).slice(0, MAX_LABEL_LEN);
  while (cut.length > 0 && !alnum(cut[cut.length - 1])) cut = cut.slice(0, -1);
  return cut;
}

/** Sets an environment variable, replacing one of the same name (order kept). */
export function setEnv(container, name, value) {
  container.env = container.env || [];
  const slot = container.env.findIndex((v) => v.name === name);
  if (slot >= 0) container.env[slot] = { name, value };
  else container.env.push({ name, value });
}

function merge(meta, key, pairs) {
  meta[key] = meta[key] || {};
  for (const [k, v] of pairs) meta[key][k] = v;
}

/** Adds `[key, value]` labels to an object's metadata; later pairs win. */
export function mergeLabels(meta, pairs) {
  merge(meta, 'labels', pairs);
}

/** Adds `[key, value]` annotations to an object's metadata; later pairs win. */
export function mergeAnnotations(meta, pairs) {
  merge(meta, 'annotations', pairs);
}

/**
 * Wraps a pod template spec (`{ metadata, spec }`) into a `batch/v1` Job with one attempt per
 * task: `backoffLimit: 0` and the pod's `restartPolicy: Never`.
 */
export function jobFromTemplate(name, namespace, podTemplate) {
  if (podTemplate.spec) podTemplate.spec.restartPolicy = 'Never';
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace },
    spec: { backoffLimit: 0, template: podTemplate },
  };
}

/**
 * Copies the host's limits into the Job: `activeDeadlineSeconds`, `ttlSecondsAfterFinished`
 * (removed when finished Jobs are kept) and the pod's `terminationGracePeriodSeconds` (when
 * configured).
 */
export function applyLimits(job, limits) {
  job.spec = job.spec || {};
  job.spec.activeDeadlineSeconds = limits.maxDurationSeconds;
  if (limits.cleanupDelaySeconds === undefined || limits.cleanupDelaySeconds === null) {
    delete job.spec.ttlSecondsAfterFinished;
  } else {
    job.spec.ttlSecondsAfterFinished = limits.cleanupDelaySeconds;
  }
  if (limits.terminationGracePeriodSeconds !== undefined && limits.terminationGracePeriodSeconds !== null) {
    job.spec.template = job.spec.template || {};
    job.spec.template.spec = job.spec.template.spec || {};
    job.spec.template.spec.terminationGracePeriodSeconds = limits.terminationGracePeriodSeconds;
  }
}

/** Logs through the host: level `trace`, `debug`, `info`, `warn` or `error`. */
export function log(level, message) {
  hostLog(level, message);
}

const toNumber = (v) => (v === undefined || v === null ? undefined : Number(v));

function toWitError(e) {
  if (e instanceof AdapterError) return { tag: e.kind, val: e.message };
  const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return { tag: 'internal', val: message };
}

/**
 * The component's exports for `adapter`: `info`, `validateConfig` and `adapt` as the
 * pod-adapter world declares them, with errors mapped to the WIT `adapter-error` variant.
 */
export function exportAdapter(adapter) {
  return {
    info() {
      return {
        name: adapter.name,
        version: adapter.version,
        description: adapter.description || '',
        configSchema: JSON.stringify(adapter.configSchema || {}),
        taskTypes: adapter.taskTypes || [],
      };
    },
    validateConfig(config) {
      try {
        if (adapter.validateConfig) adapter.validateConfig(config);
        else parseConfig(config);
      } catch (e) {
        throw toWitError(e);
      }
    },
    adapt(task, ctx) {
      try {
        const limits = {
          maxDurationSeconds: toNumber(ctx.limits.maxDurationSeconds),
          cleanupDelaySeconds: toNumber(ctx.limits.cleanupDelaySeconds),
          terminationGracePeriodSeconds: toNumber(ctx.limits.terminationGracePeriodSeconds),
          maxInlinePayload: toNumber(ctx.limits.maxInlinePayload),
        };
        const result = adapter.adapt(task, { ...ctx, limits });
        const { job, companions } =
          result && result.kind === undefined && result.job !== undefined
            ? result
            : { job: result, companions: [] };
        return {
          job: JSON.stringify(job),
          companions: (companions || []).map((c) => JSON.stringify(c)),
        };
      } catch (e) {
        throw toWitError(e);
      }
    },
  };
}
