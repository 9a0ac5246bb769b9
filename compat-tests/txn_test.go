package compattests

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnLedger records what transactional producers wrote: each record value
// once, with whether its transaction committed.
type txnLedger struct {
	committed map[string]bool // value → its transaction committed
	txnOf     map[string]int  // value → transaction number
	sizes     map[int]int     // transaction number → records
	// unknown are transactions whose end the producer did not learn (its
	// coordinator died): all of their records or none may be read.
	unknown map[int]bool
}

func newTxnLedger() *txnLedger {
	return &txnLedger{committed: map[string]bool{}, txnOf: map[string]int{}, sizes: map[int]int{}, unknown: map[int]bool{}}
}

func (l *txnLedger) add(txn int, value string, committed bool) {
	l.committed[value], l.txnOf[value] = committed, txn
	l.sizes[txn]++
}

// settle records the outcome of transaction txn once known.
func (l *txnLedger) settle(txn int, committed, known bool) {
	for v, n := range l.txnOf {
		if n == txn {
			l.committed[v] = committed
		}
	}
	if !known {
		l.unknown[txn] = true
	}
}

// check compares what a read_committed consumer read with the ledger and
// returns every problem: a committed record lost, an aborted one read, a
// transaction read in part, a duplicate, offsets out of order.
func (l *txnLedger) check(read []*kgo.Record) []string {
	var problems []string
	seen := map[string]bool{}
	perTxn := map[int]int{}
	last := map[string]int64{}
	for _, r := range read {
		v := string(r.Value)
		tp := fmt.Sprintf("%s-%d", r.Topic, r.Partition)
		if o, ok := last[tp]; ok && r.Offset <= o {
			problems = append(problems, fmt.Sprintf("%s: offset %d read after %d", tp, r.Offset, o))
		}
		last[tp] = r.Offset
		committed, known := l.committed[v]
		switch {
		case !known:
			problems = append(problems, fmt.Sprintf("read %q, which no producer wrote", v))
		case seen[v]:
			problems = append(problems, fmt.Sprintf("read %q twice", v))
		case !committed && !l.unknown[l.txnOf[v]]:
			problems = append(problems, fmt.Sprintf("read %q of aborted transaction %d", v, l.txnOf[v]))
		}
		seen[v] = true
		if known {
			perTxn[l.txnOf[v]]++
		}
	}
	for v, committed := range l.committed {
		if committed && !seen[v] && !l.unknown[l.txnOf[v]] {
			problems = append(problems, fmt.Sprintf("committed record %q (transaction %d) lost", v, l.txnOf[v]))
		}
	}
	for txn, n := range perTxn {
		if n != l.sizes[txn] && n > 0 {
			problems = append(problems, fmt.Sprintf("transaction %d torn: %d of its %d records read", txn, n, l.sizes[txn]))
		}
	}
	sort.Strings(problems)
	return problems
}

// consumeAllTxn reads topic from the start at the isolation level given
// until want records were read or no more come for quiet.
func consumeAllTxn(ctx context.Context, t *testing.T, seeds []string, topic string, committed bool, want int, quiet time.Duration) []*kgo.Record {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(out) < want {
		pctx, cancel := context.WithTimeout(ctx, quiet)
		fs := cl.PollFetches(pctx)
		cancel()
		if pctx.Err() != nil && fs.NumRecords() == 0 {
			break
		}
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) && !errors.Is(e.Err, context.Canceled) {
				t.Fatalf("consuming %s: %v", topic, e.Err)
			}
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// pad makes records of about 100 bytes, so that a transaction's records
// fill many batches.
var pad = strings.Repeat("p", 80)

// runTxns has a transactional producer write n transactions of size
// records each to topic, committing all but every third, which it aborts.
func runTxns(ctx context.Context, t *testing.T, cl *kgo.Client, topic string, ledger *txnLedger, first, n, size int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatalf("begin transaction %d: %v", i, err)
		}
		commit := i%3 != 0
		// Produced without waiting, so that a partition has several
		// batches in flight when its first one in the transaction is
		// verified.
		var mu sync.Mutex
		var perr error
		for j := range size {
			v := fmt.Sprintf("txn-%d-rec-%d-%s", i, j, pad)
			r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(j)), Value: []byte(v)}
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil && perr == nil {
					perr = err
				}
			})
			ledger.add(i, v, commit)
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatalf("transaction %d: flush: %v", i, err)
		}
		if perr != nil {
			t.Fatalf("transaction %d: produce: %v", i, perr)
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end transaction %d (commit %v): %v", i, commit, err)
		}
	}
}

