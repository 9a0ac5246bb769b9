package partition

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/raftmux"
	"github.com/pubg1/pubg1/broker/storage"
)

// replicaSet is three replicas of one partition in this process, each with
// its own store, connected by in-memory transports.
type replicaSet struct {
	t       *testing.T
	stores  []storage.Store
	trans   []*raft.InmemTransport
	snaps   []raft.SnapshotStore
	parts   []*Replicated
	servers []raft.Server
}

func newReplicaSet(t *testing.T) *replicaSet {
	rs := &replicaSet{t: t}
	for i := 0; i < 3; i++ {
		s := storage.NewMemory()
		t.Cleanup(func() { s.Close() })
		rs.stores = append(rs.stores, s)
		rs.snaps = append(rs.snaps, raft.NewInmemSnapshotStore())
		rs.trans = append(rs.trans, nil)
		rs.parts = append(rs.parts, nil)
		rs.servers = append(rs.servers, raft.Server{ID: raft.ServerID(fmt.Sprint(i)), Address: raft.ServerAddress(fmt.Sprint("r", i))})
	}
	for i := range rs.stores {
		rs.start(i)
	}
	t.Cleanup(func() {
		for _, p := range rs.parts {
			if p != nil {
				p.Close()
			}
		}
	})
	return rs
}

// tuneTestRaft sets the replicas' election settings. A loaded machine
// starves the test process for up to a few hundred milliseconds, more
// under the race detector: a lease or a heartbeat timeout shorter than
// that costs a leader its place while the test appends to it.
func tuneTestRaft(c *raft.Config) {
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
}

// start opens replica i, over a fresh transport connected to the others.
func (rs *replicaSet) start(i int) {
	_, tr := raft.NewInmemTransport(rs.servers[i].Address)
	rs.trans[i] = tr
	for j, other := range rs.trans {
		if j != i && other != nil {
			tr.Connect(other.LocalAddr(), other)
			other.Connect(tr.LocalAddr(), tr)
		}
	}
	p, err := OpenReplicated(ReplicatedOptions{
		ID: rs.servers[i].ID, Group: "t/0", Store: rs.stores[i], Transport: tr,
		Snapshots: rs.snaps[i], Servers: rs.servers,
		Tune: tuneTestRaft,
	})
	if err != nil {
		rs.t.Fatal(err)
	}
	rs.parts[i] = p
}

func (rs *replicaSet) stop(i int) {
	if err := rs.parts[i].Close(); err != nil {
		rs.t.Fatal(err)
	}
	rs.parts[i] = nil
	for j, other := range rs.trans {
		if j != i && other != nil {
			other.Disconnect(rs.trans[i].LocalAddr())
		}
	}
}

