package compattests

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKillDurability kills the broker with SIGKILL while a producer streams
// at acks=all, restarts it on the same data, and checks that every
// acknowledged record survived at its acknowledged offset.
func TestKillDurability(t *testing.T) {
	b := startBroker(t)
	ctx := testContext(t, 2*time.Minute)
	const name, partitions = "durability", 3
	createTopic(ctx, t, newAdmin(t, b), name, partitions, nil)

	// Bounds of the stream: it runs until minAcks records are
	// acknowledged, never past maxRecords or maxStream, with at most
	// window records unacknowledged.
	const minAcks, maxRecords, maxStream, window = 3000, 20000, 10 * time.Second, 1000

	type ack struct {
		partition int32
		offset    int64
		value     string
	}
	var (
		mu        sync.Mutex
		acked     []ack
		callbacks int
	)
	producer, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordDeliveryTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("producer client: %v", err)
	}
	closeProducer := sync.OnceFunc(producer.Close)
	t.Cleanup(closeProducer)

	streamCtx, stopStream := context.WithTimeout(ctx, maxStream)
	defer stopStream()
	unacked := make(chan struct{}, window)
	n := 0 // records handed to the producer
	produce := func() {
		r := &kgo.Record{Topic: name, Partition: int32(n % partitions), Value: fmt.Appendf(nil, "record-%06d", n)}
		producer.Produce(streamCtx, r, func(r *kgo.Record, err error) {
			<-unacked
			mu.Lock()
			defer mu.Unlock()
			callbacks++
			if err == nil {
				acked = append(acked, ack{r.Partition, r.Offset, string(r.Value)})
			}
		})
		n++
	}
	ackCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	for ackCount() < minAcks {
		if n == maxRecords {
			t.Fatalf("all %d records were handed over before %d were acknowledged", n, minAcks)
		}
		select {
		case unacked <- struct{}{}:
		case <-streamCtx.Done():
			t.Fatalf("only %d records acknowledged within %v", ackCount(), maxStream)
		}
		produce()
	}
	// Freeze the broker wherever the stream has got it to, so that the
	// records that follow are surely in flight and unacknowledged when
	// it is killed.
	b.Pause()
	for extra := 0; extra < 100 && n < maxRecords; extra++ {
		select {
		case unacked <- struct{}{}:
			produce()
		default: // window full: enough is in flight
		}
	}
	b.Kill()
	stopStream()
	// Closing fails whatever is still buffered; franz-go then calls the
	// remaining promises on its own goroutine. Once every record has been
	// called back, the acknowledged set is final.
	closeProducer()
	var final []ack
	var calls int
	if !ktest.Until(testContext(t, rawTimeout), pollEvery, func() bool {
		mu.Lock()
		defer mu.Unlock()
		calls = callbacks
		final = append(final[:0], acked...)
		return calls == n
	}) {
		t.Fatalf("the producer called back for only %d of %d records", calls, n)
	}
	if n == len(final) {
		t.Fatalf("all %d records were acknowledged although the broker was frozen before the last were produced", n)
	}
	t.Logf("killed the broker after %d of %d records were acknowledged", len(final), n)

	b.Restart()
	adm := newAdmin(t, b)
	ends, err := adm.ListEndOffsets(ctx, name)
	if err != nil {
		t.Fatalf("ListEndOffsets after restart: %v", err)
	}
	total := 0
	from := fromStart(partitions)
	for p := range int32(partitions) {
		o, ok := ends.Lookup(name, p)
		if !ok || o.Err != nil {
			t.Fatalf("end offset of partition %d after restart: %+v", p, o)
		}
		total += int(o.Offset)
	}
	logged := consumeKgo(ctx, t, b, name, from, total)
	if len(logged) != total {
		t.Errorf("read %d records, the end offsets add up to %d", len(logged), total)
	}

	type at struct {
		p int32
		o int64
	}
	stored := make(map[at]string, len(logged))
	where := make(map[string][]at, len(logged))
	offsets := make(map[int32][]int64)
	for _, r := range logged {
		k := at{r.Partition, r.Offset}
		stored[k] = string(r.Value)
		where[string(r.Value)] = append(where[string(r.Value)], k)
		offsets[r.Partition] = append(offsets[r.Partition], r.Offset)
		var i int
		if _, err := fmt.Sscanf(string(r.Value), "record-%06d", &i); err != nil || i >= n || int32(i%partitions) != r.Partition {
			t.Errorf("partition %d offset %d holds %q, which was never produced there", r.Partition, r.Offset, r.Value)
		}
	}
	checkDense(t, offsets, 0)
	lost := 0
	for _, a := range final {
		if got, ok := stored[at{a.partition, a.offset}]; !ok || got != a.value {
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged %q at partition %d offset %d; after the restart that offset holds %q (present %v)", a.value, a.partition, a.offset, got, ok)
			}
		}
		if len(where[a.value]) > 1 {
			t.Errorf("acknowledged %q is stored %d times: %v", a.value, len(where[a.value]), where[a.value])
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged records were lost or moved", lost, len(final))
	}

	// The restarted broker carries on appending densely.
	more := makeRecords(7, 90, partitions, time.Now())
	produceAll(ctx, t, newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner())), name, more)
	next := make(map[int32]int64)
	for p := range int32(partitions) {
		o, _ := ends.Lookup(name, p)
		next[p] = o.Offset
	}
	for i, r := range more {
		if r.Offset != next[r.Partition] {
			t.Fatalf("record %d after the restart went to partition %d offset %d, want offset %d", i, r.Partition, r.Offset, next[r.Partition])
		}
		next[r.Partition]++
	}
	after, err := adm.ListEndOffsets(ctx, name)
	if err != nil {
		t.Fatalf("ListEndOffsets: %v", err)
	}
	for p := range int32(partitions) {
		checkListed(t, "end after producing more", after, name, p, next[p])
	}
	all := consumeKgo(ctx, t, b, name, from, total+len(more))
	offsets = make(map[int32][]int64)
	for _, r := range all {
		offsets[r.Partition] = append(offsets[r.Partition], r.Offset)
	}
	checkDense(t, offsets, 0)
}
