// A worker runs with the configuration the primary read, never its own
// reading of the file: after a reload the file on disk and the running
// configuration may differ, and all workers must agree.
import type { Config } from '../config/index.js';
import { freezeConfig } from '../config/freeze.js';
import { isMessage, type DatabaseStates } from './messages.js';

/** The primary's configuration, and the PAUSE/DISABLE state the other workers are in. */
export function configFromPrimary(): Promise<{ config: Config; states: DatabaseStates }> {
  return new Promise((resolve) => {
    const onMessage = (msg: unknown): void => {
      if (!isMessage(msg, 'pg-ingress:config')) return;
      process.off('message', onMessage);
      resolve({ config: freezeConfig(msg.config), states: msg.states });
    };
    process.on('message', onMessage);
    process.send!({ type: 'pg-ingress:config-request' });
  });
}
