// A Config made outside loadConfig (changed by the console's SET, or sent by
// the primary over IPC, which loses prototypes): its maps become
// prototype-free again, since their keys are client-chosen names, and
// everything is frozen, as loadConfig's own result is.
import type { Config } from './schema.js';

export function freezeConfig(config: Config): Config {
  const bare = <T>(m: Readonly<Record<string, T>>): Record<string, T> => Object.assign(Object.create(null) as Record<string, T>, m);
  return deepFreeze({ ...config, databases: bare(config.databases), users: bare(config.users) });
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
