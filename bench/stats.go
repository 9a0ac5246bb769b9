package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Latencies are recorded in microseconds, up to ten minutes.
const maxLatencyUs = int64(10 * time.Minute / time.Microsecond)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, maxLatencyUs, 3) }

// Per-second histograms keep two significant digits: 1% is plenty for a
// plot and keeps a long run's series small.
func newSecHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, maxLatencyUs, 2) }

// secStats is one second of a run.
type secStats struct {
	sent, acked, ackedBytes, errors, consumed int64
	pub, e2e                                  *hdrhistogram.Histogram
}

// collector gathers everything a run measures. Producer promises and
// consumers call it concurrently.
type collector struct {
	mu          sync.Mutex
	w           *Workload
	start       time.Time
	measureFrom time.Time
	pub, e2e    *hdrhistogram.Histogram
	secs        []*secStats
	errs        map[string]int64
	acks        chunked[AckedRecord]
	cons        chunked[ConsumedRecord]
	positions   map[int32]int64 // next offset to consume, per partition
	sessions    map[consumerPartition]uint32
	lastSession uint32

	sentCount, sentBytes     int64
	ackedCount, ackedBytes   int64
	failed                   int64
	consumedCount, consBytes int64
	foreign                  int64
	measAcked, measBytes     int64
	measConsumed             int64
	lagAtEnd                 int64
	lastAck                  time.Time
}

func newCollector(w *Workload, positions map[int32]int64) *collector {
	c := &collector{w: w, pub: newHist(), e2e: newHist(), errs: make(map[string]int64), positions: make(map[int32]int64),
		sessions: make(map[consumerPartition]uint32)}
	maps.Copy(c.positions, positions)
	return c
}

func (c *collector) begin(start time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.start, c.measureFrom = start, start.Add(c.w.Warmup)
}

// sec is the stats of the second t falls in, nil before the start; c.mu is
// held.
func (c *collector) sec(t time.Time) *secStats {
	if c.start.IsZero() || t.Before(c.start) {
		return nil
	}
	i := int(t.Sub(c.start) / time.Second)
	for len(c.secs) <= i {
		c.secs = append(c.secs, &secStats{pub: newSecHist(), e2e: newSecHist()})
	}
	return c.secs[i]
}

func (c *collector) sent(due time.Time, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sentCount++
	c.sentBytes += int64(n)
	if s := c.sec(due); s != nil {
		s.sent++
	}
}

// acked records a produce promise: the latency runs from the record's
// scheduled send time (its Timestamp) to now.
func (c *collector) acked(rec *kgo.Record, err error, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sec(now)
	if err != nil {
		c.failed++
		c.errs["produce: "+errorKind(err)]++
		if s != nil {
			s.errors++
		}
		return
	}
	h, ok := parseHeader(rec.Value)
	if !ok {
		return
	}
	lat := now.Sub(rec.Timestamp).Microseconds()
	c.ackedCount++
	c.ackedBytes += int64(len(rec.Value))
	c.lastAck = now
	c.acks.add(AckedRecord{Partition: rec.Partition, Offset: rec.Offset, ID: h.ID, AckedAt: now.Sub(c.start)})
	if !rec.Timestamp.Before(c.measureFrom) {
		_ = c.pub.RecordValue(max(lat, 1))
		c.measAcked++
		c.measBytes += int64(len(rec.Value))
	}
	if s != nil {
		s.acked++
		s.ackedBytes += int64(len(rec.Value))
		_ = s.pub.RecordValue(max(lat, 1))
	}
}

func (c *collector) consumeError(err error, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs["consume: "+errorKind(err)]++
	if s := c.sec(now); s != nil {
		s.errors++
	}
}

// consumerPartition is one consumer's view of one partition.
type consumerPartition struct {
	consumer  int
	partition int32
}

// rebalanced ends the consumer's sessions on partitions ps: an assign,
// revoke or lost callback named them, so the consumer may restart them
// from the committed offsets.
func (c *collector) rebalanced(consumer int, ps []int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range ps {
		c.lastSession++
		c.sessions[consumerPartition{consumer, p}] = c.lastSession
	}
}

