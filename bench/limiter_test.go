package bench

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPaceHoldsRateAndChargesStalls drives the limiter with a send that
// blocks once for 300 ms, as a full producer buffer would: the schedule
// still sends rate × duration records, and every record that fell due
// during the stall carries the stall in its latency.
func TestPaceHoldsRateAndChargesStalls(t *testing.T) {
	const (
		rate  = 1000.0
		d     = time.Second
		stall = 300 * time.Millisecond
	)
	lat := make(map[int64]time.Duration)
	start := time.Now()
	n := Pace(context.Background(), rate, start, d, func(seq int64, due time.Time) {
		if seq == 200 {
			time.Sleep(stall) // the stall under test, not a wait for a condition
		}
		lat[seq] = time.Since(due)
	})
	if want := int64(rate * d.Seconds()); n != want || int64(len(lat)) != want {
		t.Fatalf("sent %d records (%d sends), want %d", n, len(lat), want)
	}
	if lat[200] < stall {
		t.Fatalf("the stalled record's latency is %v, want at least %v", lat[200], stall)
	}
	// Records due in the first 200 ms of the stall were sent after it
	// ended, so at least 100 ms late.
	late := 0
	for seq := int64(200); seq < 400; seq++ {
		if lat[seq] >= 100*time.Millisecond {
			late++
		}
	}
	if late != 200 {
		t.Fatalf("%d of the 200 records due during the stall show it in their latency", late)
	}
}

// TestPaceUnpaced sends as fast as send returns, each record due when it
// is handed over, and stops at the end of the duration.
func TestPaceUnpaced(t *testing.T) {
	var last time.Time
	n := Pace(context.Background(), 0, time.Now(), 50*time.Millisecond, func(seq int64, due time.Time) {
		if due.Before(last) {
			t.Fatalf("record %d due %v before the previous one %v", seq, due, last)
		}
		last = due
	})
	if n == 0 {
		t.Fatal("nothing sent")
	}
}

// TestPaceStopsOnCancel ends the schedule when the context ends.
func TestPaceStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := Pace(ctx, 100, time.Now(), time.Hour, func(seq int64, _ time.Time) {
		if seq == 4 {
			cancel()
		}
	})
	if n != 5 {
		t.Fatalf("sent %d records after the cancel at the fifth, want 5", n)
	}
}

// TestLatencyFromScheduledTime checks the accounting: a record's publish
// latency runs from its scheduled time (the record's Timestamp), and its
// end-to-end latency from the scheduled time in its value, not from when
// it was handed to the client.
func TestLatencyFromScheduledTime(t *testing.T) {
	w := DefaultWorkload()
	w.Warmup = 0
	c := newCollector(&w, nil)
	start := time.Unix(1000, 0)
	c.begin(start)
	gen := newRecordGen(&w, 7, 0, newFiller(1, w.RecordSize))
	for i := range 10 {
		due := start.Add(time.Duration(i) * 10 * time.Millisecond)
		rec := &kgo.Record{Value: gen.value(int64(i), due), Timestamp: due, Partition: 0, Offset: int64(i)}
		// The client was stuck: every acknowledgement arrives 300 ms
		// after the record was due.
		c.acked(rec, nil, due.Add(300*time.Millisecond))
	}
	rep := c.report(&runner{w: w}, Target{}, start, start, time.Second, nil)
	if p := rep.Summary.Publish; p.Count != 10 || p.P50 < 299 || p.Max > 301 {
		t.Fatalf("publish latency %+v, want every record at 300 ms", p)
	}
	if rep.Audit.Acked != 10 || rep.Audit.Lost != 10 {
		t.Fatalf("audit %+v: nothing was consumed, so all 10 are lost", rep.Audit)
	}
}
