package cluster

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/raftmux"
	"github.com/pubg1/pubg1/broker/storage"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// member is one broker's listener, mux and controller.
type member struct {
	ln    net.Listener
	mux   *raftmux.Mux
	store storage.Store
	dir   string
	c     *Controller
	wg    sync.WaitGroup
	// watch runs the mux's failure detector over the peers, as brokers do.
	watch bool
}

// fastRaft shortens Raft's timers for tests, though not below what a
// loaded machine running the race detector keeps: a process starved for a
// few hundred milliseconds must not cost its leader its place, or
// proposals chase one election after another.
func fastRaft(c *raft.Config) {
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
}

func listen(t *testing.T, addr string) net.Listener {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *member) start(t *testing.T, id int32, peers []Peer, addr string) {
	m.ln = listen(t, addr)
	m.mux = raftmux.New(raft.ServerAddress(addr), zerolog.Nop())
	if m.watch {
		var addrs []raft.ServerAddress
		for _, p := range peers {
			addrs = append(addrs, raft.ServerAddress(p.Addr))
		}
		m.mux.WatchPeers(addrs, raftmux.DefaultLivenessConfig(), func() {})
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			nc, err := m.ln.Accept()
			if err != nil {
				return
			}
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				if ok, c, err := raftmux.IsRaft(nc, 5*time.Second); err == nil && ok {
					m.mux.ServeConn(c)
					return
				}
				nc.Close()
			}()
		}
	}()
	c, err := Start(Config{NodeID: id, Peers: peers, DataDir: m.dir, Store: m.store, Mux: m.mux, Logger: zerolog.Nop(), Tune: fastRaft})
	if err != nil {
		t.Fatal(err)
	}
	m.c = c
}

func (m *member) stop() {
	m.c.Close()
	m.mux.Close()
	m.ln.Close()
	m.wg.Wait()
}

// startMembers starts n controllers on loopback ports; with watch, each
// watches the others with the failure detector.
func startMembers(t *testing.T, n int, watch bool) ([]Peer, []*member) {
	t.Helper()
	var peers []Peer
	var members []*member
	for i := int32(1); i <= int32(n); i++ {
		ln := listen(t, "127.0.0.1:0")
		peers = append(peers, Peer{ID: i, Addr: ln.Addr().String()})
		ln.Close()
		s := storage.NewMemory()
		t.Cleanup(func() { s.Close() })
		members = append(members, &member{store: s, dir: t.TempDir(), watch: watch})
	}
	for i, m := range members {
		m.start(t, peers[i].ID, peers, peers[i].Addr)
	}
	t.Cleanup(func() {
		for _, m := range members {
			if m.c != nil {
				m.stop()
			}
		}
	})
	return peers, members
}

func TestControllerReplicatesMetadata(t *testing.T) {
	peers, members := startMembers(t, 3, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Propose from a follower: it is forwarded to the leader.
	var follower *member
	deadline := time.Now().Add(20 * time.Second)
	for follower == nil {
		for _, m := range members {
			if !m.c.IsLeader() {
				if _, addr := m.c.raft().LeaderWithID(); addr != "" {
					follower = m
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd := &Command{Kind: cmdCreateTopic, Topic: "orders", TopicID: [16]byte{9}, Replicas: [][]int32{{1, 2, 3}, {2, 3, 1}}}
	if res, err := follower.c.Propose(ctx, cmd); err != nil || res.Error() != nil {
		t.Fatalf("create: %v %v", err, res.Error())
	}
	// The proposer has applied it when Propose returns.
	if follower.c.State().Topics["orders"] == nil {
		t.Fatal("proposer does not see its own change")
	}
	// A retried proposal (same topic ID) is a success; another topic of the
	// same name is not.
	if res, err := follower.c.Propose(ctx, cmd); err != nil || res.Error() != nil {
		t.Fatalf("create retried: %v %v", err, res.Error())
	}
	other := *cmd
	other.TopicID = [16]byte{10}
	if res, err := follower.c.Propose(ctx, &other); err != nil || !errors.Is(res.Error(), ErrTopicExists) {
		t.Fatalf("create again: %v %v", err, res.Error())
	}
	grow := AddPartitionsCommand("orders", 2, [][]int32{{3, 1, 2}})
	for i := 0; i < 2; i++ { // the retry changes nothing
		if res, err := follower.c.Propose(ctx, grow); err != nil || res.Error() != nil {
			t.Fatalf("add partitions, try %d: %v %v", i, err, res.Error())
		}
	}
	if n := len(follower.c.State().Topics["orders"].Replicas); n != 3 {
		t.Fatalf("%d partitions after a retried add", n)
	}
	if res, _ := follower.c.Propose(ctx, AddPartitionsCommand("orders", 1, [][]int32{{1}})); !errors.Is(res.Error(), ErrBadCommand) {
		t.Fatalf("add from a stale count: %v", res.Error())
	}
	collide := &Command{Kind: cmdCreateTopic, Topic: "a.b", TopicID: [16]byte{1}, Replicas: [][]int32{{1}}}
	follower.c.Propose(ctx, collide)
	collide.Topic, collide.TopicID = "a_b", [16]byte{2}
	if res, _ := follower.c.Propose(ctx, collide); !errors.Is(res.Error(), ErrTopicCollision) {
		t.Fatalf("collision: %v", res.Error())
	}
	// Producer ID blocks never overlap, whoever asks.
	seen := map[int64]bool{}
	for _, m := range members {
		res, err := m.c.Propose(ctx, &Command{Kind: cmdAllocProducerIDs, Count: 1000})
		if err != nil || res.Error() != nil || seen[res.Value] {
			t.Fatalf("alloc: %v %v %d", err, res.Error(), res.Value)
		}
		seen[res.Value] = true
	}
	// Leader reports: a stale epoch never overrides a newer one.
	follower.c.Propose(ctx, &Command{Kind: cmdSetLeader, TopicID: [16]byte{9}, Partition: 1, Leader: 3, Epoch: 7})
	follower.c.Propose(ctx, &Command{Kind: cmdSetLeader, TopicID: [16]byte{9}, Partition: 1, Leader: 2, Epoch: 5})
	for _, m := range members {
		deadline := time.Now().Add(10 * time.Second)
		for {
			tp := m.c.State().Topics["orders"]
			if tp != nil && tp.Leaders[1].Leader == 3 && tp.Leaders[1].Epoch == 7 && m.c.State().NextProducerID == 3000 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("state did not converge: %+v", m.c.State())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A restarted member recovers the metadata from its log.
	m := members[0]
	m.stop()
	m.start(t, peers[0].ID, peers, peers[0].Addr)
	deadline = time.Now().Add(20 * time.Second)
	for m.c.State().Topics["orders"] == nil || m.c.State().NextProducerID != 3000 {
		if time.Now().After(deadline) {
			t.Fatalf("restarted member state: %+v", m.c.State())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
