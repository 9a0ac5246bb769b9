package raftmux

import (
	"errors"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Transport is a Raft group's transport: hashicorp/raft's NetworkTransport
// over the group's Layer, except that heartbeats travel in the broker-wide
// batches of the mux.
//
// A failed append or snapshot transfer is tried again, for up to
// appendPatience, once the peer can take it: hashicorp/raft backs off
// exponentially (to 10 s and more) after each failed append to a
// follower, so a follower that was down for a few seconds, or whose group
// had not started yet, would otherwise wait long before the leader tried
// again. With a watched peer (see Mux.WatchPeers) that means after a short
// pause while it is up, or as soon as it comes back; otherwise at the
// group's next heartbeat the peer answers.
//
// With HoldForPeers, heartbeats and appends to a watched peer that is down
// wait until it is up again rather than fail: Raft then counts no
// failures (and backs off from none), and the peer hears from its leader
// the moment it is back.
type Transport struct {
	*raft.NetworkTransport
	layer *Layer
	hold  bool

	mu          sync.Mutex
	reached     map[raft.ServerAddress]chan struct{} // closed at the next heartbeat answered
	answered    map[raft.ServerAddress]time.Time     // when each peer last answered
	unknown     map[raft.ServerAddress]bool          // peers whose group was not running at the last heartbeat
	lastLog     map[raft.ServerAddress]uint64        // each peer's last log index at its last heartbeat answer
	nudged      map[raft.ServerAddress]time.Time     // when each peer was last sent what it lacks
	status      map[raft.ServerAddress]byte          // each peer's fence status at its last heartbeat answer
	statusSince map[raft.ServerAddress]time.Time     // since when it has had it
	members     chan struct{}                        // wakes KeepMembers
	onRejoin    func()
	behind      func(last uint64) bool
	stopped     chan struct{}
	stopOnce    sync.Once

	// A fenced member's state (see Fence) and the relay of its requests.
	fence     *fence
	relayOnce sync.Once
	relayed   chan raft.RPC
	relayWG   sync.WaitGroup
}

const (
	// appendPatience bounds how long a failed append waits for its peer.
	appendPatience = 10 * time.Second
	// retryPause is how long a failed append to a peer that is up waits
	// before it is tried again.
	retryPause = 250 * time.Millisecond
)

// NewTransport returns the transport of the layer's group. maxPool and
// timeout are those of raft.NetworkTransportConfig.
func (l *Layer) NewTransport(maxPool int, timeout time.Duration) *Transport {
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: l, MaxPool: maxPool, Timeout: timeout, Logger: Logger(l.mux.log.With().Str("group", l.group).Logger()),
	})
	return &Transport{NetworkTransport: nt, layer: l, reached: make(map[raft.ServerAddress]chan struct{}),
		answered: make(map[raft.ServerAddress]time.Time), unknown: make(map[raft.ServerAddress]bool), lastLog: make(map[raft.ServerAddress]uint64), nudged: make(map[raft.ServerAddress]time.Time),
		status: make(map[raft.ServerAddress]byte), statusSince: make(map[raft.ServerAddress]time.Time), members: make(chan struct{}, 1), stopped: make(chan struct{})}
}

// OnRejoin sets what to do when a heartbeat reaches a peer whose group was
// not running at the previous one (restarted, or rebuilt empty): the
// leader should send it what it lacks now, rather than at its next entry
// or commit timeout, which heartbeats alone do not bring forward.
// behind, if set, reports whether a follower whose log ends at last lacks
// committed entries.
func (t *Transport) OnRejoin(fn func(), behind func(last uint64) bool) {
	t.mu.Lock()
	t.onRejoin, t.behind = fn, behind
	t.mu.Unlock()
}

// stallNudgePause bounds how often a follower is sent what it lacks
// because of a heartbeat answer.
const stallNudgePause = time.Second

// HoldForPeers makes heartbeats and appends to a watched peer that is
// down wait for it; call it before the group starts.
func (t *Transport) HoldForPeers() { t.hold = true }

