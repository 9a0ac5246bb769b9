package compattests

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// newClient returns a franz-go client for b, closed when the test ends.
func newClient(t testing.TB, b *brokerProc, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(b.Addr())}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatalf("creating franz-go client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// newAdmin returns a kadm client on a client of its own.
func newAdmin(t testing.TB, b *brokerProc) *kadm.Client {
	t.Helper()
	return kadm.NewClient(newClient(t, b))
}

// createTopic creates topic and checks the CreateTopics answer.
func createTopic(ctx context.Context, t testing.TB, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) kadm.CreateTopicResponse {
	t.Helper()
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, topic)
	if err != nil {
		t.Fatalf("creating topic %s: %v (%s)", topic, err, resp.ErrMessage)
	}
	if resp.Topic != topic || resp.NumPartitions != partitions || resp.ReplicationFactor != 1 {
		t.Fatalf("CreateTopics answered topic %q with %d partitions and replication factor %d, want %q, %d and 1",
			resp.Topic, resp.NumPartitions, resp.ReplicationFactor, topic, partitions)
	}
	if resp.ID == (kadm.TopicID{}) {
		t.Fatalf("CreateTopics gave topic %s no topic ID", topic)
	}
	return resp
}

// header is one record header; order and repeats matter.
type header struct {
	Key   string
	Value []byte
}

// testRecord is what a test produced and expects to read back.
type testRecord struct {
	Partition int32
	Key       []byte
	Value     []byte
	Headers   []header
	Timestamp time.Time
	Offset    int64 // assigned by the broker, filled from the produce answer
}

// makeRecords builds n records spread round-robin over partitions, with
// binary keys, compressible values (so codecs really shrink them), repeated
// header keys and strictly increasing millisecond timestamps from base.
func makeRecords(seed uint64, n int, partitions int32, base time.Time) []testRecord {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	filler := strings.Repeat("the quick brown fox jumps over the lazy dog ", 4)
	recs := make([]testRecord, n)
	for i := range recs {
		key := fmt.Appendf(nil, "key-%d-", i)
		for range 8 {
			key = append(key, byte(rng.UintN(256))) // includes 0x00 and 0xff
		}
		value := fmt.Appendf(nil, "value %d: %s", i, filler[:rng.IntN(len(filler))])
		for range rng.IntN(16) {
			value = append(value, byte(rng.UintN(256)))
		}
		trace := make([]byte, 12)
		for j := range trace {
			trace[j] = byte(rng.UintN(256))
		}
		recs[i] = testRecord{
			Partition: int32(i) % partitions,
			Key:       key,
			Value:     value,
			Headers: []header{
				{Key: "trace", Value: trace},
				{Key: "index", Value: fmt.Appendf(nil, "%d", i)},
				{Key: "empty", Value: []byte{}},
				{Key: "trace", Value: []byte("second value of a repeated key")},
			},
			Timestamp: base.Add(time.Duration(i) * time.Millisecond),
		}
	}
	return recs
}

// gotRecord is a consumed record in client-neutral form.
type gotRecord struct {
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []header
	Timestamp time.Time
}

// checkRoundTrip checks that got holds exactly the produced records, each at
// the offset its produce was acknowledged with, byte for byte, and that the
// offsets of every partition are dense from 0.
func checkRoundTrip(t testing.TB, want []testRecord, got []gotRecord) {
	t.Helper()
	type at struct {
		p int32
		o int64
	}
	byOffset := make(map[at]*testRecord, len(want))
	for i := range want {
		w := &want[i]
		k := at{w.Partition, w.Offset}
		if _, dup := byOffset[k]; dup {
			t.Fatalf("two produced records were acknowledged at partition %d offset %d", w.Partition, w.Offset)
		}
		byOffset[k] = w
	}
	if len(got) != len(want) {
		t.Errorf("consumed %d records, produced %d", len(got), len(want))
	}
	offsets := make(map[int32][]int64)
	bad := 0
	for _, g := range got {
		offsets[g.Partition] = append(offsets[g.Partition], g.Offset)
		w, ok := byOffset[at{g.Partition, g.Offset}]
		if !ok {
			t.Errorf("consumed a record at partition %d offset %d that no produce was acknowledged with", g.Partition, g.Offset)
			bad++
		} else if diff := diffRecord(w, g); diff != "" {
			t.Errorf("partition %d offset %d: %s", g.Partition, g.Offset, diff)
			bad++
		}
		if bad >= 10 {
			t.Fatal("too many mismatches; stopping")
		}
	}
	checkDense(t, offsets, 0)
}

