package raftmux

import (
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Transport is a Raft group's transport: hashicorp/raft's NetworkTransport
// over the group's Layer, except that heartbeats travel in the broker-wide
// batches of the mux.
//
// A failed append or snapshot transfer waits, up to appendPatience, for the group's next
// successful heartbeat to that peer and is then tried again. hashicorp/raft
// backs off exponentially (to 10 s) after each failed append to a
// follower, so a follower that was down for a few seconds, or whose group
// had not started yet, would otherwise wait up to twice that long before
// the leader tried again; this way a short outage costs a failure or two.
type Transport struct {
	*raft.NetworkTransport
	layer *Layer

	mu       sync.Mutex
	reached  map[raft.ServerAddress]chan struct{} // closed at the next heartbeat answered
	answered map[raft.ServerAddress]time.Time     // when each peer last answered
	stopped  chan struct{}
	stopOnce sync.Once
}

// appendPatience bounds how long a failed append waits for its peer.
const appendPatience = 10 * time.Second

// NewTransport returns the transport of the layer's group. maxPool and
// timeout are those of raft.NetworkTransportConfig.
func (l *Layer) NewTransport(maxPool int, timeout time.Duration) *Transport {
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: l, MaxPool: maxPool, Timeout: timeout, Logger: Logger(l.mux.log.With().Str("group", l.group).Logger()),
	})
	return &Transport{NetworkTransport: nt, layer: l, reached: make(map[raft.ServerAddress]chan struct{}),
		answered: make(map[raft.ServerAddress]time.Time), stopped: make(chan struct{})}
}

// AppendEntries implements raft.Transport.
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if isHeartbeat(args) {
		err := t.layer.mux.heartbeat(target, t.layer.group, args, resp)
		if err == nil {
			t.mu.Lock()
			t.answered[target] = time.Now()
			if ch, ok := t.reached[target]; ok {
				close(ch)
				delete(t.reached, target)
			}
			t.mu.Unlock()
		}
		return err
	}
	deadline := time.Now().Add(appendPatience)
	for {
		err := t.NetworkTransport.AppendEntries(id, target, args, resp)
		if err == nil {
			t.mu.Lock()
			t.answered[target] = time.Now()
			t.mu.Unlock()
			return nil
		}
		if !t.awaitHeartbeat(target, deadline) {
			return err
		}
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
	err := t.NetworkTransport.InstallSnapshot(id, target, args, resp, data)
	if err != nil {
		t.awaitHeartbeat(target, time.Now().Add(appendPatience))
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
	if wait <= 0 {
		return false
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
	case <-t.stopped:
	}
	return false
}

// StopWaiting ends every wait for a peer: call it before shutting the
// group down, whose replication goroutines may be waiting.
func (t *Transport) StopWaiting() { t.stopOnce.Do(func() { close(t.stopped) }) }

// Close implements raft.WithClose.
func (t *Transport) Close() error {
	t.StopWaiting()
	return t.NetworkTransport.Close()
}

// SetHeartbeatHandler implements raft.Transport: batched heartbeats and
// any that still arrive on the group's own streams take the same path.
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	t.layer.hbMu.Lock()
	t.layer.hbFn = cb
	t.layer.hbMu.Unlock()
	t.NetworkTransport.SetHeartbeatHandler(cb)
}
