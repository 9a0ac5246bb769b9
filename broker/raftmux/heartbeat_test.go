package raftmux

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestHeartbeatsShareFrames runs many idle groups over three nodes and
// checks that their heartbeats travel several to a frame while every
// group keeps one leader.
func TestHeartbeatsShareFrames(t *testing.T) {
	nodes := []*node{startNode(t), startNode(t), startNode(t)}
	var names []string
	for i := 0; i < 30; i++ {
		names = append(names, fmt.Sprintf("t/%d", i))
	}
	groups := startGroups(t, nodes, names)
	terms := map[string]uint64{}
	for _, g := range names {
		terms[g] = termOf(waitLeader(t, g, groups[g]))
	}
	time.Sleep(time.Second)
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
				if at := m.trans.Answered(n.addr()); n.addr() != m.trans.LocalAddr() && time.Since(at) > time.Second {
					t.Errorf("%s: the leader last heard from %s at %v", g, n.addr(), at)
				}
			}
		}
	}
	t.Logf("%d heartbeats in %d frames", beats, frames)
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
