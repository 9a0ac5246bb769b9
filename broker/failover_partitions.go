package broker

import (
	"errors"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/broker/raftmux"
)

// Partition leadership failover.
//
// Partition groups run with long Raft timeouts (tunePartitionRaft) so that
// idle partitions cost little: by default an idle leader heartbeats each
// follower every 3 to 6 s, and Raft's own election timer would leave a dead
// leader in place for 30 to 60 s. The durations named below are the
// broker's Timings. Failover is driven by the broker instead, from
// one failure detector per peer broker (the mux's liveness pings, see
// raftmux.WatchPeers) and one loop over all its replicas:
//
//   - a follower stands for election when its leader's broker is down, or
//     when it has heard nothing from its leader for SilentLeader;
//   - a follower that knows no leader (a new partition, a restart) stands
//     when the metadata names no leader, this broker, or a broker that is
//     down; when it names a live broker, only after LeaderlessGrace, since
//     that leader should reach it first. None stands within VoteGrace of
//     granting a vote or of stepping down as leader: an election is under
//     way (a leadership transfer, say), and its winner is about to say so;
//   - of the replicas that may stand, the first of the replica set that is
//     up stands at once, the next after RankDelay, and so on, so that they
//     do not split the vote and a new partition is led by its preferred
//     replica; none stands without a quorum of its replicas up.
//
// Standing is Raft's TimeoutNow, sent to itself: the other replicas vote for
// it even while they still know the old leader, provided its log is as
// complete as theirs. When a peer broker comes back, the leaders of the
// partitions it replicates nudge replication so that it catches up at once
// rather than at the next commit timeout.
// tunePartitionRaft sets the Raft timeouts of partition groups (see above).
// The leader lease stays well above the heartbeat interval: a leader cut
// off from its followers steps down within 10 s, and cannot commit
// anything meanwhile. CommitTimeout, the interval at which an idle leader
// sends followers the commit index, is as long: followers only need it to
// apply entries early, and a leader applies everything again before it
// serves (see partition.Replicated.lead).
func (t Timings) tunePartitionRaft(c *raft.Config) {
	c.HeartbeatTimeout = t.PartitionHeartbeat
	c.ElectionTimeout = t.PartitionHeartbeat
	c.LeaderLeaseTimeout = t.PartitionLease
	c.CommitTimeout = t.PartitionHeartbeat
}

// vacancy tracks a replica that finds its partition's leadership vacant.
type vacancy struct {
	since time.Time // when it first found it so
	tried time.Time // when it last stood for election
}

// elector runs the failover loop of one broker.
type elector struct {
	b      *Broker
	vacant map[partition.Replica]*vacancy
	// led is when each replica was last seen leading, for VoteGrace after.
	led map[partition.Replica]time.Time
	// seen is when each replica was first seen: a leader's silence counts
	// from then at the earliest.
	seen map[partition.Replica]time.Time
	up   map[int32]bool // brokers up at the last pass; nil before the first
	// downSince is when each broker the failure detector finds down was
	// first seen down.
	downSince map[int32]time.Time
	// last is when the last pass ran; resumed is when a pass came after
	// this broker did not run for a while (stopped or starved of CPU):
	// leaders are not held silent for that time.
	last, resumed time.Time
	failed        bool // the store failure was reported
	// views are the live peers' failure detectors this pass (see
	// peer_views.go); nil when this broker finds no broker down.
	views map[int32]map[int32]bool
}

// stallTicks is how many elect ticks a gap between passes must span to
// mean that this broker did not run.
const stallTicks = 4

func (b *Broker) wakeElect() { signal(b.electWake) }

// electLoop checks every replica each ElectTick and whenever a peer goes
// up or down or replicas open.
func (b *Broker) electLoop() {
	e := &elector{b: b, vacant: make(map[partition.Replica]*vacancy), led: make(map[partition.Replica]time.Time),
		seen: make(map[partition.Replica]time.Time), downSince: make(map[int32]time.Time)}
	b.everyOrWoken(b.cfg.Timings.ElectTick, b.electWake, e.pass)
}

