package coordinator

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/broker/storage"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const waitTimeout = 10 * time.Second

// syncBuffer is a log destination tests read while groups write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness is a coordinator over in-memory offsets partitions.
type harness struct {
	t     *testing.T
	c     *Coordinator
	parts []partition.Partition
	logs  *syncBuffer
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Partitions = 3
	cfg.InitialRebalanceDelay = 0
	cfg.MinSessionTimeout = 10 * time.Millisecond
	return cfg
}

// newHarness starts a coordinator leading every partition of parts (new
// in-memory partitions when nil) and waits until they are loaded.
func newHarness(t *testing.T, cfg Config, parts []partition.Partition) *harness {
	t.Helper()
	if parts == nil {
		store := storage.NewMemory()
		t.Cleanup(func() { store.Close() })
		for i := range cfg.Partitions {
			p, err := partition.OpenLocal(partition.LocalOptions{Store: store, Log: storage.LogID{Topic: [16]byte{1}, Partition: i}})
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, p)
		}
	}
	logs := &syncBuffer{}
	c, err := New(cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, c: c, parts: parts, logs: logs}
	t.Cleanup(func() { c.Close() })
	c.Start()
	for i, p := range parts {
		c.Elect(int32(i), p)
	}
	h.waitLoaded()
	return h
}

func (h *harness) waitLoaded() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var err error
	if !ktest.Until(ctx, 5*time.Millisecond, func() bool {
		_, err = h.c.ListGroups(nil, nil)
		if err != nil && !errors.Is(err, ErrLoadInProgress) {
			h.t.Fatalf("loading: %v", err)
		}
		return err == nil
	}) {
		h.t.Fatalf("loading: %v", err)
	}
}

// wait returns the value a callback delivers on ch, failing the test after
// waitTimeout.
func wait[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("no answer to %s", what)
		panic("unreachable")
	}
}

func (h *harness) join(req JoinRequest) JoinResult {
	h.t.Helper()
	ch := make(chan JoinResult, 1)
	h.c.JoinGroup(req, func(r JoinResult) { ch <- r })
	return wait(h.t, "JoinGroup", ch)
}

func (h *harness) sync(req SyncRequest) SyncResult {
	h.t.Helper()
	ch := make(chan SyncResult, 1)
	h.c.SyncGroup(req, func(r SyncResult) { ch <- r })
	return wait(h.t, "SyncGroup", ch)
}

func (h *harness) heartbeat(req HeartbeatRequest) error {
	h.t.Helper()
	ch := make(chan error, 1)
	h.c.Heartbeat(req, func(err error) { ch <- err })
	return wait(h.t, "Heartbeat", ch)
}

func (h *harness) commit(req CommitRequest) []error {
	h.t.Helper()
	ch := make(chan []error, 1)
	h.c.CommitOffsets(req, func(errs []error) { ch <- errs })
	return wait(h.t, "OffsetCommit", ch)
}

func (h *harness) fetch(group string, topics []TopicPartitions) []TopicOffsets {
	h.t.Helper()
	type res struct {
		o   []TopicOffsets
		err error
	}
	ch := make(chan res, 1)
	h.c.FetchOffsets(group, topics, true, func(o []TopicOffsets, err error) { ch <- res{o, err} })
	r := wait(h.t, "OffsetFetch", ch)
	if r.err != nil {
		h.t.Fatalf("fetching offsets of %s: %v", group, r.err)
	}
	return r.o
}

func (h *harness) describe(group string) (GroupDescription, error) {
	h.t.Helper()
	type res struct {
		d   GroupDescription
		err error
	}
	ch := make(chan res, 1)
	h.c.DescribeGroup(group, func(d GroupDescription, err error) { ch <- res{d, err} })
	r := wait(h.t, "DescribeGroups", ch)
	return r.d, r.err
}

