// Request/reply over IPC never hangs: a missing reply resolves null after the timeout.
import { expect, it } from 'vitest';
import { PendingReplies } from '../../../src/workers/replies.js';

it('resolves with the reply that carries the request id', async () => {
  const replies = new PendingReplies<string>(1000);
  let sent = 0;
  const p = replies.request((id) => {
    sent = id;
  });
  replies.settle(sent + 1, 'someone else');
  replies.settle(sent, 'mine');
  await expect(p).resolves.toBe('mine');
});

it('resolves null when no reply comes in time', async () => {
  const replies = new PendingReplies<string>(50);
  const started = Date.now();
  await expect(replies.request(() => undefined)).resolves.toBeNull();
  expect(Date.now() - started).toBeLessThan(1000);
});

it('resolves null at once when the channel is closed', async () => {
  const replies = new PendingReplies<string>(60_000);
  await expect(replies.request(() => { throw new Error('channel closed'); })).resolves.toBeNull();
});

it('a send that returns false (Node: the IPC channel backed up, the message still goes) waits for its reply', async () => {
  const replies = new PendingReplies<string>(60_000);
  let sent = 0;
  const answer = replies.request((id) => {
    sent = id;
    return false;
  });
  expect(replies.settle(sent, 'ok')).toBe(true);
  await expect(answer).resolves.toBe('ok');
});