func (e *elector) pass(now time.Time) {
	b := e.b
	tm := b.cfg.Timings
	if err := b.store.Failed(); err != nil {
		e.storageFailed(err)
		return // a broker that cannot write leads nothing
	}
	if !e.last.IsZero() && now.Sub(e.last) > stallTicks*tm.ElectTick {
		e.resumed = now
	}
	e.last = now
	up, down := b.peerStates()
	e.views = b.peerViews(up, down)
	for id := range b.cfg.Peers {
		switch _, was := e.downSince[id]; {
		case down[id] && !was:
			e.downSince[id] = now
		case !down[id]:
			delete(e.downSince, id)
		}
	}
	back := func(replicas []int32) bool {
		for _, r := range replicas {
			if up[r] && e.up != nil && !e.up[r] {
				return true
			}
		}
		return false
	}
	vacant := make(map[partition.Replica]*vacancy)
	led := make(map[partition.Replica]time.Time)
	seen := make(map[partition.Replica]time.Time)
	for _, t := range b.topics.list() {
		if t.assign == nil {
			continue
		}
		for i, p := range t.parts {
			rp, ok := p.(partition.Replica)
			if !ok || i >= len(t.assign) {
				continue
			}
			md := cluster.Leader{Leader: -1}
			if i < len(t.leaders) {
				md = t.leaders[i]
			}
			first, ok := e.seen[rp]
			if !ok {
				first = now
			}
			seen[rp] = first
			rp.QuorumLost(!quorumLive(t.assign[i], down))
			state, leader, contact := rp.Role()
			if state == raft.Leader {
				led[rp] = now
				if back(t.assign[i]) {
					b.goFunc(rp.Nudge)
				}
				continue
			}
			// A leader that just stepped down (for a leadership transfer,
			// say) may not have marked the contact yet: its vote is being
			// stored.
			if at, ok := e.led[rp]; ok && now.Sub(at) < tm.VoteGrace {
				led[rp] = at
				if at.After(contact) {
					contact = at
				}
			}
			delay, stand := e.standDelay(state, leader, contact, first, rp.Outranked(), t.assign[i], md, up, down, now)
			if !stand {
				continue
			}
			v := e.vacant[rp]
			if v == nil {
				v = &vacancy{since: now}
			}
			vacant[rp] = v
			if now.Sub(v.since) < delay || now.Sub(v.tried) < tm.CampaignPause {
				continue
			}
			v.tried = now
			b.log.Debug().Str("topic", t.name).Int("partition", i).Str("known_leader", string(leader)).
				Int32("metadata_leader", md.Leader).Msg("standing for partition leadership")
			b.goFunc(func() {
				if err := rp.Campaign(); errors.Is(err, raftmux.ErrFenced) {
					b.log.Warn().Str("topic", t.name).Int("partition", i).
						Msg("replica cannot lead: it started without its data and has not caught up with a leader; the partition waits for a replica that kept its data (or an unclean election: pubg1 topic elect-leaders --unclean)")
				} else if err != nil {
					b.log.Debug().Err(err).Str("topic", t.name).Int("partition", i).Msg("election not started")
				}
			})
		}
	}
	e.vacant, e.led, e.seen, e.up = vacant, led, seen, up
}

