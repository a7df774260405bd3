// Everything the benchmark starts (PostgreSQL, PgBouncer, pg-ingress, pgbench, idle
// clients, temp dirs) registers its undo here; it runs once, in reverse order, on
// normal exit, on failure and on Ctrl-C / SIGTERM.
type Undo = () => Promise<void> | void;

const stack: { name: string; undo: Undo }[] = [];
let running: Promise<void> | null = null;
let finished = false;

/** True once cleanup has begun: long loops stop starting new work. */
export function stopping(): boolean {
  return running !== null;
}

/** Throws if cleanup has begun (Ctrl-C). */
export function checkInterrupted(): void {
  if (running !== null) throw new Error('interrupted');
}

/** Registers an undo step; the returned function unregisters it (after the thing was undone by hand). */
export function onCleanup(name: string, undo: Undo): () => void {
  const entry = { name, undo };
  if (finished) {
    // Started after everything was undone (a step that was in flight at Ctrl-C): undo it now.
    void Promise.resolve().then(undo).catch(() => undefined);
    return () => undefined;
  }
  stack.push(entry);
  return () => {
    const i = stack.indexOf(entry);
    if (i >= 0) stack.splice(i, 1);
  };
}

export function cleanupAll(): Promise<void> {
  running ??= (async () => {
    while (stack.length > 0) {
      const { name, undo } = stack.pop()!;
      try {
        await undo();
      } catch (err) {
        console.error(`cleanup of ${name} failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    finished = true;
  })();
  return running;
}

/** Ctrl-C and SIGTERM: undo everything, then exit 130 / 143. A second signal exits at once. */
export function installSignalHandlers(): void {
  let signalled = false;
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    process.on(signal, () => {
      if (signalled) process.exit(code);
      signalled = true;
      console.error(`\n${signal}: cleaning up…`);
      void cleanupAll().finally(() => process.exit(code));
    });
  }
}
