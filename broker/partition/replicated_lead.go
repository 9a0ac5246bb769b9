package partition

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/raftmux"
)

// Replica is a partition replica whose leadership is a Raft group's, with
// the control of that leadership the broker needs: failover (Role,
// Campaign, Nudge), preferred-leader elections (TransferTo) and shutdown
// (HandOff). Handlers see it as a Partition only.
type Replica interface {
	Partition

	// Role reports this replica's Raft state, the leader it knows of (if
	// any) and when it last heard from a leader.
	Role() (state raft.RaftState, leader raft.ServerID, lastContact time.Time)

	// Leading reports whether this replica leads and takes writes, and
	// its leader epoch. The cluster metadata may not say so yet: a broker
	// cut off from the metadata leader cannot record its leadership.
	Leading() (epoch int32, ok bool)

	// Campaign makes this replica, if it follows, stand for election at
	// once.
	Campaign() error

	// Nudge makes a leader send every follower what it lacks now.
	Nudge()

	// HandOff moves the leadership to another replica, if this one leads,
	// and returns once it moved, failed, took too long, or ctx ended.
	HandOff(ctx context.Context)

	// TransferTo moves the leadership to the replica id at addr.
	TransferTo(id raft.ServerID, addr raft.ServerAddress) error

	// Outranked is when this replica last refused its vote to a
	// candidate whose log is behind its own (zero if never): that
	// candidate cannot win, and this replica can.
	Outranked() time.Time

	// QuorumLost tells the replica whether the failure detector finds a
	// majority of its replicas' brokers down. A leader that lost its
	// quorum stops taking writes at once and fails those not committed
	// yet, so that clients look for the leader the other replicas elect,
	// rather than waiting for Raft's lease; it leads again if the quorum
	// comes back before Raft steps down.
	QuorumLost(lost bool)

	// Unfence lets a replica that lost its data, and has not caught up,
	// vote and lead with the log it has: an unclean election, which
	// loses whatever the replicas still alive do not hold. It reports
	// whether the replica was fenced.
	Unfence(reason string) bool

	// NeedsForcedVoters reports whether an unclean election must force
	// the replica's configuration (see raftlog.Store.ForceVoters).
	NeedsForcedVoters() bool
}

var _ Replica = (*Replicated)(nil)

// Outranked implements Replica.
func (p *Replicated) Outranked() time.Time {
	if n := p.outranked.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// watchVotes notes the vote requests of candidates whose log is behind
// this replica's, which it refuses (Raft's election restriction), and
// tells the broker (OnOutranked): such a candidate, a replica that has
// just restarted and not yet caught up say, cannot be elected while this
// replica and the others like it refuse, so one of them should stand at
// once rather than wait for its turn.
func (p *Replicated) watchVotes(obs *raft.Observer) {
	defer p.wg.Done()
	defer p.r.DeregisterObserver(obs)
	for {
		var o raft.Observation
		select {
		case <-p.stop:
			return
		case o = <-p.votes:
		}
		req, ok := o.Data.(raft.RequestVoteRequest)
		if !ok || !p.logAhead(req.LastLogTerm, req.LastLogIndex) {
			continue
		}
		p.outranked.Store(time.Now().UnixNano())
		if p.opts.OnOutranked != nil {
			p.opts.OnOutranked()
		}
	}
}

// logAhead reports whether this replica's log is more up to date than one
// ending at index with term, as Raft compares them.
func (p *Replicated) logAhead(term, index uint64) bool {
	last, err := p.logs.LastIndex()
	if err != nil || last == 0 {
		return false
	}
	var l raft.Log
	if err := p.logs.GetLog(last, &l); err != nil {
		return false
	}
	return l.Term > term || (l.Term == term && last > index)
}

// observe follows leadership.
func (p *Replicated) observe() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case leader := <-p.notify:
			if !leader {
				p.mu.Lock()
				p.benched = false // for a later leadership, the elector says again
				p.mu.Unlock()
				p.stepDown(0)
				continue
			}
			p.lead()
		case <-p.relead:
			p.lead()
		}
	}
}

// awaitBarrier waits for a Raft barrier, or until the replica stops
// (stopped). A barrier that Raft took just before it was shut down may
// never be answered (seen once in about ten shutdowns of a broker of
// 2,000 partitions), and Close, which shuts Raft down first, must not
// wait for it: the goroutine waiting on it is then left behind.
func (p *Replicated) awaitBarrier() (stopped bool, err error) {
	f := p.r.Barrier(barrierTimeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return false, err
	case <-p.stop:
		return true, nil
	}
}

