package raftmux

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
)

func TestMembershipChange(t *testing.T) {
	servers := func(suffrage ...raft.ServerSuffrage) raft.Configuration {
		var cfg raft.Configuration
		for i, s := range suffrage {
			id := raft.ServerID(string(rune('1' + i)))
			cfg.Servers = append(cfg.Servers, raft.Server{ID: id, Address: raft.ServerAddress("b" + string(id)), Suffrage: s})
		}
		return cfg
	}
	type peer struct {
		ago     time.Duration
		lastLog uint64
		status  byte
		since   time.Duration
	}
	const commit = 100
	fresh := peer{ago: 10 * time.Millisecond, lastLog: commit}
	stale := peer{ago: time.Minute, lastLog: commit}
	lost := peer{ago: 10 * time.Millisecond, lastLog: 1, status: hbLost}
	catching := peer{ago: 10 * time.Millisecond, lastLog: 1, status: hbCatchingUp, since: 100 * time.Millisecond}
	slow := peer{ago: 10 * time.Millisecond, lastLog: 1, status: hbCatchingUp, since: 2 * catchUpGrace}
	V, N := raft.Voter, raft.Nonvoter
	cases := []struct {
		name  string
		cfg   raft.Configuration
		peers map[string]peer // by address; member 1 is the leader
		want  *memberChange
	}{
		{"all in sync", servers(V, V, V), map[string]peer{"b2": fresh, "b3": fresh}, nil},
		{"lost voter demoted", servers(V, V, V), map[string]peer{"b2": fresh, "b3": lost}, &memberChange{id: "3", addr: "b3"}},
		{"lost voter kept while the rest is no majority", servers(V, V, V), map[string]peer{"b2": stale, "b3": lost}, nil},
		{"lost voter whose answer is old", servers(V, V, V), map[string]peer{"b2": fresh, "b3": {ago: time.Minute, status: hbLost}}, nil},
		{"new voter catching up", servers(V, V, V), map[string]peer{"b2": fresh, "b3": catching}, nil},
		{"new voter slow to catch up demoted", servers(V, V, V), map[string]peer{"b2": fresh, "b3": slow}, &memberChange{id: "3", addr: "b3"}},
		{"catching-up voters are no majority", servers(V, V, V), map[string]peer{"b2": catching, "b3": slow}, nil},
		{"two lost of five: one at a time", servers(V, V, V, V, V), map[string]peer{"b2": fresh, "b3": fresh, "b4": lost, "b5": lost}, &memberChange{id: "4", addr: "b4"}},
		{"non-voter still lost", servers(V, V, N), map[string]peer{"b2": fresh, "b3": lost}, nil},
		{"non-voter caught up promoted", servers(V, V, N), map[string]peer{"b2": fresh, "b3": fresh}, &memberChange{id: "3", addr: "b3", promote: true}},
		{"non-voter behind the commit index", servers(V, V, N), map[string]peer{"b2": fresh, "b3": {ago: 10 * time.Millisecond, lastLog: commit - 1}}, nil},
		{"non-voter not answering", servers(V, V, N), map[string]peer{"b2": fresh, "b3": stale}, nil},
		// An idle partition group heartbeats every 3 to 6 s: answers
		// that old are the peers' current state.
		{"answers within the heartbeat interval", servers(V, V, V), map[string]peer{"b2": {ago: 5 * time.Second, lastLog: commit}, "b3": {ago: 4 * time.Second, status: hbLost}}, &memberChange{id: "3", addr: "b3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := &Transport{answered: map[raft.ServerAddress]time.Time{}, lastLog: map[raft.ServerAddress]uint64{},
				status: map[raft.ServerAddress]byte{}, statusSince: map[raft.ServerAddress]time.Time{}}
			for addr, p := range tc.peers {
				a := raft.ServerAddress(addr)
				tr.answered[a] = time.Now().Add(-p.ago)
				tr.lastLog[a] = p.lastLog
				tr.status[a] = p.status
				tr.statusSince[a] = time.Now().Add(-p.since)
			}
			got := tr.membershipChange(tc.cfg, "1", commit, memberFresh+6*time.Second)
			switch {
			case got == nil && tc.want == nil:
			case got == nil || tc.want == nil || *got != *tc.want:
				t.Errorf("change %+v, want %+v", got, tc.want)
			}
		})
	}
}