// standDelay reports whether this broker's replica may stand for election,
// and how long after it first found the leadership vacant. A leader is only
// taken for lost once its broker is known to be down (down), not while the
// failure detector has yet to hear from it, as just after this broker
// restarted, nor while its Raft traffic still arrives, as just after the
// leader's broker restarted; a quorum must be known to be up. A leader's silence counts
// from first, when the elector first saw the replica, at the earliest: a
// restarted replica learns its leader from an append it may still have
// to refuse (its log lags), and Raft marks no contact until one succeeds.
// A replica that has just refused its vote to a candidate whose log is
// behind its own (outranked), and heard from no leader since, stands after
// one ElectTick when no live leader is known:
// that candidate cannot win, and waiting for its rank would leave the
// partition without a leader for RankDelay more.
func (e *elector) standDelay(state raft.RaftState, leader raft.ServerID, contact, first, outranked time.Time, replicas []int32, md cluster.Leader, up, down map[int32]bool, now time.Time) (time.Duration, bool) {
	self, tm := e.b.cfg.NodeID, e.b.cfg.Timings
	switch state {
	case raft.Follower:
	case raft.Candidate:
		// Still a candidate a CampaignPause after it stood: its election
		// was lost (a split vote, or a replica that had voted for another
		// candidate in the same term). Raft would wait out its whole
		// election timeout; it stands again (Replica.Campaign restarts
		// the election).
		return tm.CampaignPause, quorumUp(replicas, up)
	default:
		return 0, false
	}
	// Only a refusal since the last contact with a leader counts: one from
	// an election that has since been decided says nothing of this one.
	if now.Sub(outranked) < tm.VoteGrace && outranked.After(contact) {
		id, err := strconv.Atoi(string(leader))
		if leader == "" || (err == nil && down[int32(id)]) {
			// At once when the replicas not found down make no majority
			// without this one (three replicas, one down): the candidate
			// cannot win without the vote refused. Otherwise after one
			// tick: it may still win with another replica's vote, and a
			// leader that did announces itself at once.
			if !quorumLiveWithout(replicas, self, down) {
				return 0, quorumUp(replicas, up)
			}
			return tm.ElectTick, quorumUp(replicas, up)
		}
	}
	gone := int32(-1) // the leader that is lost, ranked last
	var wait time.Duration
	switch {
	case leader != "":
		id, err := strconv.Atoi(string(leader))
		// A leader heard from after its broker was found down is alive,
		// whatever the failure detector says: it may not have seen a
		// restarted broker come back yet. (A leader last heard before,
		// a killed one, is not waited for.)
		heard := err == nil && contact.After(e.downSince[int32(id)])
		for _, since := range []time.Time{e.resumed, first} {
			if contact.Before(since) {
				contact = since
			}
		}
		if err == nil && (!down[int32(id)] || heard) && now.Sub(contact) < tm.SilentLeader {
			return 0, false
		}
		// A leader another replica still reaches is alive and commits
		// with that replica: only a cut between it and this broker.
		if err == nil && down[int32(id)] && e.b.reachedElsewhere(int32(id), replicas, e.views) {
			return 0, false
		}
		gone = int32(id)
	case now.Sub(contact) < tm.VoteGrace:
		// Raft marks a contact when it grants a vote or stops leading.
		return 0, false
	case md.Leader == self:
		return 0, quorumUp(replicas, up) // it led before: it stands first
	case md.Leader < 0 || down[md.Leader]:
		gone = md.Leader
	default:
		gone, wait = md.Leader, tm.LeaderlessGrace
	}
	if !quorumUp(replicas, up) {
		return 0, false
	}
	rank := 0
	for _, r := range replicas {
		if r == self {
			break
		}
		if r != gone && !down[r] {
			rank++
		}
	}
	return wait + time.Duration(rank)*tm.RankDelay, true
}

// peerStates reports, per broker, whether the failure detector finds it up
// and whether it finds it down (this broker is up); a peer not yet heard
// from is neither.
func (b *Broker) peerStates() (up, down map[int32]bool) {
	up = make(map[int32]bool, len(b.cfg.Peers))
	down = make(map[int32]bool, len(b.cfg.Peers))
	for id, addr := range b.cfg.Peers {
		self := id == b.cfg.NodeID
		up[id] = self || b.mux.PeerUp(raft.ServerAddress(addr))
		down[id] = !self && b.mux.PeerDown(raft.ServerAddress(addr))
	}
	return up, down
}

// quorumLive reports whether a majority of replicas are on brokers the
// failure detector does not find down (this one never is).
func quorumLive(replicas []int32, down map[int32]bool) bool {
	return quorumLiveWithout(replicas, -1, down)
}

// quorumLiveWithout reports whether a majority of replicas are on brokers
// other than self that the failure detector does not find down.
func quorumLiveWithout(replicas []int32, self int32, down map[int32]bool) bool {
	n := 0
	for _, r := range replicas {
		if r != self && !down[r] {
			n++
		}
	}
	return n > len(replicas)/2
}

// quorumUp reports whether a majority of replicas are on brokers that are up.
func quorumUp(replicas []int32, up map[int32]bool) bool {
	n := 0
	for _, r := range replicas {
		if up[r] {
			n++
		}
	}
	return n > len(replicas)/2
}

// storageFailed hands every leadership this broker holds to other
// replicas once its store has failed: it can no longer write what it would
// be asked to replicate. It runs each pass, since a replica may have been
// elected meanwhile.
func (e *elector) storageFailed(err error) {
	b := e.b
	if !e.failed {
		e.failed = true
		b.log.Error().Err(err).Msg("a write to the data directory failed: this broker takes no more writes and hands its leaderships to other replicas; restart it on a healthy disk")
	}
	for _, t := range b.topics.list() {
		for _, p := range t.parts {
			if rp, ok := p.(partition.Replica); ok && rp.IsLeader() {
				b.goFunc(func() { rp.HandOff(b.ctx) })
			}
		}
	}
	if b.ctrl != nil && b.ctrl.IsLeader() && !b.single() {
		b.goFunc(b.ctrl.HandOff)
	}
}
