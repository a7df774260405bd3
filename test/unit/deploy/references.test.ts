// What the manifests name must exist: ports behind Services, probes and
// policies; Secrets and ConfigMaps behind volumes; every *_file of the
// configuration inside a mounted volume that provides it; a grace period that
// outlasts the drain; the workers the CPU limit gives.
import { parse } from 'yaml';
import { describe, expect, test } from 'vitest';
import { defaultWorkerCount } from '../../../src/workers/cpu-budget.js';
import { type Manifest } from './kustomize.js';
import { one, podSpec, render } from './manifests.js';

const base = render('base');
const overlay = render('overlays/example');
const cnpg = render('cloudnative-pg');
const deployment = one(overlay, 'Deployment', 'pg-ingress') as any;
const pod = deployment.spec.template;
const container = pod.spec.containers[0];
const configMap = one(overlay, 'ConfigMap') as any;
const config = parse(configMap.data['pg-ingress.yaml']);
const portNamed = (name: string | number): number => (typeof name === 'number' ? name : container.ports.find((p: any) => p.name === name)?.containerPort);
const labelsMatch = (selector: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v);

/** Where a path in the container comes from: the file a volume provides there, or null. */
function fileBehind(path: string): { volume: any; key: string } | null {
  for (const m of container.volumeMounts) {
    const inside = m.subPath ? path === m.mountPath : path.startsWith(`${m.mountPath}/`);
    if (!inside) continue;
    const volume = podSpec(deployment as Manifest)!.volumes!.find((v: any) => v.name === m.name) as any;
    const file = m.subPath ?? path.slice(m.mountPath.length + 1);
    const items: Array<{ key: string; path: string }> | undefined = (volume.secret ?? volume.configMap)?.items;
    return { volume, key: items ? (items.find((i) => i.path === file)?.key ?? '(not projected)') : file };
  }
  return null;
}

describe('ports', () => {
  test('the LoadBalancer takes PostgreSQL clients on 5432 to listen_port', () => {
    const svc = one(overlay, 'Service', 'pg-ingress') as any;
    expect(svc.spec.type).toBe('LoadBalancer');
    expect(svc.spec.ports).toHaveLength(1);
    expect(svc.spec.ports[0].port).toBe(5432);
    expect(portNamed(svc.spec.ports[0].targetPort)).toBe(config.listen_port);
  });
  test('the metrics Service, probes and scrape annotations reach metrics_port', () => {
    const svc = one(overlay, 'Service', 'pg-ingress-metrics') as any;
    expect(portNamed(svc.spec.ports[0].targetPort)).toBe(config.metrics_port);
    expect(container.livenessProbe.httpGet).toMatchObject({ path: '/healthz' });
    expect(container.readinessProbe.httpGet).toMatchObject({ path: '/readyz' });
    expect(portNamed(container.livenessProbe.httpGet.port)).toBe(config.metrics_port);
    expect(portNamed(container.readinessProbe.httpGet.port)).toBe(config.metrics_port);
    expect(Number(pod.metadata.annotations['prometheus.io/port'])).toBe(config.metrics_port);
  });
  test('Services, the PDB, the NetworkPolicy and the ServiceMonitor select these pods and name their ports', () => {
    for (const svc of overlay.filter((o) => o.kind === 'Service') as any[]) expect(labelsMatch(svc.spec.selector, pod.metadata.labels)).toBe(true);
    expect(labelsMatch((one(overlay, 'PodDisruptionBudget') as any).spec.selector.matchLabels, pod.metadata.labels)).toBe(true);
    const policy = one(overlay, 'NetworkPolicy') as any;
    expect(labelsMatch(policy.spec.podSelector.matchLabels, pod.metadata.labels)).toBe(true);
    expect(policy.spec.ingress.map((r: any) => portNamed(r.ports[0].port))).toEqual([config.listen_port, config.metrics_port]);
    const monitor = one(overlay, 'ServiceMonitor') as any;
    const metricsSvc = overlay.filter((o) => o.kind === 'Service' && labelsMatch(monitor.spec.selector.matchLabels, o.metadata.labels as any)) as any[];
    expect(metricsSvc.map((s) => s.metadata.name)).toEqual(['pg-ingress-metrics']);
    expect(metricsSvc[0].spec.ports.map((p: any) => p.name)).toContain(monitor.spec.endpoints[0].port);
  });
  test('egress goes to the namespace of the CloudNativePG cluster, on its port', () => {
    const policy = one(overlay, 'NetworkPolicy') as any;
    const cluster = one(cnpg, 'Cluster');
    expect(policy.spec.egress[0].to[0].namespaceSelector.matchLabels['kubernetes.io/metadata.name']).toBe(cluster.metadata.namespace);
    expect(policy.spec.egress[0].ports[0].port).toBe(5432);
  });
});

