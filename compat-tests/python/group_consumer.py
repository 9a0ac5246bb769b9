#!/usr/bin/python3
"""A consumer group member for PubG1's compatibility tests.

Usage: group_consumer.py kafka-python|confluent BROKER GROUP TOPIC CLIENT_ID

It consumes TOPIC in GROUP from the earliest offset when the group has no
commit, printing one JSON line per record: {"p": partition, "o": offset}.
Offsets are committed automatically. On SIGTERM or SIGINT it closes the
consumer, which commits and leaves the group, and exits 0.
"""

import json
import signal
import sys

stopping = False


def on_signal(_signum, _frame):
    global stopping
    stopping = True


def emit(partition, offset):
    print(json.dumps({"p": partition, "o": offset}), flush=True)


def run_kafka_python(broker, group, topic, client_id):
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker,
        group_id=group,
        client_id=client_id,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=200,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    while not stopping:
        for records in consumer.poll(timeout_ms=100).values():
            for r in records:
                emit(r.partition, r.offset)
    consumer.close(autocommit=True)


def run_confluent(broker, group, topic, client_id):
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": group,
            "client.id": client_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            # librdkafka's incremental (KIP-429) rebalancing.
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )
    consumer.subscribe([topic])
    while not stopping:
        m = consumer.poll(0.1)
        if m is None:
            continue
        if m.error():
            print("consumer error: %s" % m.error(), file=sys.stderr, flush=True)
            continue
        emit(m.partition(), m.offset())
    consumer.close()


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    client, broker, group, topic, client_id = sys.argv[1:]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run = {"kafka-python": run_kafka_python, "confluent": run_confluent}.get(client)
    if run is None:
        sys.exit("unknown client %r\n%s" % (client, __doc__))
    run(broker, group, topic, client_id)


if __name__ == "__main__":
    main()
