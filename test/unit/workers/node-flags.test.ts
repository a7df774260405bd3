import { describe, expect, it } from 'vitest';
import { WORKER_SEMI_SPACE_MB, workerExecArgv } from '../../../src/workers/node-flags.js';

describe('workerExecArgv', () => {
  it('adds the semi-space cap to the primary execArgv', () => {
    expect(workerExecArgv(['--enable-source-maps'], undefined)).toEqual(['--enable-source-maps', `--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`]);
  });
  it("keeps the operator's own choice from execArgv or NODE_OPTIONS", () => {
    expect(workerExecArgv(['--max-semi-space-size=16'], undefined)).toEqual(['--max-semi-space-size=16']);
    expect(workerExecArgv([], '--max_semi_space_size=8 --enable-source-maps')).toEqual([]);
  });
  it('is not fooled by other V8 heap options', () => {
    expect(workerExecArgv(['--max-old-space-size=512'], '--max-semi-space-size-x')).toContain(`--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`);
  });
});
