#!/usr/bin/env node
// kafkajs admin reassignment against a Floe cluster of two or more brokers.
//
// usage: node e2e/kafkajs/reassign.js HOST:PORT[,HOST:PORT...] TOPIC
//
// createTopics (4 partitions) -> produce 100 messages -> for each partition,
// alterPartitionReassignments to another broker -> listPartitionReassignments
// until none is pending -> metadata shows the new leaders with higher leader
// epochs -> produce 100 more -> a consumer reads all 200 in order per
// partition. A two-replica reassignment must be refused per partition.
// Exits 0 on success, 1 on a mismatch, 2 on an error, 3 on timeout.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const { Kafka, logLevel } = require('kafkajs');

const TIMEOUT_MS = Number(process.env.KAFKAJS_E2E_TIMEOUT_MS || 60000);
const PARTITIONS = 4;
const [bootstrap, topic] = process.argv.slice(2);
if (!bootstrap || !topic) {
  console.error('usage: reassign.js HOST:PORT[,...] TOPIC');
  process.exit(2);
}
const timer = setTimeout(() => {
  console.error(`TIMEOUT after ${TIMEOUT_MS} ms`);
  process.exit(3);
}, TIMEOUT_MS);

function fail(msg) {
  console.error(`MISMATCH: ${msg}`);
  process.exit(1);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const kafka = new Kafka({
    clientId: 'floe-e2e-reassign',
    brokers: bootstrap.split(','),
    logLevel: logLevel.NOTHING,
    retry: { retries: 10, initialRetryTime: 100 },
  });
  const admin = kafka.admin();
  await admin.connect();
  const { brokers } = await admin.describeCluster();
  const ids = brokers.map((b) => b.nodeId).sort((a, b) => a - b);
  if (ids.length < 2) fail(`need two brokers, describeCluster lists ${ids}`);
  await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true });

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const sendBatch = async (from) => {
    const messages = [];
    for (let i = from; i < from + 100; i++) {
      messages.push({ partition: i % PARTITIONS, value: `m${i}` });
    }
    await producer.send({ topic, acks: -1, messages });
  };
  await sendBatch(0);

  const before = (await admin.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions;
  const next = (leader) => ids[(ids.indexOf(leader) + 1) % ids.length];
  const moves = before.map((p) => ({ partition: p.partitionId, replicas: [next(p.leader)] }));

  // Two replicas cannot be: refused, per partition.
  let refused = false;
  try {
    await admin.alterPartitionReassignments({ topics: [{ topic, partitionAssignment: [{ partition: 0, replicas: ids.slice(0, 2) }] }] });
  } catch (e) {
    refused = /replica/i.test(String(e.message || e)) || e.type === 'INVALID_REPLICA_ASSIGNMENT' || (e.errors || []).length > 0;
    console.log(`[kafkajs-e2e] two-replica reassignment refused: ${e.message}`);
  }
  if (!refused) fail('a two-replica reassignment was accepted');

  const t0 = Date.now();
  await admin.alterPartitionReassignments({ topics: [{ topic, partitionAssignment: moves }] });
  for (;;) {
    const ongoing = await admin.listPartitionReassignments({ topics: [{ topic, partitions: [0, 1, 2, 3] }] });
    const pending = (ongoing.topics || []).reduce((n, t) => n + t.partitions.length, 0);
    if (pending === 0) break;
    if (Date.now() - t0 > 20000) fail(`reassignment still pending after 20 s: ${JSON.stringify(ongoing)}`);
    await sleep(50);
  }
  console.log(`[kafkajs-e2e] ${PARTITIONS} partitions moved in ${Date.now() - t0} ms`);
  let after;
  for (let i = 0; ; i++) {
    after = (await admin.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions;
    const ok = after.every((p) => {
      const b = before.find((q) => q.partitionId === p.partitionId);
      return p.leader === next(b.leader);
    });
    if (ok) break;
    if (i > 100) fail(`leaders after the moves: ${JSON.stringify(after)} (before ${JSON.stringify(before)})`);
    await sleep(50);
  }
  await sendBatch(100);
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `${topic}-g` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Map();
  let total = 0;
  await new Promise((resolve, reject) => {
    consumer
      .run({
        eachMessage: async ({ partition, message }) => {
          const list = seen.get(partition) || [];
          list.push([Number(message.offset), message.value.toString()]);
          seen.set(partition, list);
          total += 1;
          if (total === 200) resolve();
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  for (const [partition, list] of seen) {
    list.forEach(([offset, value], i) => {
      if (offset !== i) fail(`partition ${partition}: offset ${offset} at position ${i}`);
      const n = Number(value.slice(1));
      if (n % PARTITIONS !== partition) fail(`partition ${partition} holds ${value}`);
    });
    if (list.length !== 50) fail(`partition ${partition} holds ${list.length} messages, not 50`);
  }
  await admin.disconnect();
  console.log('[kafkajs-e2e] OK');
}

main()
  .then(() => {
    clearTimeout(timer);
    process.exit(0);
  })
  .catch((e) => {
    console.error(`ERROR: ${e && e.stack ? e.stack : e}`);
    process.exit(2);
  });