func (rs *replicaSet) leader() (int, *Replicated) {
	rs.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for i, p := range rs.parts {
			if p != nil && p.IsLeader() {
				return i, p
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	rs.t.Fatal("no ready leader")
	return -1, nil
}

// appendAll appends batches pipelined and returns their results in order.
func appendAll(t *testing.T, p Partition, batches [][]byte) []AppendResult {
	t.Helper()
	res := make([]AppendResult, len(batches))
	var wg sync.WaitGroup
	for i, b := range batches {
		h, err := CheckProduced(b)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		p.Append(b, h, AppendOptions{Acks: AcksAll}, func(r AppendResult) { res[i] = r; wg.Done() })
	}
	wg.Wait()
	return res
}

func (rs *replicaSet) waitApplied(next int64) {
	rs.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range rs.parts {
		for p != nil && p.fsm.view().next < next {
			if time.Now().After(deadline) {
				rs.t.Fatalf("a replica applied up to %d of %d", p.fsm.view().next, next)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func TestReplicatedAppendFailover(t *testing.T) {
	rs := newReplicaSet(t)
	li, leader := rs.leader()
	const pid = 500
	var batches [][]byte
	for i := 0; i < 40; i++ {
		batches = append(batches, makeBatch(t, batchSpec{n: 3, producerID: pid, epoch: 0, seq: int32(3 * i), firstTS: int64(1000 + i)}))
	}
	for i, r := range appendAll(t, leader, batches) {
		if r.Err != nil || r.BaseOffset != int64(3*i) {
			t.Fatalf("append %d: %+v", i, r)
		}
	}
	if off := leader.Offsets(); off.HighWatermark != 120 || off.LogEnd != 120 {
		t.Fatalf("leader offsets %+v", off)
	}
	res, err := leader.Read(0, 1<<20, true, nil)
	if err != nil || !bytes.Equal(res.Records, bytes.Join(batches, nil)) {
		t.Fatalf("read back: %v, %d bytes", err, len(res.Records))
	}
	// Followers refuse clients, and every replica has the same log.
	for i, p := range rs.parts {
		if i == li {
			continue
		}
		if _, err := p.Read(0, 100, true, nil); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("follower read: %v", err)
		}
		ch := make(chan AppendResult, 1)
		b := makeBatch(t, batchSpec{n: 1})
		h, _ := CheckProduced(b)
		p.Append(b, h, AppendOptions{}, func(r AppendResult) { ch <- r })
		if r := <-ch; !errors.Is(r.Err, ErrNotLeader) {
			t.Fatalf("follower append: %+v", r)
		}
	}
	rs.waitApplied(120)
	firstEpoch := leader.Offsets().LeaderEpoch

	// The leader goes away; another takes over and continues the offsets.
	rs.stop(li)
	ni, next := rs.leader()
	if ni == li {
		t.Fatal("stopped replica still leads")
	}
	if off := next.Offsets(); off.HighWatermark != 120 || off.LeaderEpoch <= firstEpoch {
		t.Fatalf("new leader offsets %+v (old epoch %d)", off, firstEpoch)
	}
	// The producer retries its last batch: it is answered with its first
	// offset and not written again.
	retry := makeBatch(t, batchSpec{n: 3, producerID: pid, epoch: 0, seq: 3 * 39, firstTS: 1039})
	if r := appendAll(t, next, [][]byte{retry})[0]; r.Err != nil || r.BaseOffset != 117 {
		t.Fatalf("retry after failover: %+v", r)
	}
	more := makeBatch(t, batchSpec{n: 2, producerID: pid, epoch: 0, seq: 120})
	if r := appendAll(t, next, [][]byte{more})[0]; r.Err != nil || r.BaseOffset != 120 {
		t.Fatalf("append after failover: %+v", r)
	}
	gap := makeBatch(t, batchSpec{n: 1, producerID: pid, epoch: 0, seq: 500})
	if r := appendAll(t, next, [][]byte{gap})[0]; !errors.Is(r.Err, ErrOutOfOrderSequence) {
		t.Fatalf("gap after failover: %+v", r)
	}

	// The old leader comes back as a follower and catches up.
	rs.start(li)
	rs.waitApplied(122)
	if rs.parts[li].IsLeader() && rs.parts[ni].IsLeader() {
		t.Fatal("two leaders")
	}
	// OffsetForLeaderEpoch: the first epoch ended where the second began.
	newEpoch := next.Offsets().LeaderEpoch
	if e, end := next.EndOffsetForEpoch(firstEpoch); e != firstEpoch || end != 120 {
		t.Fatalf("end of epoch %d: %d %d", firstEpoch, e, end)
	}
	if e, end := next.EndOffsetForEpoch(newEpoch); e != newEpoch || end != 122 {
		t.Fatalf("end of epoch %d: %d %d", newEpoch, e, end)
	}
	if e, end := next.EndOffsetForEpoch(newEpoch + 5); e != -1 || end != -1 {
		t.Fatalf("future epoch: %d %d", e, end)
	}
	// The stored batches carry the epoch they were written in.
	res, err = next.Read(120, 1<<20, true, nil)
	if err != nil || len(res.Records) == 0 {
		t.Fatalf("read new epoch: %v", err)
	}
	if got := int32(uint32(res.Records[12])<<24 | uint32(res.Records[13])<<16 | uint32(res.Records[14])<<8 | uint32(res.Records[15])); got != newEpoch {
		t.Fatalf("batch epoch %d, want %d", got, newEpoch)
	}
}

func TestReplicatedLogStartAndTime(t *testing.T) {
	rs := newReplicaSet(t)
	_, leader := rs.leader()
	appendAll(t, leader, [][]byte{
		makeBatch(t, batchSpec{n: 3, firstTS: 100, tsStep: 10}),
		makeBatch(t, batchSpec{n: 3, firstTS: 500, tsStep: 1, codec: compressionForTest()}),
	})
	if off, ts, err := leader.OffsetForTime(105); err != nil || off != 1 || ts != 110 {
		t.Fatalf("offset for time: %d %d %v", off, ts, err)
	}
	if off, ts, err := leader.MaxTimestamp(); err != nil || off != 5 || ts != 502 {
		t.Fatalf("max timestamp: %d %d %v", off, ts, err)
	}
	if err := leader.SetLogStart(3); err != nil {
		t.Fatal(err)
	}
	rs.waitApplied(6)
	for _, p := range rs.parts {
		deadline := time.Now().Add(10 * time.Second)
		for p.fsm.view().logStart != 3 {
			if time.Now().After(deadline) {
				t.Fatal("log start not replicated")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if _, err := leader.Read(2, 1<<20, true, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below the log start: %v", err)
	}
	if err := leader.SetLogStart(99); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("log start past the end: %v", err)
	}
	// Retention by size keeps only the newest entry, on every replica.
	appendAll(t, leader, [][]byte{makeBatch(t, batchSpec{n: 2, firstTS: 900})})
	appendAll(t, leader, [][]byte{makeBatch(t, batchSpec{n: 2, firstTS: 901})})
	rs.waitApplied(10)
	last := leader.fsm.entriesFrom(8)
	start, err := leader.EnforceRetention(time.Now(), -1, int64(last[len(last)-1].Size))
	if err != nil || start != 8 {
		t.Fatalf("retention by size: start %d, %v", start, err)
	}
	for _, p := range rs.parts {
		deadline := time.Now().Add(10 * time.Second)
		for p.fsm.view().logStart != 8 {
			if time.Now().After(deadline) {
				t.Fatal("retention not replicated")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// A Raft entry's newest timestamp may be that of a batch below the log
// start; the time lookups then look at each batch at or after it.
func TestReplicatedTimesBelowLogStart(t *testing.T) {
	rs := newReplicaSet(t)
	_, leader := rs.leader()
	old := makeBatch(t, batchSpec{n: 3, firstTS: 900})
	kept := makeBatch(t, batchSpec{n: 3, firstTS: 100, tsStep: 10})
	leader.mu.Lock()
	epoch := leader.epoch
	leader.mu.Unlock()
	stamp(old, 0, epoch, -1)
	stamp(kept, 3, epoch, -1)
	// One entry with both batches, as the leader packs pipelined appends.
	if err := leader.r.ApplyLog(raft.Log{Data: append(old, kept...)}, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if err := leader.SetLogStart(3); err != nil {
		t.Fatal(err)
	}
	if off, ts, err := leader.MaxTimestamp(); err != nil || off != 5 || ts != 120 {
		t.Fatalf("max timestamp: %d %d %v", off, ts, err)
	}
	if off, ts, err := leader.OffsetForTime(0); err != nil || off != 3 || ts != 100 {
		t.Fatalf("offset for time: %d %d %v", off, ts, err)
	}
	if off, ts, err := leader.OffsetForTime(1000); err != nil || off != -1 || ts != -1 {
		t.Fatalf("offset for a time past the newest: %d %d %v", off, ts, err)
	}
}

// fenceRecorder is an in-memory transport that records fences.
type fenceRecorder struct {
	*raft.InmemTransport
	fenced int
	known  bool
	onLift func(string)
}

func (f *fenceRecorder) Fence(_ raftmux.LogReader, known bool, onLift func(string)) {
	f.fenced++
	f.known, f.onLift = known, onLift
}
func (f *fenceRecorder) Fenced() bool          { return f.onLift != nil }
func (f *fenceRecorder) Unfence(reason string) { f.onLift(reason) }

// TestCatchUpSurvivesRestart opens a replica that must catch up, restarts
// it before it has: it must be fenced again although it now has Raft
// state, and only once it has caught up does a restart leave it unfenced.
func TestCatchUpSurvivesRestart(t *testing.T) {
	store := storage.NewMemory()
	t.Cleanup(func() { store.Close() })
	snaps := raft.NewInmemSnapshotStore()
	servers := []raft.Server{{ID: "0", Address: "r0"}, {ID: "1", Address: "r1"}}
	open := func(catchUp bool) (*Replicated, *fenceRecorder) {
		t.Helper()
		_, tr := raft.NewInmemTransport("r0")
		f := &fenceRecorder{InmemTransport: tr}
		p, err := OpenReplicated(ReplicatedOptions{ID: "0", Group: "t/0", Store: store, Transport: f,
			Snapshots: snaps, Servers: servers, Tune: tuneTestRaft, CatchUpFirst: catchUp})
		if err != nil {
			t.Fatal(err)
		}
		return p, f
	}
	p, f := open(true)
	if f.fenced != 1 || !f.known {
		t.Fatalf("a replica that lost its data opened with %d fences (known %v)", f.fenced, f.known)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, f = open(false)
	if f.fenced != 1 || !f.known {
		t.Fatalf("restarted before it caught up: %d fences (known %v), want it fenced again", f.fenced, f.known)
	}
	f.onLift("caught up with the leader")
	if err := p.Close(); err != nil { // waits for the lift to be recorded
		t.Fatal(err)
	}
	p, f = open(false)
	defer p.Close()
	if f.fenced != 0 {
		t.Fatalf("restarted after it caught up: fenced again")
	}
}

// TestQuorumLost: a leader told that its quorum is lost fails the write
// that is replicating (its followers are gone, so it cannot commit) and
// refuses new ones at once, rather than at Raft's lease; told that the
// quorum is back while Raft still leads, it leads again, from what the
// log holds, and the write that failed can be retried.
func TestQuorumLost(t *testing.T) {
	rs := newReplicaSet(t)
	li, leader := rs.leader()
	const pid = 600
	first := makeBatch(t, batchSpec{n: 2, producerID: pid, epoch: 0, seq: 0})
	if r := appendAll(t, leader, [][]byte{first})[0]; r.Err != nil || r.BaseOffset != 0 {
		t.Fatalf("first append: %+v", r)
	}
	// Cut the followers off: the next write cannot commit.
	for j, other := range rs.trans {
		if j != li {
			rs.trans[li].Disconnect(other.LocalAddr())
			other.Disconnect(rs.trans[li].LocalAddr())
		}
	}
	stuck := makeBatch(t, batchSpec{n: 1, producerID: pid, epoch: 0, seq: 2})
	h, _ := CheckProduced(stuck)
	res := make(chan AppendResult, 1)
	leader.Append(stuck, h, AppendOptions{Acks: AcksAll}, func(r AppendResult) { res <- r })
	select {
	case r := <-res:
		t.Fatalf("a write without a quorum was answered before the quorum was lost: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	leader.QuorumLost(true)
	if r := <-res; !errors.Is(r.Err, ErrNotLeader) {
		t.Fatalf("the replicating write once the quorum is lost: %+v, want ErrNotLeader", r)
	}
	if leader.IsLeader() {
		t.Fatal("a leader without its quorum still takes writes")
	}
	more := makeBatch(t, batchSpec{n: 1, producerID: pid, epoch: 0, seq: 3})
	h2, _ := CheckProduced(more)
	leader.Append(more, h2, AppendOptions{Acks: AcksAll}, func(r AppendResult) { res <- r })
	if r := <-res; !errors.Is(r.Err, ErrNotLeader) {
		t.Fatalf("a new write without the quorum: %+v, want ErrNotLeader", r)
	}
	// The quorum is back before Raft stepped down (its lease is longer).
	for j, other := range rs.trans {
		if j != li {
			rs.trans[li].Connect(other.LocalAddr(), other)
			other.Connect(rs.trans[li].LocalAddr(), rs.trans[li])
		}
	}
	leader.QuorumLost(false) // as the broker's elector says on its next pass
	_, now := rs.leader()    // whichever replica leads now
	// The failed write may have committed after all: its retry is a
	// duplicate then, or a new write; either way it is there once.
	if r := appendAll(t, now, [][]byte{stuck})[0]; r.Err != nil || r.BaseOffset != 2 {
		t.Fatalf("retry of the failed write: %+v", r)
	}
	if r := appendAll(t, now, [][]byte{more})[0]; r.Err != nil || r.BaseOffset != 3 {
		t.Fatalf("the next write: %+v", r)
	}
}
