package raftmux

import (
	"errors"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
)

const (
	// memberFresh is how recently, beyond the longest interval between
	// two heartbeats of the group, a peer must have answered for its
	// answer to count as its current state.
	memberFresh = 2 * time.Second
	// memberRecheck is how often KeepMembers looks again unwoken: for a
	// change that failed or waited for a quorum, a new member's grace
	// ending, the report of the non-voters. Peers' status changes wake it
	// at once.
	memberRecheck = 5 * time.Second
	// memberChangeWait bounds the wait for Raft to take a change.
	memberChangeWait = 5 * time.Second
	// catchUpGrace is how long a voter that started without state (not
	// known to have lost any) may take to catch up before it is demoted:
	// the members of a new group catch up at once, and are left voters.
	catchUpGrace = time.Second
)

// wakeMembers tells KeepMembers to look again; it never blocks.
func (t *Transport) wakeMembers() {
	select {
	case t.members <- struct{}{}:
	default:
	}
}

// peerState is what the leader last heard from a peer.
type peerState struct {
	answered time.Time
	lastLog  uint64
	status   byte      // its fence status
	since    time.Time // since when it has had it
}

func (t *Transport) peerState(addr raft.ServerAddress) peerState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return peerState{answered: t.answered[addr], lastLog: t.lastLog[addr], status: t.status[addr], since: t.statusSince[addr]}
}

// fenced reports whether the peer is fenced (it does not hold the group's
// state yet).
func (s peerState) fenced() bool { return s.status == hbLost || s.status == hbCatchingUp }

// demotable reports whether the peer should not count as a voter: it is
// known to have lost its state, or has not caught up within catchUpGrace.
func (s peerState) demotable(now time.Time) bool {
	return s.status == hbLost || (s.status == hbCatchingUp && now.Sub(s.since) >= catchUpGrace)
}

// KeepMembers keeps the group's voters to members that hold its state,
// while r leads: a voter whose heartbeat answers report that it lost its
// state (a replica whose data directory was replaced, or that is rebuilt:
// see Fence with known), or that started without state and has not caught
// up within catchUpGrace, is demoted to a non-voter, so that it counts
// toward no quorum, once the other voters that answer can carry the group
// without it; a non-voter that no longer
// reports lost state and whose log reaches the commit index is promoted
// back. report, if set, is told the non-voters after each look (about
// once a second while r leads, and after each change); it may block
// briefly. It runs until stop is closed; the caller owns it.
func (t *Transport) KeepMembers(r *raft.Raft, self raft.ServerID, log zerolog.Logger, report func(nonvoters []raft.ServerID), stop <-chan struct{}) {
	tick := time.NewTicker(memberRecheck)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.stopped:
			return
		case <-t.members:
		case <-tick.C:
		}
		if r.State() != raft.Leader {
			continue
		}
		f := r.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		// hashicorp/raft heartbeats every HeartbeatTimeout/10 to /5.
		fresh := r.ReloadableConfig().HeartbeatTimeout/5 + memberFresh
		change := t.membershipChange(f.Configuration(), self, r.CommitIndex(), fresh)
		if change == nil {
			if report != nil {
				report(nonvoters(f.Configuration()))
			}
			continue
		}
		t.wakeMembers() // look again at once, and report
		if err := change.apply(r); err != nil {
			if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) && !errors.Is(err, raft.ErrRaftShutdown) {
				log.Warn().Err(err).Str("member", string(change.id)).Bool("promote", change.promote).Msg("raft membership change failed")
			}
			continue
		}
		if change.promote {
			log.Info().Str("member", string(change.id)).Msg("member caught up after losing its state: a voter again")
		} else {
			log.Warn().Str("member", string(change.id)).Msg("member lost its state: a non-voter until it has caught up")
		}
	}
}

type memberChange struct {
	id      raft.ServerID
	addr    raft.ServerAddress
	promote bool
}

func (c *memberChange) apply(r *raft.Raft) error {
	if c.promote {
		return r.AddVoter(c.id, c.addr, 0, memberChangeWait).Error()
	}
	return r.DemoteVoter(c.id, 0, memberChangeWait).Error()
}

// membershipChange picks the next change to make, if any, from the peers'
// answers within fresh; a peer whose broker the failure detector finds
// down counts as not answering.
func (t *Transport) membershipChange(cfg raft.Configuration, self raft.ServerID, commit uint64, fresh time.Duration) *memberChange {
	now := time.Now()
	voters, live := 0, 0
	states := make(map[raft.ServerID]peerState, len(cfg.Servers))
	for _, s := range cfg.Servers {
		if s.ID == self {
			if s.Suffrage == raft.Voter {
				voters++
				live++
			}
			continue
		}
		st := t.peerState(s.Address)
		if t.layer != nil && t.layer.mux.PeerDown(s.Address) {
			st.answered = time.Time{}
		}
		states[s.ID] = st
		if s.Suffrage == raft.Voter {
			voters++
			if now.Sub(st.answered) < fresh && !st.fenced() {
				live++
			}
		}
	}
	for _, s := range cfg.Servers {
		st, ok := states[s.ID]
		if !ok || now.Sub(st.answered) >= fresh {
			continue
		}
		switch {
		case s.Suffrage == raft.Voter && st.demotable(now) && live > (voters-1)/2:
			// The voters left, those that answer, are a majority of the
			// configuration without it: the group keeps working.
			return &memberChange{id: s.ID, addr: s.Address}
		case s.Suffrage == raft.Nonvoter && !st.fenced() && st.lastLog >= commit:
			return &memberChange{id: s.ID, addr: s.Address, promote: true}
		}
	}
	return nil
}

func nonvoters(cfg raft.Configuration) []raft.ServerID {
	var out []raft.ServerID
	for _, s := range cfg.Servers {
		if s.Suffrage != raft.Voter {
			out = append(out, s.ID)
		}
	}
	return out
}

// Votes reports whether id is a voter of r's latest configuration: a
// member demoted by KeepMembers must not stand for election (Raft lets a
// non-voter that is told to time out campaign and win).
func Votes(r *raft.Raft, id raft.ServerID) bool {
	f := r.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == id {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}

// NeedsForcedVoters reports whether an unclean election must force the
// configuration of r, whose member is id (see raftlog.Store.ForceVoters):
// it votes, other members do not, and it does not lead.
func NeedsForcedVoters(r *raft.Raft, id raft.ServerID) bool {
	if r.State() == raft.Leader {
		return false
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	self, others := false, false
	for _, s := range f.Configuration().Servers {
		switch {
		case s.ID == id:
			self = s.Suffrage == raft.Voter
		case s.Suffrage != raft.Voter:
			others = true
		}
	}
	return self && others
}
