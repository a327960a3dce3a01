// The official KurrentDB Node client (@kurrent/kurrentdb-client, pinned in package-lock.json)
// against a real `strata serve`: multiStreamAppend (v2 AppendSession) and appendRecords
// (v2 AppendRecords with consistency checks), both answered as KurrentDB 26.1 answers them.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { randomUUID } from 'node:crypto';

import {
  AppendConsistencyViolationError,
  KurrentDBClient,
  NO_STREAM,
  STREAM_STATE,
  StreamNotFoundError,
  WrongExpectedVersionError,
  jsonEvent,
} from '@kurrent/kurrentdb-client';

import { startServer } from '../ui/server.mjs';

let server;
let client;

before(async () => {
  server = await startServer();
  client = KurrentDBClient.connectionString`kurrentdb://127.0.0.1:${server.port}?tls=false`;
});

after(async () => {
  await client?.dispose();
  await server?.stop();
});

const unique = (prefix) => `${prefix}-${randomUUID()}`;
const event = (type, data = { n: randomUUID() }) => jsonEvent({ type, data, metadata: { user: 'ann' } });

async function readAll(stream) {
  const events = [];
  for await (const resolved of client.readStream(stream)) events.push(resolved.event);
  return events;
}

test('multiStreamAppend commits every stream together', async () => {
  const debit = unique('account');
  const credit = unique('account');
  const result = await client.multiStreamAppend([
    { streamName: debit, events: [event('Debited'), event('Noted')], expectedState: NO_STREAM },
    { streamName: credit, events: [event('Credited')], expectedState: 'any' },
  ]);
  assert.deepEqual(
    result.responses.map((r) => [r.streamName, r.revision]),
    [[debit, 1n], [credit, 0n]],
  );
  const credited = await readAll(credit);
  assert.equal(credited.length, 1);
  assert.equal(credited[0].type, 'Credited');
  assert.equal(credited[0].position.commit, result.position, 'the last event is at the reported position');
  assert.deepEqual(credited[0].metadata, { user: 'ann' }, 'properties come back as metadata');
});

test('multiStreamAppend refuses the whole session on one conflict', async () => {
  const fresh = unique('account');
  const existing = unique('account');
  await client.appendToStream(existing, event('Opened'));
  await assert.rejects(
    client.multiStreamAppend([
      { streamName: fresh, events: [event('Debited')], expectedState: NO_STREAM },
      { streamName: existing, events: [event('Credited')], expectedState: 7n },
    ]),
    (error) => error instanceof WrongExpectedVersionError,
  );
  await assert.rejects(readAll(fresh), StreamNotFoundError, 'nothing of the session was written');
});

test('appendRecords writes records of several streams with checks on others', async () => {
  const a = unique('account');
  const b = unique('account');
  const course = unique('course');
  await client.appendToStream(course, [event('Opened'), event('Enrolled')]);
  const result = await client.appendRecords(
    [
      { streamName: a, record: event('Debited') },
      { streamName: b, record: event('Credited') },
    ],
    [
      { type: STREAM_STATE, streamName: course, expectedState: 1n },
      { type: STREAM_STATE, streamName: a, expectedState: NO_STREAM },
    ],
  );
  assert.deepEqual(
    result.responses.map((r) => [r.streamName, r.revision]),
    [[a, 0n], [b, 0n]],
  );
  const [credited] = await readAll(b);
  assert.equal(credited.position.commit, result.position);
  assert.equal((await readAll(course)).length, 2, 'a check writes nothing');
});

test('appendRecords reports every violated check and writes nothing', async () => {
  const written = unique('account');
  const course = unique('course');
  const student = unique('student');
  await client.appendToStream(course, event('Opened'));
  await client.appendToStream(student, [event('Registered'), event('Enrolled')]);
  let violation;
  await assert.rejects(
    client.appendRecords(
      [{ streamName: written, record: event('Debited') }],
      [
        { type: STREAM_STATE, streamName: course, expectedState: 5n },
        { type: STREAM_STATE, streamName: unique('free'), expectedState: 'any' },
        { type: STREAM_STATE, streamName: student, expectedState: NO_STREAM },
      ],
    ),
    (error) => {
      violation = error;
      return error instanceof AppendConsistencyViolationError;
    },
  );
  assert.deepEqual(
    violation.violations.map((v) => [v.checkIndex, v.streamName, v.expectedState, v.actualState]),
    [
      [0, course, 5n, 0n],
      [2, student, NO_STREAM, 1n],
    ],
  );
  await assert.rejects(readAll(written), StreamNotFoundError, 'nothing was written');
});
