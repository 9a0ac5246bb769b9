package raftlog

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/storage"
	"github.com/pubg1/pubg1/broker/storage/storagetest"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func entry(i uint64) *raft.Log {
	return &raft.Log{
		Index: i, Term: i / 3, Type: raft.LogCommand,
		Data:       bytes.Repeat([]byte{byte(i)}, int(i%5)*700), // some in the value log
		Extensions: []byte(fmt.Sprint("ext", i)),
		AppendedAt: time.Unix(1_700_000_000, int64(i)),
	}
}

func TestLogStore(t *testing.T) {
	storagetest.ForEach(t, func(t *testing.T, reopen func() storage.Store) {
		s := reopen()
		st, err := Open(s, "topic/0")
		if err != nil {
			t.Fatal(err)
		}
		other, err := Open(s, "topic/00")
		if err != nil {
			t.Fatal(err)
		}
		if f, _ := st.FirstIndex(); f != 0 {
			t.Fatalf("empty first index %d", f)
		}
		var logs []*raft.Log
		for i := uint64(1); i <= 20; i++ {
			logs = append(logs, entry(i))
		}
		if err := st.StoreLogs(logs[:10]); err != nil {
			t.Fatal(err)
		}
		for _, l := range logs[10:] {
			if err := st.StoreLog(l); err != nil {
				t.Fatal(err)
			}
		}
		if err := other.StoreLog(entry(99)); err != nil {
			t.Fatal(err)
		}
		check := func(st *Store, first, last uint64) {
			t.Helper()
			f, _ := st.FirstIndex()
			l, _ := st.LastIndex()
			if f != first || l != last {
				t.Fatalf("bounds %d-%d, want %d-%d", f, l, first, last)
			}
			for i := first; i <= last && i != 0; i++ {
				var got raft.Log
				if err := st.GetLog(i, &got); err != nil {
					t.Fatalf("entry %d: %v", i, err)
				}
				want := entry(i)
				if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
					!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) {
					t.Fatalf("entry %d: got %+v", i, got)
				}
			}
		}
		check(st, 1, 20)
		var l raft.Log
		if err := st.GetLog(21, &l); err != raft.ErrLogNotFound {
			t.Fatalf("missing entry: %v", err)
		}
		// Raft deletes from the front after snapshots and from the back
		// when a follower's log conflicts with its leader's.
		if err := st.DeleteRange(1, 5); err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteRange(18, 20); err != nil {
			t.Fatal(err)
		}
		check(st, 6, 17)
		if err := st.GetLog(5, &l); err != raft.ErrLogNotFound {
			t.Fatalf("deleted entry: %v", err)
		}
		s = reopen()
		st, err = Open(s, "topic/0")
		if err != nil {
			t.Fatal(err)
		}
		check(st, 6, 17)
		other, _ = Open(s, "topic/00")
		check(other, 99, 99)
		if err := st.DeleteRange(0, 1000); err != nil {
			t.Fatal(err)
		}
		check(st, 0, 0)
		check(other, 99, 99)
	})
}

func TestStableStore(t *testing.T) {
	storagetest.ForEach(t, func(t *testing.T, reopen func() storage.Store) {
		st, _ := Open(reopen(), "g")
		if _, err := st.Get([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
			t.Fatalf("missing key: %v (hashicorp/raft needs the text \"not found\")", err)
		}
		if _, err := st.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
			t.Fatalf("missing uint64: %v", err)
		}
		if err := st.SetUint64([]byte("CurrentTerm"), 42); err != nil {
			t.Fatal(err)
		}
		if err := st.Set([]byte("LastVoteCand"), []byte("node-3")); err != nil {
			t.Fatal(err)
		}
		st, _ = Open(reopen(), "g")
		if v, err := st.GetUint64([]byte("CurrentTerm")); err != nil || v != 42 {
			t.Fatalf("term %d %v", v, err)
		}
		if v, err := st.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-3" {
			t.Fatalf("vote %q %v", v, err)
		}
	})
}

type listFSM struct {
	mu   sync.Mutex
	data []string
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data = append(f.data, string(l.Data))
	return nil
}
func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, fmt.Errorf("no snapshots") }
func (f *listFSM) Restore(io.ReadCloser) error         { return nil }
func (f *listFSM) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.data)
}

