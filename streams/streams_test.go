package streams_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker/brokertest"
	"github.com/pubg1/pubg1/streams"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// event is one input record of the tests: a key, an event time in the
// record timestamp and a price.
type event struct {
	part  int32
	key   string
	ts    int64
	price float64
}

func produce(ctx context.Context, t testing.TB, addr, topic string, evs []event) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, e := range evs {
		v, _ := json.Marshal(map[string]any{"price": e.price})
		cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: e.part, Key: []byte(e.key), Value: v, Timestamp: time.UnixMilli(e.ts)}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("producing: %v", err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func createTopic(ctx context.Context, t testing.TB, addr, topic string, parts int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, parts, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
}

// results reads the committed results of topic until want of them are
// there (or ctx ends), by result key.
func results(ctx context.Context, t testing.TB, addr, topic string, want int) map[string]map[string]any {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := make(map[string]map[string]any)
	for len(out) < want && ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var v map[string]any
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Errorf("result %s: %v", r.Value, err)
				return
			}
			if _, dup := out[string(r.Key)]; dup {
				t.Errorf("result %s written twice", r.Key)
			}
			out[string(r.Key)] = v
		})
	}
	return out
}

// TestTumblingCount runs a processor over a known input of two
// partitions, with a late record and one within the grace period, and
// checks every window's count and sum.
func TestTumblingCount(t *testing.T) {
	b := brokertest.Run(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	createTopic(ctx, t, b.Addr(), "in", 2)
	evs := []event{
		{0, "a", 1000, 1}, {0, "a", 1500, 2}, {0, "a", 10500, 4}, // a: [0,10000) = 2 records, 3
		{0, "a", 9000, 8},                       // within grace (stream time 10500, grace 2s): [0,10000) now 3, 11
		{0, "a", 13000, 16}, {0, "a", 1200, 32}, // stream time 13000: [0,10000) closed, 1200 dropped
		{1, "b", 5000, 1}, {1, "b", 25000, 2}, // b: [0,10000) = 1, [20000,30000) = 1
		{0, "z", 100000, 0}, {1, "z", 100000, 0}, // close everything else
	}
	produce(ctx, t, b.Addr(), "in", evs)
	var last atomic.Pointer[streams.Stats]
	cfg := streams.Config{
		Brokers: []string{b.Addr()}, AppID: "app", Input: "in", Output: "out",
		Window: streams.Tumbling(10 * time.Second), Aggs: []streams.Agg{streams.Count(), streams.Sum("price")},
		Grace: 2 * time.Second, StateDir: t.TempDir(), Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Progress: func(s streams.Stats) { last.Store(&s) },
	}
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() { done <- streams.Run(rctx, cfg) }()
	got := results(ctx, t, b.Addr(), "out", 4)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := map[string][2]float64{
		`{"key":"a","start":0,"end":10000}`:     {3, 11},
		`{"key":"a","start":10000,"end":20000}`: {2, 20},
		`{"key":"b","start":0,"end":10000}`:     {1, 1},
		`{"key":"b","start":20000,"end":30000}`: {1, 2},
	}
	for k, w := range want {
		v, ok := got[k]
		if !ok {
			t.Errorf("no result for %s", k)
			continue
		}
		if v["count"] != w[0] || v["sum_price"] != w[1] {
			t.Errorf("%s: count %v, sum %v; want %v, %v", k, v["count"], v["sum_price"], w[0], w[1])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d results, want %d: %v", len(got), len(want), got)
	}
	if s := last.Load(); s == nil || s.Late != 1 || s.In != int64(len(evs)) {
		t.Errorf("stats %+v: want %d in, 1 late", s, len(evs))
	}
}

// TestGroupByField groups by a JSON field whose values come from both
// input partitions: through the repartition topic, each window of a group
// key has one result covering the records of both.
func TestGroupByField(t *testing.T) {
	b := brokertest.Run(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	createTopic(ctx, t, b.Addr(), "views", 2)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rs []*kgo.Record
	for i := range 40 {
		user := []string{"ann", "bob"}[i%2]
		ts := int64(i) * 500 // 0 to 19.5 s
		v, _ := json.Marshal(map[string]any{"user": user, "ts": ts, "page": i % 3})
		rs = append(rs, &kgo.Record{Topic: "views", Partition: int32(i/2) % 2, Value: v})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var in atomic.Int64
	cfg := streams.Config{
		Brokers: []string{b.Addr()}, AppID: "by-user", Input: "views", Output: "per-user",
		Key: streams.JSONKey("user"), Time: streams.JSONTime("ts"),
		Window: streams.Tumbling(10 * time.Second), Aggs: []streams.Agg{streams.Count(), streams.CountDistinct("page")},
		// The partitions are read in any order: the grace covers the
		// whole input's event time.
		Grace:    20 * time.Second,
		StateDir: t.TempDir(), Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Progress: func(s streams.Stats) { in.Store(s.In) },
	}
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() { done <- streams.Run(rctx, cfg) }()
	// The records of both partitions meet in one task in the order they
	// were read: the records that close the windows come once all are in.
	for in.Load() < int64(len(rs)) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	rs = rs[:0]
	for p := range int32(2) {
		v, _ := json.Marshal(map[string]any{"user": "zz", "ts": 100000})
		rs = append(rs, &kgo.Record{Topic: "views", Partition: p, Value: v})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := results(ctx, t, b.Addr(), "per-user", 4)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, user := range []string{"ann", "bob"} {
		for _, start := range []int{0, 10000} {
			k := fmt.Sprintf(`{"key":%q,"start":%d,"end":%d}`, user, start, start+10000)
			if v := got[k]; v == nil || v["count"] != float64(10) || v["count_distinct_page"] != float64(3) {
				t.Errorf("%s: %v, want 10 records of 3 pages", k, v)
			}
		}
	}
	if len(got) != 4 {
		t.Errorf("%d results, want 4: %v", len(got), got)
	}
}
