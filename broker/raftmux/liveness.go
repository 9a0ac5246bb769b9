package raftmux

import (
	"time"

	"github.com/hashicorp/raft"
)

// Peer liveness: one failure detector per peer broker, shared by every Raft
// group. The mux pings each watched peer on its heartbeat stream whenever
// the peer has answered nothing for an interval; a peer that answers
// nothing for DeadAfter, or that cannot be reached at all, is down until it
// answers again. Groups can then run with long election timeouts (few
// heartbeats, few timers) while the broker still notices a lost peer
// within seconds and starts elections itself.

// LivenessConfig sets how peers are watched.
type LivenessConfig struct {
	// Interval is how long a peer may stay silent before it is pinged.
	Interval time.Duration
	// DeadAfter is how long a peer may stay silent before it is down.
	DeadAfter time.Duration
}

// DefaultLivenessConfig notices a stopped peer in 1.5 to 2 seconds and a
// dead one (whose connections are refused) within half a second.
func DefaultLivenessConfig() LivenessConfig {
	return LivenessConfig{Interval: 500 * time.Millisecond, DeadAfter: 1500 * time.Millisecond}
}

// WatchPeers starts watching the brokers at peers (self is skipped).
// changed is called, from the mux's goroutines, after any of them goes up
// or down; PeerUp and PeerDown tell which. A peer is neither up nor down
// until it first answers, cannot be reached, or stays silent for
// DeadAfter. Call it once, before the groups start.
func (m *Mux) WatchPeers(peers []raft.ServerAddress, c LivenessConfig, changed func()) {
	for _, addr := range peers {
		if addr == m.self {
			continue
		}
		p, err := m.hbPeer(addr)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.watched, p.changed, p.upCh = true, changed, make(chan struct{})
		p.mu.Unlock()
		m.goFunc(func() { p.watch(c) })
	}
}

// PeerUp reports whether the watched peer at addr is up; an unwatched one
// counts as up.
func (m *Mux) PeerUp(addr raft.ServerAddress) bool {
	watched, up, _ := m.peerState(addr)
	return !watched || up
}

// PeerDown reports whether the watched peer at addr is known to be down:
// not while the watch has yet to decide, just after this broker started.
func (m *Mux) PeerDown(addr raft.ServerAddress) bool {
	p := m.knownPeer(addr)
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.watched && p.known && !p.up
}

// PeerHeardWithin reports whether the watched peer at addr is up and
// answered within d. A peer that is merely not found down yet, silent for
// less than DeadAfter, is not: a frozen broker stays "up" that long.
func (m *Mux) PeerHeardWithin(addr raft.ServerAddress, d time.Duration) bool {
	p := m.knownPeer(addr)
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.watched && p.up && time.Since(p.lastAnswer) < d
}

// peerState reports whether addr is watched and up and, while it is down,
// a channel closed when it comes up.
func (m *Mux) peerState(addr raft.ServerAddress) (watched, up bool, upCh <-chan struct{}) {
	p := m.knownPeer(addr)
	if p == nil {
		return false, false, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.watched, p.up, p.upCh
}

// knownPeer returns the peer at addr, or nil if nothing was ever sent to
// it nor is it watched (unlike hbPeer, it creates none).
func (m *Mux) knownPeer(addr raft.ServerAddress) *hbPeer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hbPeers[addr]
}

// watch pings the peer and decides when it is down, until the mux closes.
// Silence while this process itself did not run (it was stopped, or
// starved of CPU) is not held against the peer: after such a gap the
// peer gets DeadAfter again to answer.
func (p *hbPeer) watch(c LivenessConfig) {
	t := time.NewTimer(0)
	defer t.Stop()
	var last time.Time
	resumed := time.Now() // the peer's silence counts from the start of the watch
	for {
		force := false
		select {
		case <-p.mux.done:
			return
		case <-p.recheck:
			force = true
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
		now := time.Now()
		if !last.IsZero() && now.Sub(last) > c.DeadAfter {
			resumed = now // asked to wake after Interval, it slept far longer
		}
		p.mu.Lock()
		silent := now.Sub(p.lastAnswer)
		p.mu.Unlock()
		if force || silent >= c.Interval {
			silent = min(silent, now.Sub(resumed))
			if err := p.ping(); err != nil {
				p.setUp(false) // unreachable: no need to wait
			} else if silent >= c.DeadAfter {
				p.setUp(false)
			}
		}
		last = time.Now()
		t.Reset(c.Interval)
	}
}

// answered records a frame from the peer.
func (p *hbPeer) answered() {
	p.mu.Lock()
	p.lastAnswer = time.Now()
	p.mu.Unlock()
	p.setUp(true)
}

// setUp records whether the peer is up and reports a change.
func (p *hbPeer) setUp(up bool) {
	p.mu.Lock()
	if !p.watched || (p.known && p.up == up) {
		p.mu.Unlock()
		return
	}
	if p.up != up {
		p.up = up
		if up {
			close(p.upCh)
		} else {
			p.upCh = make(chan struct{})
		}
	}
	p.known = true
	changed := p.changed
	p.mu.Unlock()
	p.mux.log.Info().Str("peer", string(p.addr)).Bool("up", up).Msg("raft peer")
	changed()
}

// lost asks the watcher to ping at once: the stream to the peer broke.
func (p *hbPeer) lost() {
	select {
	case p.recheck <- struct{}{}:
	default:
	}
}

// ping sends an empty batch, which the peer answers like any other.
func (p *hbPeer) ping() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.nextID++
	id := p.nextID
	p.inflight[id] = nil
	st := p.stream
	p.mu.Unlock()
	return p.send(id, st, nil)
}
