#!/usr/bin/env node
// kafkajs (pure JavaScript client) round trip against Floe.
//
// usage: node e2e/kafkajs/roundtrip.js HOST:PORT [TOPIC] [GROUP]
//
// admin.createTopics -> producer.send of 1000 messages -> consumer group `run`
// until every message is received; checks payloads, per-partition offsets,
// watermarks and committed offsets. Exits 0 on success, 1 on a mismatch,
// 2 on an error, 3 on timeout.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const { Kafka, logLevel } = require('kafkajs');

const TIMEOUT_MS = Number(process.env.KAFKAJS_E2E_TIMEOUT_MS || 120000);
const N = 1000;
const PARTITIONS = 3;

const bootstrap = process.argv[2];
if (!bootstrap) {
  console.error('usage: roundtrip.js HOST:PORT [TOPIC] [GROUP]');
  process.exit(2);
}
const suffix = `${process.pid}-${Date.now()}`;
const topic = process.argv[3] || `kafkajs-${suffix}`;
const groupId = process.argv[4] || `kafkajs-g-${suffix}`;

const timer = setTimeout(() => {
  console.error(`TIMEOUT: kafkajs round trip did not finish within ${TIMEOUT_MS} ms`);
  process.exit(3);
}, TIMEOUT_MS);

class Mismatch extends Error {}

function check(cond, msg) {
  if (!cond) throw new Mismatch(msg);
}

function log(...args) {
  console.log('[kafkajs-e2e]', ...args);
}

async function main() {
  const kafka = new Kafka({
    clientId: 'floe-e2e-kafkajs',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 8, initialRetryTime: 200, maxRetryTime: 5000 },
  });

  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    waitForLeaders: true,
    timeout: 15000,
  });
  check(created === true, `createTopics returned ${created}, expected true`);
  const again = await admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    timeout: 15000,
  });
  check(again === false, `createTopics of an existing topic returned ${again}, expected false`);
  const topics = await admin.listTopics();
  check(topics.includes(topic), `listTopics does not include ${topic}: ${topics}`);
  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  check(md.topics[0].partitions.length === PARTITIONS, `metadata: ${JSON.stringify(md.topics)}`);
  log('created', topic);

  // Produce 1000 messages in batches, keyed so they spread over partitions.
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  for (let b = 0; b < N; b += 100) {
    const messages = [];
    for (let i = b; i < b + 100; i++) {
      messages.push({ key: `key-${i}`, value: `kjs-${i}`, headers: { idx: String(i) } });
    }
    const res = await producer.send({ topic, acks: -1, timeout: 15000, messages });
    for (const r of res) {
      check(r.errorCode === 0, `produce error ${JSON.stringify(r)}`);
    }
  }
  await producer.disconnect();
  log('produced', N);

  const offsets = await admin.fetchTopicOffsets(topic);
  const high = {};
  let total = 0;
  for (const o of offsets) {
    check(o.low === '0', `low watermark of partition ${o.partition} is ${o.low}`);
    high[o.partition] = Number(o.high);
    total += Number(o.high);
  }
  check(total === N, `sum of high watermarks ${total}, expected ${N}: ${JSON.stringify(offsets)}`);

  // Consume with a group until everything arrived.
  const consumer = kafka.consumer({
    groupId,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    rebalanceTimeout: 20000,
    maxWaitTimeInMs: 500,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });

  const seen = new Map(); // i -> "partition:offset"
  const nextOffset = {}; // partition -> expected next offset
  let failure = null;
  let resolveDone;
  const done = new Promise((resolve) => {
    resolveDone = resolve;
  });

  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      try {
        const value = message.value.toString();
        const i = Number(value.slice(4));
        check(value === `kjs-${i}` && i >= 0 && i < N, `unexpected value ${value}`);
        check(message.key.toString() === `key-${i}`, `key ${message.key} for ${value}`);
        check(message.headers.idx.toString() === String(i), `header idx ${message.headers.idx} for ${value}`);
        const off = Number(message.offset);
        const want = nextOffset[partition] || 0;
        check(off === want, `partition ${partition}: offset ${off}, expected ${want}`);
        nextOffset[partition] = off + 1;
        check(!seen.has(i), `duplicate ${value} at ${partition}:${off} (first at ${seen.get(i)})`);
        seen.set(i, `${partition}:${off}`);
        if (seen.size === N) resolveDone();
      } catch (e) {
        failure = failure || e;
        resolveDone();
      }
    },
  });
  await done;
  if (failure) throw failure;
  log('consumed', seen.size);

  for (const [p, h] of Object.entries(high)) {
    check((nextOffset[p] || 0) === h, `partition ${p}: consumed up to ${nextOffset[p]}, high watermark ${h}`);
  }

  await consumer.commitOffsets(
    Object.entries(nextOffset).map(([p, o]) => ({ topic, partition: Number(p), offset: String(o) })),
  );
  await consumer.disconnect();

  const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
  const byPart = {};
  for (const p of committed[0].partitions) byPart[p.partition] = Number(p.offset);
  for (const [p, h] of Object.entries(high)) {
    if (h > 0) check(byPart[p] === h, `committed offset of partition ${p} is ${byPart[p]}, expected ${h}`);
  }
  const groups = await admin.listGroups();
  check(groups.groups.some((g) => g.groupId === groupId), `listGroups lacks ${groupId}`);

  await admin.deleteTopics({ topics: [topic], timeout: 15000 });
  await admin.disconnect();
  log('OK');
}

main().then(
  () => {
    clearTimeout(timer);
    process.exit(0);
  },
  (e) => {
    if (e instanceof Mismatch) {
      console.error(`MISMATCH: ${e.message}`);
      process.exit(1);
    }
    console.error('ERROR:', e && e.stack ? e.stack : e);
    process.exit(2);
  },
);