// member joins group as a new consumer of topics and syncs with the given
// assignment for itself, as the only member.
func (h *harness) member(group string, instanceID *string, assignment string) JoinResult {
	h.t.Helper()
	req := JoinRequest{Group: group, InstanceID: instanceID, ClientID: "c", ClientHost: "/127.0.0.1", SessionTimeout: 10 * time.Second,
		RebalanceTimeout: 10 * time.Second, ProtocolType: "consumer", Protocols: []Protocol{{Name: "range", Metadata: subscriptionOf("t")}}}
	jr := h.join(req)
	if jr.Err != nil {
		h.t.Fatalf("join %s: %v", group, jr.Err)
	}
	sr := h.sync(SyncRequest{Group: group, Generation: jr.Generation, MemberID: jr.MemberID, InstanceID: instanceID,
		Assignments: map[string][]byte{jr.MemberID: []byte(assignment)}})
	if sr.Err != nil || string(sr.Assignment) != assignment {
		h.t.Fatalf("sync %s: %v %q", group, sr.Err, sr.Assignment)
	}
	return jr
}

func subscriptionOf(topics ...string) []byte {
	m := kmsg.NewConsumerMemberMetadata()
	m.Topics = topics
	return m.AppendTo(nil)
}

// TestReplayRestoresGroups checks that a new coordinator of the same
// partitions (a new leader, or a restart) rebuilds groups, members,
// assignments and offsets from the records alone.
func TestReplayRestoresGroups(t *testing.T) {
	h := newHarness(t, testConfig(), nil)
	jr := h.member("consumers", nil, "p0")
	static := h.member("statics", ptr("i-1"), "p1")
	if errs := h.commit(CommitRequest{Group: "consumers", Generation: jr.Generation, MemberID: jr.MemberID,
		Offsets: []CommitOffset{{TopicPartition{"t", 0}, 10, 2, ptr("meta")}, {TopicPartition{"t", 1}, 20, -1, nil}}}); errs[0] != nil || errs[1] != nil {
		t.Fatalf("commit: %v", errs)
	}
	if errs := h.commit(CommitRequest{Group: "standalone", Generation: -1, Offsets: []CommitOffset{{TopicPartition{"t", 0}, 5, -1, nil}}}); errs[0] != nil {
		t.Fatalf("standalone commit: %v", errs)
	}
	// A later commit and a deletion must win over earlier records.
	if errs := h.commit(CommitRequest{Group: "standalone", Generation: -1, Offsets: []CommitOffset{{TopicPartition{"t", 0}, 6, -1, nil}}}); errs[0] != nil {
		t.Fatalf("standalone commit: %v", errs)
	}
	h.commit(CommitRequest{Group: "deleted", Generation: -1, Offsets: []CommitOffset{{TopicPartition{"t", 0}, 1, -1, nil}}})
	dch := make(chan error, 1)
	h.c.DeleteGroup("deleted", func(err error) { dch <- err })
	if err := wait(t, "DeleteGroups", dch); err != nil {
		t.Fatalf("delete: %v", err)
	}
	h.c.Close()

	h2 := newHarness(t, testConfig(), h.parts)
	d, err := h2.describe("consumers")
	if err != nil || d.State != "Stable" || d.Protocol != "range" || len(d.Members) != 1 || d.Members[0].MemberID != jr.MemberID ||
		string(d.Members[0].Assignment) != "p0" || d.Members[0].ClientHost != "/127.0.0.1" {
		t.Fatalf("restored group: %+v (%v)", d, err)
	}
	if d, _ := h2.describe("statics"); len(d.Members) != 1 || deref(d.Members[0].InstanceID) != "i-1" || d.Members[0].MemberID != static.MemberID {
		t.Fatalf("restored static group: %+v", d)
	}
	if _, err := h2.describe("deleted"); !errors.Is(err, ErrGroupIDNotFound) {
		t.Fatalf("deleted group after replay: %v", err)
	}
	got := h2.fetch("consumers", nil)
	if len(got) != 1 || len(got[0].Partitions) != 2 || got[0].Partitions[0] != (PartitionOffset{0, 10, 2, "meta", nil}) || got[0].Partitions[1] != (PartitionOffset{1, 20, -1, "", nil}) {
		t.Fatalf("restored offsets %+v", got)
	}
	if got := h2.fetch("standalone", []TopicPartitions{{"t", []int32{0, 1}}}); got[0].Partitions[0].Offset != 6 || got[0].Partitions[1].Offset != -1 {
		t.Fatalf("restored standalone offsets %+v", got)
	}
	// The member carries on in its generation.
	if err := h2.heartbeat(HeartbeatRequest{Group: "consumers", Generation: jr.Generation, MemberID: jr.MemberID}); err != nil {
		t.Fatalf("heartbeat after replay: %v", err)
	}
	// Static member replacement still fences the old ID after replay.
	jr2 := h2.join(JoinRequest{Group: "statics", InstanceID: ptr("i-1"), SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second,
		ProtocolType: "consumer", Protocols: []Protocol{{Name: "range", Metadata: subscriptionOf("t")}}})
	if jr2.Err != nil || jr2.Generation != static.Generation {
		t.Fatalf("static rejoin after replay: %+v", jr2)
	}
	if err := h2.heartbeat(HeartbeatRequest{Group: "statics", Generation: static.Generation, MemberID: static.MemberID, InstanceID: ptr("i-1")}); !errors.Is(err, ErrFencedInstanceID) {
		t.Fatalf("old static member: %v, want fenced", err)
	}
}

