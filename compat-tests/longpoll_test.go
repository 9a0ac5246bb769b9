package compattests

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFetchLongPoll checks that a Fetch waiting at the end of a partition is
// answered as soon as a record arrives, and that a Fetch whose MinBytes is
// never reached is answered with what there is once MaxWait passes.
func TestFetchLongPoll(t *testing.T) {
	b := startBroker(t)
	ctx := testContext(t, 2*time.Minute)
	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const name = "longpoll"
	created := createTopic(ctx, t, newAdmin(t, b), name, 1, nil)
	topic := topicRef{name: name, id: created.ID}

	// end tracks the partition's end offset as this test produces.
	var end int64
	produced := map[int64]string{}
	for i := range 3 {
		v := fmt.Sprintf("before-%d", i)
		res := cl.ProduceSync(ctx, &kgo.Record{Topic: name, Value: []byte(v)})
		r, err := res.First()
		if err != nil {
			t.Fatalf("producing: %v", err)
		}
		produced[r.Offset] = v
		end = r.Offset + 1
	}

	maxVersions := apiMaxVersions(t, dialRaw(t, b.Addr()))
	fetchVersions := []int16{12, maxVersions[kmsg.Fetch.Int16()]} // the last with topic names, and the newest
	produceVersion := maxVersions[kmsg.Produce.Int16()]

	// A Fetch at the end with nothing arriving waits out MaxWait and
	// answers empty. The lower bound on the time taken is the protocol's
	// (MinBytes unmet means wait for MaxWait), not a performance figure.
	t.Run("wait at end", func(t *testing.T) {
		for _, v := range fetchVersions {
			c := dialRaw(t, b.Addr())
			const wait = 300 * time.Millisecond
			start := time.Now()
			resp := c.Do(fetchRequest(v, topic, 0, end, wait, 1)).(*kmsg.FetchResponse)
			elapsed := time.Since(start)
			fp := onlyPartition(t, resp, name, end)
			if fp.Err != nil || len(fp.Records) != 0 || fp.HighWatermark != end {
				t.Fatalf("Fetch v%d at the end: error %v, %d records, high watermark %d; want no error, no records, high watermark %d",
					v, fp.Err, len(fp.Records), fp.HighWatermark, end)
			}
			if elapsed < wait {
				t.Errorf("Fetch v%d with MinBytes 1 at the end answered after %v, before its MaxWait of %v", v, elapsed, wait)
			}
		}
	})

	// wakeLimit is far below the 30 s MaxWait: answering within it shows
	// the produce woke the fetch rather than the timer.
	const longWait, wakeLimit = 30 * time.Second, 15 * time.Second

	// The Produce goes on the same connection right behind the Fetch. The
	// broker reads requests in order, so the Fetch is certainly parked
	// when the Produce arrives; its answer must still come first.
	t.Run("woken by produce on the same connection", func(t *testing.T) {
		for _, v := range fetchVersions {
			c := dialRaw(t, b.Addr())
			value := fmt.Sprintf("pipelined-v%d", v)
			start := time.Now()
			fetchCorr := c.Send(fetchRequest(v, topic, 0, end, longWait, 1))
			produceCorr := c.Send(produceRequest(produceVersion, topic, 0,
				batchSpec{producerID: -1, timestamp: time.Now(), values: [][]byte{[]byte(value)}}.build()))

			fresp := kmsg.NewPtrFetchResponse()
			fresp.SetVersion(v)
			c.Receive(fresp, fetchCorr, longWait+rawTimeout)
			elapsed := time.Since(start)
			checkWoken(t, onlyPartition(t, fresp, name, end), end, value, elapsed, wakeLimit)

			presp := kmsg.NewPtrProduceResponse()
			presp.SetVersion(produceVersion)
			c.Receive(presp, produceCorr, rawTimeout)
			sp := presp.Topics[0].Partitions[0]
			if err := kerr.ErrorForCode(sp.ErrorCode); err != nil || sp.BaseOffset != end {
				t.Fatalf("pipelined Produce: base offset %d, error %v; want %d", sp.BaseOffset, err, end)
			}
			produced[end] = value
			end++
		}
	})

	// The usual shape: a consumer's connection waits, a producer's
	// connection writes. Nothing shows when the Fetch is parked, so the
	// produce waits a moment first; were it early, the Fetch would find
	// the record at once and the test would still pass, just without
	// exercising the wake-up (the case above always does).
	t.Run("woken by produce on another connection", func(t *testing.T) {
		c := dialRaw(t, b.Addr())
		value := "other-connection"
		start := time.Now()
		corr := c.Send(fetchRequest(fetchVersions[1], topic, 0, end, longWait, 1))
		select {
		case <-time.After(200 * time.Millisecond): // time for the fetch to park
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: name, Value: []byte(value)}).First()
		if err != nil || r.Offset != end {
			t.Fatalf("producing: offset %d, error %v; want offset %d", r.Offset, err, end)
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(fetchVersions[1])
		c.Receive(resp, corr, longWait+rawTimeout)
		checkWoken(t, onlyPartition(t, resp, name, end), end, value, time.Since(start), wakeLimit)
		produced[end] = value
		end++
	})

	// MinBytes that can never be met: after MaxWait the broker answers
	// with the records it has, not an error.
	t.Run("min bytes unmet", func(t *testing.T) {
		c := dialRaw(t, b.Addr())
		const wait = 500 * time.Millisecond
		start := time.Now()
		resp := c.Do(fetchRequest(fetchVersions[1], topic, 0, 0, wait, 1<<20)).(*kmsg.FetchResponse)
		elapsed := time.Since(start)
		fp := onlyPartition(t, resp, name, 0)
		if fp.Err != nil {
			t.Fatalf("Fetch with MinBytes 1 MiB: %v", fp.Err)
		}
		if int64(len(fp.Records)) != end {
			t.Fatalf("Fetch with MinBytes 1 MiB returned %d records, the partition has %d", len(fp.Records), end)
		}
		for i, r := range fp.Records {
			if r.Offset != int64(i) {
				t.Fatalf("record %d has offset %d", i, r.Offset)
			}
			if want := produced[r.Offset]; string(r.Value) != want {
				t.Errorf("offset %d holds %q, want %q", r.Offset, r.Value, want)
			}
		}
		if elapsed < wait {
			t.Errorf("Fetch with unmet MinBytes answered after %v, before its MaxWait of %v", elapsed, wait)
		}
	})
}

// checkWoken checks a long-poll Fetch answer: exactly the produced record,
// well before MaxWait.
func checkWoken(t *testing.T, fp kgo.FetchPartition, offset int64, value string, elapsed, limit time.Duration) {
	t.Helper()
	if fp.Err != nil {
		t.Fatalf("long-poll Fetch: %v", fp.Err)
	}
	if len(fp.Records) != 1 || fp.Records[0].Offset != offset || string(fp.Records[0].Value) != value {
		t.Fatalf("long-poll Fetch returned %d records, want just %q at offset %d", len(fp.Records), value, offset)
	}
	if elapsed >= limit {
		t.Fatalf("long-poll Fetch answered after %v: the produce did not wake it", elapsed)
	}
}
