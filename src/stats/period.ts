// The stats_period clock: SHOW STATS averages roll over and the log_stats line
// is written once per period. The period is read again before each wait, so a
// reload that changes stats_period applies from the next period on.

/** Runs `onPeriod` every `periodSeconds()` seconds until the returned stop() is called. */
export function everyStatsPeriod(periodSeconds: () => number, onPeriod: () => void): () => void {
  let timer: NodeJS.Timeout | null = null;
  const schedule = (): void => {
    timer = setTimeout(() => {
      schedule(); // before the work: a throwing onPeriod must not stop the clock
      onPeriod();
    }, periodSeconds() * 1000);
    timer.unref();
  };
  schedule();
  return () => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
}
