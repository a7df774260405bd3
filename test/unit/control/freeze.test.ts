// freezeConfig: a Config rebuilt outside loadConfig (SET, or one that crossed
// IPC and lost its prototypes) gets prototype-free maps and is frozen whole.
import { describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../../src/config/index.js';
import { deepFreeze, freezeConfig } from '../../../src/config/freeze.js';
import { route } from '../../../src/client/router.js';

const base = loadConfig({ env: {}, overrides: { databases: { app: { host: 'h1', dbname: 'app' } }, users: { alice: { pool_size: 3 } } } });

/** As the primary's message arrives in a worker: plain objects everywhere. */
const overIpc = (c: Config): Config => JSON.parse(JSON.stringify(c)) as Config;

describe('freezeConfig', () => {
  it('gives the databases and users maps no prototype, so "constructor" or "toString" is no database or user', () => {
    const plain = overIpc(base);
    expect(plain.databases['constructor']).toBeDefined(); // the danger: an ordinary object's prototype answers
    const c = freezeConfig(plain);
    for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf']) {
      expect(c.databases[name]).toBeUndefined();
      expect(c.users[name]).toBeUndefined();
      expect(route(c, name)).toBeNull();
    }
    expect(Object.getPrototypeOf(c.databases)).toBeNull();
    expect(Object.getPrototypeOf(c.users)).toBeNull();
    expect(c.databases.app).toMatchObject({ host: 'h1', dbname: 'app' });
    expect(c.users.alice).toMatchObject({ pool_size: 3 });
  });

  it('freezes everything, entries and lists too', () => {
    const c = freezeConfig(overIpc(base));
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.databases)).toBe(true);
    expect(Object.isFrozen(c.databases.app)).toBe(true);
    expect(Object.isFrozen(c.databases.app!.ports)).toBe(true);
    expect(Object.isFrozen(c.users.alice)).toBe(true);
    expect(Object.isFrozen(c.admin_users)).toBe(true);
    expect(() => {
      'use strict';
      (c as { default_pool_size: number }).default_pool_size = 1;
    }).toThrow(TypeError);
  });

  it('does not change the config it is given', () => {
    const plain = overIpc(base);
    freezeConfig(plain);
    expect(Object.getPrototypeOf(plain.databases)).toBe(Object.prototype);
    expect(Object.isFrozen(plain)).toBe(false);
  });
});

describe('deepFreeze', () => {
  it('freezes nested objects and returns its argument', () => {
    const v = { a: { b: [1, { c: 2 }] } };
    expect(deepFreeze(v)).toBe(v);
    expect(Object.isFrozen(v.a.b[1])).toBe(true);
    expect(deepFreeze(null)).toBeNull();
    expect(deepFreeze(3)).toBe(3);
  });
});
