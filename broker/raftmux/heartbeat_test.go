package raftmux

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// idleTune gives the test groups the election settings the broker gives
// its metadata group, for which DefaultHeartbeatConfig is made: heartbeats
// every 150 to 300 ms, a 1 s lease, no empty appends while idle. A loaded
// machine starves the process for a good part of 100 ms at times, which
// tighter settings mistake for a lost leader.
func idleTune(c *raft.Config) {
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 1500*time.Millisecond, 1500*time.Millisecond, time.Second
	c.CommitTimeout = 5 * time.Second
}

// TestHeartbeatsShareFrames runs many idle groups over three nodes and
// checks that their heartbeats travel several to a frame while every
// group keeps one leader.
func TestHeartbeatsShareFrames(t *testing.T) {
	cfg := raft.DefaultConfig()
	idleTune(cfg)
	nodes := []*node{startNode(t), startNode(t), startNode(t)}
	for _, n := range nodes {
		n.mux.SetHeartbeatConfig(DefaultHeartbeatConfig())
	}
	var names []string
	for i := 0; i < 30; i++ {
		names = append(names, fmt.Sprintf("t/%d", i))
	}
	groups := startGroupsWith(t, nodes, names, idleTune)
	terms := map[string]uint64{}
	for _, g := range names {
		terms[g] = settledTerm(t, g, groups[g])
	}
	// Every follower's election timer (HeartbeatTimeout, randomised up to
	// twice) runs out at least once while idle: only heartbeats keep the
	// terms where they are.
	time.Sleep(2 * cfg.HeartbeatTimeout)
	var frames, beats int64
	for _, n := range nodes {
		f, h := n.mux.HeartbeatStats()
		frames, beats = frames+f, beats+h
	}
	if beats == 0 {
		t.Fatal("no batched heartbeats delivered")
	}
	if ratio := float64(beats) / float64(frames); ratio < 2 {
		t.Fatalf("%d heartbeats in %d frames: %.1f per frame", beats, frames, ratio)
	}
	for _, g := range names {
		leader := waitLeader(t, g, groups[g])
		if term := termOf(leader); term != terms[g] {
			t.Errorf("%s: term moved from %d to %d while idle", g, terms[g], term)
		}
		for _, m := range groups[g] {
			if m.r != leader {
				continue
			}
			for _, n := range nodes {
				if at := m.trans.Answered(n.addr()); n.addr() != m.trans.LocalAddr() && time.Since(at) > cfg.HeartbeatTimeout {
					t.Errorf("%s: the leader last heard from %s at %v", g, n.addr(), at)
				}
			}
		}
	}
	t.Logf("%d heartbeats in %d frames", beats, frames)
}

// settledTerm waits until every member of the group follows one leader in
// one term, and returns that term. (A member may still call itself leader
// of an older term for a moment after a newer one won.)
func settledTerm(t *testing.T, group string, members []member) uint64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if term, ok := agreedTerm(members); ok {
			return term
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the members do not agree on a leader", group)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func agreedTerm(members []member) (uint64, bool) {
	var leader raft.ServerAddress
	for _, m := range members {
		if m.r.State() == raft.Leader {
			if leader != "" {
				return 0, false
			}
			leader = m.trans.LocalAddr()
		}
	}
	if leader == "" {
		return 0, false
	}
	term := termOf(members[0].r)
	for _, m := range members {
		if addr, _ := m.r.LeaderWithID(); addr != leader || termOf(m.r) != term {
			return 0, false
		}
	}
	return term, true
}

func termOf(r *raft.Raft) uint64 {
	var term uint64
	fmt.Sscan(r.Stats()["term"], &term)
	return term
}

func TestHeartbeatFailures(t *testing.T) {
	a, b := startNode(t), startNode(t)
	layer, err := a.mux.Layer("g")
	if err != nil {
		t.Fatal(err)
	}
	trans := layer.NewTransport(1, time.Second)
	defer trans.Close()
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("1"), Addr: []byte(a.addr())},
		Term:      3,
	}
	var resp raft.AppendEntriesResponse
	// b runs no group "g".
	if err := trans.AppendEntries("2", b.addr(), req, &resp); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("heartbeat to a peer without the group: %v", err)
	}
	if at := trans.Answered(b.addr()); !at.IsZero() {
		t.Fatalf("a peer without the group counts as answering (at %v)", at)
	}
	// Nobody listens at b's address once it is gone.
	b.mux.Close()
	b.ln.Close()
	start := time.Now()
	err = trans.AppendEntries("2", b.addr(), req, &resp)
	if err == nil {
		t.Fatal("heartbeat to a closed peer succeeded")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("heartbeat to a closed peer took %v", took)
	}
}

func TestHeartbeatFramesRoundTrip(t *testing.T) {
	calls := []*hbCall{
		//lint:ignore SA1019 the frames carry Leader, as hashicorp/raft does
		{group: "p/ab/0", req: &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("1"), Addr: []byte("127.0.0.1:9092")}, Term: 7, Leader: []byte("x")}},
		{group: "p/ab/1", req: &raft.AppendEntriesRequest{Term: 1}},
	}
	id, reqs, err := decodeHBRequests(encodeHBRequests(42, calls)[4:])
	if err != nil || id != 42 || len(reqs) != 2 {
		t.Fatalf("decoded %d, %d requests, %v", id, len(reqs), err)
	}
	for i, r := range reqs {
		if r.group != calls[i].group || !reflect.DeepEqual(*r.req, *calls[i].req) {
			t.Errorf("request %d: got %+v %+v", i, r.group, *r.req)
		}
	}
	answers := []hbAnswer{{status: hbUnknown}, {resp: raft.AppendEntriesResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("2")}, Term: 7, LastLog: 99, Success: true, NoRetryBackoff: true}}}
	id, got, err := decodeHBResponses(encodeHBResponses(43, answers)[4:])
	if err != nil || id != 43 || !reflect.DeepEqual(got, answers) {
		t.Fatalf("decoded %d, %+v, %v", id, got, err)
	}
}

func FuzzHeartbeatFrames(f *testing.F) {
	//lint:ignore SA1019 the frames carry Leader, as hashicorp/raft does
	f.Add(encodeHBRequests(1, []*hbCall{{group: "g", req: &raft.AppendEntriesRequest{Term: 2, Leader: []byte("a")}}})[4:])
	f.Add(encodeHBResponses(1, []hbAnswer{{resp: raft.AppendEntriesResponse{Term: 2, Success: true}}})[4:])
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, payload []byte) {
		if _, reqs, err := decodeHBRequests(payload); err == nil {
			calls := make([]*hbCall, len(reqs))
			for i, r := range reqs {
				calls[i] = &hbCall{group: r.group, req: r.req}
			}
			if _, again, err := decodeHBRequests(encodeHBRequests(1, calls)[4:]); err != nil || !reflect.DeepEqual(again, reqs) {
				t.Fatalf("requests do not survive a round trip: %v", err)
			}
		}
		if _, answers, err := decodeHBResponses(payload); err == nil {
			if _, again, err := decodeHBResponses(encodeHBResponses(1, answers)[4:]); err != nil || !reflect.DeepEqual(again, answers) {
				t.Fatalf("answers do not survive a round trip: %v", err)
			}
		}
	})
}
