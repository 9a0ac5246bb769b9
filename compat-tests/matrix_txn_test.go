package compattests

// The transaction cells of the compatibility matrix: the client's
// transactional producer, checked with franz-go at both isolation levels,
// and the client's read_committed consumer, fed by franz-go's
// transactional producers.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// txnRecords is how many records each transaction of the
	// transactional produce cell writes.
	txnRecords    = 5
	txnPartitions = 3
)

// txnPlan is the transactional produce cell's transactions: true commits.
var txnPlan = []bool{true, false, true}

// noTxnPartitionChoice are the clients whose transactional produce cannot
// name each record's partition (kcat's -p holds for a whole run; without
// it librdkafka partitions by key).
var noTxnPartitionChoice = map[string]bool{"kcat": true}

// Record batch attributes.
const (
	attrTransactional = 0x10
	attrControl       = 0x20
)

// txnWant is a record a check expects, and whether reading it is right.
type txnWant struct {
	rec       recordLine
	committed bool
}

// cellTxnProduce: the client's transactional producer runs txnPlan's
// transactions, each across the topic's partitions; franz-go then reads
// exactly the committed records at read_committed, and every record at
// read_uncommitted, from batches marked transactional.
func cellTxnProduce(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
	topic := e.topic(ctx, t, client, "txn", txnPartitions)
	a := e.args(topic)
	a.Partitions, a.Count, a.Prefix, a.TxnID, a.Commit = txnPartitions, txnRecords, "tx", topic+"-producer", txnPlan
	ends := runOp[txnEndLine](ctx, t, d, "produce-txn", a)
	var wantEnds []txnEndLine
	for j, c := range txnPlan {
		wantEnds = append(wantEnds, txnEndLine{Txn: j, End: txnEndName(c)})
	}
	if !slices.Equal(ends, wantEnds) {
		t.Fatalf("the client reported the transactions' ends %+v, want %+v", ends, wantEnds)
	}
	want := map[string]txnWant{}
	committed := 0
	for j, c := range txnPlan {
		for i := range txnRecords {
			r := shaped(txnPrefix(a.Prefix, j), i, 0)
			r.P = int32(i) % txnPartitions
			want[*r.V] = txnWant{rec: r, committed: c}
			if c {
				committed++
			}
		}
	}
	c := txnReadCheck{anyPartition: noTxnPartitionChoice[client], noHeaders: client == "kcat"}
	c.check(t, "read_committed", readAllKgo(ctx, t, e.b, topic, true, committed), want, true)
	c.check(t, "read_uncommitted", readAllKgo(ctx, t, e.b, topic, false, len(want)), want, false)

	ends2, err := kadmEndOffsets(ctx, t, e, topic)
	if err != nil {
		t.Fatal(err)
	}
	markers := 0
	for p := range int32(txnPartitions) {
		if ends2[p] == 0 {
			continue // kcat's partitioner may leave a partition out
		}
		for _, b := range storedBatches(t, e.b, topic, p) {
			switch {
			case b.Attributes&attrControl != 0:
				markers++
			case b.Attributes&attrTransactional == 0 || b.ProducerID < 0:
				t.Errorf("partition %d: a batch the client wrote at offset %d is not transactional (attributes %#x, producer ID %d)",
					p, b.FirstOffset, b.Attributes, b.ProducerID)
			}
		}
	}
	if markers == 0 {
		t.Errorf("no transaction marker in the topic")
	}
}

