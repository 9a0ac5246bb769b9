// The kafkajs driver of PubG1's client-compatibility matrix.
//
// Usage: node driver.js OP --name value ... (see compat-tests/DRIVERS.md)
//
// Operations: metadata, create, delete, produce, produce-txn, consume,
// group-consume, groups. Result lines are JSON objects on stdout, one per line; kafkajs
// logs and diagnostics go to stderr. Every operation is bounded by
// --timeout-s (default 30), after which the driver exits 1; bad arguments
// exit 2. kafkajs can do every operation and codec (snappy, lz4 and zstd
// through the pure JavaScript/WebAssembly packages of package.json), so the
// driver has no "not supported" (exit 3) case.
'use strict';

// kafkajs warns about its partitioner change on every producer; the driver
// always names the partition, so the warning is noise.
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs');

const EXIT_OK = 0;
const EXIT_FAIL = 1;
const EXIT_USAGE = 2;

const BOOLEAN_FLAGS = new Set(['idempotent', 'read-committed']);

// ---------------------------------------------------------------------------
// Output and exit

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function diag(...parts) {
  process.stderr.write(
    parts.map((p) => (p instanceof Error ? p.stack || String(p) : String(p))).join(' ') + '\n'
  );
}

// exit writes nothing more and leaves once stdout and stderr are flushed
// (writes to pipes and files are synchronous on Linux; the callbacks cover
// the other cases).
let exiting = false;
function exit(code) {
  if (exiting) return;
  exiting = true;
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
  // Never hang on a stuck stream.
  setTimeout(() => process.exit(code), 2000).unref();
}

function fail(code, ...parts) {
  diag(...parts);
  exit(code);
}

// ---------------------------------------------------------------------------
// Arguments

