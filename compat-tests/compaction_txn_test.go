package compattests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestCompactedTransactionMarkers: on a compacted topic, transactions
// (committed and aborted) whose records were all superseded are cleaned
// up by compaction once delete.retention.ms has passed, as by Kafka's
// cleaner: on a single broker their markers are removed; on a cluster,
// whose replicated partitions keep their markers (see the README), the
// aborted ones leave the list read_committed fetches return. Either way
// every client of the matrix then reads the partition from the start, at
// read_committed where it can, and gets exactly the latest record of
// every key.
func TestCompactedTransactionMarkers(t *testing.T) {
	drivers := matrixDrivers(t)
	for _, setup := range []string{"single", "cluster"} {
		t.Run(setup, func(t *testing.T) {
			ctx := testContext(t, 4*time.Minute)
			const topic, keys, txns = "compacted-txn", 4, 6
			configs := map[string]*string{
				"cleanup.policy": kadm.StringPtr("compact"), "delete.retention.ms": kadm.StringPtr("0"),
				"min.cleanable.dirty.ratio": kadm.StringPtr("0.01"),
			}
			var leader *brokerProc
			var client func(opts ...kgo.Opt) *kgo.Client
			if setup == "single" {
				leader = startBroker(t, "--log-cleaner-backoff", "200ms")
				createTopic(ctx, t, newAdmin(t, leader), topic, 1, configs)
				client = func(opts ...kgo.Opt) *kgo.Client { return newClient(t, leader, opts...) }
			} else {
				c := startClusterWith(t, "--log-cleaner-backoff", "200ms")
				createClusterTopicWith(ctx, t, kadm.NewClient(c.client(nil)), topic, 1, 3, configs)
				leader = c.broker(c.waitLeadersEverywhere(ctx, topic, 1, nil)[0].Leader)
				client = func(opts ...kgo.Opt) *kgo.Client { return c.client(nil, opts...) }
			}
			want := writeSupersededTxns(ctx, t, client, topic, keys, txns)

			settled := func() (markers, aborted int) {
				for _, b := range storedBatches(t, leader, topic, 0) {
					if b.Attributes&attrControl != 0 {
						markers++
					}
				}
				return markers, len(abortedListed(t, leader, topic))
			}
			var markers, aborted int
			if !ktest.Until(ctx, pollEvery, func() bool {
				markers, aborted = settled()
				return aborted == 0 && (setup == "cluster" || markers == 0)
			}) {
				t.Fatalf("after compaction %d markers and %d aborted transactions are left", markers, aborted)
			}
			if setup == "cluster" && markers != txns {
				t.Errorf("%d markers, want the %d kept", markers, txns)
			}

			for _, name := range slices.Sorted(maps.Keys(drivers)) {
				t.Run(name, func(t *testing.T) {
					got := consumeLatest(ctx, t, drivers[name], opArgs{Bootstrap: leader.Addr(), Topic: topic, Timeout: opTimeout, From: "earliest", Count: len(want)}, markers)
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Errorf("read %v, want %v", got, want)
					}
				})
			}
		})
	}
}

// writeSupersededTxns writes txns transactions to partition 0 of topic,
// alternately committed and aborted, each with a record for keys k0..;
// then, without a transaction, a "final" record for each key and one for
// key "last" (the newest entry is never compacted). It returns the latest
// value of every key.
func writeSupersededTxns(ctx context.Context, t *testing.T, client func(...kgo.Opt) *kgo.Client, topic string, keys, txns int) map[string]string {
	t.Helper()
	txn := client(kgo.TransactionalID(topic+"-producer"), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for j := range txns {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var rs []*kgo.Record
		for k := range keys {
			rs = append(rs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", k)), Value: []byte(fmt.Sprintf("txn %d", j))})
		}
		if err := txn.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(j%2 == 0)); err != nil {
			t.Fatal(err)
		}
	}
	plain := client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	want := map[string]string{}
	write := func(key, value string) {
		t.Helper()
		if err := plain.ProduceSync(ctx, &kgo.Record{Key: []byte(key), Value: []byte(value)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		want[key] = value
	}
	for k := range keys {
		write(fmt.Sprintf("k%d", k), "final")
	}
	write("last", "stays")
	return want
}

// abortedListed is the aborted transactions a read_committed fetch of
// partition 0 of topic from offset 0 lists.
func abortedListed(t *testing.T, b *brokerProc, topic string) []kmsg.FetchResponseTopicPartitionAbortedTransaction {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(4)
	req.ReplicaID, req.MaxBytes, req.IsolationLevel = -1, 1<<20, 1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := requestTo(b.Addr(), req)
	if err != nil {
		t.Fatalf("read_committed fetch of %s: %v", topic, err)
	}
	fr := resp.(*kmsg.FetchResponse)
	if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 || fr.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("read_committed fetch of %s: %+v", topic, fr.Topics)
	}
	return fr.Topics[0].Partitions[0].AbortedTransactions
}

// consumeLatest has a client's driver read a.Count records from partition
// 0 of a.Topic, at read_committed unless the client cannot (then at
// read_uncommitted), and returns the value read for each key; a key read
// twice is an error. The clients without read_committed (kafka-go,
// kafka-python) also hand out the partition's markers, as records whose
// key is the marker's (version 0, then the type): they read that many
// more records, and those are left out.
func consumeLatest(ctx context.Context, t *testing.T, d driver, a opArgs, markers int) map[string]string {
	t.Helper()
	a.ReadCommitted = true
	var lines []recordLine
	err := d.run(ctx, t, "consume", a, func(raw json.RawMessage) {
		var l recordLine
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Errorf("decoding %s: %v", raw, err)
		}
		lines = append(lines, l)
	})
	if errors.Is(err, errUnsupported) {
		a.ReadCommitted = false
		a.Count += markers
		lines = slices.DeleteFunc(runOp[recordLine](ctx, t, d, "consume", a), func(l recordLine) bool {
			return l.K != nil && len(*l.K) == 4 && (*l.K)[:3] == "\x00\x00\x00" && ((*l.K)[3] == 0 || (*l.K)[3] == 1)
		})
	} else if err != nil {
		t.Fatalf("consume: %v", err)
	}
	got := map[string]string{}
	for _, l := range lines {
		if l.K == nil || l.V == nil {
			t.Errorf("record at %d without a key or value", l.O)
			continue
		}
		if _, dup := got[*l.K]; dup {
			t.Errorf("key %s read twice", *l.K)
		}
		got[*l.K] = *l.V
	}
	return got
}
