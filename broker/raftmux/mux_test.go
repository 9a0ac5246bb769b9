package raftmux

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is one "broker": a listener that serves Raft sessions and answers
// anything else with a fixed greeting, standing in for the Kafka side.
type node struct {
	ln  net.Listener
	mux *Mux
	wg  sync.WaitGroup
}

func startNode(t *testing.T) *node {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{ln: ln, mux: New(raft.ServerAddress(ln.Addr().String()), zerolog.Nop())}
	// The test groups' leases are 100 ms.
	n.mux.SetHeartbeatConfig(HeartbeatConfig{Window: 5 * time.Millisecond, Timeout: time.Second})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				isRaft, c, err := IsRaft(nc, 5*time.Second)
				switch {
				case err != nil:
					nc.Close()
				case isRaft:
					n.mux.ServeConn(c)
				default:
					// The "Kafka" side sees the bytes the sniffing read.
					buf := make([]byte, 8)
					if _, err := io.ReadFull(c, buf); err == nil {
						_, _ = c.Write(append([]byte("kafka:"), buf...))
					}
					c.Close()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		n.mux.Close()
		ln.Close()
		n.wg.Wait()
	})
	return n
}

func (n *node) addr() raft.ServerAddress { return raft.ServerAddress(n.ln.Addr().String()) }

// countFSM counts applied entries.
type countFSM struct {
	mu      sync.Mutex
	applied [][]byte
}

func (f *countFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, l.Data)
	return len(f.applied)
}
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, fmt.Errorf("no snapshots") }
func (f *countFSM) Restore(io.ReadCloser) error         { return nil }
func (f *countFSM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applied)
}

func TestKafkaConnectionsPassThrough(t *testing.T) {
	n := startNode(t)
	c, err := net.Dial("tcp", string(n.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{0, 0, 0, 4, 1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	if !bytes.Equal(got, []byte("kafka:\x00\x00\x00\x04\x01\x02\x03\x04")) {
		t.Fatalf("kafka side saw %q", got)
	}
}

// TestGroupsShareSessions runs two Raft groups over three nodes' muxes and
// checks that both elect leaders and replicate, over one session per pair.
// member is one node's replica of a test group.
type member struct {
	r     *raft.Raft
	fsm   *countFSM
	trans *Transport
}

// startGroups runs each group on every node, over the nodes' muxes, with
// 200 ms election timeouts and a 100 ms lease.
func startGroups(t *testing.T, nodes []*node, names []string) map[string][]member {
	t.Helper()
	return startGroupsWith(t, nodes, names, func(c *raft.Config) {
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	})
}

// startGroupsWith is startGroups with the Raft settings that tune sets
// over raft.DefaultConfig.
func startGroupsWith(t *testing.T, nodes []*node, names []string, tune func(*raft.Config)) map[string][]member {
	t.Helper()
	var servers []raft.Server
	for i, n := range nodes {
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprint(i)), Address: n.addr()})
	}
	groups := map[string][]member{}
	for _, group := range names {
		for i, n := range nodes {
			layer, err := n.mux.Layer(group)
			if err != nil {
				t.Fatal(err)
			}
			trans := layer.NewTransport(3, 5*time.Second)
			cfg := raft.DefaultConfig()
			cfg.LocalID = raft.ServerID(fmt.Sprint(i))
			cfg.Logger = hclog.NewNullLogger()
			tune(cfg)
			store := raft.NewInmemStore()
			fsm := &countFSM{}
			if err := raft.BootstrapCluster(cfg, store, store, raft.NewInmemSnapshotStore(), trans, raft.Configuration{Servers: servers}); err != nil {
				t.Fatal(err)
			}
			r, err := raft.NewRaft(cfg, fsm, store, store, raft.NewInmemSnapshotStore(), trans)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = r.Shutdown().Error()
				_ = trans.Close()
			})
			groups[group] = append(groups[group], member{r, fsm, trans})
		}
	}
	return groups
}

