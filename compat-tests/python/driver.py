#!/usr/bin/python3
"""The Python client driver of PubG1's compatibility matrix (see ../DRIVERS.md).

Usage: driver.py kafka-python|confluent OP --name value ... [--flag]

OP is one of:
  metadata      --bootstrap B --topic T
  create        --bootstrap B --topic T --partitions N --rf R
  delete        --bootstrap B --topic T
  produce       --bootstrap B --topic T --partition P --count N --prefix X
                --acks A --compression C [--timestamp-base MS]
                [--idempotent] [--delay-ms D]
  produce-txn   --bootstrap B --topic T --partitions P --count N --prefix X
                --transactional-id ID --plan commit,abort,...
  consume       --bootstrap B --topic T --partition P --from F --count N
                [--read-committed]
  group-consume --bootstrap B --topic T --group G --count N
  groups        --bootstrap B --group G
Every operation also takes --timeout-s S (default 30).

kafka-python is the Debian python3-kafka (2.0.2, module kafka); it needs
python3-snappy, python3-lz4 and python3-zstandard for those codecs.
confluent is the Debian python3-confluent-kafka (1.7.0, module
confluent_kafka) on librdkafka.

Results are JSON lines on stdout, diagnostics and client logs go to stderr.
Exit status: 0 done, 1 failed or timed out, 2 bad usage, 3 the client cannot
do what was asked (the reason is on stderr).
"""

import json
import logging
import os
import sys
import threading
import time

# Serializes result lines, so that a timeout never cuts one in half.
out_lock = threading.Lock()

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


class Unsupported(Exception):
    """The client cannot do what was asked at all (exit 3)."""


class Failed(Exception):
    """The operation failed (exit 1)."""


def emit(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def log(msg):
    print("driver: %s" % msg, file=sys.stderr, flush=True)


class Args:
    """--name value pairs; a --name without a value is a boolean flag."""

    def __init__(self, argv):
        self.values = {}
        i = 0
        while i < len(argv):
            name = argv[i]
            if not name.startswith("--") or len(name) == 2:
                raise ValueError("unexpected argument %r" % name)
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                self.values[name[2:]] = argv[i + 1]
                i += 2
            else:
                self.values[name[2:]] = True
                i += 1

    def str(self, name, default=None):
        v = self.values.get(name, default)
        if v is None or v is True:
            raise ValueError("--%s needs a value" % name)
        return v

    def int(self, name, default=None):
        return int(self.str(name, None if default is None else str(default)))

    def flag(self, name):
        return self.values.get(name) is True

    def has(self, name):
        return name in self.values


class Deadline:
    def __init__(self, seconds):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self):
        return max(0.0, self.at - time.monotonic())

    def left_ms(self):
        return int(self.left() * 1000)

    def over(self):
        return time.monotonic() >= self.at


def start_watchdog(seconds):
    """Exit 1 once the timeout has passed, whatever the client is doing.

    The operation's own loops stop at their deadline, a little earlier, so
    that they can close the client and say why they failed.
    """

    def expire():
        out_lock.acquire(timeout=2)
        log("timed out after %gs" % seconds)
        sys.stderr.flush()
        os._exit(1)

    t = threading.Timer(seconds, expire)
    t.daemon = True
    t.start()


def text(b):
    if b is None:
        return None
    if isinstance(b, str):
        return b
    return bytes(b).decode("utf-8", errors="replace")


def record_line(partition, offset, key, value, headers, ts):
    return {
        "p": partition,
        "o": offset,
        "k": text(key),
        "v": text(value),
        "h": [[k, text(v)] for k, v in (headers or [])],
        "ts": ts,
    }


def record_shape(prefix, i, ts_base):
    """Key, value, headers and timestamp (None: the client's default) of record i."""
    key = ("%s-key-%d" % (prefix, i)).encode()
    value = ("%s-value-%d" % (prefix, i)).encode()
    headers = [("h1", str(i).encode()), ("h2", prefix.encode())]
    ts = None if ts_base is None else ts_base + i
    return key, value, headers, ts


def parse_from(spec):
    """earliest, latest, an offset or ts:MS -> (kind, number)."""
    if spec in ("earliest", "latest"):
        return spec, None
    if spec.startswith("ts:"):
        return "ts", int(spec[3:])
    return "offset", int(spec)