// TestResignAndElect checks the leadership hand-over: waiting requests are
// answered NOT_COORDINATOR, new ones too until the partition is elected
// again, and a loading partition answers LOAD_IN_PROGRESS.
func TestResignAndElect(t *testing.T) {
	cfg := testConfig()
	cfg.InitialRebalanceDelay = time.Minute // the join waits
	h := newHarness(t, cfg, nil)
	ch := make(chan JoinResult, 1)
	req := JoinRequest{Group: "g", SessionTimeout: time.Second, RebalanceTimeout: time.Minute, ProtocolType: "consumer", Protocols: []Protocol{{Name: "range"}}}
	h.c.JoinGroup(req, func(r JoinResult) { ch <- r })
	p := h.c.PartitionFor("g")
	h.c.Resign(p)
	if r := wait(t, "the waiting join", ch); !errors.Is(r.Err, ErrNotCoordinator) {
		t.Fatalf("waiting join after resign: %v", r.Err)
	}
	if r := h.join(req); !errors.Is(r.Err, ErrNotCoordinator) {
		t.Fatalf("join after resign: %v", r.Err)
	}
	if errs := h.commit(CommitRequest{Group: "g", Generation: -1, Offsets: []CommitOffset{{TopicPartition{"t", 0}, 1, -1, nil}}}); !errors.Is(errs[0], ErrNotCoordinator) {
		t.Fatalf("commit after resign: %v", errs)
	}
	h.c.Elect(p, h.parts[p])
	h.waitLoaded()
	if errs := h.commit(CommitRequest{Group: "g", Generation: -1, Offsets: []CommitOffset{{TopicPartition{"t", 0}, 1, -1, nil}}}); errs[0] != nil {
		t.Fatalf("commit after re-election: %v", errs)
	}
}

// TestLeaveRebalancesOnce checks that the last member leaving a stable
// group ends in one empty generation.
func TestLeaveRebalancesOnce(t *testing.T) {
	h := newHarness(t, testConfig(), nil)
	jr := h.member("g", nil, "a")
	ch := make(chan []error, 1)
	h.c.LeaveGroup("g", []MemberIdentity{{MemberID: jr.MemberID}}, func(err error, errs []error) { ch <- errs })
	if errs := wait(t, "LeaveGroup", ch); errs[0] != nil {
		t.Fatalf("leave: %v", errs)
	}
	d, err := h.describe("g")
	if err != nil || d.State != "Empty" || len(d.Members) != 0 {
		t.Fatalf("after leave: %+v %v", d, err)
	}
	if n := strings.Count(h.logs.String(), "preparing to rebalance"); n != 2 {
		t.Errorf("%d rebalances, want 2 (the join and the leave):\n%s", n, h.logs.String())
	}
}