// TestTransactions drives franz-go's transactional producer against one
// broker: committed and aborted transactions across partitions, a
// read_committed consumer that must see exactly the committed records, a
// read_uncommitted one that sees them all, a transaction left open that
// holds back read_committed readers (and ListOffsets at read_committed)
// until a second producer with the same transactional ID fences the
// first and its transaction is aborted.
func TestTransactions(t *testing.T) {
	b := startBroker(t)
	ctx := testContext(t, 2*time.Minute)
	seeds := []string{b.Addr()}
	adm := kadm.NewClient(newClient(t, b))
	const topic = "txn"
	createTopic(ctx, t, adm, topic, 3, nil)

	ledger := newTxnLedger()
	p1, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID("tx-a"), kgo.TransactionTimeout(20*time.Second),
		kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(10000))
	if err != nil {
		t.Fatal(err)
	}
	defer p1.Close()
	runTxns(ctx, t, p1, topic, ledger, 0, 12, 5)
	runTxns(ctx, t, p1, topic, ledger, 12, 4, 3000)
	// franz-go uses transactions version 2, which the broker finalizes:
	// every transaction's end bumped the epoch.
	if d, err := adm.DescribeTransactions(ctx, "tx-a"); err != nil || d["tx-a"].ProducerEpoch < 16 {
		t.Errorf("after 16 transactions of version 2 the producer's epoch is %d (%v), want at least 16", d["tx-a"].ProducerEpoch, err)
	}

	got := consumeAllTxn(ctx, t, seeds, topic, true, 1<<30, 2*time.Second)
	reportLogProblems(t, "read_committed", ledger.check(got))
	all := consumeAllTxn(ctx, t, seeds, topic, false, len(ledger.committed), 5*time.Second)
	if len(all) != len(ledger.committed) {
		t.Errorf("read_uncommitted read %d records, want all %d written", len(all), len(ledger.committed))
	}

	// A transaction left open holds back read_committed readers.
	if err := p1.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for j := range 3 {
		v := fmt.Sprintf("open-rec-%d", j)
		if err := p1.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		ledger.add(100, v, false)
	}
	committedEnds, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	behind := false
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := committedEnds.Lookup(topic, o.Partition); ok && c.Offset < o.Offset {
			behind = true
		}
	})
	if !behind {
		t.Errorf("with a transaction open, the read_committed end offsets %v equal the high watermarks %v", committedEnds, ends)
	}
	checkTxnAdmin(ctx, t, adm, "tx-a", topic)

	// A new producer of the same transactional ID fences the first and
	// aborts its open transaction.
	p2, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID("tx-a"), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	runTxns(ctx, t, p2, topic, ledger, 200, 2, 3)
	if err := p1.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Error("the fenced producer committed its transaction")
	} else if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) && !strings.Contains(err.Error(), "fenced") {
		t.Logf("fenced producer's commit failed with %v", err)
	}
	got = consumeAllTxn(ctx, t, seeds, topic, true, 1<<30, 2*time.Second)
	reportLogProblems(t, "read_committed after fencing", ledger.check(got))
}