// session is the consumer's current session on partition p, one no other
// consumer has; c.mu is held.
func (c *collector) session(consumer int, p int32) uint32 {
	k := consumerPartition{consumer, p}
	s, ok := c.sessions[k]
	if !ok {
		c.lastSession++
		s = c.lastSession
		c.sessions[k] = s
	}
	return s
}

// consumed records a poll of consumer's: this run's records go to the
// audit, in the consumer's current session of their partition, and to the
// end-to-end latency (scheduled send time to receipt); any record moves
// its partition's position.
func (c *collector) consumed(fs kgo.Fetches, consumer int, run uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sec(now)
	part, session := int32(-1), uint32(0)
	fs.EachRecord(func(rec *kgo.Record) {
		if rec.Offset+1 > c.positions[rec.Partition] {
			c.positions[rec.Partition] = rec.Offset + 1
		}
		h, ok := parseHeader(rec.Value)
		if !ok || h.Run != run {
			c.foreign++
			return
		}
		c.consumedCount++
		c.consBytes += int64(len(rec.Value))
		if rec.Partition != part {
			part, session = rec.Partition, c.session(consumer, rec.Partition)
		}
		c.cons.add(ConsumedRecord{Partition: rec.Partition, Session: session, Offset: rec.Offset, ID: h.ID})
		lat := max(now.Sub(h.Due).Microseconds(), 1)
		if !h.Due.Before(c.measureFrom) {
			_ = c.e2e.RecordValue(lat)
			c.measConsumed++
		}
		if s != nil {
			s.consumed++
			_ = s.e2e.RecordValue(lat)
		}
	})
}

// reached reports whether every partition has been consumed up to want.
func (c *collector) reached(want map[int32]int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, o := range want {
		if c.positions[p] < o {
			return false
		}
	}
	return true
}

func (c *collector) positionsCopy() map[int32]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.positions)
}

// counts is a snapshot of the running totals.
type counts struct {
	ackedCount, ackedBytes, consumedCount, failed int64
}

func (c *collector) snapshot() counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return counts{ackedCount: c.ackedCount, ackedBytes: c.ackedBytes, consumedCount: c.consumedCount, failed: c.failed}
}

func (c *collector) mark(fn func(*collector)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn(c)
}

// lastSecond is the last complete second's ack count and p99, and the
// errors so far.
func (c *collector) lastSecond(now time.Time) (acked int64, p99 time.Duration, errs int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.errs {
		errs += n
	}
	i := int(now.Sub(c.start)/time.Second) - 1
	if i < 0 || i >= len(c.secs) {
		return 0, 0, errs
	}
	s := c.secs[i]
	return s.acked, time.Duration(s.pub.ValueAtQuantile(99)) * time.Microsecond, errs
}

// progress prints a line a second until ctx ends.
func (r *runner) progress(ctx context.Context, start time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			acked, p99, errs := r.stats.lastSecond(now)
			fault := ""
			if r.opt.Faults != nil {
				if f := r.opt.Faults.Current(); f != "" {
					fault = "  fault: " + f
				}
			}
			line := fmt.Sprintf("%5.0fs  %8d rec/s  p99 %8v  errors %d%s", now.Sub(start).Seconds(), acked, p99.Round(100*time.Microsecond), errs, fault)
			if r.opt.TTY {
				fmt.Fprintf(r.opt.Progress, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(r.opt.Progress, line)
			}
		}
	}
}

