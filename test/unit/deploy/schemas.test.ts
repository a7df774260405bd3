// Every object deploy/kubernetes renders validates against its API's OpenAPI
// schema: Kubernetes' own types and cert-manager / Prometheus Operator CRDs
// through kubernetes-models, CloudNativePG's Cluster through its CRD schema
// (vendored in schemas/, checked strictly: an unknown field is an error, as
// with `kubectl apply --validate=strict`).
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { describe, expect, test } from 'vitest';
import { type Manifest } from './kustomize.js';
import { DEPLOY_DIRS, render } from './manifests.js';

type Validator = (o: Manifest) => void;

/** The CRD schema with every object that lists its properties closed to others. */
function closed(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closed);
  if (schema === null || typeof schema !== 'object') return schema;
  const s = Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, k === 'properties' ? Object.fromEntries(Object.entries(v as object).map(([p, q]) => [p, closed(q)])) : closed(v)]));
  if (s.properties && s.additionalProperties === undefined && !s['x-kubernetes-preserve-unknown-fields']) s.additionalProperties = false;
  return s;
}

const cnpgSchema = JSON.parse(readFileSync(new URL('./schemas/cnpg-cluster-v1.json', import.meta.url), 'utf8'));
const validateCluster = new Ajv({ strict: false, validateFormats: false, allErrors: true }).compile(closed(cnpgSchema) as object);

async function validatorFor(o: Manifest): Promise<Validator> {
  if (o.apiVersion === 'postgresql.cnpg.io/v1' && o.kind === 'Cluster') {
    return (m) => {
      if (!validateCluster(m)) throw new Error(validateCluster.errors?.map((e) => `${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`).join('; '));
    };
  }
  const group = o.apiVersion.includes('/') ? o.apiVersion.split('/')[0] : '';
  const module =
    group === 'cert-manager.io' ? `@kubernetes-models/cert-manager/${o.apiVersion}/${o.kind}`
    : group === 'monitoring.coreos.com' ? `@kubernetes-models/prometheus-operator/${o.apiVersion}/${o.kind}`
    : `kubernetes-models/${o.apiVersion}/${o.kind}`;
  const Model = (await import(module))[o.kind] as new (data: unknown) => { validate(): void };
  return (m) => new Model(m).validate();
}

describe.each(Object.keys(DEPLOY_DIRS) as Array<keyof typeof DEPLOY_DIRS>)('%s', (dir) => {
  const objects = render(dir);
  test.each(objects.map((o) => [`${o.kind} ${o.metadata.name}`, o] as const))('%s validates', async (_, o) => {
    const validate = await validatorFor(o);
    expect(() => validate(o)).not.toThrow();
  });
});

describe('the validators reject what the API server would', () => {
  const [deployment, cluster] = [render('base').find((o) => o.kind === 'Deployment'), render('cloudnative-pg').find((o) => o.kind === 'Cluster')] as Manifest[];
  test('a container port that is not a number', async () => {
    const bad = structuredClone(deployment) as any;
    bad.spec.template.spec.containers[0].ports[0].containerPort = '6432x';
    const v = await validatorFor(bad);
    expect(() => v(bad)).toThrow(/containerPort must be integer/);
  });
  test('a misspelt Cluster field and a managed role without a name', async () => {
    const bad = structuredClone(cluster) as any;
    bad.spec.bootstrap.initdb.postInitApplicationSql = [];
    delete bad.spec.managed.roles[0].name;
    const v = await validatorFor(bad);
    expect(() => v(bad)).toThrow(/must NOT have additional properties \{"additionalProperty":"postInitApplicationSql"\}/);
    expect(() => v(bad)).toThrow(/must have required property 'name'/);
  });
});
