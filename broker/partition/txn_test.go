package partition

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker/storage"
)

// appendMarker appends a transaction marker and waits for its result.
func appendMarker(t *testing.T, p Partition, id int64, epoch int16, commit bool) AppendResult {
	t.Helper()
	b := MarkerBatch(id, epoch, commit, 3, time.Now().UnixMilli())
	h, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan AppendResult, 1)
	p.Append(b, h, AppendOptions{Acks: AcksAll}, func(r AppendResult) { ch <- r })
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("marker append never completed")
		return AppendResult{}
	}
}

// batchBases is the base offset of every batch of records.
func batchBases(t *testing.T, records []byte) []int64 {
	t.Helper()
	var out []int64
	if _, err := batchesIn(records, 0, func(b []byte, _ BatchHeader) bool {
		out = append(out, int64(binary.BigEndian.Uint64(b)))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// txnWorkload writes two transactions, one aborted and one committed,
// around a plain batch, checking the last stable offset and what a
// read_committed read returns on the way.
func txnWorkload(t *testing.T, p Partition, settle func(next int64)) {
	t.Helper()
	must := func(r AppendResult) AppendResult {
		t.Helper()
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r
	}
	stable := func(want int64) {
		t.Helper()
		if got := p.Offsets().LastStable; got != want {
			t.Fatalf("last stable offset %d, want %d", got, want)
		}
	}
	opts := AppendOptions{Acks: AcksAll}
	must(appendSync(t, p, makeBatch(t, batchSpec{n: 3, producerID: 10, epoch: 0, seq: 0, txn: true}), opts)) // 0-2
	settle(3)
	stable(0)
	if res, err := p.ReadCommitted(0, 1<<20, true, nil); err != nil || len(res.Records) != 0 {
		t.Fatalf("read_committed below an open transaction: %d bytes, %v", len(res.Records), err)
	}
	must(appendSync(t, p, makeBatch(t, batchSpec{n: 1}), opts))                                              // 3
	must(appendSync(t, p, makeBatch(t, batchSpec{n: 2, producerID: 11, epoch: 0, seq: 0, txn: true}), opts)) // 4-5
	must(appendMarker(t, p, 10, 0, false))                                                                   // 6: abort 10
	settle(7)
	stable(4)
	res, err := p.ReadCommitted(0, 1<<20, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := batchBases(t, res.Records); !slices.Equal(got, []int64{0, 3}) {
		t.Fatalf("read_committed read batches at %v, want [0 3] (below the open transaction at 4)", got)
	}
	if want := []AbortedTxn{{ProducerID: 10, FirstOffset: 0, LastOffset: 6}}; !slices.Equal(res.Aborted, want) {
		t.Fatalf("aborted %v, want %v", res.Aborted, want)
	}
	must(appendMarker(t, p, 11, 0, true)) // 7: commit 11
	settle(8)
	stable(8)
	res, err = p.ReadCommitted(4, 1<<20, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := batchBases(t, res.Records); !slices.Equal(got, []int64{4, 6, 7}) {
		t.Fatalf("read_committed from 4 read batches at %v, want [4 6 7]", got)
	}
	if want := []AbortedTxn{{ProducerID: 10, FirstOffset: 0, LastOffset: 6}}; !slices.Equal(res.Aborted, want) {
		t.Fatalf("aborted from 4: %v, want %v", res.Aborted, want)
	}
	if res, _ := p.ReadCommitted(7, 1<<20, true, nil); len(res.Aborted) != 0 {
		t.Fatalf("aborted from 7: %v, want none", res.Aborted)
	}
	// A producer with a newer epoch fences markers of the older one.
	must(appendSync(t, p, makeBatch(t, batchSpec{n: 1, producerID: 10, epoch: 1, seq: 0, txn: true}), opts)) // 8
	if r := appendMarker(t, p, 10, 0, true); !errors.Is(r.Err, ErrInvalidProducerEpoch) {
		t.Fatalf("marker of a fenced epoch: %v, want ErrInvalidProducerEpoch", r.Err)
	}
	settle(9)
	stable(8)
}

func TestTransactionsLocal(t *testing.T) {
	s := storage.NewMemory()
	t.Cleanup(func() { s.Close() })
	p := openLocal(t, s, nil)
	txnWorkload(t, p, func(int64) {})
	p.Close()
	p = openLocal(t, s, nil)
	if got := p.Offsets().LastStable; got != 8 {
		t.Fatalf("after a restart the last stable offset is %d, want 8", got)
	}
	res, err := p.ReadCommitted(0, 1<<20, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []AbortedTxn{{ProducerID: 10, FirstOffset: 0, LastOffset: 6}}; !slices.Equal(res.Aborted, want) {
		t.Fatalf("after a restart aborted %v, want %v", res.Aborted, want)
	}
	if r := appendMarker(t, p, 10, 1, false); r.Err != nil { // 9: abort the open one
		t.Fatal(r.Err)
	}
	if got := p.Offsets().LastStable; got != 10 {
		t.Fatalf("last stable offset %d after the abort, want 10", got)
	}
}

func TestTransactionsReplicated(t *testing.T) {
	rs := newReplicaSet(t)
	_, p := rs.leader()
	txnWorkload(t, p, rs.waitApplied)
	for i, r := range rs.parts {
		if got := r.fsm.view().stable; got != 8 {
			t.Errorf("replica %d: last stable offset %d, want 8", i, got)
		}
		if got := r.fsm.abortedIn(0, 9); len(got) != 1 || got[0] != (AbortedTxn{ProducerID: 10, FirstOffset: 0, LastOffset: 6}) {
			t.Errorf("replica %d: aborted %v", i, got)
		}
	}
	// The state outlives a snapshot and a restart of every replica.
	if err := p.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	for i := range rs.parts {
		rs.stop(i)
	}
	for i := range rs.parts {
		rs.start(i)
	}
	_, p = rs.leader()
	rs.waitApplied(9)
	if got := p.Offsets().LastStable; got != 8 {
		t.Fatalf("after a restart the last stable offset is %d, want 8", got)
	}
	if r := appendMarker(t, p, 10, 1, true); r.Err != nil {
		t.Fatal(r.Err)
	}
	rs.waitApplied(10)
	if got := p.Offsets().LastStable; got != 10 {
		t.Fatalf("last stable offset %d after the commit, want 10", got)
	}
}
