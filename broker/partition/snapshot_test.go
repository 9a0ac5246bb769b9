package partition

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/raftlog"
	"github.com/pubg1/pubg1/broker/storage"
)

// batchesFrom collects the stored batches of a replica from offset on.
func batchesFrom(t *testing.T, p *Replicated, offset int64) []byte {
	t.Helper()
	var out []byte
	if err := p.eachBatch(offset, func(b []byte, _ BatchHeader) bool {
		out = append(out, b...)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReplicatedSnapshotCatchUp stops a follower, moves the log start past
// everything it has and lets every other replica delete those Raft
// entries, then restarts it: it must catch up from a snapshot that brings
// the retained batches, serve the same log, and restart from it again.
func TestReplicatedSnapshotCatchUp(t *testing.T) {
	rs := newReplicaSet(t)
	li, leader := rs.leader()
	lag := (li + 1) % 3
	round := func(p *Replicated, r int) {
		var batches [][]byte
		for i := 0; i < 10; i++ {
			batches = append(batches, makeBatch(t, batchSpec{n: 2, firstTS: int64(1000*r + i), valueSize: 100}))
		}
		for i, res := range appendAll(t, p, batches) {
			if res.Err != nil || res.BaseOffset != int64(20*r+2*i) {
				t.Fatalf("round %d append %d: %+v", r, i, res)
			}
		}
	}
	round(leader, 0)
	rs.waitApplied(20)
	rs.stop(lag)
	lagFirst, _ := rs.parts[li].logs.FirstIndex()
	for r := 1; r < 3; r++ {
		round(leader, r)
	}
	if err := leader.SetLogStart(40); err != nil {
		t.Fatal(err)
	}
	rs.waitApplied(60)
	for _, p := range rs.parts {
		if p == nil {
			continue
		}
		for deadline := time.Now().Add(10 * time.Second); p.fsm.view().logStart != 40; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("a replica did not apply the new log start")
			}
		}
		if start, err := p.EnforceRetention(time.Now(), -1, -1); err != nil || start != 40 {
			t.Fatalf("retention: start %d, %v", start, err)
		}
	}
	first, _ := leader.logs.FirstIndex()
	if keep := leader.fsm.entriesFrom(40)[0].Index; first != keep {
		t.Fatalf("leader's Raft log starts at %d, want %d (the entry holding offset 40; it started at %d)", first, keep, lagFirst)
	}
	round(leader, 3)
	want := batchesFrom(t, leader, 40)

	rs.start(lag)
	rs.waitApplied(80)
	check := func(when string) {
		t.Helper()
		p := rs.parts[lag]
		if v := p.fsm.view(); v.logStart != 40 || v.next != 80 {
			t.Fatalf("%s: the caught-up replica has log start %d, next %d", when, v.logStart, v.next)
		}
		if got := batchesFrom(t, p, 40); !bytes.Equal(got, want) {
			t.Fatalf("%s: the caught-up replica serves %d bytes from offset 40, the leader %d", when, len(got), len(want))
		}
		if f, _ := p.logs.FirstIndex(); f < first {
			t.Fatalf("%s: the caught-up replica keeps Raft entries from %d, below the leader's %d", when, f, first)
		}
		if _, _, staged, _ := p.logs.StagedBounds(); staged {
			t.Fatalf("%s: entries are left staged", when)
		}
	}
	check("after the catch-up")
	rs.stop(lag)
	rs.start(lag)
	rs.waitApplied(80)
	check("after a restart")

	// With the old leader gone, the caught-up replica is one of two: it
	// must be able to lead, or follow a leader that keeps writing.
	rs.stop(li)
	_, nl := rs.leader()
	round(nl, 4)
	rs.waitApplied(100)
	if got, want := batchesFrom(t, rs.parts[lag], 40), batchesFrom(t, nl, 40); !bytes.Equal(got, want) {
		t.Fatalf("after failover the replicas differ: %d and %d bytes", len(got), len(want))
	}
}

// TestRecoverStaged finishes a transfer whose snapshot became final before
// a crash, and discards one whose snapshot did not.
func TestRecoverStaged(t *testing.T) {
	for _, final := range []bool{true, false} {
		s := storage.NewMemory()
		logs, err := raftlog.Open(s, "t/0")
		if err != nil {
			t.Fatal(err)
		}
		var old []*raft.Log
		for i := uint64(1); i <= 3; i++ {
			old = append(old, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("old")})
		}
		if err := logs.StoreLogs(old); err != nil {
			t.Fatal(err)
		}
		// A transfer of entries 5-7 was staged; the crash came before or
		// after the snapshot at 7 was final.
		src := storage.NewMemory()
		srcLogs, _ := raftlog.Open(src, "t/0")
		var raw [][]byte
		for i := uint64(5); i <= 7; i++ {
			if err := srcLogs.StoreLog(&raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: []byte("new")}); err != nil {
				t.Fatal(err)
			}
			v, err := srcLogs.Raw(i)
			if err != nil {
				t.Fatal(err)
			}
			raw = append(raw, v)
		}
		if err := logs.Stage(raw); err != nil {
			t.Fatal(err)
		}
		snaps := raft.NewInmemSnapshotStore()
		if final {
			sink, err := snaps.Create(raft.SnapshotVersionMax, 7, 2, raft.Configuration{}, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := sink.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if err := recoverStaged(logs, snaps); err != nil {
			t.Fatal(err)
		}
		first, _ := logs.FirstIndex()
		last, _ := logs.LastIndex()
		_, _, staged, _ := logs.StagedBounds()
		switch {
		case staged:
			t.Fatalf("final=%v: entries left staged", final)
		case final && (first != 5 || last != 7):
			t.Fatalf("final snapshot: log holds %d-%d, want 5-7", first, last)
		case !final && (first != 1 || last != 3):
			t.Fatalf("unfinished snapshot: log holds %d-%d, want the old 1-3", first, last)
		}
		s.Close()
		src.Close()
	}
}

// FuzzSnapshotSink feeds arbitrary transfers to a receiving sink: it must
// refuse what does not parse and never panic.
func FuzzSnapshotSink(f *testing.F) {
	state := appendFrame(nil, frameState, []byte(`{"next":0}`))
	f.Add(append(appendFrame(nil, frameTransfer, make([]byte, 16)), state...))
	f.Add(state)
	f.Add([]byte{frameTransfer, 0xff, 0xff, 0xff, 0xff})
	f.Add(append(appendFrame(nil, frameTransfer, make([]byte, 16)), appendFrame(nil, frameEntry, []byte{1, 2, 3})...))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := storage.NewMemory()
		defer s.Close()
		logs, err := raftlog.Open(s, "t/0")
		if err != nil {
			t.Fatal(err)
		}
		store := &snapshotStore{SnapshotStore: raft.NewInmemSnapshotStore(), logs: logs}
		sink, err := store.Create(raft.SnapshotVersionMax, 9, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		for len(data) > 0 { // in uneven pieces, as a network delivers
			n := min(len(data), 1+int(data[0])%7)
			if _, err := sink.Write(data[:n]); err != nil {
				_ = sink.Cancel()
				return
			}
			data = data[n:]
		}
		_ = sink.Close()
	})
}