// transformOnce runs a consume-transform-produce worker with franz-go's
// GroupTransactSession: each record of in is copied to out, with its
// value prefixed, in the transaction that commits its offset. It stops
// after limit records, aborting its last transaction if abortLast is set
// (as a worker that dies before its commit would), and returns how many
// records it committed.
func transformOnce(ctx context.Context, t *testing.T, seeds []string, in, out string, limit int, abortLast bool) int {
	t.Helper()
	sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(seeds...), kgo.TransactionalID("transformer"),
		kgo.ConsumerGroup("transformers"), kgo.ConsumeTopics(in), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DefaultProduceTopic(out), kgo.TransactionTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	done := 0
	// The group's first join waits out its initial rebalance delay.
	idle := time.Now().Add(15 * time.Second)
	for done < limit {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := sess.PollRecords(pctx, 20)
		cancel()
		if fs.NumRecords() == 0 {
			if time.Now().After(idle) {
				break
			}
			continue
		}
		idle = time.Now().Add(3 * time.Second)
		if err := sess.Begin(); err != nil {
			t.Fatalf("begin: %v", err)
		}
		n := 0
		var perr error
		fs.EachRecord(func(r *kgo.Record) {
			if err := sess.ProduceSync(ctx, &kgo.Record{Key: r.Key, Value: append([]byte("out-"), r.Value...)}).FirstErr(); err != nil && perr == nil {
				perr = err
			}
			n++
		})
		if perr != nil {
			t.Fatalf("produce in transaction: %v", perr)
		}
		commit := !(abortLast && done+n >= limit)
		committed, err := sess.End(ctx, kgo.TransactionEndTry(commit))
		if err != nil {
			t.Fatalf("end transaction: %v", err)
		}
		if committed {
			done += n
		} else if commit {
			t.Logf("a transaction of %d records was aborted by the session (rebalance)", n)
		} else {
			return done
		}
	}
	return done
}

// TestTransactionsGroupSession is consume-transform-produce with exactly
// once: a worker copies an input topic to an output topic with franz-go's
// GroupTransactSession, its offsets committed in its transactions; it
// aborts its last transaction and stops, a second worker of the same group
// and transactional ID takes over, and the output holds every input record
// exactly once while the group's committed offsets reach the input's end.
func TestTransactionsGroupSession(t *testing.T) {
	b := startBroker(t)
	ctx := testContext(t, 2*time.Minute)
	seeds := []string{b.Addr()}
	cl := newClient(t, b)
	adm := kadm.NewClient(cl)
	const in, out, total = "tx-in", "tx-out", 300
	createTopic(ctx, t, adm, in, 2, nil)
	createTopic(ctx, t, adm, out, 2, nil)
	for i := range total {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: in, Key: []byte(fmt.Sprint(i % 7)), Value: []byte(fmt.Sprintf("rec-%d", i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	first := transformOnce(ctx, t, seeds, in, out, total/2, true)
	rest := transformOnce(ctx, t, seeds, in, out, total, false)
	t.Logf("first worker committed %d records, the second %d", first, rest)

	got := consumeAllTxn(ctx, t, seeds, out, true, total, 5*time.Second)
	seen := map[string]int{}
	for _, r := range got {
		seen[string(r.Value)]++
	}
	for i := range total {
		if n := seen[fmt.Sprintf("out-rec-%d", i)]; n != 1 {
			t.Errorf("output holds out-rec-%d %d times, want once", i, n)
		}
	}
	if len(got) != total {
		t.Errorf("output holds %d records, want %d", len(got), total)
	}
	offs, err := adm.FetchOffsets(ctx, "transformers")
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := offs.Lookup(in, o.Partition); !ok || c.At != o.Offset {
			t.Errorf("partition %d: committed offset %v, end %d", o.Partition, c.At, o.Offset)
		}
	})
}

// txnCoordinatorOf asks broker id which broker coordinates transactional
// ID txnID.
func txnCoordinatorOf(ctx context.Context, cl *kgo.Client, txnID string) (int32, error) {
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorType, req.CoordinatorKey, req.CoordinatorKeys = 1, txnID, []string{txnID}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return -1, err
	}
	if len(resp.Coordinators) == 1 {
		c := resp.Coordinators[0]
		return c.NodeID, kerr.ErrorForCode(c.ErrorCode)
	}
	return resp.NodeID, kerr.ErrorForCode(resp.ErrorCode)
}

