// A kafkajs consumer group member for PubG1's compatibility tests.
//
// Usage: node group_consumer.js BROKER GROUP TOPIC CLIENT_ID
//
// It consumes TOPIC in GROUP from the earliest offset when the group has no
// commit, printing one JSON line per record: {"p": partition, "o": offset}.
// Offsets are committed automatically. On SIGTERM or SIGINT it disconnects,
// which commits and leaves the group, and exits 0.
'use strict';

const { Kafka, logLevel } = require('kafkajs');

const [broker, group, topic, clientId] = process.argv.slice(2);
if (!clientId) {
  console.error('usage: node group_consumer.js BROKER GROUP TOPIC CLIENT_ID');
  process.exit(2);
}

const kafka = new Kafka({ clientId, brokers: [broker], logLevel: logLevel.WARN });
const consumer = kafka.consumer({
  groupId: group,
  sessionTimeout: 6000,
  heartbeatInterval: 500,
  rebalanceTimeout: 10000,
  maxWaitTimeInMs: 500,
});

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  try {
    await consumer.disconnect();
    process.exit(0);
  } catch (e) {
    console.error('disconnecting:', e);
    process.exit(1);
  }
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

async function main() {
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    autoCommitInterval: 200,
    eachMessage: async ({ partition, message }) => {
      process.stdout.write(JSON.stringify({ p: partition, o: Number(message.offset) }) + '\n');
    },
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
