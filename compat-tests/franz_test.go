package compattests

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// codecs are the compression codecs Kafka knows, with the batch attribute
// bits each one sets.
var codecs = []struct {
	name  string
	codec kgo.CompressionCodec
	bits  uint8
}{
	{"none", kgo.NoCompression(), 0},
	{"gzip", kgo.GzipCompression(), 1},
	{"snappy", kgo.SnappyCompression(), 2},
	{"lz4", kgo.Lz4Compression(), 3},
	{"zstd", kgo.ZstdCompression(), 4},
}

// TestFranzGo produces with every codec and reads back through franz-go, and
// drives the topic admin APIs through kadm.
func TestFranzGo(t *testing.T) {
	// Without auto-creation a deleted topic stays gone when asked about.
	b := startBroker(t, "--no-auto-create-topics")
	adm := newAdmin(t, b)

	for i, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			ctx := testContext(t, time.Minute)
			topic := "franz-" + c.name
			const partitions = 3
			createTopic(ctx, t, adm, topic, partitions, nil)

			recs := makeRecords(uint64(i+1), 500, partitions, time.Now().Add(-time.Hour))
			cl := newClient(t, b,
				kgo.ProducerBatchCompression(c.codec),
				kgo.RequiredAcks(kgo.AllISRAcks()),
				kgo.RecordPartitioner(kgo.ManualPartitioner()))
			produceAll(ctx, t, cl, topic, recs)

			got := consumeKgo(ctx, t, b, topic, fromStart(partitions), len(recs))
			converted := make([]gotRecord, len(got))
			for j, r := range got {
				if ct := r.Attrs.CompressionType(); ct != c.bits {
					t.Fatalf("record at %d/%d came from a batch with compression %d, want %d (%s)", r.Partition, r.Offset, ct, c.bits, c.name)
				}
				converted[j] = fromKgo(r)
			}
			checkRoundTrip(t, recs, converted)
		})
	}

	t.Run("admin", func(t *testing.T) {
		ctx := testContext(t, time.Minute)
		topic := "franz-admin"
		const partitions = 3
		created := createTopic(ctx, t, adm, topic, partitions, nil)

		recs := makeRecords(42, 300, partitions, time.Now().Add(-time.Hour))
		cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		produceAll(ctx, t, cl, topic, recs)
		counts := make(map[int32]int64)
		for _, r := range recs {
			counts[r.Partition]++
		}

		checkMetadata(ctx, t, b, adm, topic, created.ID, partitions)

		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatalf("ListStartOffsets: %v", err)
		}
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatalf("ListEndOffsets: %v", err)
		}
		for p := range int32(partitions) {
			checkListed(t, "start", starts, topic, p, 0)
			checkListed(t, "end", ends, topic, p, counts[p])
		}

		checkOffsetsByTime(ctx, t, adm, topic, recs, counts)
		checkTopicConfigs(ctx, t, adm, topic)

		// DeleteRecords moves partition 0's start; the others stay.
		const cut = 10
		dr, err := adm.DeleteRecords(ctx, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: cut}}})
		if err != nil {
			t.Fatalf("DeleteRecords: %v", err)
		}
		if r, ok := dr.Lookup(topic, 0); !ok || r.Err != nil || r.LowWatermark != cut {
			t.Fatalf("DeleteRecords to %d answered %+v (present %v)", cut, r, ok)
		}
		starts, err = adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatalf("ListStartOffsets after DeleteRecords: %v", err)
		}
		checkListed(t, "start after DeleteRecords", starts, topic, 0, cut)
		checkListed(t, "start after DeleteRecords", starts, topic, 1, 0)
		rest := consumeKgo(ctx, t, b, topic, map[int32]int64{0: cut}, int(counts[0]-cut))
		if rest[0].Offset != cut {
			t.Errorf("after DeleteRecords partition 0 reads from offset %d, want %d", rest[0].Offset, cut)
		}
		var kept []testRecord
		for _, r := range recs {
			if r.Partition == 0 && r.Offset >= cut {
				kept = append(kept, r)
			}
		}
		for i, r := range rest {
			if i < len(kept) && (r.Offset != kept[i].Offset || diffRecord(&kept[i], fromKgo(r)) != "") {
				t.Errorf("after DeleteRecords partition 0 position %d is offset %d, want the record produced at %d", i, r.Offset, kept[i].Offset)
			}
		}

		checkDeleteTopic(ctx, t, cl, adm, topic)
	})
}

// checkMetadata checks what ListTopics and Metadata say about the topic and
// the one broker.
func checkMetadata(ctx context.Context, t *testing.T, b *brokerProc, adm *kadm.Client, topic string, id kadm.TopicID, partitions int32) {
	t.Helper()
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	if md.Cluster == "" {
		t.Error("Metadata has no cluster ID")
	}
	if len(md.Brokers) != 1 || md.Brokers[0].Host != "127.0.0.1" || md.Brokers[0].Port != port(t, b.Addr()) {
		t.Fatalf("Metadata lists brokers %+v, want exactly the one at %s", md.Brokers, b.Addr())
	}
	node := md.Brokers[0].NodeID
	if md.Controller != node {
		t.Errorf("Metadata names controller %d, want the only broker %d", md.Controller, node)
	}
	listed, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	for name, details := range map[string]kadm.TopicDetails{"Metadata": md.Topics, "ListTopics": listed} {
		d, ok := details[topic]
		if !ok || d.Err != nil {
			t.Fatalf("%s: topic %s missing or failed (%v)", name, topic, d.Err)
		}
		if d.ID != id {
			t.Errorf("%s: topic ID %v, CreateTopics said %v", name, d.ID, id)
		}
		if len(d.Partitions) != int(partitions) {
			t.Fatalf("%s: %d partitions, want %d", name, len(d.Partitions), partitions)
		}
		for p, pd := range d.Partitions {
			if pd.Err != nil || pd.Leader != node || len(pd.Replicas) != 1 || len(pd.ISR) != 1 {
				t.Errorf("%s: partition %d: %+v, want led by %d with one replica in sync", name, p, pd, node)
			}
		}
	}
}

