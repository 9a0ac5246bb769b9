package compattests

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// An acks=all load producer that records every acknowledgement, for the
// fault tests to check against the log.

// ackedRecord is a record whose produce was acknowledged, and when.
type ackedRecord struct {
	Partition int32
	Offset    int64
	Value     string
	At        time.Time
}

// loadSpec bounds a produce stream in records and time.
type loadSpec struct {
	prefix     string // values are prefix-NNNNNNN, unique per stream
	partitions int32  // record i goes to partition i % partitions
	maxRecords int
	maxTime    time.Duration
	perTick    int // records handed to the client per tick
	tick       time.Duration
}

// loadProducer streams records through a franz-go client in the
// background until stopped or its bounds are reached.
type loadProducer struct {
	spec     loadSpec
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu       sync.Mutex
	acked    []ackedRecord
	perPart  map[int32]int
	failures int
	firstErr error
	sent     int
}

// startLoad starts producing; cl must use the manual partitioner.
func startLoad(cl *kgo.Client, topic string, spec loadSpec) *loadProducer {
	l := &loadProducer{spec: spec, stop: make(chan struct{}), done: make(chan struct{}), perPart: make(map[int32]int)}
	go l.run(cl, topic)
	return l
}

func (l *loadProducer) run(cl *kgo.Client, topic string) {
	defer close(l.done)
	deadline := time.Now().Add(l.spec.maxTime)
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(deliveryTimeout+30*time.Second))
	defer cancel()
	tick := time.NewTicker(l.spec.tick)
	defer tick.Stop()
	i := 0
produce:
	for i < l.spec.maxRecords && time.Now().Before(deadline) {
		select {
		case <-l.stop:
			break produce
		case <-tick.C:
		}
		for j := 0; j < l.spec.perTick && i < l.spec.maxRecords; j++ {
			r := &kgo.Record{Topic: topic, Partition: int32(i) % l.spec.partitions, Value: fmt.Appendf(nil, "%s-%07d", l.spec.prefix, i)}
			cl.Produce(ctx, r, l.promise)
			i++
		}
	}
	l.mu.Lock()
	l.sent = i
	l.mu.Unlock()
	if err := cl.Flush(ctx); err != nil {
		l.fail(fmt.Errorf("flushing: %w", err))
	}
}

func (l *loadProducer) promise(r *kgo.Record, err error) {
	if err != nil {
		l.fail(fmt.Errorf("record %q: %w", r.Value, err))
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked = append(l.acked, ackedRecord{Partition: r.Partition, Offset: r.Offset, Value: string(r.Value), At: time.Now()})
	l.perPart[r.Partition]++
}

func (l *loadProducer) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures++
	if l.firstErr == nil {
		l.firstErr = err
	}
}

// counts returns the acknowledgements so far, in total and per partition.
func (l *loadProducer) counts() (int, map[int32]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked), maps.Clone(l.perPart)
}

// waitAcks waits until cond holds for the acknowledgement counts; it
// fails the test if the stream ends or ctx expires first.
func (l *loadProducer) waitAcks(ctx context.Context, t *testing.T, what string, cond func(total int, perPart map[int32]int) bool) {
	t.Helper()
	ended := false
	ok := ktest.Until(ctx, pollEvery, func() bool {
		select {
		case <-l.done:
			ended = true
		default:
		}
		total, per := l.counts()
		return cond(total, per) || ended
	})
	total, per := l.counts()
	if !ok || !cond(total, per) {
		l.mu.Lock()
		failures, firstErr := l.failures, l.firstErr
		l.mu.Unlock()
		t.Fatalf("producer did not reach %q (stream ended: %v; %d acknowledged, per partition %v; %d failed, first: %v)",
			what, ended, total, per, failures, firstErr)
	}
}

// finish stops the stream, waits until every record is answered and
// returns the acknowledgements; failed records fail the test.
func (l *loadProducer) finish(t *testing.T) []ackedRecord {
	t.Helper()
	l.stopOnce.Do(func() { close(l.stop) })
	select {
	case <-l.done:
	case <-time.After(deliveryTimeout + 45*time.Second):
		t.Fatalf("producer still flushing after %v", deliveryTimeout+45*time.Second)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures > 0 {
		t.Errorf("%d of %d produced records failed; first: %v", l.failures, l.sent, l.firstErr)
	}
	if len(l.acked)+l.failures != l.sent {
		t.Errorf("produced %d records but got %d acknowledgements and %d failures", l.sent, len(l.acked), l.failures)
	}
	return slices.Clone(l.acked)
}

// ackGap returns the longest time between consecutive acknowledgements on
// partition p and when that gap ended.
func ackGap(acks []ackedRecord, p int32) (time.Duration, time.Time) {
	var prev, end time.Time
	var gap time.Duration
	for _, a := range acks {
		if a.Partition != p {
			continue
		}
		if !prev.IsZero() && a.At.Sub(prev) > gap {
			gap, end = a.At.Sub(prev), a.At
		}
		prev = a.At
	}
	return gap, end
}

// firstAckAfter returns the first acknowledgement on p after t0.
func firstAckAfter(acks []ackedRecord, p int32, t0 time.Time) (time.Time, bool) {
	for _, a := range acks {
		if a.Partition == p && a.At.After(t0) {
			return a.At, true
		}
	}
	return time.Time{}, false
}

// produceAcked produces n records with values prefix-NNNNNNN round-robin
// over partitions (or all to one partition when only is >= 0) and returns
// their acknowledgements; any failure fails the test.
func produceAcked(ctx context.Context, t testing.TB, cl *kgo.Client, topic, prefix string, n int, partitions, only int32) []ackedRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, deliveryTimeout)
	defer cancel()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		p := int32(i) % partitions
		if only >= 0 {
			p = only
		}
		recs[i] = &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "%s-%07d", prefix, i)}
	}
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("producing %d records to %s: %v", n, topic, err)
	}
	acks := make([]ackedRecord, 0, n)
	for _, r := range res {
		acks = append(acks, ackedRecord{Partition: r.Record.Partition, Offset: r.Record.Offset, Value: string(r.Record.Value), At: time.Now()})
	}
	return acks
}
