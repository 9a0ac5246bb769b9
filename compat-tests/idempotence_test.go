package compattests

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestIdempotentProduce drives the idempotent producer protocol by hand
// through franz-go's raw request path: retries of acknowledged batches are
// deduplicated, sequence gaps and corrupt batches are refused without
// touching the log, and the sequence carries on after each refusal.
func TestIdempotentProduce(t *testing.T) {
	b := startBroker(t)
	ctx := testContext(t, time.Minute)
	cl := newClient(t, b, kgo.RequiredAcks(kgo.AllISRAcks()))
	adm := kadm.NewClient(cl)
	const topic = "idempotence"
	created := createTopic(ctx, t, adm, topic, 1, nil)

	ipr := kmsg.NewPtrInitProducerIDRequest()
	ipr.TransactionTimeoutMillis = -1
	ipresp, err := ipr.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("InitProducerID: %v", err)
	}
	if err := kerr.ErrorForCode(ipresp.ErrorCode); err != nil {
		t.Fatalf("InitProducerID: %v", err)
	}
	if ipresp.ProducerID < 0 || ipresp.ProducerEpoch < 0 {
		t.Fatalf("InitProducerID gave producer %d epoch %d", ipresp.ProducerID, ipresp.ProducerEpoch)
	}
	batch := func(seq int32, prefix string) []byte {
		s := batchSpec{producerID: ipresp.ProducerID, producerEpoch: ipresp.ProducerEpoch, firstSequence: seq, timestamp: time.Now()}
		for i := range 5 {
			s.values = append(s.values, fmt.Appendf(nil, "%s%d", prefix, i))
		}
		return s.build()
	}
	produce := func(what string, partition int32, records []byte) (int64, error) {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Acks = -1
		req.TimeoutMillis = 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic, rt.TopicID = topic, created.ID // name before v13, ID from v13
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = partition, records
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("%s: Produce: %v", what, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("%s: Produce to one partition answered %+v", what, resp.Topics)
		}
		sp := resp.Topics[0].Partitions[0]
		if sp.Partition != partition {
			t.Fatalf("%s: Produce to partition %d answered for partition %d", what, partition, sp.Partition)
		}
		return sp.BaseOffset, kerr.ErrorForCode(sp.ErrorCode)
	}
	expectOK := func(what string, records []byte, wantBase int64) {
		t.Helper()
		base, err := produce(what, 0, records)
		if err != nil || base != wantBase {
			t.Fatalf("%s: base offset %d, error %v; want base offset %d and no error", what, base, err, wantBase)
		}
	}
	expectErr := func(what string, partition int32, records []byte, want *kerr.Error) {
		t.Helper()
		if _, err := produce(what, partition, records); !errors.Is(err, want) {
			t.Fatalf("%s: error %v, want %v", what, err, want)
		}
	}
	expectEnd := func(what string, want int64) {
		t.Helper()
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatalf("%s: ListEndOffsets: %v", what, err)
		}
		if o, _ := ends.Lookup(topic, 0); o.Err != nil || o.Offset != want {
			t.Fatalf("%s: end offset %d (%v), want %d", what, o.Offset, o.Err, want)
		}
	}

	first := batch(0, "a")
	expectOK("first batch, sequence 0", first, 0)
	expectEnd("after the first batch", 5)

	expectOK("the first batch again", first, 0)
	expectEnd("after retrying the first batch", 5)

	expectErr("batch at sequence 10 when 5 is next", 0, batch(10, "gap"), kerr.OutOfOrderSequenceNumber)
	expectEnd("after the sequence gap", 5)

	expectOK("batch at sequence 5", batch(5, "b"), 5)
	expectEnd("after the second batch", 10)

	third := batch(10, "c")
	corrupt := bytes.Clone(third)
	at := bytes.LastIndex(corrupt, []byte("c4"))
	corrupt[at] = 'x' // same shape, wrong CRC
	expectErr("batch with a CRC mismatch", 0, corrupt, kerr.CorruptMessage)
	expectEnd("after the corrupt batch", 10)

	// The refused batch used no sequence numbers: 10 is still next.
	expectOK("batch at sequence 10", third, 10)
	expectEnd("after the third batch", 15)

	// Kafka remembers the last five batches of a producer, so a late
	// retry of one that is no longer the newest is still a duplicate.
	expectOK("the first batch once more, two batches later", first, 0)
	expectEnd("after retrying the first batch late", 15)

	plain := batchSpec{producerID: -1, timestamp: time.Now(), values: [][]byte{[]byte("nowhere")}}.build()
	expectErr("batch for partition 99 of a one-partition topic", 99, plain, kerr.UnknownTopicOrPartition)
	expectEnd("after producing to an unknown partition", 15)

	// The log holds each accepted batch exactly once, in order.
	got := consumeKgo(ctx, t, b, topic, map[int32]int64{0: 0}, 15)
	if len(got) != 15 {
		t.Fatalf("the log holds %d records, want the 15 of three batches", len(got))
	}
	for i, r := range got {
		want := fmt.Sprintf("%c%d", "abc"[i/5], i%5)
		if r.Offset != int64(i) || string(r.Value) != want {
			t.Errorf("offset %d holds %q, want offset %d to hold %q", r.Offset, r.Value, i, want)
		}
		if r.ProducerID != ipresp.ProducerID || r.ProducerEpoch != ipresp.ProducerEpoch {
			t.Errorf("offset %d has producer %d epoch %d, want %d epoch %d", r.Offset, r.ProducerID, r.ProducerEpoch, ipresp.ProducerID, ipresp.ProducerEpoch)
		}
	}
}