function parseArgs(argv) {
  const [op, ...rest] = argv;
  const opts = {};
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (!arg.startsWith('--')) {
      throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`);
    }
    const name = arg.slice(2);
    if (BOOLEAN_FLAGS.has(name)) {
      opts[name] = true;
      continue;
    }
    if (i + 1 >= rest.length) {
      throw new UsageError(`--${name} needs a value`);
    }
    opts[name] = rest[++i];
  }
  return { op, opts };
}

class UsageError extends Error {}

function required(opts, name) {
  if (opts[name] === undefined) throw new UsageError(`--${name} is required`);
  return opts[name];
}

function intArg(opts, name, dflt) {
  const raw = opts[name];
  if (raw === undefined) {
    if (dflt === undefined) throw new UsageError(`--${name} is required`);
    return dflt;
  }
  if (!/^-?\d+$/.test(raw)) throw new UsageError(`--${name} must be an integer, got ${raw}`);
  return Number(raw);
}

// ---------------------------------------------------------------------------
// Compression codecs. kafkajs has gzip built in; the others are pure
// JavaScript (or WebAssembly) packages, so `npm ci` needs no compiler.

// codecErrors holds, per compression name, why its codec could not be
// registered (a package missing from node_modules); producing with it fails.
const codecErrors = {};

function registerCodecs() {
  const register = (name, type, make) => {
    try {
      CompressionCodecs[type] = make();
    } catch (e) {
      codecErrors[name] = e;
    }
  };

  // snappy: kafkajs-snappy (snappyjs). It writes raw snappy and reads raw
  // or xerial-framed snappy.
  register('snappy', CompressionTypes.Snappy, () => require('kafkajs-snappy'));

  // lz4: the LZ4 frame format. lz4js writes frames; frames are read here
  // because lz4js misreads frames with block checksums.
  register('lz4', CompressionTypes.LZ4, () => {
    const lz4 = require('lz4js');
    return () => ({
      async compress(encoder) {
        return Buffer.from(lz4.compress(encoder.buffer));
      },
      async decompress(buffer) {
        return lz4DecompressFrames(lz4, buffer);
      },
    });
  });

  // zstd: compressed by the zstd library built to WebAssembly
  // (@bokuweb/zstd-wasm), decompressed by fzstd (pure JavaScript, any frame
  // with or without a content size).
  register('zstd', CompressionTypes.ZSTD, () => {
    const zstdWasm = require('@bokuweb/zstd-wasm');
    const fzstd = require('fzstd');
    let zstdReady = null;
    return () => ({
      async compress(encoder) {
        if (!zstdReady) zstdReady = zstdWasm.init();
        await zstdReady;
        return Buffer.from(zstdWasm.compress(encoder.buffer, 3));
      },
      async decompress(buffer) {
        return Buffer.from(fzstd.decompress(buffer));
      },
    });
  });
}

const LZ4_MAGIC = 0x184d2204;
const LZ4_BLOCK_MAX = { 4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20 };

// lz4DecompressFrames decodes one or more concatenated LZ4 frames (skippable
// frames are skipped). Checksums are not verified (the record batch CRC
// covers the data).
function lz4DecompressFrames(lz4, buf) {
  const out = [];
  let pos = 0;
  while (pos < buf.length) {
    if (buf.length - pos < 4) throw new Error('lz4: truncated frame');
    const magic = buf.readUInt32LE(pos);
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      // skippable frame
      pos += 8 + buf.readUInt32LE(pos + 4);
      continue;
    }
    if (magic !== LZ4_MAGIC) throw new Error(`lz4: bad magic 0x${magic.toString(16)}`);
    pos += 4;
    const flg = buf[pos];
    const bd = buf[pos + 1];
    pos += 2;
    if (flg >> 6 !== 1) throw new Error(`lz4: unsupported frame version ${flg >> 6}`);
    const blockChecksum = (flg & 0x10) !== 0;
    const contentSizePresent = (flg & 0x08) !== 0;
    const contentChecksum = (flg & 0x04) !== 0;
    const dictId = (flg & 0x01) !== 0;
    const blockMax = LZ4_BLOCK_MAX[(bd >> 4) & 7];
    if (!blockMax) throw new Error('lz4: bad block size');
    if (contentSizePresent) pos += 8;
    if (dictId) pos += 4;
    pos += 1; // header checksum

    // First pass: bound the output; second pass: decode into one buffer
    // (blocks may refer to earlier blocks of the frame).
    let bound = 0;
    let p = pos;
    for (;;) {
      const word = buf.readUInt32LE(p);
      p += 4;
      if (word === 0) break;
      const size = word & 0x7fffffff;
      bound += word & 0x80000000 ? size : blockMax;
      p += size + (blockChecksum ? 4 : 0);
    }
    const dst = Buffer.alloc(bound);
    let d = 0;
    for (;;) {
      const word = buf.readUInt32LE(pos);
      pos += 4;
      if (word === 0) break;
      const size = word & 0x7fffffff;
      if (word & 0x80000000) {
        buf.copy(dst, d, pos, pos + size);
        d += size;
      } else {
        d = lz4.decompressBlock(buf, dst, pos, size, d);
      }
      pos += size + (blockChecksum ? 4 : 0);
    }
    if (contentChecksum) pos += 4;
    out.push(dst.subarray(0, d));
  }
  return Buffer.concat(out);
}

// ---------------------------------------------------------------------------
// kafkajs set-up

const LEVEL_NAMES = {
  [logLevel.ERROR]: 'ERROR',
  [logLevel.WARN]: 'WARN',
  [logLevel.INFO]: 'INFO',
  [logLevel.DEBUG]: 'DEBUG',
};

// kafkajs's default logger writes info lines to stdout; this one writes
// everything to stderr.
const logCreator = () => ({ namespace, level, log }) => {
  const { message, timestamp, ...extra } = log;
  const rest = Object.keys(extra).length ? ' ' + JSON.stringify(extra) : '';
  process.stderr.write(
    `${timestamp} kafkajs ${LEVEL_NAMES[level] || level} [${namespace}] ${message}${rest}\n`
  );
};

function newKafka(opts) {
  const brokers = required(opts, 'bootstrap')
    .split(',')
    .map((b) => b.trim())
    .filter(Boolean);
  return new Kafka({
    clientId: 'pubg1-compat-kafkajs',
    brokers,
    logLevel: logLevel.WARN,
    logCreator,
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 10 },
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Deadline bookkeeping shared by the operations.
let deadline = 0;
const remainingMs = () => Math.max(0, deadline - Date.now());

// ---------------------------------------------------------------------------
// Records

function recordOut(partition, message) {
  const headers = [];
  for (const [name, value] of Object.entries(message.headers || {})) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) headers.push([name, v == null ? null : v.toString('utf8')]);
  }
  return {
    p: partition,
    o: Number(message.offset),
    k: message.key == null ? null : message.key.toString('utf8'),
    v: message.value == null ? null : message.value.toString('utf8'),
    h: headers,
    ts: Number(message.timestamp),
  };
}

// ---------------------------------------------------------------------------
// Operations

async function opMetadata(kafka, opts) {
  const topic = required(opts, 'topic');
  const admin = kafka.admin();
  await admin.connect();
  try {
    const cluster = await admin.describeCluster();
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    const t = md.topics.find((x) => x.name === topic);
    if (!t) throw new Error(`topic ${topic} not in metadata`);
    emit({
      brokers: cluster.brokers
        .map((b) => ({ id: b.nodeId, host: b.host, port: b.port }))
        .sort((a, b) => a.id - b.id),
      topic,
      partitions: t.partitions
        .map((p) => ({ p: p.partitionId, leader: p.leader }))
        .sort((a, b) => a.p - b.p),
    });
  } finally {
    await admin.disconnect();
  }
}

async function opCreate(kafka, opts) {
  const topic = required(opts, 'topic');
  const numPartitions = intArg(opts, 'partitions');
  const replicationFactor = intArg(opts, 'rf');
  const admin = kafka.admin();
  await admin.connect();
  try {
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions, replicationFactor }],
      waitForLeaders: true,
      timeout: Math.max(1000, remainingMs() - 1000),
    });
    if (!created) throw new Error(`topic ${topic} already exists`);
    emit({ created: topic });
  } finally {
    await admin.disconnect();
  }
}

async function opDelete(kafka, opts) {
  const topic = required(opts, 'topic');
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.deleteTopics({ topics: [topic], timeout: Math.max(1000, remainingMs() - 1000) });
    emit({ deleted: topic });
  } finally {
    await admin.disconnect();
  }
}

const COMPRESSION = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
};

// Records per send() of a produce without --delay-ms.
const PRODUCE_CHUNK = 500;

async function opProduce(kafka, opts) {
  const topic = required(opts, 'topic');
  const partition = intArg(opts, 'partition');
  const count = intArg(opts, 'count');
  const prefix = required(opts, 'prefix');
  const idempotent = opts.idempotent === true;
  let acks = intArg(opts, 'acks', -1);
  if (![0, 1, -1].includes(acks)) throw new UsageError(`--acks must be 0, 1 or -1, got ${acks}`);
  if (idempotent && acks !== -1) {
    diag(`--idempotent: using acks -1 instead of ${acks}`);
    acks = -1;
  }
  const compressionName = opts.compression || 'none';
  if (!(compressionName in COMPRESSION)) {
    throw new UsageError(`--compression must be one of ${Object.keys(COMPRESSION).join(', ')}`);
  }
  const compression = COMPRESSION[compressionName];
  if (codecErrors[compressionName]) {
    throw new Error(`${compressionName} codec unavailable: ${codecErrors[compressionName].message}`);
  }
  const tsBase = opts['timestamp-base'] === undefined ? undefined : intArg(opts, 'timestamp-base');
  const delayMs = opts['delay-ms'] === undefined ? undefined : intArg(opts, 'delay-ms');

  const message = (i) => ({
    partition,
    key: `${prefix}-key-${i}`,
    value: `${prefix}-value-${i}`,
    headers: { h1: String(i), h2: prefix },
    // Without a base the creation time, fixed now so that a retry does not
    // restamp the record.
    timestamp: String(tsBase === undefined ? Date.now() : tsBase + i),
  });

  const producer = kafka.producer({
    idempotent,
    maxInFlightRequests: idempotent ? 1 : undefined,
    // Retry through leader changes until the driver's own deadline.
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: Number.MAX_SAFE_INTEGER },
  });
  await producer.connect();

  // send produces records first..first+msgs.length-1 with one send() (one
  // record batch: kafkajs keeps them in order and retries them together)
  // and prints their acknowledgements.
  const send = async (first, msgs) => {
    const res = await producer.send({
      topic,
      acks,
      compression,
      timeout: 30000,
      messages: msgs,
    });
    let base = -1;
    if (acks !== 0) {
      const r = (res || []).find((x) => x.topicName === topic && x.partition === partition);
      if (!r || r.baseOffset === undefined) {
        throw new Error(`no acknowledgement for ${topic}/${partition}: ${JSON.stringify(res)}`);
      }
      if (r.errorCode) throw new Error(`produce error code ${r.errorCode}`);
      base = Number(r.baseOffset);
    }
    for (let j = 0; j < msgs.length; j++) {
      emit({ i: first + j, o: acks === 0 ? -1 : base + j });
    }
  };

  try {
    if (delayMs === undefined) {
      for (let first = 0; first < count; first += PRODUCE_CHUNK) {
        const n = Math.min(PRODUCE_CHUNK, count - first);
        const msgs = [];
        for (let j = 0; j < n; j++) msgs.push(message(first + j));
        await send(first, msgs);
      }
    } else {
      // A paced stream: a record is created every delayMs whatever the
      // acknowledgements do; the sender sends whatever has been created
      // since its last send (up to PRODUCE_CHUNK records) as one batch, one
      // send at a time, so the records stay in order when kafkajs retries
      // through a leader change.
      const pending = [];
      let created = 0;
      let wake = null;
      const notify = () => {
        if (wake) {
          const w = wake;
          wake = null;
          w();
        }
      };
      let pacerError = null;
      const pacer = (async () => {
        try {
          for (let i = 0; i < count; i++) {
            if (i > 0 && delayMs > 0) await sleep(delayMs);
            pending.push(message(i));
            created++;
            notify();
          }
        } catch (e) {
          pacerError = e;
          notify();
        }
      })();
      let sent = 0;
      while (sent < count) {
        if (pacerError) throw pacerError;
        if (pending.length === 0) {
          await new Promise((resolve) => {
            wake = resolve;
          });
          continue;
        }
        const batch = pending.splice(0, PRODUCE_CHUNK);
        await send(sent, batch);
        sent += batch.length;
      }
      await pacer;
      if (created !== count) throw new Error(`created ${created} of ${count} records`);
    }
  } finally {
    await producer.disconnect();
  }
}

// opProduceTxn runs one transaction per entry of --plan with a
// transactional producer: record i of transaction j (prefix X-j) goes to
// partition i mod --partitions; send() resolves once they are all
// acknowledged, and the transaction then commits or aborts.
async function opProduceTxn(kafka, opts) {
  const topic = required(opts, 'topic');
  const partitions = intArg(opts, 'partitions');
  const count = intArg(opts, 'count');
  const prefix = required(opts, 'prefix');
  const transactionalId = required(opts, 'transactional-id');
  const plan = required(opts, 'plan').split(',');
  for (const end of plan) {
    if (end !== 'commit' && end !== 'abort') {
      throw new UsageError(`--plan must list commit or abort, got ${end}`);
    }
  }
  const producer = kafka.producer({
    transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: 60000,
    // Retry until the driver's own deadline (fewer retries would put EoS at risk).
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: Number.MAX_SAFE_INTEGER },
  });
  await producer.connect();
  try {
    for (let j = 0; j < plan.length; j++) {
      const txnPrefix = `${prefix}-${j}`;
      const messages = [];
      for (let i = 0; i < count; i++) {
        messages.push({
          partition: i % partitions,
          key: `${txnPrefix}-key-${i}`,
          value: `${txnPrefix}-value-${i}`,
          headers: { h1: String(i), h2: txnPrefix },
        });
      }
      const txn = await producer.transaction();
      try {
        await txn.send({ topic, acks: -1, timeout: 30000, messages });
      } catch (e) {
        await txn.abort().catch((ae) => diag(`aborting transaction ${j} after a failed send:`, ae));
        throw new Error(`transaction ${j}: send: ${e.message}`);
      }
      if (plan[j] === 'commit') {
        await txn.commit();
      } else {
        await txn.abort();
      }
      emit({ txn: j, end: plan[j] });
    }
  } finally {
    await producer.disconnect();
  }
}

// resolveStart resolves --from for partition through ListOffsets. It
// returns the start offset, every partition of the topic and the connected
// admin client (the caller disconnects it).
async function resolveStart(kafka, topic, partition, from) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    const partitions = offsets.map((o) => o.partition);
    const mine = offsets.find((o) => o.partition === partition);
    if (!mine) throw new Error(`partition ${partition} of ${topic} not found`);
    let start;
    if (from === 'earliest') {
      start = Number(mine.low);
    } else if (from === 'latest') {
      start = Number(mine.high);
    } else if (/^\d+$/.test(from)) {
      start = Number(from);
    } else if (/^ts:-?\d+$/.test(from)) {
      const ts = Number(from.slice(3));
      const byTs = await admin.fetchTopicOffsetsByTimestamp(topic, ts);
      const p = byTs.find((o) => o.partition === partition);
      if (!p) throw new Error(`no offset for timestamp ${ts} in partition ${partition}`);
      // kafkajs gives the high watermark when no record is at or after ts.
      start = Number(p.offset);
    } else {
      throw new UsageError(`--from must be earliest, latest, an offset or ts:MS, got ${from}`);
    }
    return { start, partitions, admin };
  } catch (e) {
    await admin.disconnect();
    throw e;
  }
}

async function opConsume(kafka, opts) {
  const topic = required(opts, 'topic');
  const partition = intArg(opts, 'partition');
  const count = intArg(opts, 'count');
  const from = opts.from || 'earliest';

  // The start is resolved before joining anything, so "latest" means the
  // end of the partition when the driver started.
  const { start, partitions, admin } = await resolveStart(kafka, topic, partition, from);
  try {
    if (count <= 0) return;

    // kafkajs has no consumer without a group: a throwaway group with
    // nothing committed (autoCommit off), positioned by seek.
    const groupId = `pubg1-compat-kafkajs-${process.pid}-${Date.now()}-${Math.random()
      .toString(36)
      .slice(2, 8)}`;
    const consumer = kafka.consumer({
      groupId,
      // kafkajs reads at read_committed by default.
      ...(opts['read-committed'] ? { readUncommitted: false } : {}),
      sessionTimeout: 10000,
      rebalanceTimeout: 10000,
      heartbeatInterval: 1000,
      maxWaitTimeInMs: 500,
      allowAutoTopicCreation: false,
      retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 1000 },
    });
    let printed = 0;
    let finish;
    const finished = new Promise((resolve) => {
      finish = resolve;
    });
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      diag('consumer crashed:', payload.error);
      if (!payload.restart) fail(EXIT_FAIL, 'consumer stopped');
    });
    await consumer.connect();
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      const others = partitions.filter((p) => p !== partition);
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ partition: p, message, pause }) => {
          if (p !== partition || printed >= count) return;
          emit(recordOut(p, message));
          if (++printed >= count) {
            pause();
            finish();
          }
        },
      });
      if (others.length) consumer.pause([{ topic, partitions: others }]);
      consumer.seek({ topic, partition, offset: String(start) });
      await finished;
    } finally {
      await consumer.disconnect();
    }
    // Leave no trace of the throwaway group (best effort).
    try {
      await admin.deleteGroups([groupId]);
    } catch (e) {
      diag(`deleting throwaway group ${groupId}:`, e.message);
    }
  } finally {
    await admin.disconnect();
  }
}

async function opGroupConsume(kafka, opts) {
  const topic = required(opts, 'topic');
  const groupId = required(opts, 'group');
  const count = intArg(opts, 'count');

  const consumer = kafka.consumer({
    groupId,
    sessionTimeout: 10000,
    rebalanceTimeout: 10000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 500,
    allowAutoTopicCreation: false,
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 1000 },
  });
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    diag('consumer crashed:', payload.error);
    if (!payload.restart) fail(EXIT_FAIL, 'consumer stopped');
  });
  const last = new Map(); // partition -> last printed offset
  let printed = 0;
  let finish;
  const finished = new Promise((resolve) => {
    finish = resolve;
  });
  if (count <= 0) finish();

  await consumer.connect();
  let disconnected = false;
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message, pause }) => {
        if (printed >= count) {
          pause();
          return;
        }
        emit(recordOut(partition, message));
        last.set(partition, Number(message.offset));
        if (++printed >= count) {
          pause();
          finish();
        }
      },
    });
    await finished;

    const offsets = [...last.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([partition, offset]) => ({ topic, partition, offset: String(offset + 1) }));
    if (offsets.length) {
      // Synchronous commit, retried while the deadline allows (a
      // coordinator move or a rebalance makes it fail transiently).
      for (let attempt = 1; ; attempt++) {
        try {
          await consumer.commitOffsets(offsets);
          break;
        } catch (e) {
          if (remainingMs() < 500) throw e;
          diag(`commit attempt ${attempt} failed:`, e.message);
          await sleep(Math.min(1000, 100 * attempt));
        }
      }
    }
    await consumer.disconnect();
    disconnected = true;
  } finally {
    if (!disconnected) await consumer.disconnect().catch(() => {});
  }
}

async function opGroups(kafka, opts) {
  const groupId = required(opts, 'group');
  const admin = kafka.admin();
  await admin.connect();
  try {
    const { groups: listed } = await admin.listGroups();
    const { groups } = await admin.describeGroups([groupId]);
    const g = groups.find((x) => x.groupId === groupId);
    if (!g) throw new Error(`group ${groupId} missing from DescribeGroups response`);
    emit({
      listed: listed.map((x) => x.groupId).sort(),
      group: groupId,
      state: g.state,
      protocol_type: g.protocolType,
      members: g.members.map((m) => ({
        member_id: m.memberId,
        client_id: m.clientId,
        client_host: m.clientHost,
      })),
    });
  } finally {
    await admin.disconnect();
  }
}

const OPS = {
  metadata: opMetadata,
  create: opCreate,
  delete: opDelete,
  produce: opProduce,
  'produce-txn': opProduceTxn,
  consume: opConsume,
  'group-consume': opGroupConsume,
  groups: opGroups,
};

// ---------------------------------------------------------------------------

async function main() {
  let op, opts;
  try {
    ({ op, opts } = parseArgs(process.argv.slice(2)));
  } catch (e) {
    return fail(EXIT_USAGE, `driver.js: ${e.message}`);
  }
  const run = OPS[op];
  if (!run) {
    return fail(
      EXIT_USAGE,
      `usage: node driver.js {${Object.keys(OPS).join('|')}} --bootstrap HOST:PORT ...`
    );
  }

  let timeoutS;
  try {
    timeoutS = intArg(opts, 'timeout-s', 30);
  } catch (e) {
    return fail(EXIT_USAGE, `driver.js: ${e.message}`);
  }
  deadline = Date.now() + timeoutS * 1000;
  setTimeout(() => fail(EXIT_FAIL, `driver.js ${op}: timed out after ${timeoutS}s`), timeoutS * 1000);

  try {
    registerCodecs();
    const kafka = newKafka(opts);
    await run(kafka, opts);
  } catch (e) {
    if (e instanceof UsageError) return fail(EXIT_USAGE, `driver.js ${op}: ${e.message}`);
    return fail(EXIT_FAIL, `driver.js ${op} failed:`, e);
  }
  exit(EXIT_OK);
}

process.on('unhandledRejection', (e) => fail(EXIT_FAIL, 'unhandled rejection:', e));
process.on('uncaughtException', (e) => fail(EXIT_FAIL, 'uncaught exception:', e));

main();
