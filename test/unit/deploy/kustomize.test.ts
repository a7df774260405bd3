// The tests' renderer (kustomize.ts) against the real kustomize inside kubectl:
// the same objects, field for field, for every kustomization in deploy/.
import { describe, expect, test } from 'vitest';
import { applyJsonPatch, build, kubectlKustomize, type Manifest } from './kustomize.js';
import { DEPLOY_DIRS } from './manifests.js';

const byId = (objects: Manifest[]): Record<string, Manifest> =>
  Object.fromEntries(objects.map((o) => [`${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`, o]));

describe.each(Object.entries(DEPLOY_DIRS))('%s', (_, dir) => {
  const real = kubectlKustomize(dir);
  test.skipIf(real === null)('renders what kubectl kustomize renders', () => {
    expect(byId(build(dir))).toEqual(byId(real as Manifest[]));
  });
});

describe('JSON 6902 patches', () => {
  const svc: Manifest = { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { ports: [{ port: 1 }] } };
  test('replace of a missing path is an error, as in kustomize', () => {
    expect(() => applyJsonPatch(svc, [{ op: 'replace', path: '/spec/type', value: 'LoadBalancer' }])).toThrow(/nothing to replace/);
  });
  test('add appends with - and leaves the input alone', () => {
    const out = applyJsonPatch(svc, [{ op: 'add', path: '/spec/ports/-', value: { port: 2 } }]);
    expect(out.spec).toEqual({ ports: [{ port: 1 }, { port: 2 }] });
    expect(svc.spec).toEqual({ ports: [{ port: 1 }] });
  });
});