// AppendEntries implements raft.Transport.
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if t.fence != nil {
		t.fence.leading()
	}
	if t.hold && !t.awaitUp(target) {
		return ErrClosed
	}
	deadline := time.Now().Add(appendPatience)
	if isHeartbeat(args) {
		for {
			status, err := t.layer.mux.heartbeat(target, t.layer.group, args, resp)
			if err == nil {
				t.mu.Lock()
				t.answered[target] = time.Now()
				if t.status[target] != status {
					t.status[target] = status
					t.statusSince[target] = time.Now()
					t.wakeMembers()
				}
				if ch, ok := t.reached[target]; ok {
					close(ch)
					delete(t.reached, target)
				}
				// Heartbeats alone never send a follower entries: one
				// whose group restarted, whose log went backwards (a
				// rebuilt or wiped replica), or whose log stays behind
				// the commit point between two answers (stalled on an
				// idle group) is sent what it lacks, at most once per
				// stallNudgePause.
				prev, seen := t.lastLog[target]
				lag := t.onRejoin != nil && t.behind != nil && seen && resp.LastLog == prev && t.behind(resp.LastLog)
				rejoined := t.unknown[target] || (seen && resp.LastLog < prev) || lag
				if rejoined && time.Since(t.nudged[target]) < stallNudgePause {
					rejoined = false
				}
				if rejoined {
					t.nudged[target] = time.Now()
				}
				delete(t.unknown, target)
				t.lastLog[target] = resp.LastLog
				onRejoin := t.onRejoin
				t.mu.Unlock()
				if rejoined && onRejoin != nil {
					onRejoin()
				}
				return nil
			}
			if errors.Is(err, ErrUnknownGroup) {
				t.mu.Lock()
				t.unknown[target] = true
				t.mu.Unlock()
			}
			// With HoldForPeers, a peer whose group has not started yet
			// (a restarted broker opens its groups once it has caught up
			// with the metadata) is asked again shortly, so that it hears
			// from its leader as soon as the group runs.
			if !t.hold || !errors.Is(err, ErrUnknownGroup) || !t.awaitRetry(target, deadline) {
				return err
			}
		}
	}
	for {
		err := t.NetworkTransport.AppendEntries(id, target, args, resp)
		if err == nil {
			t.mu.Lock()
			t.answered[target] = time.Now()
			t.mu.Unlock()
			return nil
		}
		if !t.awaitRetry(target, deadline) {
			return err
		}
	}
}

// votePatience bounds how long a vote request is tried again.
const votePatience = 2 * time.Second

// RequestVote implements raft.Transport. A vote request to a watched peer
// that is up is tried again for up to votePatience: the peer's group may
// be starting (a new partition opens on every replica at about the same
// time), and a candidate that misses a vote waits out Raft's election
// timeout before it asks again.
func (t *Transport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if t.Fenced() {
		return ErrFenced
	}
	deadline := time.Now().Add(votePatience)
	for {
		err := t.NetworkTransport.RequestVote(id, target, args, resp)
		if err == nil {
			return nil
		}
		if watched, up, _ := t.layer.mux.peerState(target); !watched || !up || !t.awaitRetry(target, deadline) {
			return err
		}
	}
}

// Campaign makes this replica stand for election at once, as the target of
// a leadership transfer does: it sends itself Raft's TimeoutNow. The other
// replicas vote for it even while they still know a leader, provided its
// log is as complete as theirs.
func (t *Transport) Campaign(self raft.ServerID) error {
	if t.Fenced() {
		return ErrFenced
	}
	req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(self), Addr: []byte(t.LocalAddr()),
	}}
	var resp raft.TimeoutNowResponse
	return t.NetworkTransport.TimeoutNow(self, t.LocalAddr(), req, &resp)
}

// Restart ends a lost election of this member, a candidate, and starts
// another: hashicorp/raft's candidate otherwise waits out its whole
// election timeout (tens of seconds for a partition) after a split vote,
// and ignores Campaign meanwhile. Follow makes the member a follower of
// the next term, and then Campaign makes it stand in the term after.
// term, last and lastTerm are the member's current term and last log
// entry.
func (t *Transport) Restart(self raft.ServerID, term, last, lastTerm uint64) error {
	if t.Fenced() {
		return ErrFenced
	}
	if err := t.Follow(self, term, last, lastTerm); err != nil {
		return err
	}
	return t.Campaign(self)
}

// Follow makes this member a follower of the term after term, voting for
// itself and knowing no leader: it is sent its own vote request for that
// term. term, last and lastTerm are the member's current term and last
// log entry.
//
// It mends a candidate that names a leader. hashicorp/raft handles
// heartbeats outside its main loop, so a heartbeat of the old leader that
// arrives while a Campaign's TimeoutNow turns the member into a candidate
// (between the state change and the new term; likely when the member
// resumes from a freeze with the heartbeats of a leader since killed
// queued) records that leader again. Such a candidate refuses every other
// candidate's vote and pre-vote "since we have a leader" while it keeps
// losing its own elections when its log is behind: the group may then
// elect no one at all.
func (t *Transport) Follow(self raft.ServerID, term, last, lastTerm uint64) error {
	req := &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(self), Addr: []byte(t.LocalAddr())},
		Term:      term + 1, LastLogIndex: last, LastLogTerm: lastTerm,
		// Raft refuses a vote request while it knows a leader, unless
		// the request is part of a leadership transfer.
		LeadershipTransfer: true,
	}
	var resp raft.RequestVoteResponse
	return t.NetworkTransport.RequestVote(self, t.LocalAddr(), req, &resp)
}