// errorKind names an error for the errors-by-kind table: the Kafka error
// code's name when there is one.
func errorKind(err error) string {
	var ke *kerr.Error
	switch {
	case errors.As(err, &ke):
		return ke.Message
	case errors.Is(err, kgo.ErrRecordTimeout):
		return "RECORD_TIMEOUT"
	case errors.Is(err, kgo.ErrRecordRetries):
		return "RECORD_RETRIES"
	case errors.Is(err, kgo.ErrClientClosed):
		return "CLIENT_CLOSED"
	case errors.Is(err, context.DeadlineExceeded):
		return "DEADLINE_EXCEEDED"
	case errors.Is(err, context.Canceled):
		return "CANCELED"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

func latencyOf(h *hdrhistogram.Histogram) LatencyStats {
	ms := func(v int64) float64 { return float64(v) / 1000 }
	if h.TotalCount() == 0 {
		return LatencyStats{}
	}
	return LatencyStats{
		Count: h.TotalCount(),
		Avg:   h.Mean() / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P95:   ms(h.ValueAtQuantile(95)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// report builds the run's report; the collector is done.
func (c *collector) report(r *runner, target Target, started, start time.Time, producedFor time.Duration, startOffsets map[int32]int64) *Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	measured := (producedFor - r.w.Warmup).Seconds()
	if measured <= 0 {
		measured = producedFor.Seconds()
	}
	rep := &Report{
		Schema:       SchemaID,
		RunID:        r.runName,
		Topic:        r.topic,
		Group:        r.group,
		Started:      started,
		MeasuredFrom: start,
		Ended:        time.Now(),
		Workload:     r.w,
		Target:       target,
		StartOffsets: startOffsets,
		Summary: Summary{
			Sent:             c.sentCount,
			Acked:            c.ackedCount,
			Failed:           c.failed,
			Consumed:         c.consumedCount,
			Foreign:          c.foreign,
			ProducedSeconds:  producedFor.Seconds(),
			MeasuredSeconds:  measured,
			RecordsPerSec:    float64(c.measAcked) / measured,
			MBPerSec:         float64(c.measBytes) / 1e6 / measured,
			ConsumedPerSec:   float64(c.measConsumed) / measured,
			Publish:          latencyOf(c.pub),
			EndToEnd:         latencyOf(c.e2e),
			Errors:           maps.Clone(c.errs),
			ConsumerLagAtEnd: c.lagAtEnd,
		},
	}
	for i, s := range c.secs {
		rep.Series = append(rep.Series, SecondStats{
			T: i, Sent: s.sent, Acked: s.acked, Consumed: s.consumed, Errors: s.errors,
			MBPerSec: float64(s.ackedBytes) / 1e6,
			Publish:  latencyOf(s.pub), EndToEnd: latencyOf(s.e2e),
		})
	}
	acks, cons := c.acks.all(), c.cons.all()
	ackTimes := make([]time.Duration, len(acks))
	for i, a := range acks {
		ackTimes[i] = a.AckedAt
	}
	sort.Slice(ackTimes, func(i, j int) bool { return ackTimes[i] < ackTimes[j] })
	r.evMu.Lock()
	events := append([]FaultEvent(nil), r.events...)
	r.evMu.Unlock()
	rep.Faults = recoveries(events, start, ackTimes, producedFor, r.w.Rate)
	rep.Replicas = r.replicas
	partitionWaits(rep.Faults, start, acks, producedFor, r.replicas, target.Brokers)
	rep.Audit = Audit(acks, cons)
	return rep
}

// chunked is an append-only list in fixed-size chunks: growing it never
// copies what it holds, so a long run does not stall the client (and its
// latency figures) copying a large slice.
type chunked[T any] struct {
	chunks [][]T
}

const chunkLen = 1 << 16

func (c *chunked[T]) add(v T) {
	if n := len(c.chunks); n == 0 || len(c.chunks[n-1]) == chunkLen {
		c.chunks = append(c.chunks, make([]T, 0, chunkLen))
	}
	last := &c.chunks[len(c.chunks)-1]
	*last = append(*last, v)
}

// all returns the items in one slice.
func (c *chunked[T]) all() []T {
	n := 0
	for _, ch := range c.chunks {
		n += len(ch)
	}
	out := make([]T, 0, n)
	for _, ch := range c.chunks {
		out = append(out, ch...)
	}
	return out
}
