// The UI's SSE line parser (web/sse.js), fed the way a network delivers: in arbitrary
// chunks, with LF, CRLF or CR line ends, comments, multi-line data and ids.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createParser } from '../../../web/sse.js';

const STREAM = [
  ': heartbeat',
  'event: ready',
  'id: 12.0',
  'data: {"doctor_id":2,"seq":"12.0"}',
  '',
  ': heartbeat',
  '',
  'event: booked',
  'id: 13.0',
  'data: {"doctor_id":2,"start":"2026-12-02T09:00:00Z",',
  'data: "status":"booked"}',
  '',
  'retry: 2500',
  'data:plain',
  '',
];

function parse(text, chunkSize) {
  const events = [];
  const retries = [];
  const feed = createParser((e) => events.push(e), (ms) => retries.push(ms));
  for (let i = 0; i < text.length; i += chunkSize) feed(text.slice(i, i + chunkSize));
  return { events, retries };
}

const EXPECTED = [
  { event: 'ready', id: '12.0', data: '{"doctor_id":2,"seq":"12.0"}' },
  { event: 'booked', id: '13.0', data: '{"doctor_id":2,"start":"2026-12-02T09:00:00Z",\n"status":"booked"}' },
  { event: 'message', id: '13.0', data: 'plain' },
];

for (const [name, eol] of [['LF', '\n'], ['CRLF', '\r\n'], ['CR', '\r']]) {
  test(`SSE parser: ${name} line ends, every chunk size`, () => {
    const text = STREAM.join(eol) + eol;
    for (const size of [1, 2, 3, 7, 64, text.length]) {
      const { events, retries } = parse(text, size);
      assert.deepEqual(events, EXPECTED, `chunks of ${size}`);
      assert.deepEqual(retries, [2500]);
    }
  });
}

test('SSE parser: an event without its blank line is not dispatched yet', () => {
  const { events } = parse('event: held\ndata: {}\n', 5);
  assert.deepEqual(events, []);
});