// TestRaftOnStore runs a three-node group whose logs live in one shared
// Badger store per node, restarts one node, and checks it recovers its log
// and term and catches up.
func TestRaftOnStore(t *testing.T) {
	type node struct {
		store storage.Store
		trans *raft.InmemTransport
		r     *raft.Raft
		fsm   *listFSM
	}
	var nodes []*node
	var servers []raft.Server
	for i := 0; i < 3; i++ {
		s, err := storage.OpenBadger(storage.DefaultBadgerOptions(t.TempDir(), zerolog.Nop()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		_, trans := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprint("n", i)))
		nodes = append(nodes, &node{store: s, trans: trans})
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprint(i)), Address: trans.LocalAddr()})
	}
	for _, a := range nodes {
		for _, b := range nodes {
			a.trans.Connect(b.trans.LocalAddr(), b.trans)
		}
	}
	start := func(i int, bootstrap bool) {
		n := nodes[i]
		st, err := Open(n.store, "grp")
		if err != nil {
			t.Fatal(err)
		}
		cfg := raft.DefaultConfig()
		cfg.LocalID = raft.ServerID(fmt.Sprint(i))
		cfg.Logger = hclog.NewNullLogger()
		// While a follower is down the leader keeps its lease on one
		// follower alone, whose answers wait behind its synced writes: a
		// loaded machine delays them by far more than 50 ms at times.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
		if bootstrap {
			if err := raft.BootstrapCluster(cfg, st, st, raft.NewInmemSnapshotStore(), n.trans, raft.Configuration{Servers: servers}); err != nil {
				t.Fatal(err)
			}
		}
		n.fsm = &listFSM{}
		if n.r, err = raft.NewRaft(cfg, n.fsm, st, st, raft.NewInmemSnapshotStore(), n.trans); err != nil {
			t.Fatal(err)
		}
	}
	for i := range nodes {
		start(i, true)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			_ = n.r.Shutdown().Error()
		}
	})
	leader := func() *raft.Raft {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			for _, n := range nodes {
				if n.r.State() == raft.Leader {
					return n.r
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("no leader")
		return nil
	}
	for i := 0; i < 30; i++ {
		if err := leader().Apply([]byte(fmt.Sprint("e", i)), 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	// Restart a follower over the same store: it must not be bootstrapped
	// again, and it must end up with every entry.
	var follower int
	for i, n := range nodes {
		if n.r.State() != raft.Leader {
			follower = i
			break
		}
	}
	if err := nodes[follower].r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	for i := 30; i < 40; i++ {
		if err := leader().Apply([]byte(fmt.Sprint("e", i)), 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	start(follower, false)
	deadline := time.Now().Add(20 * time.Second)
	for nodes[follower].fsm.len() < 40 {
		if time.Now().After(deadline) {
			t.Fatalf("restarted follower applied %d of 40", nodes[follower].fsm.len())
		}
		time.Sleep(10 * time.Millisecond)
	}
	f := nodes[follower].fsm
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, d := range f.data {
		if d != fmt.Sprint("e", i) {
			t.Fatalf("entry %d is %q", i, d)
		}
	}
}

func TestForceVoters(t *testing.T) {
	store := storage.NewMemory()
	t.Cleanup(func() { store.Close() })
	logs, err := Open(store, "t/0")
	if err != nil {
		t.Fatal(err)
	}
	demoted := raft.Configuration{Servers: []raft.Server{{ID: "0", Address: "r0"}, {ID: "1", Address: "r1"}, {ID: "2", Address: "r2", Suffrage: raft.Nonvoter}}}
	entries := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(demoted)},
		{Index: 2, Term: 7, Type: raft.LogCommand, Data: []byte("x")},
	}
	if err := logs.StoreLogs(entries); err != nil {
		t.Fatal(err)
	}
	if err := logs.SetUint64(keyCurrentTerm, 9); err != nil {
		t.Fatal(err)
	}
	all := []raft.Server{{ID: "0", Address: "r0"}, {ID: "1", Address: "r1"}, {ID: "2", Address: "r2"}}
	if err := logs.ForceVoters(all); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := logs.GetLog(3, &l); err != nil {
		t.Fatal(err)
	}
	if l.Type != raft.LogConfiguration || l.Term != 9+forcedTermJump {
		t.Fatalf("forced entry: type %v term %d, want a configuration at term %d", l.Type, l.Term, 9+forcedTermJump)
	}
	if got := raft.DecodeConfiguration(l.Data); len(got.Servers) != 3 || got.Servers[2].Suffrage != raft.Voter {
		t.Fatalf("forced configuration %+v: every replica must vote", got)
	}
	if cur, err := logs.GetUint64(keyCurrentTerm); err != nil || cur != l.Term {
		t.Fatalf("current term %d (%v), want %d", cur, err, l.Term)
	}
}
