package compattests

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// readToEnd reads partition 0 of topic from the start up to its current
// end offset (compacted logs have gaps, so the count is unknown).
func readToEnd(ctx context.Context, t *testing.T, b *brokerProc, topic string) []*kgo.Record {
	t.Helper()
	adm := newAdmin(t, b)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	if end.Offset == 0 {
		return nil
	}
	cl := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	defer cl.Close()
	var got []*kgo.Record
	for len(got) == 0 || got[len(got)-1].Offset < end.Offset-1 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s to %d: %v", topic, end.Offset, ctx.Err())
		}
		if err := fs.Err(); err != nil {
			t.Fatalf("reading %s: %v", topic, err)
		}
		got = append(got, fs.Records()...)
	}
	return got
}

// TestCompaction: a cleanup.policy=compact topic keeps the latest record of
// every key at its original offset and drops expired tombstones, and
// __consumer_offsets is compacted down to the latest commit, which a
// restarted broker still serves.
func TestCompaction(t *testing.T) {
	b := startGroupBroker(t, "--log-cleaner-backoff", "200ms", "--offsets-topic-partitions", "1")
	ctx := testContext(t, 2*time.Minute)
	adm := newAdmin(t, b)
	const topic, keys, rounds = "compacted", 10, 20
	createTopic(ctx, t, adm, topic, 1, map[string]*string{
		"cleanup.policy": kadm.StringPtr("compact"), "delete.retention.ms": kadm.StringPtr("0"),
	})
	cl := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce := func(rs ...*kgo.Record) {
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Kafka refuses records without a key on a compacted topic.
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("no key")}).FirstErr(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("producing a record without a key to a compacted topic: %v, want INVALID_RECORD", err)
	}
	want := map[string]string{} // key -> value of its latest record
	for r := range rounds {
		var rs []*kgo.Record
		for k := range keys {
			key, value := fmt.Sprintf("k%d", k), fmt.Sprintf("round %d", r)
			rs = append(rs, &kgo.Record{Key: []byte(key), Value: []byte(value)})
			want[key] = value
		}
		produce(rs...) // one batch per round
	}
	produce(&kgo.Record{Key: []byte("k3")}) // a tombstone
	delete(want, "k3")
	produce(&kgo.Record{Key: []byte("last"), Value: []byte("stays uncompacted")})
	want["last"] = "stays uncompacted"
	total := rounds*keys + 2

	var got []*kgo.Record
	if !ktest.Until(ctx, pollEvery, func() bool {
		got = readToEnd(ctx, t, b, topic)
		return len(got) < total/2
	}) {
		t.Fatalf("the compacted topic still holds %d of %d records", len(got), total)
	}
	ktest.Until(ctx, pollEvery, func() bool { // compaction may run in steps
		got = readToEnd(ctx, t, b, topic)
		return len(got) == len(want)
	})
	seen := map[string]bool{}
	for _, r := range got {
		k := string(r.Key)
		if seen[k] || want[k] != string(r.Value) || r.Value == nil {
			t.Errorf("after compaction: offset %d key %q value %q (want one record per key, the latest; no tombstone)", r.Offset, r.Key, r.Value)
		}
		seen[k] = true
		if k == "last" && r.Offset != int64(total-1) {
			t.Errorf("the last record moved from offset %d to %d", total-1, r.Offset)
		}
		if k != "last" && r.Offset != int64((rounds-1)*keys+int(k[1]-'0')) {
			t.Errorf("key %s's latest record moved to offset %d", k, r.Offset)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("after compaction %d keys are left, want %d: %v", len(seen), len(want), seen)
	}

	// __consumer_offsets: many commits of one group compact to the latest.
	const group = "compaction-group"
	for i := range 200 {
		var offs kadm.Offsets
		offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: int64(i), LeaderEpoch: -1})
		if resp, err := adm.CommitOffsets(ctx, group, offs); err != nil || resp.Error() != nil {
			t.Fatalf("commit %d: %v %v", i, err, resp.Error())
		}
	}
	var offsetsLog []*kgo.Record
	if !ktest.Until(ctx, pollEvery, func() bool {
		offsetsLog = readToEnd(ctx, t, b, "__consumer_offsets")
		return len(offsetsLog) < 10
	}) {
		t.Fatalf("__consumer_offsets still holds %d records after 200 commits of one offset", len(offsetsLog))
	}
	t.Logf("__consumer_offsets holds %d records after 200 commits", len(offsetsLog))
	b.Stop()
	b.Restart()
	adm = newAdmin(t, b)
	fetched, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := fetched.Lookup(topic, 0); !ok || o.At != 199 {
		t.Fatalf("after compaction and a restart the group's offset is %+v, want 199", o)
	}
}
