package broker

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// sessionOf is a full fetch's answer of n partitions of topic "t", to make
// a session of.
func sessionOf(n int) []fetchPart {
	parts := make([]fetchPart, n)
	for i := range parts {
		out := kmsg.NewFetchResponseTopicPartition()
		out.Partition = int32(i)
		parts[i] = fetchPart{out: &out, key: sessionKey{topic: "t", partition: int32(i)}, leaderEpoch: -1, topicName: "t"}
	}
	return parts
}

// TestFetchSessionEvictionRule checks the eviction rule of a full cache,
// Kafka's for consumer sessions: the least recently used session goes if
// it has been idle for longer than two minutes; otherwise the smallest of
// the sessions older than two minutes goes if the new one has more
// partitions; otherwise the new fetch gets no session. An evicted
// session's next fetch is FETCH_SESSION_ID_NOT_FOUND.
func TestFetchSessionEvictionRule(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	now := start
	c := newFetchSessions(2)
	c.now = func() time.Time { return now }
	at := func(d time.Duration) { now = start.Add(d) }
	epochs := make(map[int32]int32)
	// touch makes an incremental fetch of session id, listing nothing.
	touch := func(id int32) error {
		req := kmsg.NewPtrFetchRequest()
		req.Version, req.SessionID, req.SessionEpoch = 12, id, epochs[id]
		_, _, err := c.update(req)
		if err == nil {
			epochs[id]++
		}
		return err
	}
	create := func(n int) int32 {
		id := c.create(false, sessionOf(n))
		if id != 0 {
			epochs[id] = 1
		}
		return id
	}
	alive := func(id int32) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sessions[id] != nil
	}

	a, b := create(1), create(2)
	if a <= 0 || b <= 0 || a == b {
		t.Fatalf("session IDs %d and %d", a, b)
	}
	at(time.Second)
	if id := create(5); id != 0 {
		t.Fatal("a full cache of sessions used just now took a new one")
	}

	// Two minutes and one second on, b is used and a is not: a is stale.
	at(121 * time.Second)
	if err := touch(b); err != nil {
		t.Fatal(err)
	}
	cs := create(1)
	if cs == 0 || alive(a) || !alive(b) {
		t.Fatalf("new session %d; a alive %v, b alive %v: want a evicted", cs, alive(a), alive(b))
	}
	if err := touch(a); !errors.Is(err, ErrFetchSessionNotFound) {
		t.Fatalf("fetch of the evicted session: %v, want ErrFetchSessionNotFound", err)
	}

	// Nothing is stale; b is older than two minutes, cs is not: b goes
	// for a session with more partitions than it has.
	at(122 * time.Second)
	if id := create(2); id != 0 {
		t.Fatal("a session no larger than the smallest old one evicted it")
	}
	d := create(3)
	if d == 0 || alive(b) || !alive(cs) {
		t.Fatalf("new session %d; b alive %v, c alive %v: want b evicted", d, alive(b), alive(cs))
	}

	// Both young and in use: nothing goes, whatever the size.
	at(123 * time.Second)
	if id := create(100); id != 0 {
		t.Fatal("a young session was evicted")
	}

	// Both old and in use: the smallest (cs, one partition) goes for two.
	at(250 * time.Second)
	if err := touch(cs); err != nil {
		t.Fatal(err)
	}
	if err := touch(d); err != nil {
		t.Fatal(err)
	}
	at(251 * time.Second)
	if id := create(1); id != 0 {
		t.Fatal("an equal size evicted a session")
	}
	if e := create(2); e == 0 || alive(cs) || !alive(d) {
		t.Fatalf("new session %d; c alive %v, d alive %v: want c evicted", e, alive(cs), alive(d))
	}
	if n := c.count(); n != 2 {
		t.Fatalf("%d sessions, want 2", n)
	}
}

func TestFetchSessionEpochWraps(t *testing.T) {
	for _, tt := range []struct{ epoch, want int32 }{{0, 1}, {1, 2}, {math.MaxInt32 - 1, math.MaxInt32}, {math.MaxInt32, 1}} {
		if got := nextFetchEpoch(tt.epoch); got != tt.want {
			t.Errorf("after %d: %d, want %d", tt.epoch, got, tt.want)
		}
	}
}