func checkListed(t *testing.T, what string, l kadm.ListedOffsets, topic string, p int32, want int64) {
	t.Helper()
	o, ok := l.Lookup(topic, p)
	if !ok || o.Err != nil || o.Offset != want {
		t.Errorf("%s offset of %s/%d: %+v (present %v), want %d", what, topic, p, o, ok, want)
	}
}

// checkOffsetsByTime asks for the first offset at or after a timestamp and
// computes the right answer from what was produced.
func checkOffsetsByTime(ctx context.Context, t *testing.T, adm *kadm.Client, topic string, recs []testRecord, counts map[int32]int64) {
	t.Helper()
	for _, millis := range []int64{
		recs[0].Timestamp.UnixMilli(),
		recs[len(recs)/2].Timestamp.UnixMilli(),
		recs[len(recs)-1].Timestamp.UnixMilli() + 1, // after everything: the end offset
	} {
		listed, err := adm.ListOffsetsAfterMilli(ctx, millis, topic)
		if err != nil {
			t.Fatalf("ListOffsetsAfterMilli(%d): %v", millis, err)
		}
		for p, n := range counts {
			want, wantTS := n, int64(-1)
			for _, r := range recs {
				if r.Partition == p && r.Timestamp.UnixMilli() >= millis && r.Offset < want {
					want, wantTS = r.Offset, r.Timestamp.UnixMilli()
				}
			}
			o, ok := listed.Lookup(topic, p)
			if !ok || o.Err != nil || o.Offset != want {
				t.Errorf("offset of %s/%d after %d: %+v (present %v), want %d", topic, p, millis, o, ok, want)
			}
			if wantTS >= 0 && o.Timestamp != wantTS {
				t.Errorf("offset of %s/%d after %d comes with timestamp %d, the record's is %d", topic, p, millis, o.Timestamp, wantTS)
			}
		}
	}
}

// checkTopicConfigs describes the topic's configs, changes retention.ms
// incrementally and sees the change.
func checkTopicConfigs(ctx context.Context, t *testing.T, adm *kadm.Client, topic string) {
	t.Helper()
	describe := func() map[string]kadm.Config {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			t.Fatalf("DescribeTopicConfigs: %v", err)
		}
		rc, err := rcs.On(topic, nil)
		if err != nil || rc.Err != nil {
			t.Fatalf("DescribeTopicConfigs of %s: %v %v %s", topic, err, rc.Err, rc.ErrMessage)
		}
		m := make(map[string]kadm.Config, len(rc.Configs))
		for _, c := range rc.Configs {
			m[c.Key] = c
		}
		return m
	}
	before := describe()
	for _, key := range []string{"retention.ms", "retention.bytes", "cleanup.policy", "message.timestamp.type", "max.message.bytes"} {
		if c, ok := before[key]; !ok || c.Value == nil {
			t.Errorf("DescribeTopicConfigs has no value for %s", key)
		}
	}
	const retention = "3600000"
	if c := before["retention.ms"]; c.Value != nil && *c.Value == retention {
		t.Fatalf("retention.ms is already %s; pick another value", retention)
	}
	alt, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr(retention)}}, topic)
	if err != nil {
		t.Fatalf("AlterTopicConfigs: %v", err)
	}
	if r, err := alt.On(topic, nil); err != nil || r.Err != nil {
		t.Fatalf("AlterTopicConfigs of %s: %v %v %s", topic, err, r.Err, r.ErrMessage)
	}
	after := describe()["retention.ms"]
	if after.Value == nil || *after.Value != retention || after.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("after setting retention.ms=%s it is described as %v from source %v", retention, after.Value, after.Source)
	}
}

// checkDeleteTopic deletes the topic and waits until the broker answers
// metadata for it with UNKNOWN_TOPIC_OR_PARTITION (Kafka deletes
// asynchronously, so this polls).
func checkDeleteTopic(ctx context.Context, t *testing.T, cl *kgo.Client, adm *kadm.Client, topic string) {
	t.Helper()
	dr, err := adm.DeleteTopic(ctx, topic)
	if err != nil {
		t.Fatalf("DeleteTopics %s: %v (%s)", topic, err, dr.ErrMessage)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var last int16
	if !ktest.Until(wctx, pollEvery, func() bool {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		req.AllowAutoTopicCreation = true // refused: the broker runs without auto-creation
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("Metadata for deleted topic %s: %v (last error code %d)", topic, err, last)
		}
		if len(resp.Topics) != 1 {
			t.Fatalf("Metadata for one topic answered %d", len(resp.Topics))
		}
		last = resp.Topics[0].ErrorCode
		return errors.Is(kerr.ErrorForCode(last), kerr.UnknownTopicOrPartition)
	}) {
		t.Fatalf("topic %s still known %v after deletion (error code %d)", topic, 10*time.Second, last)
	}
	// kadm's ListTopics may answer from franz-go's metadata cache, so ask
	// the broker directly for every topic.
	all, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("Metadata for all topics: %v", err)
	}
	for _, mt := range all.Topics {
		if mt.Topic != nil && *mt.Topic == topic {
			t.Errorf("Metadata for all topics still lists deleted topic %s", topic)
		}
	}
}