// TestTransactionsClusterKills runs a transactional producer against three
// brokers (replication factor 3) while the broker coordinating its
// transactional ID, and then the leader of a partition it writes to, are
// SIGKILLed in the middle of transactions and restarted. Afterwards a
// read_committed reader must find every committed transaction whole, no
// aborted record, each record once, in offset order; a transaction whose
// end the producer could not learn is there whole or not at all.
func TestTransactionsClusterKills(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 4*time.Minute)
	const topic, txnID = "txn-kills", "tx-kills"
	adm := kadm.NewClient(c.client(nil))
	createClusterTopic(ctx, t, adm, topic, 3, 3)
	seeds := c.addrs([]int32{1, 2, 3})
	ledger := newTxnLedger()

	newProducer := func() *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID(txnID), kgo.TransactionTimeout(30*time.Second),
			kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
			kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(50000),
			kgo.MetadataMinAge(250*time.Millisecond), kgo.RetryTimeout(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	p := newProducer()
	defer func() { p.Close() }()
	txn := 0
	// run writes n transactions of 6 records; fault, if set, runs in the
	// middle of the third one.
	run := func(n int, fault func()) {
		for range n {
			txn++
			if err := p.BeginTransaction(); err != nil {
				t.Fatalf("begin transaction %d: %v", txn, err)
			}
			commit := txn%4 != 0
			var perr error
			for j := range 6 {
				if j == 3 && fault != nil {
					fault()
					fault = nil
				}
				v := fmt.Sprintf("txn-%d-rec-%d", txn, j)
				ledger.add(txn, v, false)
				pctx, cancel := context.WithTimeout(ctx, 40*time.Second)
				perr = p.ProduceSync(pctx, &kgo.Record{Value: []byte(v)}).FirstErr()
				cancel()
				if perr != nil {
					break
				}
			}
			if perr != nil {
				t.Logf("transaction %d: produce failed (%v): aborting it", txn, perr)
				commit = false
			}
			ectx, cancel := context.WithTimeout(ctx, 40*time.Second)
			err := p.EndTransaction(ectx, kgo.TransactionEndTry(commit))
			cancel()
			if err != nil {
				// The outcome is unknown: the next producer's
				// InitProducerId finishes or aborts it.
				t.Logf("transaction %d: end (commit %v) failed: %v; a new producer takes over", txn, commit, err)
				ledger.settle(txn, commit, false)
				p.Close()
				p = newProducer()
				continue
			}
			ledger.settle(txn, commit, true)
		}
	}
	// Pipelined batches whose first one in each partition is verified
	// with the coordinator on another broker.
	runTxns(ctx, t, p, topic, ledger, 1000, 3, 20000)
	run(4, nil)
	coord, err := txnCoordinatorOf(ctx, c.client(nil), txnID)
	if err != nil {
		t.Fatalf("finding the transaction coordinator: %v", err)
	}
	run(4, func() {
		t.Logf("killing broker %d, the transaction coordinator", coord)
		c.broker(coord).Kill()
	})
	c.broker(coord).Restart()
	c.waitReady(ctx)
	leaders := c.waitLeadersEverywhere(ctx, topic, 3, nil)
	victim := leaders[0].Leader
	run(4, func() {
		t.Logf("killing broker %d, the leader of %s-0", victim, topic)
		c.broker(victim).Kill()
	})
	c.broker(victim).Restart()
	c.waitReady(ctx)
	run(3, nil)

	got := consumeAllTxn(ctx, t, seeds, topic, true, 1<<30, 5*time.Second)
	reportLogProblems(t, "read_committed", ledger.check(got))
	committed := 0
	for _, ok := range ledger.committed {
		if ok {
			committed++
		}
	}
	t.Logf("%d transactions (%d unknown), %d committed records written, %d read", txn, len(ledger.unknown), committed, len(got))
}

