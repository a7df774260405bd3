// The SSLRequest step toward a server that answers as we tell it (the real
// cluster always says S: test/integration/server-tls.test.ts), the host
// rotation, and SCRAM channel binding against our own server-side exchange.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ScramClientExchange } from '../../../src/auth/scram-client.js';
import { ScramServerExchange } from '../../../src/auth/scram-server.js';
import { clientKey, saltedPassword, serverKey, storedKey } from '../../../src/auth/scram.js';
import { HostRotation } from '../../../src/pool/hosts.js';
import { negotiateServerTls, ServerTlsError, type ServerTlsSettings } from '../../../src/pool/server-tls.js';

const settings = (sslmode: ServerTlsSettings['sslmode']): ServerTlsSettings => ({ sslmode, caFile: null, certFile: null, keyFile: null, protocols: ['tlsv1.2', 'tlsv1.3'], ciphers: 'default' });

let server: net.Server | null = null;
afterEach(() => {
  server?.close();
  server = null;
});

/** A server that answers the 8-byte SSLRequest with `answer`; resolves with a client socket connected to it. */
async function answering(answer: Buffer): Promise<{ socket: net.Socket; received: Promise<Buffer> }> {
  let gotRequest!: (b: Buffer) => void;
  const received = new Promise<Buffer>((resolve) => (gotRequest = resolve));
  server = net.createServer((c) => c.once('data', (b) => {
    gotRequest(b);
    c.write(answer);
  }));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  return { socket, received };
}

describe('negotiateServerTls', () => {
  it('sends nothing for disable', async () => {
    const { socket } = await answering(Buffer.from('S'));
    const out = await negotiateServerTls(socket, '127.0.0.1', settings('disable'));
    expect(out).toEqual({ socket, endpointHash: null });
    socket.destroy();
  });

  it.each(['prefer', 'allow'] as const)('%s: sends SSLRequest and goes on in plaintext when the server says N', async (mode) => {
    const { socket, received } = await answering(Buffer.from('N'));
    const out = await negotiateServerTls(socket, '127.0.0.1', settings(mode));
    expect(out.socket).toBe(socket);
    expect(out.endpointHash).toBeNull();
    expect((await received).equals(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]))).toBe(true); // 80877103
    socket.destroy();
  });

  it.each(['require', 'verify-ca', 'verify-full'] as const)('%s: refuses a server that says N', async (mode) => {
    const { socket } = await answering(Buffer.from('N'));
    await expect(negotiateServerTls(socket, '127.0.0.1', settings(mode))).rejects.toThrow(new ServerTlsError(`the server at 127.0.0.1 refused TLS and server_tls_sslmode is ${mode}`));
    socket.destroy();
  });

  it('refuses bytes after the answer (they came unencrypted and may be injected)', async () => {
    const { socket } = await answering(Buffer.from('SE\0\0\0\x04'));
    await expect(negotiateServerTls(socket, '127.0.0.1', settings('prefer'))).rejects.toThrow(/unencrypted data after its SSLRequest answer/);
    socket.destroy();
  });

  it('refuses an answer other than S or N (an old server sending an ErrorResponse)', async () => {
    const { socket } = await answering(Buffer.from('E'));
    await expect(negotiateServerTls(socket, '127.0.0.1', settings('prefer'))).rejects.toThrow(/answered the SSLRequest with "E"/);
    socket.destroy();
  });

  it('names a certificate file it cannot read', async () => {
    const { socket } = await answering(Buffer.from('S'));
    await expect(negotiateServerTls(socket, '127.0.0.1', { ...settings('verify-full'), caFile: '/nonexistent/ca.pem' })).rejects.toThrow(/cannot read "\/nonexistent\/ca\.pem": ENOENT/);
    socket.destroy();
  });
});

describe('HostRotation', () => {
  it('round-robin starts each new connection at the next host, trying the others after it', () => {
    const r = new HostRotation([5432], 'round-robin');
    const firsts = [0, 1, 2, 3].map(() => r.order('a,b,c').map((h) => h.host).join(''));
    expect(firsts).toEqual(['abc', 'bca', 'cab', 'abc']);
  });

  it('disable stays on a host until connecting to it fails, then on the one that worked', () => {
    const r = new HostRotation([1, 2], 'disable');
    expect(r.order('a,b')).toEqual([{ host: 'a', port: 1 }, { host: 'b', port: 2 }]);
    r.connected(0);
    expect(r.order('a,b')[0]!.host).toBe('a');
    r.connected(1); // a failed, b answered
    expect(r.order('a,b')[0]!.host).toBe('b');
    expect(r.order('a,b')[0]!.host).toBe('b');
  });

  it('one host is just that host, with the one port', () => {
    expect(new HostRotation([6543], 'round-robin').order('db')).toEqual([{ host: 'db', port: 6543 }]);
  });
});

describe('SCRAM channel binding toward the server', () => {
  const salted = saltedPassword('pw', Buffer.from('salty'), 4096);
  const keys = { clientKey: clientKey(salted), serverKey: serverKey(salted) };
  const verifier = { kind: 'scram-sha-256' as const, iterations: 4096, salt: Buffer.from('salty'), storedKey: storedKey(keys.clientKey), serverKey: keys.serverKey };
  const certHash = Buffer.alloc(32, 0xab);

  function run(clientData: Buffer, serverData: Buffer) {
    const client = new ScramClientExchange(keys, { channelBinding: { kind: 'tls-server-end-point', data: clientData } });
    const server = new ScramServerExchange(verifier, { channelBinding: serverData });
    expect(client.mechanism).toBe('SCRAM-SHA-256-PLUS');
    const first = server.clientFirst(client.mechanism, client.clientFirst());
    if (!first.ok) return first;
    return server.clientFinal(client.serverFirst(first.value));
  }

  it('binds with p=tls-server-end-point: the server that sees the same certificate accepts', () => {
    expect(run(certHash, certHash)).toMatchObject({ ok: true });
  });

  it('a server behind another certificate (a relaying attacker) refuses', () => {
    expect(run(Buffer.alloc(32, 0xcd), certHash)).toMatchObject({ ok: false });
  });

  it('over TLS without -PLUS offered it says y (a server that could bind detects the downgrade); in plaintext n', () => {
    expect(new ScramClientExchange(keys, { channelBinding: { kind: 'unused' } }).clientFirst().toString().slice(0, 3)).toBe('y,,');
    expect(new ScramClientExchange(keys).clientFirst().toString().slice(0, 3)).toBe('n,,');
    const server = new ScramServerExchange(verifier, { channelBinding: certHash });
    const client = new ScramClientExchange(keys, { channelBinding: { kind: 'unused' } });
    expect(server.clientFirst('SCRAM-SHA-256', client.clientFirst())).toMatchObject({ ok: false });
  });
});