def produce_params(a):
    acks = a.int("acks", -1)
    if acks not in (0, 1, -1):
        raise ValueError("--acks must be 0, 1 or -1")
    compression = a.str("compression", "none")
    if compression not in CODECS:
        raise ValueError("--compression must be one of %s" % ", ".join(CODECS))
    ts_base = a.int("timestamp-base") if a.has("timestamp-base") else None
    delay_ms = a.int("delay-ms") if a.has("delay-ms") else None
    return acks, compression, ts_base, delay_ms


def txn_params(a):
    """produce-txn's arguments: topic, partitions, count, prefix, ID, plan."""
    plan = a.str("plan").split(",")
    for end in plan:
        if end not in ("commit", "abort"):
            raise ValueError("--plan must list commit or abort, got %r" % end)
    return (a.str("topic"), a.int("partitions"), a.int("count"), a.str("prefix"),
            a.str("transactional-id"), [end == "commit" for end in plan])


class Acks:
    """Counts acknowledgements and failures of a produce; thread-safe."""

    def __init__(self, count):
        self.count = count
        self.acked = 0
        self.failed = 0
        self.lock = threading.Lock()

    def ok(self, i, offset):
        with self.lock:
            self.acked += 1
        emit({"i": i, "o": offset if offset is not None and offset >= 0 else -1})

    def fail(self, i, err):
        with self.lock:
            self.failed += 1
        log("record %d not delivered: %s" % (i, err))

    def done(self):
        with self.lock:
            return self.acked + self.failed >= self.count


def pace(deadline, delay_ms, i, started, serve):
    """Wait until record i+1 is due (started + (i+1)*delay), serving the client."""
    due = started + (i + 1) * delay_ms / 1000.0
    while not deadline.over():
        left = due - time.monotonic()
        if left <= 0:
            return
        serve(min(left, deadline.left()))


# ---------------------------------------------------------------- kafka-python