// gatedStore is a log store whose writes wait until the gate opens: a
// member over it cannot take appends, so cannot catch up.
type gatedStore struct {
	*raft.InmemStore
	gate chan struct{}
}

func (s *gatedStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }
func (s *gatedStore) StoreLogs(logs []*raft.Log) error {
	<-s.gate
	return s.InmemStore.StoreLogs(logs)
}

// suffrageOf is id's suffrage in r's latest configuration.
func suffrageOf(r *raft.Raft, id raft.ServerID) raft.ServerSuffrage {
	for _, s := range r.GetConfiguration().Configuration().Servers {
		if s.ID == id {
			return s.Suffrage
		}
	}
	return -1
}

// TestKeepMembers replaces a follower of a three-member group with one
// that lost its state and cannot store entries yet: its leader must demote
// it to a non-voter (at once when the loss is known, as a replaced data
// directory's is; after catchUpGrace when the member only started without
// state), and promote it again once it has caught up.
func TestKeepMembers(t *testing.T) {
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprintf("known=%v", known), func(t *testing.T) { testKeepMembers(t, known) })
	}
}

func testKeepMembers(t *testing.T, known bool) {
	nodes := []*node{startNode(t), startNode(t), startNode(t)}
	const group = "keep"
	members := startGroups(t, nodes, []string{group})[group]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })
	keep := func(m member, id raft.ServerID) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.trans.KeepMembers(m.r, id, zerolog.Nop(), nil, stop)
		}()
	}
	for i, m := range members {
		keep(m, raft.ServerID(fmt.Sprint(i)))
	}
	leader := waitLeader(t, group, members)
	for i := range 20 {
		if err := leader.Apply([]byte(fmt.Sprint(i)), 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	f := -1
	for i, m := range members {
		if m.r != leader {
			f = i
			break
		}
	}
	id := raft.ServerID(fmt.Sprint(f))
	if err := members[f].r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	_ = members[f].trans.Close()

	// The same node starts the member again, without its state.
	layer, err := nodes[f].mux.Layer(group)
	if err != nil {
		t.Fatal(err)
	}
	trans := layer.NewTransport(3, 5*time.Second)
	cfg := raft.DefaultConfig()
	cfg.LocalID = id
	cfg.Logger = hclog.NewNullLogger()
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	store := &gatedStore{InmemStore: raft.NewInmemStore(), gate: make(chan struct{})}
	var servers []raft.Server
	for i, n := range nodes {
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprint(i)), Address: n.addr()})
	}
	snaps := raft.NewInmemSnapshotStore()
	close(store.gate) // bootstrapping writes the configuration
	if err := raft.BootstrapCluster(cfg, store, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
		t.Fatal(err)
	}
	store.gate = make(chan struct{})
	trans.Fence(store, known, nil)
	r, err := raft.NewRaft(cfg, &countFSM{}, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-store.gate:
		default:
			close(store.gate)
		}
		_ = r.Shutdown().Error()
		_ = trans.Close()
	})

	await := func(what string, want raft.ServerSuffrage) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for suffrageOf(leader, id) != want {
			if time.Now().After(deadline) {
				t.Fatalf("member %s is %v in the leader's configuration, not %v, %s", id, suffrageOf(leader, id), want, what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	await("after it lost its state", raft.Nonvoter)
	if err := trans.Campaign(id); !errors.Is(err, ErrFenced) {
		t.Errorf("member %s, which lost its state, campaigned: %v", id, err)
	}
	// The group still commits, with the two voters left.
	if err := leader.Apply([]byte("after"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	close(store.gate)
	await("after it caught up", raft.Voter)
	if trans.Fenced() {
		t.Errorf("member %s still fenced after it was promoted", id)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !Votes(r, id) {
		if time.Now().After(deadline) {
			t.Fatalf("member %s does not see itself a voter again", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