// waitLeader waits for one member of the group to lead.
func waitLeader(t *testing.T, group string, members []member) *raft.Raft {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, m := range members {
			if m.r.State() == raft.Leader {
				return m.r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no leader", group)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGroupsShareSessions(t *testing.T) {
	nodes := []*node{startNode(t), startNode(t), startNode(t)}
	groups := startGroups(t, nodes, []string{"topic-a/0", "topic-b/3"})
	for group, members := range groups {
		leader := waitLeader(t, group, members)
		for i := 0; i < 50; i++ {
			if err := leader.Apply([]byte(fmt.Sprintf("%s-%d", group, i)), 5*time.Second).Error(); err != nil {
				t.Fatalf("%s: apply: %v", group, err)
			}
		}
		for _, m := range members {
			deadline := time.Now().Add(20 * time.Second)
			for m.fsm.count() < 50 {
				if time.Now().After(deadline) {
					t.Fatalf("%s: a member applied %d of 50", group, m.fsm.count())
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	for i, n := range nodes {
		n.mux.mu.Lock()
		out := len(n.mux.sessions)
		n.mux.mu.Unlock()
		if out > len(nodes)-1 {
			t.Errorf("node %d has %d outbound sessions for %d peers", i, out, len(nodes)-1)
		}
	}
}

// dialUnstarted starts two nodes and opens a stream from the first to
// group on the second, which does not run it; it returns the second node
// and the stream, closed when the test ends.
func dialUnstarted(t *testing.T, group string) (*node, net.Conn) {
	t.Helper()
	a, b := startNode(t), startNode(t)
	layer, err := a.mux.Layer(group)
	if err != nil {
		t.Fatal(err)
	}
	c, err := layer.Dial(b.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return b, c
}

// TestStreamWaitsForGroup sends to a group before the peer starts it: the
// stream reaches the group once it does, with what was written meanwhile.
func TestStreamWaitsForGroup(t *testing.T) {
	b, c := dialUnstarted(t, "late")
	if _, err := c.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(layerWait / 4)
	late, err := b.mux.Layer("late")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		if sc, err := late.Accept(); err == nil {
			accepted <- sc
		}
		close(accepted)
	}()
	select {
	case sc, ok := <-accepted:
		if !ok {
			t.Fatal("the late group's layer closed without a stream")
		}
		defer sc.Close()
		_ = sc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "early" {
			t.Fatalf("the group read %q, %v; want what was sent before it started", buf, err)
		}
	case <-time.After(layerWait):
		late.Close()
		t.Fatal("the stream did not reach the group once it started")
	}
}

// TestUnknownGroupStreamRefused: a stream for a group the peer does not
// start within layerWait is closed.
func TestUnknownGroupStreamRefused(t *testing.T) {
	_, c := dialUnstarted(t, "nobody-here")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("stream to an unknown group stayed open")
	}
}

// TestCoalescerKeepsBytesInOrder writes frames of many sizes from one
// goroutine, as yamux does, and checks the peer receives exactly them.
func TestCoalescerKeepsBytesInOrder(t *testing.T) {
	a, b := net.Pipe()
	w := newCoalescer(a)
	var want bytes.Buffer
	var wg sync.WaitGroup
	got := make(chan []byte, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		data, _ := io.ReadAll(b)
		got <- data
	}()
	for i := 0; i < 2000; i++ {
		size := []int{12, 1, 300, directWrite + 7, 5000}[i%5]
		p := bytes.Repeat([]byte{byte(i)}, size)
		want.Write(p)
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	// Close sends whatever is still buffered, then ends the reader.
	w.Close()
	wg.Wait()
	if data := <-got; !bytes.Equal(data, want.Bytes()) {
		t.Fatalf("peer got %d bytes, want %d (or different bytes)", len(data), want.Len())
	}
}

// TestSessionEndStopsItsReads ends a peer's session: reads of that
// session's streams fail at once (see stopReads), while a stream of another
// session still carries data.
func TestSessionEndStopsItsReads(t *testing.T) {
	a, b, c := startNode(t), startNode(t), startNode(t)
	layer, err := a.mux.Layer("g")
	if err != nil {
		t.Fatal(err)
	}
	onC, err := c.mux.Layer("g")
	if err != nil {
		t.Fatal(err)
	}
	toB, err := layer.Dial(b.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer toB.Close()
	toC, err := layer.Dial(c.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer toC.Close()
	read := func(conn net.Conn) <-chan error {
		ch := make(chan error, 1)
		go func() {
			buf := make([]byte, 2)
			_, err := io.ReadFull(conn, buf)
			if err == nil && string(buf) != "ok" {
				err = fmt.Errorf("read %q", buf)
			}
			ch <- err
		}()
		return ch
	}
	fromB, fromC := read(toB), read(toC)

	b.mux.Close()
	select {
	case err := <-fromB:
		if err == nil {
			t.Fatal("a read of a stream to a closed peer succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read of a stream to a closed peer still waits 10 s later")
	}

	st, err := onC.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-fromC:
		if err != nil {
			t.Fatalf("the stream to the other peer: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream to the other peer got nothing in 10 s")
	}
}