// kadmEndOffsets returns the high watermark of every partition of topic.
func kadmEndOffsets(ctx context.Context, t testing.TB, e *matrixEnv, topic string) (map[int32]int64, error) {
	t.Helper()
	adm := newAdmin(t, e.b)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	var first error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil && first == nil {
			first = fmt.Errorf("end offset of %s/%d: %w", topic, o.Partition, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	return out, first
}

// readAllKgo reads every partition of topic from the start with franz-go
// at read_committed or read_uncommitted: until want records arrived and
// then a second passes without another (so that records beyond those
// expected are seen), or until nothing arrives for five seconds.
func readAllKgo(ctx context.Context, t testing.TB, b *brokerProc, topic string, readCommitted bool, want int) []*kgo.Record {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if readCommitted {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatalf("creating franz-go consumer: %v", err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for {
		wait := 5 * time.Second
		if len(out) >= want {
			wait = time.Second
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		fs := cl.PollFetches(pctx)
		cancel()
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
				t.Fatalf("reading %s/%d: %v", fe.Topic, fe.Partition, fe.Err)
			}
		}
		out = append(out, fs.Records()...)
		if fs.NumRecords() == 0 && pctx.Err() != nil {
			if err := ctx.Err(); err != nil {
				t.Fatalf("reading %s: %v", topic, err)
			}
			return out
		}
	}
}

// txnReadCheck says what a check of records read from a transactional
// produce compares.
type txnReadCheck struct {
	anyPartition bool
	noHeaders    bool
}

// check compares what franz-go read at an isolation level with want, keyed
// by value: every wanted record (only the committed ones when
// onlyCommitted) once, with its key, headers and partition, and nothing
// else.
func (c txnReadCheck) check(t testing.TB, level string, read []*kgo.Record, want map[string]txnWant, onlyCommitted bool) {
	t.Helper()
	seen := map[string]bool{}
	var problems []string
	for _, r := range read {
		g := lineOf(r)
		v := string(r.Value)
		w, known := want[v]
		switch {
		case !known:
			problems = append(problems, fmt.Sprintf("read %q at %d/%d, which no transaction wrote", v, r.Partition, r.Offset))
			continue
		case seen[v]:
			problems = append(problems, fmt.Sprintf("read %q twice", v))
		case onlyCommitted && !w.committed:
			problems = append(problems, fmt.Sprintf("read %q at %d/%d, of an aborted transaction", v, r.Partition, r.Offset))
		}
		seen[v] = true
		if g.K == nil || *g.K != *w.rec.K {
			problems = append(problems, fmt.Sprintf("%q has key %s, want %q", v, strOrNull(g.K), *w.rec.K))
		}
		if !c.noHeaders && fmt.Sprint(g.H) != fmt.Sprint(w.rec.H) {
			problems = append(problems, fmt.Sprintf("%q has headers %q, want %q", v, g.H, w.rec.H))
		}
		if !c.anyPartition && g.P != w.rec.P {
			problems = append(problems, fmt.Sprintf("%q is on partition %d, want %d", v, g.P, w.rec.P))
		}
	}
	for v, w := range want {
		if !seen[v] && (w.committed || !onlyCommitted) {
			problems = append(problems, fmt.Sprintf("%q is missing", v))
		}
	}
	slices.Sort(problems)
	reportLogProblems(t, level, problems)
}

// txnProducer is a franz-go transactional producer to partition 0 of a
// topic.
type txnProducer struct {
	t     testing.TB
	cl    *kgo.Client
	topic string
}

func (e *matrixEnv) txnProducer(t testing.TB, topic, id string) *txnProducer {
	t.Helper()
	cl := newClient(t, e.b, kgo.TransactionalID(id), kgo.TransactionTimeout(time.Minute), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	return &txnProducer{t: t, cl: cl, topic: topic}
}

// begin starts a transaction and writes shaped records from..to-1 with
// prefix in it; it returns their lines, at the offsets they were written
// at.
func (p *txnProducer) begin(ctx context.Context, prefix string, from, to int) []recordLine {
	p.t.Helper()
	if err := p.cl.BeginTransaction(); err != nil {
		p.t.Fatalf("beginning a transaction: %v", err)
	}
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		s := shaped(prefix, i, 0)
		r := &kgo.Record{Key: []byte(*s.K), Value: []byte(*s.V), Partition: 0}
		for _, h := range s.H {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
		}
		recs = append(recs, r)
	}
	if err := p.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		p.t.Fatalf("producing %s records %d-%d in a transaction: %v", prefix, from, to-1, err)
	}
	var out []recordLine
	for _, r := range recs {
		l := lineOf(r)
		l.Ts = 0
		out = append(out, l)
	}
	return out
}

func (p *txnProducer) end(ctx context.Context, commit bool) {
	p.t.Helper()
	if err := p.cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		p.t.Fatalf("ending a transaction (%s): %v", txnEndName(commit), err)
	}
}

// cellReadCommitted: franz-go's transactional producers write a committed,
// an aborted and a committed transaction, then leave one open with a
// committed one after it; the client consumes at read_committed from the
// earliest offset and must print the committed records before the open
// transaction, and, once that transaction is aborted, the ones after it,
// and nothing else.
func cellReadCommitted(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
	topic := e.topic(ctx, t, client, "rc", 1)
	p1 := e.txnProducer(t, topic, topic+"-a")
	p2 := e.txnProducer(t, topic, topic+"-b")
	var want []recordLine
	want = append(want, p1.begin(ctx, "rc", 0, 4)...)
	p1.end(ctx, true)
	p1.begin(ctx, "rc-aborted", 0, 4)
	p1.end(ctx, false)
	want = append(want, p1.begin(ctx, "rc", 4, 8)...)
	p1.end(ctx, true)
	before := len(want)
	p2.begin(ctx, "rc-open", 0, 3)
	want = append(want, p1.begin(ctx, "rc", 8, 11)...)
	p1.end(ctx, true)

	a := e.args(topic)
	a.From, a.Count, a.ReadCommitted = "earliest", len(want), true
	var (
		mu      sync.Mutex
		got     []recordLine
		bad     error
		reached = make(chan struct{})
		done    = make(chan error, 1)
	)
	go func() {
		done <- d.run(ctx, t, "consume", a, func(raw json.RawMessage) {
			mu.Lock()
			defer mu.Unlock()
			var l recordLine
			if err := json.Unmarshal(raw, &l); err != nil && bad == nil {
				bad = fmt.Errorf("decoding %s: %w", raw, err)
			}
			if got = append(got, l); len(got) == before {
				close(reached)
			}
		})
	}()
	// The records after the open transaction are not stable until it
	// ends: the client reads up to it, then the transaction is aborted.
	var err error
	select {
	case <-reached:
	case err = <-done:
		done <- err
	}
	p2.end(ctx, false)
	err = <-done
	mu.Lock()
	defer mu.Unlock()
	if bad != nil {
		t.Fatal(bad)
	}
	if len(got) > 0 || err != nil {
		checkLines(t, got, want)
	}
	if err != nil {
		t.Fatalf("consume at read_committed: %v", err)
	}
}

// checkLines compares the records a client printed with want: key, value,
// headers, partition and offset (not timestamps), in order.
func checkLines(t testing.TB, got, want []recordLine) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d records, want %d", len(got), len(want))
	}
	for j := range min(len(got), len(want)) {
		g, w := got[j], want[j]
		var d []string
		if g.P != w.P || g.O != w.O {
			d = append(d, fmt.Sprintf("at %d/%d, want %d/%d", g.P, g.O, w.P, w.O))
		}
		if strOrNull(g.K) != strOrNull(w.K) {
			d = append(d, fmt.Sprintf("key %s, want %s", strOrNull(g.K), strOrNull(w.K)))
		}
		if strOrNull(g.V) != strOrNull(w.V) {
			d = append(d, fmt.Sprintf("value %s, want %s", strOrNull(g.V), strOrNull(w.V)))
		}
		if fmt.Sprint(g.H) != fmt.Sprint(w.H) {
			d = append(d, fmt.Sprintf("headers %q, want %q", g.H, w.H))
		}
		if len(d) > 0 {
			t.Errorf("record %d: %s", j, strings.Join(d, "; "))
		}
	}
	for j := len(want); j < len(got); j++ {
		t.Errorf("record %d is one too many: value %s at %d/%d", j, strOrNull(got[j].V), got[j].P, got[j].O)
	}
}