describe('files', () => {
  test('--config names the mounted ConfigMap file', () => {
    const path = container.args[container.args.indexOf('--config') + 1];
    const behind = fileBehind(path);
    expect(behind?.volume.configMap.name).toBe(configMap.metadata.name);
    expect(Object.keys(configMap.data)).toContain(behind?.key);
  });
  test('auth_password_file is the password key of the Secret the CloudNativePG role uses', () => {
    const behind = fileBehind(config.auth_password_file);
    const role = (one(cnpg, 'Cluster') as any).spec.managed.roles.find((r: any) => r.name === config.auth_user);
    expect(behind?.volume.secret.secretName).toBe(role.passwordSecret.name);
    expect(behind?.key).toBe('password'); // kubernetes.io/basic-auth's key
  });
  test('client_tls_cert_file and client_tls_key_file are the Certificate Secret tls.crt and tls.key', () => {
    const certificate = one(overlay, 'Certificate', 'pg-ingress') as any;
    for (const [key, file] of [['client_tls_cert_file', 'tls.crt'], ['client_tls_key_file', 'tls.key']]) {
      const behind = fileBehind(config[key as string]);
      expect(behind?.volume.secret.secretName).toBe(certificate.spec.secretName);
      expect(behind?.key).toBe(file);
      // No subPath: the kubelet's ..data symlink swap on renewal reaches the polled path.
      expect(container.volumeMounts.find((m: any) => m.name === behind?.volume.name).subPath).toBeUndefined();
    }
  });
  test("the overlay's Certificate is signed by an Issuer it defines", () => {
    const certificate = one(overlay, 'Certificate', 'pg-ingress') as any;
    expect(one(overlay, certificate.spec.issuerRef.kind, certificate.spec.issuerRef.name)).toBeDefined();
  });
});

describe('pod', () => {
  test('terminationGracePeriodSeconds outlasts preStop + shutdown_timeout + the 5 s before a stuck worker is killed', () => {
    const preStop = container.lifecycle?.preStop?.sleep?.seconds ?? 0;
    expect(pod.spec.terminationGracePeriodSeconds).toBeGreaterThan(preStop + config.shutdown_timeout + 5);
  });
  test('hardened: non-root, read-only root, RuntimeDefault seccomp, no escalation, no capabilities', () => {
    expect(pod.spec.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.spec.securityContext.runAsUser).toBeGreaterThan(0);
    expect(container.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
  });
  test('two replicas spread over nodes', () => {
    expect(deployment.spec.replicas).toBe(2);
    const term = pod.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm;
    expect(term.topologyKey).toBe('kubernetes.io/hostname');
    expect(labelsMatch(term.labelSelector.matchLabels, pod.metadata.labels)).toBe(true);
  });
  test('workers: 0 under the CPU limit "2" runs 2 workers on any node', () => {
    expect(config.workers).toBe(0);
    expect(container.resources.limits.cpu).toBe('2');
    expect(defaultWorkerCount(64, Number(container.resources.limits.cpu))).toBe(2);
    expect(defaultWorkerCount(64, 1.5)).toBe(1); // why the comment says 1500m gives 1
  });
  test('the base image is a placeholder the overlay replaces', () => {
    expect((one(base, 'Deployment') as any).spec.template.spec.containers[0].image).toBe('pg-ingress');
    expect(container.image).toBe('registry.example.com/pg-ingress:0.1.0');
  });
});
