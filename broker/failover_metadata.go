package broker

import (
	"errors"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/raftmux"
)

// Metadata leadership failover. The metadata group keeps Raft's own timers
// (tuneRaft), which replace a dead leader after 1.5 to 3 s of silence and an
// election; until then no partition's new leader can be recorded, so
// clients would not learn of it. The failure detector that drives
// partition failover (failover_partitions.go) drives this group too: when the broker
// that leads it is down, the first live voter in broker ID order stands at
// once (Raft's TimeoutNow), the next after RankDelay, and so on, provided
// a majority of the voters is up.
type metaElector struct {
	b      *Broker
	vacant time.Time // when the leadership was first found vacant; zero while it is not
	tried  time.Time // when this broker last stood
	// stale is when this member was first seen a candidate that names a
	// leader (see staleCandidate); zero while it is not.
	stale time.Time
}

// metaElectLoop runs the metadata elector each ElectTick and whenever a peer
// goes up or down.
func (b *Broker) metaElectLoop() {
	e := &metaElector{b: b}
	b.everyOrWoken(b.cfg.Timings.ElectTick, b.metaElectWake, e.pass)
}

func (e *metaElector) pass(now time.Time) {
	b := e.b
	if b.store.Failed() != nil {
		return // it cannot write: the partition elector hands off its leaderships
	}
	state, leader, _ := b.ctrl.Role()
	if state == raft.Candidate && leader != "" {
		e.staleCandidate(leader, now)
		return
	}
	e.stale = time.Time{}
	if state != raft.Follower || leader == "" {
		// Leading, already campaigning, or knowing no leader: Raft's own
		// election is under way.
		e.vacant = time.Time{}
		return
	}
	up, gone := b.brokerDown(leader)
	if !gone {
		e.vacant = time.Time{}
		return
	}
	if e.vacant.IsZero() {
		e.vacant = now
	}
	voters := make([]int32, 0, len(b.cfg.Peers))
	rank := 0 // live voters before this one, in broker ID order
	for _, p := range b.peers() {
		voters = append(voters, p.ID)
		if p.ID < b.cfg.NodeID && up[p.ID] {
			rank++
		}
	}
	if !quorumUp(voters, up) {
		return // no majority to elect anyone
	}
	// A leader another voter still reaches is alive and commits with it:
	// only a cut between it and this broker (see peer_views.go).
	if id, err := strconv.Atoi(string(leader)); err == nil {
		_, down := b.peerStates()
		if b.reachedElsewhere(int32(id), voters, b.peerViews(up, down)) {
			return
		}
	}
	if now.Sub(e.vacant) < time.Duration(rank)*b.cfg.Timings.RankDelay || now.Sub(e.tried) < b.cfg.Timings.CampaignPause {
		return
	}
	e.tried = now
	b.log.Info().Str("known_leader", string(leader)).Msg("metadata leader's broker is down; standing for the metadata leadership")
	b.goFunc(func() {
		if err := b.ctrl.Campaign(); errors.Is(err, raftmux.ErrFenced) {
			b.log.Warn().Msg("cannot lead the metadata: this broker started without its metadata and has not caught up with a leader; waiting for a broker that kept it")
		} else if err != nil {
			b.log.Debug().Err(err).Msg("metadata election not started")
		}
	})
}

// staleCandidate handles a candidate that names a leader. A leadership
// transfer's election is over within milliseconds; a candidate that still
// names a leader a second later (stallTicks/2 elect ticks) refuses
// everyone else's vote (see raftmux.Transport.Follow) and is made to
// forget it, whether that leader's broker is down or came back without
// its state and leads nothing.
func (e *metaElector) staleCandidate(leader raft.ServerID, now time.Time) {
	b := e.b
	if e.stale.IsZero() {
		e.stale = now
	}
	if now.Sub(e.stale) < stallTicks/2*b.cfg.Timings.ElectTick {
		return
	}
	e.stale = time.Time{}
	b.goFunc(func() {
		if forgot, err := b.ctrl.ForgetStaleLeader(); err != nil {
			b.log.Debug().Err(err).Msg("stale metadata leader not forgotten")
		} else if forgot {
			b.log.Info().Str("stale_leader", string(leader)).Msg("metadata candidate named a leader it no longer has: it forgets it, so that it votes for other candidates again")
		}
	})
}

// brokerDown reports whether the failure detector finds the broker of a
// Raft member down, with the brokers it finds up.
func (b *Broker) brokerDown(member raft.ServerID) (up map[int32]bool, down bool) {
	up, downs := b.peerStates()
	id, err := strconv.Atoi(string(member))
	return up, err == nil && downs[int32(id)]
}