// checkDense checks that each partition's offsets are from, from+1, ...
// without gaps or repeats.
func checkDense(t testing.TB, offsets map[int32][]int64, from int64) {
	t.Helper()
	for p, os := range offsets {
		sort.Slice(os, func(i, j int) bool { return os[i] < os[j] })
		for i, o := range os {
			if o != from+int64(i) {
				t.Errorf("partition %d: offsets are not dense from %d: position %d holds offset %d", p, from, i, o)
				break
			}
		}
	}
}

func diffRecord(w *testRecord, g gotRecord) string {
	var d []string
	if !bytes.Equal(w.Key, g.Key) {
		d = append(d, fmt.Sprintf("key %q, want %q", g.Key, w.Key))
	}
	if !bytes.Equal(w.Value, g.Value) {
		d = append(d, fmt.Sprintf("value %q, want %q", g.Value, w.Value))
	}
	if w.Timestamp.UnixMilli() != g.Timestamp.UnixMilli() {
		d = append(d, fmt.Sprintf("timestamp %d, want %d", g.Timestamp.UnixMilli(), w.Timestamp.UnixMilli()))
	}
	if !equalHeaders(w.Headers, g.Headers) {
		d = append(d, fmt.Sprintf("headers %q, want %q", g.Headers, w.Headers))
	}
	return strings.Join(d, "; ")
}

func equalHeaders(a, b []header) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// kgoRecord converts a produced record to franz-go's form.
func (r *testRecord) kgoRecord(topic string) *kgo.Record {
	kr := &kgo.Record{Topic: topic, Partition: r.Partition, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
	for _, h := range r.Headers {
		kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return kr
}

// fromKgo converts a consumed franz-go record.
func fromKgo(r *kgo.Record) gotRecord {
	g := gotRecord{Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
	for _, h := range r.Headers {
		g.Headers = append(g.Headers, header{Key: h.Key, Value: h.Value})
	}
	return g
}

// produceAll produces recs with ProduceSync and records the offsets they
// were acknowledged with.
func produceAll(ctx context.Context, t testing.TB, cl *kgo.Client, topic string, recs []testRecord) {
	t.Helper()
	krs := make([]*kgo.Record, len(recs))
	for i := range recs {
		krs[i] = recs[i].kgoRecord(topic)
	}
	index := make(map[*kgo.Record]int, len(krs))
	for i, kr := range krs {
		index[kr] = i
	}
	// Results come in the order the acknowledgements did.
	results := cl.ProduceSync(ctx, krs...)
	if len(results) != len(krs) {
		t.Fatalf("ProduceSync of %d records gave %d results", len(krs), len(results))
	}
	for _, res := range results {
		i := index[res.Record]
		if res.Err != nil {
			t.Fatalf("producing record %d: %v", i, res.Err)
		}
		if res.Record.Partition != recs[i].Partition {
			t.Fatalf("record %d for partition %d was acknowledged on partition %d", i, recs[i].Partition, res.Record.Partition)
		}
		recs[i].Offset = res.Record.Offset
	}
}

// consumeKgo reads partitions of topic from the given offsets with direct
// assignment until n records arrived, the context ends, or a fetch fails.
func consumeKgo(ctx context.Context, t testing.TB, b *brokerProc, topic string, from map[int32]int64, n int) []*kgo.Record {
	t.Helper()
	assign := make(map[int32]kgo.Offset, len(from))
	for p, o := range from {
		assign[p] = kgo.NewOffset().At(o)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}))
	if err != nil {
		t.Fatalf("creating franz-go consumer: %v", err)
	}
	defer cl.Close()
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consuming %s: got %d of %d records before %v", topic, len(got), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetching %s/%d: %v", topic, p, err)
		})
		got = append(got, fs.Records()...)
	}
	return got
}

// fromStart maps partitions 0..n-1 to offset 0.
func fromStart(n int32) map[int32]int64 {
	m := make(map[int32]int64, n)
	for p := range n {
		m[p] = 0
	}
	return m
}
