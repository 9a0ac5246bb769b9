package compattests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestRetention checks that retention.bytes and retention.ms delete from
// the front of a partition: the start offset advances, reading from it
// works and reading below it is OFFSET_OUT_OF_RANGE.
func TestRetention(t *testing.T) {
	b := startBroker(t, "--retention-check-interval", "200ms")
	adm := newAdmin(t, b)
	// Uncompressed, so that the bytes stored are about the bytes produced.
	cl := newClient(t, b, kgo.ProducerBatchCompression(kgo.NoCompression()))

	t.Run("bytes", func(t *testing.T) {
		ctx := testContext(t, time.Minute)
		const name = "retention-bytes"
		created := createTopic(ctx, t, adm, name, 1, map[string]*string{"retention.bytes": kadm.StringPtr("2000")})
		// Twelve produce calls of four ~110-byte records each: about
		// 6 KB in at least twelve batches.
		values := produceBatches(ctx, t, cl, name, 12, 4, time.Now())
		end := int64(len(values))
		start := waitForStart(ctx, t, adm, name, func(start int64) bool { return start > 0 })
		// Kafka deletes by size only while what stays is at least
		// retention.bytes, and one batch is far smaller, so the
		// newest records are still there.
		if start >= end {
			t.Fatalf("retention.bytes=2000 deleted everything: start offset %d, end %d", start, end)
		}
		// Nor does it delete below retention.bytes.
		resp := dialRaw(t, b.Addr()).Do(fetchRequest(12, topicRef{name, created.ID}, 0, start, 0, 1)).(*kmsg.FetchResponse)
		if fp := onlyPartition(t, resp, name, start); fp.Err != nil {
			t.Fatalf("Fetch from the start offset %d: %v", start, fp.Err)
		}
		if kept := len(resp.Topics[0].Partitions[0].RecordBatches); kept < 2000 {
			t.Errorf("retention.bytes=2000 kept only %d bytes of batches", kept)
		}
		checkAfterRetention(ctx, t, b, cl, topicRef{name, created.ID}, values, start, end)
	})

	t.Run("ms", func(t *testing.T) {
		ctx := testContext(t, time.Minute)
		const name = "retention-ms"
		created := createTopic(ctx, t, adm, name, 1, map[string]*string{"retention.ms": kadm.StringPtr("60000")})
		values := produceBatches(ctx, t, cl, name, 5, 4, time.Now().Add(-time.Hour))
		end := int64(len(values))
		// Every record is an hour old, so all of them go (Kafka rolls
		// and deletes even the active segment once all of it expired).
		start := waitForStart(ctx, t, adm, name, func(start int64) bool { return start >= end })
		if start != end {
			t.Fatalf("start offset %d is past the end %d", start, end)
		}
		checkAfterRetention(ctx, t, b, cl, topicRef{name, created.ID}, values, start, end)
	})
}

// produceBatches produces calls × perCall records stamped ts, one
// ProduceSync call at a time so that each call is at least one batch, and
// returns the values by offset.
func produceBatches(ctx context.Context, t *testing.T, cl *kgo.Client, topic string, calls, perCall int, ts time.Time) []string {
	t.Helper()
	var values []string
	for c := range calls {
		var recs []*kgo.Record
		for i := range perCall {
			v := fmt.Sprintf("call %d record %d %s", c, i, strings.Repeat("x", 80))
			recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(v), Timestamp: ts})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("producing to %s: %v", topic, err)
		}
		for _, r := range recs {
			if r.Offset != int64(len(values)) {
				t.Fatalf("record acknowledged at offset %d, want %d", r.Offset, len(values))
			}
			values = append(values, string(r.Value))
		}
	}
	return values
}

// waitForStart polls the partition's start offset until retention has
// moved it far enough for done.
func waitForStart(ctx context.Context, t *testing.T, adm *kadm.Client, topic string, done func(start int64) bool) int64 {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var start int64
	if !ktest.Until(wctx, pollEvery, func() bool {
		// ctx, not wctx: the last look after the wait must still work.
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatalf("ListStartOffsets: %v", err)
		}
		o, ok := starts.Lookup(topic, 0)
		if !ok || o.Err != nil {
			t.Fatalf("start offset of %s: %+v", topic, o)
		}
		start = o.Offset
		return done(start)
	}) {
		t.Fatalf("retention did not move the start offset of %s within 20s", topic)
	}
	return start
}

// checkAfterRetention reads from the new start, fails to read below it,
// and appends after it.
func checkAfterRetention(ctx context.Context, t *testing.T, b *brokerProc, cl *kgo.Client, topic topicRef, values []string, start, end int64) {
	t.Helper()
	// Retention may go on deleting while this runs, so read from
	// whatever the start is then up to the last record: what is read must
	// be exactly what was produced at those offsets, from start on.
	if start < end {
		cons, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic.name: {0: kgo.NewOffset().AtStart()}}))
		if err != nil {
			t.Fatalf("creating franz-go consumer: %v", err)
		}
		defer cons.Close()
		var got []*kgo.Record
		for len(got) == 0 || got[len(got)-1].Offset < end-1 {
			fs := cons.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				t.Fatalf("reading %s after retention: %v", topic.name, err)
			}
			fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("reading %s after retention: %v", topic.name, err) })
			got = append(got, fs.Records()...)
		}
		for i, r := range got {
			if r.Offset < start || r.Offset >= end || string(r.Value) != values[r.Offset] {
				t.Fatalf("read %d after retention: offset %d holds %q", i, r.Offset, r.Value)
			}
			if i > 0 && r.Offset != got[i-1].Offset+1 {
				t.Fatalf("offsets jump from %d to %d", got[i-1].Offset, r.Offset)
			}
		}
	}

	c := dialRaw(t, b.Addr())
	for _, v := range []int16{12, apiMaxVersions(t, c)[kmsg.Fetch.Int16()]} {
		resp := c.Do(fetchRequest(v, topic, 0, 0, 0, 1)).(*kmsg.FetchResponse)
		fp := onlyPartition(t, resp, topic.name, 0)
		if !errors.Is(fp.Err, kerr.OffsetOutOfRange) {
			t.Errorf("Fetch v%d at offset 0, below the start: error %v, want %v", v, fp.Err, kerr.OffsetOutOfRange)
		}
	}

	// New records still go at the end.
	r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic.name, Value: []byte("after retention")}).First()
	if err != nil || r.Offset != end {
		t.Fatalf("producing after retention: offset %d, error %v; want offset %d", r.Offset, err, end)
	}
	got := consumeKgo(ctx, t, b, topic.name, map[int32]int64{0: end}, 1)
	if got[0].Offset != end || string(got[0].Value) != "after retention" {
		t.Fatalf("after retention offset %d holds %q", got[0].Offset, got[0].Value)
	}
}