class KafkaPython:
    def __init__(self, a, deadline):
        self.a = a
        self.deadline = deadline
        self.bootstrap = a.str("bootstrap").split(",")

    def common(self):
        return {
            "bootstrap_servers": self.bootstrap,
            "client_id": "pubg1-driver-kafka-python",
            "api_version_auto_timeout_ms": max(2000, min(10000, self.deadline.left_ms())),
        }

    def admin(self):
        from kafka import KafkaAdminClient

        return KafkaAdminClient(request_timeout_ms=max(1000, self.deadline.left_ms()), **self.common())

    def metadata(self):
        from kafka.errors import for_code

        topic = self.a.str("topic")
        admin = self.admin()
        try:
            while True:
                err = None
                (t,) = admin.describe_topics([topic])
                if t["error_code"] != 0:
                    err = for_code(t["error_code"]).__name__
                elif not t["partitions"]:
                    err = "no partitions"
                else:
                    for p in t["partitions"]:
                        if p["error_code"] not in (0, 9):  # 9: REPLICA_NOT_AVAILABLE
                            err = "partition %d: %s" % (p["partition"], for_code(p["error_code"]).__name__)
                if err is None:
                    break
                if self.deadline.left() < 0.5:
                    raise Failed("metadata of %s: %s" % (topic, err))
                log("metadata of %s: %s; retrying" % (topic, err))
                time.sleep(0.25)
            cluster = admin.describe_cluster()
        finally:
            admin.close()
        brokers = sorted(
            ({"id": b["node_id"], "host": b["host"], "port": b["port"]} for b in cluster["brokers"]),
            key=lambda b: b["id"],
        )
        parts = sorted(({"p": p["partition"], "leader": p["leader"]} for p in t["partitions"]), key=lambda p: p["p"])
        emit({"brokers": brokers, "topic": topic, "partitions": parts})

    def create(self):
        from kafka.admin import NewTopic
        from kafka.errors import for_code

        topic = self.a.str("topic")
        nt = NewTopic(topic, self.a.int("partitions"), self.a.int("rf"))
        admin = self.admin()
        try:
            resp = admin.create_topics([nt], timeout_ms=max(1000, self.deadline.left_ms() - 1000))
        finally:
            admin.close()
        for t in resp.topic_errors:
            if t[1] != 0:
                raise Failed("create %s: %s %s" % (t[0], for_code(t[1]).__name__, t[2] if len(t) > 2 else ""))
        emit({"created": topic})

    def delete(self):
        from kafka.errors import for_code

        topic = self.a.str("topic")
        admin = self.admin()
        try:
            resp = admin.delete_topics([topic], timeout_ms=max(1000, self.deadline.left_ms() - 1000))
        finally:
            admin.close()
        for t in resp.topic_error_codes:
            if t[1] != 0:
                raise Failed("delete %s: %s" % (t[0], for_code(t[1]).__name__))
        emit({"deleted": topic})

    def produce(self):
        from kafka import KafkaProducer
        from kafka import codec

        a = self.a
        acks, compression, ts_base, delay_ms = produce_params(a)
        if a.flag("idempotent"):
            raise Unsupported("kafka-python 2.0.2 has no idempotent producer (no enable_idempotence, never sends InitProducerId)")
        need = {
            "snappy": (codec.has_snappy, "python3-snappy"),
            "lz4": (codec.has_lz4, "python3-lz4"),
            "zstd": (codec.has_zstd, "python3-zstandard"),
        }
        if compression in need and not need[compression][0]():
            raise Unsupported("kafka-python needs the %s package for %s" % (need[compression][1], compression))
        topic, partition, count, prefix = a.str("topic"), a.int("partition"), a.int("count"), a.str("prefix")

        paced = delay_ms is not None
        producer = KafkaProducer(
            acks=acks,
            compression_type=None if compression == "none" else compression,
            # Retried batches stay in order with one request in flight.
            retries=1000000,
            max_in_flight_requests_per_connection=1,
            retry_backoff_ms=100,
            # kafka-python 2.0.2 has no delivery.timeout.ms: a batch waiting
            # for a leader expires after request_timeout_ms.
            request_timeout_ms=max(60000 if paced else 30000, self.deadline.left_ms()),
            max_block_ms=max(1000, self.deadline.left_ms()),
            linger_ms=0 if paced else 5,
            reconnect_backoff_max_ms=500,
            metadata_max_age_ms=10000,
            **self.common()
        )
        acked = Acks(count)
        try:
            started = time.monotonic()
            for i in range(count):
                if self.deadline.over():
                    raise Failed("sent only %d of %d records in time" % (i, count))
                key, value, headers, ts = record_shape(prefix, i, ts_base)
                fut = producer.send(topic, value=value, key=key, headers=headers, partition=partition, timestamp_ms=ts)
                fut.add_callback(lambda md, i=i: acked.ok(i, md.offset))
                fut.add_errback(lambda e, i=i: acked.fail(i, e))
                if paced:
                    pace(self.deadline, delay_ms, i, started, time.sleep)
            producer.flush(timeout=self.deadline.left())
            while not acked.done() and not self.deadline.over():
                time.sleep(0.01)
        finally:
            producer.close(timeout=min(5, self.deadline.left()))
        if acked.failed or acked.acked != count:
            raise Failed("%d of %d records acknowledged, %d failed" % (acked.acked, count, acked.failed))

    def produce_txn(self):
        raise Unsupported("kafka-python 2.0.2 has no transactional producer (no transactional_id)")

    def consumer(self, **extra):
        from kafka import KafkaConsumer

        # request_timeout_ms also bounds offsets_for_times and must exceed
        # the session timeout.
        return KafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=max(15000, self.deadline.left_ms()),
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
            reconnect_backoff_max_ms=500,
            **extra,
            **self.common()
        )

    def consume(self):
        from kafka import TopicPartition

        if self.a.flag("read-committed"):
            raise Unsupported("kafka-python 2.0.2 always fetches at read_uncommitted (it has no isolation_level)")
        topic, partition, count = self.a.str("topic"), self.a.int("partition"), self.a.int("count")
        kind, n = parse_from(self.a.str("from"))
        tp = TopicPartition(topic, partition)
        consumer = self.consumer(group_id=None)
        try:
            consumer.assign([tp])
            if kind == "earliest":
                consumer.seek_to_beginning(tp)
            elif kind == "latest":
                consumer.seek_to_end(tp)
            elif kind == "offset":
                consumer.seek(tp, n)
            else:
                found = consumer.offsets_for_times({tp: n}).get(tp)
                if found is None:  # no record at or after n yet
                    consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, found.offset)
            # Resolve the start now (ListOffsets), before any record arrives.
            log("consuming %s/%d from offset %d" % (topic, partition, consumer.position(tp)))
            printed = 0
            while printed < count and not self.deadline.over():
                polled = consumer.poll(timeout_ms=min(500, max(1, self.deadline.left_ms())), max_records=count - printed)
                for records in polled.values():
                    for r in records:
                        emit(record_line(r.partition, r.offset, r.key, r.value, r.headers, r.timestamp))
                        printed += 1
            if printed < count:
                raise Failed("consumed %d of %d records" % (printed, count))
        finally:
            consumer.close(autocommit=False)

    def group_consume(self):
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        topic, group, count = self.a.str("topic"), self.a.str("group"), self.a.int("count")
        consumer = self.consumer(group_id=group)
        try:
            consumer.subscribe([topic])
            printed = 0
            last = {}
            while printed < count and not self.deadline.over():
                polled = consumer.poll(timeout_ms=min(500, max(1, self.deadline.left_ms())), max_records=count - printed)
                for records in polled.values():
                    for r in records:
                        emit(record_line(r.partition, r.offset, r.key, r.value, r.headers, r.timestamp))
                        last[r.partition] = r.offset
                        printed += 1
            if printed < count:
                raise Failed("consumed %d of %d records" % (printed, count))
            offsets = {TopicPartition(topic, p): OffsetAndMetadata(o + 1, "") for p, o in last.items()}
            consumer.commit(offsets)
            log("committed %s" % {p: o + 1 for p, o in last.items()})
        finally:
            consumer.close(autocommit=False)

    def groups(self):
        group = self.a.str("group")
        admin = self.admin()
        try:
            listed = sorted({g[0] for g in admin.list_consumer_groups()})
            (desc,) = admin.describe_consumer_groups([group])
        finally:
            admin.close()
        members = [{"member_id": m.member_id, "client_id": m.client_id, "client_host": m.client_host} for m in desc.members]
        emit({"listed": listed, "group": desc.group, "state": desc.state, "protocol_type": desc.protocol_type, "members": members})