// LastEntry returns the index and term of r's last log entry, or of its
// snapshot when that is later.
func LastEntry(r *raft.Raft) (last, lastTerm uint64) {
	st := r.Stats()
	last, _ = strconv.ParseUint(st["last_log_index"], 10, 64)
	lastTerm, _ = strconv.ParseUint(st["last_log_term"], 10, 64)
	if snap, _ := strconv.ParseUint(st["last_snapshot_index"], 10, 64); snap > last {
		last = snap
		lastTerm, _ = strconv.ParseUint(st["last_snapshot_term"], 10, 64)
	}
	return last, lastTerm
}

// awaitUp waits, while target is a watched peer that is down, until it is
// up; it reports false if the transport stops waiting first.
func (t *Transport) awaitUp(target raft.ServerAddress) bool {
	watched, up, ch := t.layer.mux.peerState(target)
	return !watched || up || t.wait(ch, -1) == woken
}

// awaitRetry waits until a failed append to target may be tried again and
// reports whether that is before the deadline.
func (t *Transport) awaitRetry(target raft.ServerAddress, deadline time.Time) bool {
	watched, up, ch := t.layer.mux.peerState(target)
	if !watched {
		return t.awaitHeartbeat(target, deadline)
	}
	wait := time.Until(deadline)
	if up {
		wait = min(wait, retryPause)
		ch = nil
	}
	if wait <= 0 {
		return false
	}
	switch t.wait(ch, wait) {
	case woken:
		return true
	case timedOut:
		return up && time.Now().Before(deadline)
	default:
		return false
	}
}

// How a wait ended.
const (
	woken    = iota // the awaited channel closed
	timedOut        // the time was up
	released        // StopWaiting was called or the mux closed
)

// wait waits for ch to close, for at most d if d is not negative (a nil ch
// never closes).
func (t *Transport) wait(ch <-chan struct{}, d time.Duration) int {
	var expired <-chan time.Time
	if d >= 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case <-ch:
		return woken
	case <-expired:
		return timedOut
	case <-t.stopped:
		return released
	case <-t.layer.mux.done:
		return released
	}
}

// Answered returns when the group on target last answered this
// transport, or the zero time if it never did.
func (t *Transport) Answered(target raft.ServerAddress) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.answered[target]
}

// Answering reports whether the group on target has answered this
// transport within d, waiting up to d for its next heartbeat answer if it
// has not.
func (t *Transport) Answering(target raft.ServerAddress, d time.Duration) bool {
	if time.Since(t.Answered(target)) <= d {
		return true
	}
	return t.awaitHeartbeat(target, time.Now().Add(d))
}

// InstallSnapshot implements raft.Transport. The snapshot stream cannot be
// sent twice, so a failed transfer only waits (as a failed append does)
// for the peer before Raft counts the failure and tries again.
func (t *Transport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if t.hold && !t.awaitUp(target) {
		return ErrClosed
	}
	err := t.NetworkTransport.InstallSnapshot(id, target, args, resp, data)
	if err != nil {
		t.awaitRetry(target, time.Now().Add(appendPatience))
	}
	return err
}

// awaitHeartbeat waits for the group's next answered heartbeat to target
// and reports whether one came before the deadline.
func (t *Transport) awaitHeartbeat(target raft.ServerAddress, deadline time.Time) bool {
	t.mu.Lock()
	ch, ok := t.reached[target]
	if !ok {
		ch = make(chan struct{})
		t.reached[target] = ch
	}
	t.mu.Unlock()
	wait := time.Until(deadline)
	return wait > 0 && t.wait(ch, wait) == woken
}

// StopWaiting ends every wait for a peer: call it before shutting the
// group down, whose replication goroutines may be waiting.
func (t *Transport) StopWaiting() { t.stopOnce.Do(func() { close(t.stopped) }) }

// RequestPreVote implements raft.WithPreVote: a fenced member asks for no
// votes.
func (t *Transport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if t.Fenced() {
		return ErrFenced
	}
	return t.NetworkTransport.RequestPreVote(id, target, args, resp)
}

// Close implements raft.WithClose.
func (t *Transport) Close() error {
	t.StopWaiting()
	err := t.NetworkTransport.Close()
	t.relayWG.Wait()
	return err
}

// SetHeartbeatHandler implements raft.Transport: batched heartbeats and
// any that still arrive on the group's own streams take the same path.
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	t.layer.hbMu.Lock()
	t.layer.hbFn = t.fencedHeartbeat(cb)
	if t.fence != nil {
		t.layer.hbStatus = t.fence.status
	}
	t.layer.hbMu.Unlock()
	t.NetworkTransport.SetHeartbeatHandler(t.fencedHeartbeat(cb))
}