// checkTxnAdmin checks what kadm (kafka-transactions.sh's APIs) shows of
// an open transaction of txnID writing to topic.
func checkTxnAdmin(ctx context.Context, t *testing.T, adm *kadm.Client, txnID, topic string) {
	t.Helper()
	described, err := adm.DescribeTransactions(ctx, txnID)
	if err != nil {
		t.Fatalf("DescribeTransactions: %v", err)
	}
	d := described[txnID]
	if d.Err != nil || d.State != "Ongoing" || d.StartTimestamp <= 0 || len(d.Topics[topic]) == 0 {
		t.Errorf("DescribeTransactions of an open transaction: %+v", d)
	}
	listed, err := adm.ListTransactions(ctx, nil, []string{"Ongoing"})
	if err != nil {
		t.Fatalf("ListTransactions: %v", err)
	}
	if l, ok := listed[txnID]; !ok || l.State != "Ongoing" || l.ProducerID != d.ProducerID {
		t.Errorf("ListTransactions Ongoing: %+v, want %s with producer %d", listed, txnID, d.ProducerID)
	}
	// kafka-transactions.sh find-hanging asks by producer ID.
	if byPID, err := adm.ListTransactions(ctx, []int64{d.ProducerID}, nil); err != nil || len(byPID) != 1 || byPID[txnID].ProducerID != d.ProducerID {
		t.Errorf("ListTransactions of producer %d: %+v (%v), want %s alone", d.ProducerID, byPID, err, txnID)
	}
	if none, err := adm.ListTransactions(ctx, []int64{d.ProducerID + 1000}, nil); err != nil || len(none) != 0 {
		t.Errorf("ListTransactions of an unknown producer: %+v (%v), want none", none, err)
	}
	if none, err := adm.ListTransactions(ctx, nil, []string{"CompleteAbort"}); err != nil || len(none) != 0 {
		t.Errorf("ListTransactions CompleteAbort: %+v (%v), want none", none, err)
	}
	producers, err := adm.DescribeProducers(ctx, kadm.TopicsSet{topic: nil})
	if err != nil {
		t.Fatalf("DescribeProducers: %v", err)
	}
	open := 0
	producers.EachProducer(func(p kadm.DescribedProducer) {
		if p.ProducerID == d.ProducerID && p.CurrentTxnStartOffset >= 0 {
			open++
		}
	})
	if open == 0 {
		t.Errorf("DescribeProducers shows no open transaction of producer %d: %+v", d.ProducerID, producers)
	}
}

