package raftmux

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// proxy forwards TCP connections to a node; paused, it forwards nothing
// (as if the node were SIGSTOPped), without closing anything.
type proxy struct {
	ln     net.Listener
	to     string
	paused atomic.Bool
	done   chan struct{}
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, to raft.ServerAddress) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, to: string(to), done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(up, c)
			go p.pipe(c, up)
		}
	}()
	t.Cleanup(func() {
		close(p.done)
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() raft.ServerAddress { return raft.ServerAddress(p.ln.Addr().String()) }

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for p.paused.Load() {
			select {
			case <-p.done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// waitPeer waits until m sees addr as up (or down).
func waitPeer(t *testing.T, m *Mux, addr raft.ServerAddress, up bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for m.PeerUp(addr) != up {
		if time.Since(start) > within {
			t.Fatalf("%s not seen up=%v within %v", addr, up, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

var testLiveness = LivenessConfig{Interval: 50 * time.Millisecond, DeadAfter: 300 * time.Millisecond}

func TestPeerLiveness(t *testing.T) {
	a, b, c := startNode(t), startNode(t), startNode(t)
	px := startProxy(t, c.addr())
	var changes atomic.Int64
	a.mux.WatchPeers([]raft.ServerAddress{a.addr(), b.addr(), px.addr()}, testLiveness, func() { changes.Add(1) })
	if !a.mux.PeerUp(a.addr()) {
		t.Fatal("the mux's own address counts as down")
	}
	waitPeer(t, a.mux, b.addr(), true, 2*time.Second)
	waitPeer(t, a.mux, px.addr(), true, 2*time.Second)

	// A peer that stops answering (its connections stay open) is down
	// after DeadAfter, and up again once it answers.
	px.paused.Store(true)
	took := waitPeer(t, a.mux, px.addr(), false, 3*time.Second)
	if took < testLiveness.DeadAfter-testLiveness.Interval {
		t.Errorf("a silent peer was down after %v, before DeadAfter (%v)", took, testLiveness.DeadAfter)
	}
	if !a.mux.PeerUp(b.addr()) {
		t.Error("the other peer went down with the silent one")
	}
	px.paused.Store(false)
	waitPeer(t, a.mux, px.addr(), true, 3*time.Second)

	// A peer that is gone (its connections break and new ones are
	// refused) is down without waiting for DeadAfter.
	b.mux.Close()
	b.ln.Close()
	if took := waitPeer(t, a.mux, b.addr(), false, 3*time.Second); took >= testLiveness.DeadAfter {
		t.Errorf("a closed peer was seen down only after %v", took)
	}
	if n := changes.Load(); n < 5 {
		t.Errorf("%d changes reported, want at least 5 (two up, down, up, down)", n)
	}
}

// TestPeerUndecided: until a watched peer first answers, cannot be
// reached, or stays silent for DeadAfter, it is neither up nor down.
func TestPeerUndecided(t *testing.T) {
	a, b := startNode(t), startNode(t)
	px := startProxy(t, b.addr())
	px.paused.Store(true)
	var changes atomic.Int64
	a.mux.WatchPeers([]raft.ServerAddress{px.addr()}, testLiveness, func() { changes.Add(1) })
	if a.mux.PeerUp(px.addr()) || a.mux.PeerDown(px.addr()) {
		t.Fatalf("a peer not heard from yet: up %v, down %v; want neither", a.mux.PeerUp(px.addr()), a.mux.PeerDown(px.addr()))
	}
	start := time.Now()
	for !a.mux.PeerDown(px.addr()) {
		if time.Since(start) > 3*time.Second {
			t.Fatal("a silent peer was never found down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if took := time.Since(start); took < testLiveness.DeadAfter-testLiveness.Interval {
		t.Errorf("a peer never heard from was down after %v, before DeadAfter (%v)", took, testLiveness.DeadAfter)
	}
	if changes.Load() == 0 {
		t.Error("finding the peer down reported no change")
	}
	px.paused.Store(false)
	waitPeer(t, a.mux, px.addr(), true, 3*time.Second)
	if a.mux.PeerDown(px.addr()) {
		t.Error("a peer that answered is still down")
	}
}

// TestHoldForPeers checks that a heartbeat to a peer that is down waits
// for it rather than fail, is asked again until the peer's group runs,
// and that StopWaiting releases it.
func TestHoldForPeers(t *testing.T) {
	a, b := startNode(t), startNode(t)
	px := startProxy(t, b.addr())
	a.mux.WatchPeers([]raft.ServerAddress{px.addr()}, testLiveness, func() {})
	waitPeer(t, a.mux, px.addr(), true, 2*time.Second)
	layer, err := a.mux.Layer("g")
	if err != nil {
		t.Fatal(err)
	}
	trans := layer.NewTransport(1, time.Second)
	trans.HoldForPeers()
	defer trans.Close()
	px.paused.Store(true)
	waitPeer(t, a.mux, px.addr(), false, 3*time.Second)

	beat := func() chan error {
		done := make(chan error, 1)
		go func() {
			req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("1"), Addr: []byte(a.addr())}, Term: 3}
			var resp raft.AppendEntriesResponse
			done <- trans.AppendEntries("2", px.addr(), req, &resp)
		}()
		return done
	}
	held := beat()
	select {
	case err := <-held:
		t.Fatalf("heartbeat to a peer that is down returned at once: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	px.paused.Store(false)
	// b's group starts only later: until then it is asked again.
	time.Sleep(300 * time.Millisecond)
	bl, err := b.mux.Layer("g")
	if err != nil {
		t.Fatal(err)
	}
	bt := bl.NewTransport(1, time.Second)
	defer bt.Close()
	bt.SetHeartbeatHandler(func(rpc raft.RPC) { rpc.Respond(&raft.AppendEntriesResponse{Term: 3, Success: true}, nil) })
	select {
	case err := <-held:
		if err != nil {
			t.Fatalf("held heartbeat: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("held heartbeat not answered after the peer and its group came back")
	}

	px.paused.Store(true)
	waitPeer(t, a.mux, px.addr(), false, 3*time.Second)
	held = beat()
	time.Sleep(100 * time.Millisecond)
	trans.StopWaiting()
	select {
	case err := <-held:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("heartbeat released by StopWaiting: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("StopWaiting did not release a held heartbeat")
	}
	px.paused.Store(false)
}

// TestCampaign checks that Campaign starts an election at once: in a group
// whose election timeout is far away, and then while a leader is in place.
func TestCampaign(t *testing.T) {
	nodes := []*node{startNode(t), startNode(t), startNode(t)}
	members := startGroupsWith(t, nodes, []string{"slow"}, func(c *raft.Config) {
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = time.Minute, time.Minute, 10*time.Second
	})["slow"]
	leads := func(i int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for members[i].r.State() != raft.Leader {
			if time.Now().After(deadline) {
				t.Fatalf("member %d does not lead after it campaigned (state %v)", i, members[i].r.State())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := members[1].trans.Campaign("1"); err != nil {
		t.Fatal(err)
	}
	leads(1)
	if err := members[1].r.Apply([]byte("x"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	// The others vote for a campaigner although they know a live leader,
	// once its log is as complete as theirs: x may be committed before it
	// reaches member 2.
	deadline := time.Now().Add(5 * time.Second)
	for members[2].r.LastIndex() < members[1].r.LastIndex() {
		if time.Now().After(deadline) {
			t.Fatalf("member 2 holds entries up to %d of %d", members[2].r.LastIndex(), members[1].r.LastIndex())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := members[2].trans.Campaign("2"); err != nil {
		t.Fatal(err)
	}
	leads(2)
	if err := members[2].r.Apply([]byte("y"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
}

// TestFollowForgetsLeader checks that Follow makes a member a follower of
// its next term that knows no leader, and so votes for another candidate
// again (see Follow), and that the group then elects one.
func TestFollowForgetsLeader(t *testing.T) {
	nodes := []*node{startNode(t), startNode(t), startNode(t)}
	members := startGroupsWith(t, nodes, []string{"slow"}, func(c *raft.Config) {
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = time.Minute, time.Minute, 10*time.Second
	})["slow"]
	if err := members[1].trans.Campaign("1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, id := members[2].r.LeaderWithID(); id == "1" && members[1].r.State() == raft.Leader {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("member 1 does not lead, or member 2 does not follow it")
		}
		time.Sleep(5 * time.Millisecond)
	}
	term := members[2].r.CurrentTerm()
	last, lastTerm := LastEntry(members[2].r)
	if err := members[2].trans.Follow("2", term, last, lastTerm); err != nil {
		t.Fatal(err)
	}
	if _, id := members[2].r.LeaderWithID(); id != "" || members[2].r.CurrentTerm() != term+1 || members[2].r.State() != raft.Follower {
		t.Fatalf("after Follow member 2 names leader %q in term %d as %v; want none in term %d as a follower", id, members[2].r.CurrentTerm(), members[2].r.State(), term+1)
	}
	if err := members[0].trans.Campaign("0"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for members[0].r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatalf("member 0 does not lead after it campaigned (state %v)", members[0].r.State())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