# ----------------------------------------------------------------- confluent


class Confluent:
    def __init__(self, a, deadline):
        self.a = a
        self.deadline = deadline
        self.bootstrap = a.str("bootstrap")

    def common(self):
        return {
            "bootstrap.servers": self.bootstrap,
            "client.id": "pubg1-driver-confluent",
            "reconnect.backoff.max.ms": 500,
        }

    def admin(self):
        from confluent_kafka.admin import AdminClient

        conf = dict(self.common())
        # Metadata of an unknown topic must not create it (the librdkafka
        # default for a producer-type handle is to ask for creation).
        conf["allow.auto.create.topics"] = False
        return AdminClient(conf)

    def metadata(self):
        topic = self.a.str("topic")
        admin = self.admin()
        while True:
            md = admin.list_topics(topic=topic, timeout=max(0.5, self.deadline.left()))
            t = md.topics.get(topic)
            err = None
            if t is None:
                err = "not in the response"
            elif t.error is not None:
                err = t.error.str()
            elif not t.partitions:
                err = "no partitions"
            else:
                for p in t.partitions.values():
                    if p.error is not None and p.error.code() != 9:  # REPLICA_NOT_AVAILABLE
                        err = "partition %d: %s" % (p.id, p.error.str())
            if err is None:
                break
            if self.deadline.left() < 0.5:
                raise Failed("metadata of %s: %s" % (topic, err))
            log("metadata of %s: %s; retrying" % (topic, err))
            time.sleep(0.25)
        brokers = [{"id": b.id, "host": b.host, "port": b.port} for _, b in sorted(md.brokers.items())]
        parts = [{"p": p.id, "leader": p.leader} for _, p in sorted(t.partitions.items())]
        emit({"brokers": brokers, "topic": topic, "partitions": parts})

    def create(self):
        from confluent_kafka.admin import NewTopic

        topic = self.a.str("topic")
        nt = NewTopic(topic, num_partitions=self.a.int("partitions"), replication_factor=self.a.int("rf"))
        self.admin_wait("create", topic, lambda admin, **t: admin.create_topics([nt], **t))
        emit({"created": topic})

    def delete(self):
        topic = self.a.str("topic")
        self.admin_wait("delete", topic, lambda admin, **t: admin.delete_topics([topic], **t))
        emit({"deleted": topic})

    def admin_wait(self, what, topic, call):
        """Runs one topic admin call and waits for its future."""
        wait = max(1.0, self.deadline.left() - 1)
        admin = self.admin()  # the futures fail once the handle is freed
        futures = call(admin, operation_timeout=wait, request_timeout=wait)
        try:
            futures[topic].result(timeout=self.deadline.left())
        except Exception as e:
            raise Failed("%s %s: %s" % (what, topic, e))

    def produce(self):
        from confluent_kafka import KafkaException, Producer

        a = self.a
        acks, compression, ts_base, delay_ms = produce_params(a)
        idempotent = a.flag("idempotent")
        topic, partition, count, prefix = a.str("topic"), a.int("partition"), a.int("count"), a.str("prefix")
        paced = delay_ms is not None
        conf = dict(self.common())
        conf.update(
            {
                "acks": "-1" if idempotent else str(acks),
                "compression.type": compression,
                "enable.idempotence": idempotent,
                # message.timeout.ms is librdkafka's delivery.timeout.ms.
                "message.timeout.ms": max(120000 if paced else 30000, self.deadline.left_ms()),
                "retries": 2147483647,
                "retry.backoff.ms": 100,
                "linger.ms": 0 if paced else 50,
                "topic.metadata.refresh.interval.ms": 10000,
            }
        )
        if not idempotent:
            # Retried batches stay in order with one request in flight.
            conf["max.in.flight.requests.per.connection"] = 1
        try:
            producer = Producer(conf)
        except KafkaException as e:
            if "compression" in str(e):
                raise Unsupported("librdkafka %s: %s" % (compression, e))
            raise
        acked = Acks(count)

        def on_delivery(err, msg, i):
            if err is not None:
                acked.fail(i, err)
            else:
                acked.ok(i, msg.offset())

        started = time.monotonic()
        for i in range(count):
            if self.deadline.over():
                raise Failed("sent only %d of %d records in time" % (i, count))
            key, value, headers, ts = record_shape(prefix, i, ts_base)
            kw = {} if ts is None else {"timestamp": ts}
            while True:
                try:
                    producer.produce(
                        topic,
                        value=value,
                        key=key,
                        partition=partition,
                        headers=headers,
                        on_delivery=lambda err, msg, i=i: on_delivery(err, msg, i),
                        **kw
                    )
                    break
                except BufferError:  # local queue full
                    if self.deadline.over():
                        raise Failed("local queue full until the deadline")
                    producer.poll(0.05)
            producer.poll(0)
            if paced:
                pace(self.deadline, delay_ms, i, started, producer.poll)
        while not acked.done() and not self.deadline.over():
            producer.flush(min(0.5, self.deadline.left()))
        if acked.failed or acked.acked != count:
            raise Failed("%d of %d records acknowledged, %d failed" % (acked.acked, count, acked.failed))

    def produce_txn(self):
        from confluent_kafka import Producer

        topic, partitions, count, prefix, txn_id, plan = txn_params(self.a)
        conf = dict(self.common())
        conf.update(
            {
                "transactional.id": txn_id,
                "enable.idempotence": True,
                "acks": "-1",
                "transaction.timeout.ms": 60000,
                # librdkafka wants it no longer than the transaction timeout.
                "message.timeout.ms": 30000,
                "linger.ms": 5,
            }
        )
        producer = Producer(conf)
        producer.init_transactions(max(0.5, self.deadline.left()))
        for j, commit in enumerate(plan):
            producer.begin_transaction()
            acked = []
            failed = []

            def on_delivery(err, msg, i):
                (acked if err is None else failed).append((i, err))

            for i in range(count):
                key, value, headers, _ = record_shape("%s-%d" % (prefix, j), i, None)
                producer.produce(
                    topic,
                    value=value,
                    key=key,
                    partition=i % partitions,
                    headers=headers,
                    on_delivery=lambda err, msg, i=i: on_delivery(err, msg, i),
                )
                producer.poll(0)
            # Every record acknowledged before the transaction ends, so that
            # an aborted transaction's records are in the log too.
            while len(acked) + len(failed) < count and not self.deadline.over():
                producer.flush(min(0.5, self.deadline.left()))
            if failed or len(acked) != count:
                raise Failed("transaction %d: %d of %d records acknowledged, failures: %s" % (j, len(acked), count, failed[:5]))
            if commit:
                producer.commit_transaction(max(0.5, self.deadline.left()))
            else:
                producer.abort_transaction(max(0.5, self.deadline.left()))
            emit({"txn": j, "end": "commit" if commit else "abort"})

    def consumer(self, group, **extra):
        from confluent_kafka import Consumer

        conf = dict(self.common())
        conf.update(
            {
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
            }
        )
        conf.update(extra)
        return Consumer(conf)

    def poll_records(self, consumer, count, on_record):
        printed = 0
        while printed < count and not self.deadline.over():
            m = consumer.poll(min(0.5, self.deadline.left()))
            if m is None:
                continue
            if m.error():
                log("consumer error: %s" % m.error())
                if m.error().fatal():
                    raise Failed("fatal consumer error: %s" % m.error())
                continue
            emit(record_line(m.partition(), m.offset(), m.key(), m.value(), m.headers(), m.timestamp()[1]))
            on_record(m)
            printed += 1
        if printed < count:
            raise Failed("consumed %d of %d records" % (printed, count))

    def consume(self):
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        topic, partition, count = self.a.str("topic"), self.a.int("partition"), self.a.int("count")
        kind, n = parse_from(self.a.str("from"))
        # librdkafka wants a group.id even for assign(); this one never
        # joins, commits or subscribes.
        extra = {}
        if self.a.flag("read-committed"):
            extra["isolation.level"] = "read_committed"  # librdkafka's default too
        consumer = self.consumer("pubg1-driver-unused-%d" % os.getpid(), **extra)
        try:
            if kind == "earliest":
                start = OFFSET_BEGINNING
            elif kind == "latest":
                # Resolve the end now (ListOffsets), before any record arrives.
                _, start = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=max(0.5, self.deadline.left()), cached=False
                )
            elif kind == "offset":
                start = n
            else:
                (found,) = consumer.offsets_for_times(
                    [TopicPartition(topic, partition, n)], timeout=max(0.5, self.deadline.left())
                )
                if found.error is not None:
                    raise Failed("offsets_for_times(%d): %s" % (n, found.error))
                # -1 (no record at or after n) is OFFSET_END.
                start = found.offset
            log("consuming %s/%d from offset %d" % (topic, partition, start))
            consumer.assign([TopicPartition(topic, partition, start)])
            self.poll_records(consumer, count, lambda m: None)
        finally:
            consumer.close()

    def group_consume(self):
        from confluent_kafka import TopicPartition

        topic, group, count = self.a.str("topic"), self.a.str("group"), self.a.int("count")
        consumer = self.consumer(group)
        try:
            consumer.subscribe([topic])
            last = {}

            def track(m):
                last[m.partition()] = m.offset()

            self.poll_records(consumer, count, track)
            offsets = [TopicPartition(topic, p, o + 1) for p, o in sorted(last.items())]
            for tp in consumer.commit(offsets=offsets, asynchronous=False):
                if tp.error is not None:
                    raise Failed("commit %s/%d: %s" % (tp.topic, tp.partition, tp.error))
            log("committed %s" % {p: o + 1 for p, o in last.items()})
        finally:
            consumer.close()

    def groups(self):
        group = self.a.str("group")
        # Without a group, list_groups lists (ListGroups to every broker) and
        # describes (DescribeGroups) all groups.
        groups = self.admin().list_groups(timeout=max(0.5, self.deadline.left()))
        listed = sorted({g.id for g in groups})
        desc = [g for g in groups if g.id == group]
        if not desc:
            raise Failed("group %s is not listed (listed: %s)" % (group, listed))
        g = desc[0]
        if g.error is not None:
            raise Failed("describe %s: %s" % (group, g.error))
        members = [{"member_id": m.id, "client_id": m.client_id, "client_host": m.client_host} for m in g.members]
        emit({"listed": listed, "group": g.id, "state": g.state, "protocol_type": g.protocol_type, "members": members})


CLIENTS = {"kafka-python": KafkaPython, "confluent": Confluent}
OPS = {
    "metadata": "metadata",
    "create": "create",
    "delete": "delete",
    "produce": "produce",
    "produce-txn": "produce_txn",
    "consume": "consume",
    "group-consume": "group_consume",
    "groups": "groups",
}


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if len(sys.argv) < 3 or sys.argv[1] not in CLIENTS or sys.argv[2] not in OPS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        a = Args(sys.argv[3:])
        timeout = float(a.str("timeout-s", "30"))
    except ValueError as e:
        print("%s\n%s" % (e, __doc__), file=sys.stderr)
        sys.exit(2)
    start_watchdog(timeout)
    deadline = Deadline(timeout - min(1.0, timeout / 10))
    client = CLIENTS[sys.argv[1]](a, deadline)
    try:
        getattr(client, OPS[sys.argv[2]])()
    except Unsupported as e:
        log("not supported: %s" % e)
        sys.exit(3)
    except ValueError as e:
        log(str(e))
        sys.exit(2)
    except Failed as e:
        log(str(e))
        sys.exit(1)
    except Exception as e:
        log("%s: %s" % (type(e).__name__, e))
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