// lead takes up the leadership of the Raft leader. It first waits for a
// barrier, so that every entry before it is applied and the FSM knows the
// offsets and producer sequences to continue from; offsets and producer
// state are then taken from the FSM, never carried over.
func (p *Replicated) lead() {
	for {
		if p.r.State() != raft.Leader {
			return // leadership was lost again; its signal follows
		}
		p.mu.Lock()
		benched := p.benched
		p.mu.Unlock()
		if benched {
			return // QuorumLost(false) takes it up
		}
		stopped, err := p.awaitBarrier()
		if stopped {
			return
		}
		if err == nil {
			break
		}
		// Raft refuses the barrier while a leadership transfer is under
		// way; if the transfer fails, this replica still leads.
		t := time.NewTimer(leadRetry)
		select {
		case <-p.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
	p.mu.Lock()
	if p.closed || p.leading || p.benched || p.r.State() != raft.Leader {
		p.mu.Unlock()
		return
	}
	v := p.fsm.view()
	p.leading = true
	p.gen++
	p.epoch = int32(p.r.CurrentTerm())
	p.logEnd = v.next
	p.producers = p.fsm.cloneProducers()
	p.pending = p.fsm.cloneTxns()
	epoch := p.epoch
	p.mu.Unlock()
	p.opts.Logger.Debug().Str("group", p.opts.Group).Int32("epoch", epoch).Int64("next", v.next).Msg("partition leader")
	if p.opts.OnLeadership != nil {
		p.opts.OnLeadership(true, epoch)
	}
}

// QuorumLost implements Replica.
func (p *Replicated) QuorumLost(lost bool) {
	p.mu.Lock()
	switch {
	case lost && !p.benched && p.r.State() == raft.Leader:
		p.benched = true
		outstanding := p.outstanding
		p.mu.Unlock()
		p.opts.Logger.Warn().Str("group", p.opts.Group).
			Msg("partition leader lost its quorum (the failure detector finds a majority of the replicas' brokers down): it takes no writes until the quorum is back or another replica leads")
		// The writes replicating first, then those queued behind them.
		for _, in := range outstanding {
			if in.answered.CompareAndSwap(false, true) {
				for _, it := range in.items {
					it.done(AppendResult{BaseOffset: -1, LogAppendTime: -1, Err: fmt.Errorf("%w: the leader lost its quorum before the write was committed", ErrNotLeader)})
				}
			}
		}
		p.stepDown(0)
	case !lost && p.benched:
		p.benched = false
		p.mu.Unlock()
		if p.r.State() == raft.Leader {
			p.opts.Logger.Info().Str("group", p.opts.Group).Msg("partition leader has its quorum again")
			select {
			case p.relead <- struct{}{}:
			default:
			}
		}
	default:
		p.mu.Unlock()
	}
}

// stepDown stops leading: appends not yet proposed fail so their clients
// look for the new leader. With gen other than 0 it stops only that
// leadership, and reports whether it did.
func (p *Replicated) stepDown(gen uint64) bool {
	p.mu.Lock()
	if gen != 0 && (gen != p.gen || !p.leading) {
		p.mu.Unlock()
		return false
	}
	was := p.leading
	p.leading = false
	p.gen++
	q := p.queue
	p.queue = nil
	p.mu.Unlock()
	for _, it := range q {
		it.done(AppendResult{BaseOffset: -1, LogAppendTime: -1, Err: ErrNotLeader})
	}
	if was && p.opts.OnLeadership != nil {
		p.opts.OnLeadership(false, -1)
	}
	return true
}

// IsLeader implements Partition: whether this replica leads, with every
// earlier entry applied, and so accepts writes.
func (p *Replicated) IsLeader() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leading
}

// Role reports this replica's Raft state, the leader it knows of (if any)
// and when it last heard from a leader.
func (p *Replicated) Role() (raft.RaftState, raft.ServerID, time.Time) {
	_, id := p.r.LeaderWithID()
	return p.r.State(), id, p.r.LastContact()
}

// Leading implements Replica.
func (p *Replicated) Leading() (int32, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.leading || p.benched || p.r.State() != raft.Leader {
		return 0, false
	}
	return p.epoch, true
}

// Campaign makes this replica, if it follows, stand for election at once
// (see raftmux.Transport.Campaign). The broker calls it when the leader's
// broker is gone, rather than leave it to Raft's election timeout.
func (p *Replicated) Campaign() error {
	c, ok := p.trans.(interface{ Campaign(raft.ServerID) error })
	if !ok {
		return fmt.Errorf("partition: %s: the transport cannot start an election", p.opts.Group)
	}
	if !raftmux.Votes(p.r, p.opts.ID) {
		return fmt.Errorf("partition: %s: a non-voter since it lost its state: %w", p.opts.Group, raftmux.ErrFenced)
	}
	switch p.r.State() {
	case raft.Follower:
	case raft.Candidate:
		// A candidate the broker asks to stand again lost its election.
		return p.restartElection()
	default:
		return nil
	}
	if err := c.Campaign(p.opts.ID); err != nil {
		return fmt.Errorf("partition: %s: starting an election: %w", p.opts.Group, err)
	}
	return nil
}

// restartElection makes a candidate stand again at once (see
// raftmux.Transport.Restart).
func (p *Replicated) restartElection() error {
	r, ok := p.trans.(interface {
		Restart(self raft.ServerID, term, last, lastTerm uint64) error
	})
	if !ok {
		return nil
	}
	last, lastTerm := raftmux.LastEntry(p.r)
	if err := r.Restart(p.opts.ID, p.r.CurrentTerm(), last, lastTerm); err != nil {
		return fmt.Errorf("partition: %s: restarting an election: %w", p.opts.Group, err)
	}
	return nil
}

// Nudge makes a leader send every follower what it lacks now (see nudge):
// the broker calls it when a follower's broker is back.
func (p *Replicated) Nudge() { p.nudge() }

// handOffWait bounds how long HandOff waits for the transfer when ctx
// has no sooner deadline.
const handOffWait = 5 * time.Second

// HandOff moves the leadership to another replica, if this one leads; it
// returns when the transfer is done, has failed, after handOffWait (Raft's
// own bound is the election timeout), or when ctx ends, whichever is
// first. A transfer left waiting ends with the leadership or the group.
func (p *Replicated) HandOff(ctx context.Context) {
	if p.r.State() != raft.Leader {
		return
	}
	defer p.hold()()
	f := p.r.LeadershipTransfer()
	done := make(chan struct{})
	p.wg.Add(1)
	go func() { // Raft answers by its timeout or when the replica stops leading
		defer p.wg.Done()
		_ = f.Error()
		close(done)
	}()
	ctx, cancel := context.WithTimeout(ctx, handOffWait)
	defer cancel()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// TransferTo moves leadership to the replica id at addr, once it has
// caught up; it waits for the transfer, bounded by Raft's election timeout.
// The replica must answer this leader within a heartbeat timeout: Raft
// would otherwise stop accepting writes until its transfer timed out.
func (p *Replicated) TransferTo(id raft.ServerID, addr raft.ServerAddress) error {
	if !raftmux.Votes(p.r, id) {
		return fmt.Errorf("partition: moving leadership of %s to %s, a non-voter since it lost its state: %w", p.opts.Group, id, raftmux.ErrFenced)
	}
	if !p.answering(addr) {
		return fmt.Errorf("partition: moving leadership of %s to %s: %w", p.opts.Group, id, ErrReplicaUnreachable)
	}
	defer p.hold()()
	if err := p.r.LeadershipTransferToServer(id, addr).Error(); err != nil {
		return fmt.Errorf("partition: moving leadership of %s to %s: %w", p.opts.Group, id, err)
	}
	return nil
}

// answerWindow is how recently a transfer's target must have answered.
const answerWindow = 2 * time.Second

// answering reports whether the replica at addr has answered this
// replica's Raft traffic within answerWindow, waiting up to that long for
// it to; heartbeats go out at once for it (VerifyLeader sends them), as
// idle groups heartbeat only every few seconds. Without a transport that
// tells, it reports true.
func (p *Replicated) answering(addr raft.ServerAddress) bool {
	t, ok := p.trans.(interface {
		Answered(raft.ServerAddress) time.Time
		Answering(raft.ServerAddress, time.Duration) bool
	})
	if !ok {
		return true
	}
	if time.Since(t.Answered(addr)) > answerWindow {
		p.r.VerifyLeader() // its future is not needed: only the heartbeats are
	}
	return t.Answering(addr, answerWindow)
}

// hold keeps appends queued, rather than proposed, while a leadership
// transfer is under way (Raft refuses proposals then); it returns the
// function that releases them, to the new leadership's step-down or to
// this one's proposals.
func (p *Replicated) hold() func() {
	p.mu.Lock()
	p.handing = true
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		p.handing = false
		p.mu.Unlock()
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// Unfence implements Replica.
func (p *Replicated) Unfence(reason string) bool {
	f, ok := p.trans.(fenceable)
	if !ok || !f.Fenced() {
		return false
	}
	f.Unfence(reason)
	return true
}
