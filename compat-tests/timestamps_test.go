package compattests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLogAppendTime checks that topics with message.timestamp.type
// LogAppendTime give records the broker's clock instead of the producer's
// timestamp, set per topic or as the broker's default, and that CreateTime
// topics keep the producer's.
func TestLogAppendTime(t *testing.T) {
	t.Run("topic config", func(t *testing.T) {
		b := startBroker(t)
		ctx := testContext(t, time.Minute)
		adm := newAdmin(t, b)
		logAppend := createTopic(ctx, t, adm, "log-append-time", 2, map[string]*string{"message.timestamp.type": kadm.StringPtr("LogAppendTime")})
		create := createTopic(ctx, t, adm, "create-time", 2, nil)
		checkTimestamps(ctx, t, b, topicRef{"log-append-time", logAppend.ID}, true)
		checkTimestamps(ctx, t, b, topicRef{"create-time", create.ID}, false)
	})

	t.Run("broker default", func(t *testing.T) {
		b := startBroker(t, "--log-append-time")
		ctx := testContext(t, time.Minute)
		adm := newAdmin(t, b)
		logAppend := createTopic(ctx, t, adm, "default-type", 2, nil)
		create := createTopic(ctx, t, adm, "create-time", 2, map[string]*string{"message.timestamp.type": kadm.StringPtr("CreateTime")})
		rcs, err := adm.DescribeTopicConfigs(ctx, "default-type")
		if err != nil {
			t.Fatalf("DescribeTopicConfigs: %v", err)
		}
		c, err := rcs.On("default-type", nil)
		if err != nil {
			t.Fatalf("DescribeTopicConfigs: %v", err)
		}
		found := false
		for _, kv := range c.Configs {
			if kv.Key == "message.timestamp.type" {
				found = true
				if kv.Value == nil || *kv.Value != "LogAppendTime" {
					t.Errorf("message.timestamp.type of a topic on a --log-append-time broker is %v", kv.Value)
				}
			}
		}
		if !found {
			t.Error("DescribeTopicConfigs has no message.timestamp.type")
		}
		checkTimestamps(ctx, t, b, topicRef{"default-type", logAppend.ID}, true)
		checkTimestamps(ctx, t, b, topicRef{"create-time", create.ID}, false)
	})
}

// checkTimestamps produces records stamped an hour ago, through franz-go
// and by hand, and checks the timestamps the produce answer and the
// consumed records carry: the broker's time between just before and just
// after the produce for LogAppendTime, the producer's otherwise.
func checkTimestamps(ctx context.Context, t *testing.T, b *brokerProc, topic topicRef, logAppend bool) {
	t.Helper()
	old := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, &kgo.Record{Topic: topic.name, Partition: int32(i % 2), Value: fmt.Appendf(nil, "record %d", i), Timestamp: old})
	}

	before := time.Now().UnixMilli()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing to %s: %v", topic.name, err)
	}
	// Produce answers say which time the broker used (-1 for CreateTime).
	c := dialRaw(t, b.Addr())
	pv := apiMaxVersions(t, c)[kmsg.Produce.Int16()]
	raw := batchSpec{producerID: -1, timestamp: old, values: [][]byte{[]byte("by hand")}}.build()
	presp := c.Do(produceRequest(pv, topic, 0, raw)).(*kmsg.ProduceResponse)
	after := time.Now().UnixMilli()

	sp := presp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(sp.ErrorCode); err != nil {
		t.Fatalf("Produce v%d to %s: %v", pv, topic.name, err)
	}
	if logAppend && (sp.LogAppendTime < before || sp.LogAppendTime > after) {
		t.Errorf("Produce v%d to %s answered LogAppendTime %d, outside [%d, %d]", pv, topic.name, sp.LogAppendTime, before, after)
	}
	if !logAppend && sp.LogAppendTime != -1 {
		t.Errorf("Produce v%d to CreateTime topic %s answered LogAppendTime %d, want -1", pv, topic.name, sp.LogAppendTime)
	}

	n := len(recs) + 1
	for _, r := range consumeKgo(ctx, t, b, topic.name, fromStart(2), n) {
		ts := r.Timestamp.UnixMilli()
		switch {
		case logAppend && (ts < before || ts > after):
			t.Errorf("%s offset %d/%d has timestamp %d, outside the produce window [%d, %d] (produced with %d)", topic.name, r.Partition, r.Offset, ts, before, after, old.UnixMilli())
		case logAppend && r.Attrs.TimestampType() != 1:
			t.Errorf("%s offset %d/%d has timestamp type %d, want 1 (LogAppendTime)", topic.name, r.Partition, r.Offset, r.Attrs.TimestampType())
		case !logAppend && (ts != old.UnixMilli() || r.Attrs.TimestampType() != 0):
			t.Errorf("%s offset %d/%d has timestamp %d of type %d, want the producer's %d (CreateTime)", topic.name, r.Partition, r.Offset, ts, r.Attrs.TimestampType(), old.UnixMilli())
		}
	}
}
