// A small kustomize for the tests: the features deploy/kubernetes uses, with
// kustomize's semantics (resources, namespace, configMapGenerator with its
// content hash and the name references it rewrites, images, JSON 6902
// patches). Offline and always available; kustomize.test.ts checks that it
// renders exactly what `kubectl kustomize` renders where kubectl is installed.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';

export type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [k: string]: unknown }; [k: string]: unknown };

interface Kustomization {
  namespace?: string;
  resources?: string[];
  configMapGenerator?: Array<{ name: string; files?: string[]; literals?: string[] }>;
  images?: Array<{ name: string; newName?: string; newTag?: string }>;
  patches?: Array<{ target: { group?: string; version?: string; kind: string; name?: string }; patch: string }>;
  [other: string]: unknown;
}

const SUPPORTED = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'configMapGenerator', 'images', 'patches']);

/** The objects `kustomize build dir` would print, in file order (kustomize sorts them; compare by kind and name). */
export function build(dir: string): Manifest[] {
  const k = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Kustomization;
  for (const key of Object.keys(k)) if (!SUPPORTED.has(key)) throw new Error(`${dir}: kustomization key ${key} is not supported by this renderer`);
  let objects: Manifest[] = [];
  for (const r of k.resources ?? []) {
    const path = resolve(dir, r);
    if (statSync(path).isDirectory()) objects.push(...build(path));
    else objects.push(...readManifests(path));
  }
  const renames = new Map<string, string>();
  for (const g of k.configMapGenerator ?? []) {
    const data: Record<string, string> = {};
    for (const f of g.files ?? []) data[basename(f)] = readFileSync(resolve(dir, f), 'utf8');
    for (const l of g.literals ?? []) data[l.slice(0, l.indexOf('='))] = l.slice(l.indexOf('=') + 1);
    const hashed = `${g.name}-${configMapHash(data)}`;
    renames.set(g.name, hashed);
    objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: hashed }, data });
  }
  for (const o of objects) rewriteConfigMapRefs(o, renames);
  if (k.namespace !== undefined) {
    for (const o of objects) if (o.kind !== 'Namespace') o.metadata.namespace = k.namespace;
  }
  for (const image of k.images ?? []) for (const o of objects) setImages(o, image);
  for (const p of k.patches ?? []) {
    const ops = parse(p.patch, K8S_YAML) as JsonPatchOp[];
    objects = objects.map((o) => (matches(o, p.target) ? applyJsonPatch(o, ops) : o));
  }
  return objects;
}

// YAML 1.1, as Kubernetes reads manifests (sigs.k8s.io/yaml): `defaultMode: 0440` is octal there.
const K8S_YAML = { version: '1.1' } as const;

export function readManifests(file: string): Manifest[] {
  return parseAllDocuments(readFileSync(file, 'utf8'), K8S_YAML)
    .map((d) => d.toJS() as Manifest | null)
    .filter((d): d is Manifest => d !== null);
}

/**
 * kustomize's hash suffix (api/hasher): sha256 of the Go JSON encoding of {data, kind, name}, 10 hex
 * digits with 0,1,3,a,e spelled g,h,k,m,t. The name is always "": kustomize looks up the single
 * field "metadata/name", which no object has.
 */
export function configMapHash(data: Record<string, string>): string {
  const sorted = Object.fromEntries(Object.entries(data).sort(([a], [b]) => (a < b ? -1 : 1)));
  const json = JSON.stringify({ data: sorted, kind: 'ConfigMap', name: '' }).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const hex = createHash('sha256').update(json).digest('hex').slice(0, 10);
  return hex.replace(/[013ae]/g, (c) => ({ '0': 'g', '1': 'h', '3': 'k', a: 'm', e: 't' })[c] as string);
}

/** The pod templates' ConfigMap volumes (the only reference kind deploy/ uses) follow a generated name. */
function rewriteConfigMapRefs(o: Manifest, renames: Map<string, string>): void {
  for (const volume of podSpec(o)?.volumes ?? []) {
    const cm = volume.configMap;
    if (cm && renames.has(cm.name)) cm.name = renames.get(cm.name) as string;
  }
}

function setImages(o: Manifest, image: NonNullable<Kustomization['images']>[number]): void {
  for (const c of podSpec(o)?.containers ?? []) {
    const [name, tag] = c.image.split(':');
    if (name !== image.name) continue;
    c.image = `${image.newName ?? name}${image.newTag ?? tag ? `:${image.newTag ?? tag}` : ''}`;
  }
}

type PodSpec = { containers: Array<{ image: string }>; volumes?: Array<{ configMap?: { name: string } }> };

export function podSpec(o: Manifest): PodSpec | undefined {
  return (o.spec as { template?: { spec?: PodSpec } } | undefined)?.template?.spec;
}

function matches(o: Manifest, t: Kustomization['patches'] extends Array<infer P> | undefined ? (P extends { target: infer T } ? T : never) : never): boolean {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  return o.kind === t.kind && (t.name === undefined || o.metadata.name === t.name) && (t.group === undefined || t.group === group) && (t.version === undefined || t.version === version);
}

type JsonPatchOp = { op: 'add' | 'replace' | 'remove'; path: string; value?: unknown };

/** RFC 6902 add/replace/remove; a missing target of replace/remove is an error, as in kustomize. */
export function applyJsonPatch(o: Manifest, ops: JsonPatchOp[]): Manifest {
  const doc = structuredClone(o) as unknown as Record<string, unknown>;
  for (const { op, path, value } of ops) {
    const keys = path.split('/').slice(1).map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
    const last = keys.pop() as string;
    let parent: any = doc;
    for (const key of keys) {
      if (parent[key] === undefined) throw new Error(`patch ${op} ${path}: ${key} does not exist`);
      parent = parent[key];
    }
    if (op !== 'add' && !(last in parent)) throw new Error(`patch ${op} ${path}: nothing to ${op}`);
    if (op === 'remove') Array.isArray(parent) ? parent.splice(Number(last), 1) : delete parent[last];
    else if (Array.isArray(parent) && op === 'add') parent.splice(last === '-' ? parent.length : Number(last), 0, value);
    else parent[last] = value;
  }
  return doc as unknown as Manifest;
}

/** `kubectl kustomize dir` when kubectl is installed, else null. */
export function kubectlKustomize(dir: string): Manifest[] | null {
  let out: string;
  try {
    out = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  return parseAllDocuments(out, K8S_YAML).map((d) => d.toJS() as Manifest);
}
