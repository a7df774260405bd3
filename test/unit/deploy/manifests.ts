// Where the Kubernetes manifests live, rendered once for the deploy tests.
import { fileURLToPath } from 'node:url';
import { build, podSpec, type Manifest } from './kustomize.js';

const root = fileURLToPath(new URL('../../../deploy/kubernetes/', import.meta.url));

export const DEPLOY_DIRS = {
  base: `${root}base`,
  'overlays/example': `${root}overlays/example`,
  'cloudnative-pg': `${root}cloudnative-pg`,
} as const;

/** The one object of this kind (and name) in a rendering; throws when there is none or several. */
export function one(objects: Manifest[], kind: string, name?: string): Manifest {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0] as Manifest;
}

export const render = (dir: keyof typeof DEPLOY_DIRS): Manifest[] => build(DEPLOY_DIRS[dir]);
export { podSpec };