// TestTransactionTimeout: a transaction its producer abandons is aborted
// by the coordinator once its transaction.timeout.ms has passed, which
// fences the producer and lets read_committed readers past it.
func TestTransactionTimeout(t *testing.T) {
	b := startBroker(t, "--transaction-abort-check-interval", "100ms")
	ctx := testContext(t, time.Minute)
	adm := kadm.NewClient(newClient(t, b))
	const topic = "txn-timeout"
	createTopic(ctx, t, adm, topic, 1, nil)
	p, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.TransactionalID("tx-slow"), kgo.TransactionTimeout(time.Second), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(ctx, &kgo.Record{Value: []byte("abandoned")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var d kadm.DescribedTransaction
	deadline := time.Now().Add(20 * time.Second)
	for {
		described, err := adm.DescribeTransactions(ctx, "tx-slow")
		if err != nil {
			t.Fatal(err)
		}
		if d = described["tx-slow"]; d.State == "CompleteAbort" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an abandoned transaction with a 1 s timeout is still %s after 20 s", d.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d.ProducerEpoch < 1 {
		t.Errorf("the abort did not bump the producer's epoch: %+v", d)
	}
	lso, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := lso.Lookup(topic, 0); o.Offset != 2 {
		t.Errorf("read_committed end offset %d after the abort, want 2 (the record and the marker)", o.Offset)
	}
	if err := p.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Error("the producer committed a transaction its coordinator aborted")
	}
	if got := consumeAllTxn(ctx, t, []string{b.Addr()}, topic, true, 1, time.Second); len(got) != 0 {
		t.Errorf("read_committed read %d records of an aborted transaction", len(got))
	}
}

// TestTransactionAdminAbort: what kafka-transactions.sh abort does (KIP-664)
// for a transaction left open in a partition: DescribeProducers gives the
// producer's ID, epoch and coordinator epoch, and WriteTxnMarkers, sent by
// an admin client to the partition's leader, writes an abort marker there.
// read_committed readers then get past it and never see its records, and
// DescribeProducers shows nothing open; a marker of an older epoch than
// the producer's is refused.
func TestTransactionAdminAbort(t *testing.T) {
	b := startBroker(t)
	ctx := testContext(t, time.Minute)
	adm := kadm.NewClient(newClient(t, b))
	const topic = "txn-admin-abort"
	createTopic(ctx, t, adm, topic, 1, nil)
	p, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.TransactionalID("tx-hanging"), kgo.TransactionTimeout(time.Minute), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// A committed transaction first (which, with transactions version 2,
	// bumps the producer's epoch), then one left open.
	for i, values := range [][]string{{"committed"}, {"left open", "also open"}} {
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			if err := p.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if i == 0 {
			if err := p.EndTransaction(ctx, kgo.TryCommit); err != nil {
				t.Fatal(err)
			}
		}
	}
	openProducer := func() (kadm.DescribedProducer, bool) {
		producers, err := adm.DescribeProducers(ctx, kadm.TopicsSet{topic: nil})
		if err != nil {
			t.Fatalf("DescribeProducers: %v", err)
		}
		var found kadm.DescribedProducer
		ok := false
		producers.EachProducer(func(dp kadm.DescribedProducer) {
			if dp.CurrentTxnStartOffset >= 0 {
				found, ok = dp, true
			}
		})
		return found, ok
	}
	open, ok := openProducer()
	if !ok || open.CurrentTxnStartOffset != 2 || open.ProducerEpoch < 1 {
		t.Fatalf("DescribeProducers shows no transaction open at offset 2 with an epoch bumped by the commit: %+v", open)
	}
	abort := func(epoch int16) error {
		resp, err := adm.WriteTxnMarkers(ctx, kadm.TxnMarkers{ProducerID: open.ProducerID, ProducerEpoch: epoch,
			CoordinatorEpoch: open.CoordinatorEpoch, Topics: kadm.TopicsSet{topic: {0: {}}}})
		if err != nil {
			return err
		}
		var first error
		resp.EachPartition(func(r kadm.TxnMarkersPartitionResponse) {
			if first == nil {
				first = r.Err
			}
		})
		return first
	}
	if err := abort(open.ProducerEpoch - 1); !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Errorf("WriteTxnMarkers at an older epoch: %v, want INVALID_PRODUCER_EPOCH", err)
	}
	if err := abort(open.ProducerEpoch); err != nil {
		t.Fatalf("WriteTxnMarkers abort: %v", err)
	}
	if still, ok := openProducer(); ok {
		t.Errorf("DescribeProducers still shows a transaction open after the abort marker: %+v", still)
	}
	lso, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := lso.Lookup(topic, 0); o.Offset != 5 {
		t.Errorf("read_committed end offset %d after the abort, want 5 (a record, its marker, two records, the abort marker)", o.Offset)
	}
	if got := consumeAllTxn(ctx, t, []string{b.Addr()}, topic, true, 1, time.Second); len(got) != 1 || string(got[0].Value) != "committed" {
		t.Errorf("read_committed read %d records, want only the committed one", len(got))
	}
}

// TestCLIConsumeReadCommitted: pubg1 topic consume --isolation-level
// read_committed prints only the records of committed transactions.
func TestCLIConsumeReadCommitted(t *testing.T) {
	b := startBroker(t)
	ctx := testContext(t, time.Minute)
	const topic = "cli-txn"
	createTopic(ctx, t, kadm.NewClient(newClient(t, b)), topic, 1, nil)
	p, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.TransactionalID("cli-txn"), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, txn := range []struct {
		values []string
		commit bool
	}{{[]string{"c1", "c2"}, true}, {[]string{"a1"}, false}, {[]string{"c3"}, true}} {
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range txn.values {
			if err := p.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.EndTransaction(ctx, kgo.TransactionEndTry(txn.commit)); err != nil {
			t.Fatal(err)
		}
	}
	brokers := "--brokers=" + b.Addr()
	if out := cliOK(t, "", "topic", "consume", topic, "-n", "3", "--isolation-level", "read_committed", brokers); out != "c1\nc2\nc3\n" {
		t.Errorf("read_committed printed %q, want c1, c2 and c3", out)
	}
	if out := cliOK(t, "", "topic", "consume", topic, "-n", "4", brokers); out != "c1\nc2\na1\nc3\n" {
		t.Errorf("read_uncommitted printed %q, want every record", out)
	}
}
