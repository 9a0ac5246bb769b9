package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/raftmux"
)

// MetadataTopic names the metadata group in an ElectLeaders request, as
// Kafka's KRaft names its metadata log.
const MetadataTopic = metadataGroup

// cmdUnfenceMember asks a broker, over the mux, to lift its metadata
// member's fence in an unclean election; it is never applied.
const cmdUnfenceMember = "unfence_member"

// ErrElectionNotNeeded is an unclean election of a metadata group that has
// a leader.
var ErrElectionNotNeeded = errors.New("cluster: the metadata has a leader")

// uncleanPoll is how often UncleanElection checks for a leader.
const uncleanPoll = 50 * time.Millisecond

// UncleanElection is an unclean election of the metadata leader, for a
// metadata group left without one because the members alive that kept
// their data are too few, and the others lost theirs and take no part in
// elections until they have caught up (see raftmux.Transport.Fence). It
// lifts that fence on every broker that answers, this one included, so
// that the members alive elect one of themselves with the log they have:
// metadata only the dead members held is lost, which is the operator's
// choice. It returns once a leader is known, or with ctx's error.
func (c *Controller) UncleanElection(ctx context.Context) error {
	if c.LeaderID() >= 0 {
		return ErrElectionNotNeeded
	}
	c.unfenceMember()
	var wg sync.WaitGroup
	for _, p := range c.cfg.Peers {
		if p.ID == c.cfg.NodeID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.sendUnfence(ctx, raft.ServerAddress(p.Addr)); err != nil {
				c.cfg.Logger.Warn().Err(err).Int32("broker", p.ID).Msg("unclean metadata election: broker not reached")
			}
		}()
	}
	wg.Wait()
	tick := time.NewTicker(uncleanPoll)
	defer tick.Stop()
	for c.LeaderID() < 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: no metadata leader elected: %w", ctx.Err())
		case <-c.stop:
			return ErrClosed
		case <-tick.C:
		}
	}
	return nil
}

// unfenceMember lifts this broker's metadata member's fence and, if the
// live voters are too few to elect anyone because members were demoted,
// forces every broker back to a voter (see forceVoters).
func (c *Controller) unfenceMember() {
	ru := c.cur.Load()
	if ru.trans.Fenced() {
		c.cfg.Logger.Warn().Msg("unclean metadata election: this broker's metadata member, which lost its data, now votes and may lead with the log it has; metadata that no live broker holds is lost")
	}
	ru.trans.Unfence("unclean election of the metadata leader")
	if err := c.forceVoters(); err != nil {
		c.cfg.Logger.Error().Err(err).Msg("unclean metadata election: forcing every broker to vote failed")
	}
}

// forceVoters is the metadata's unclean election for a group whose leader
// demoted members that lost their data (raftmux.Transport.KeepMembers) and
// then died, leaving too few live voters for a majority. If this member
// is one of those voters, it replaces its run: the log gets a
// configuration in which every broker votes, at a term past any other
// (raftlog.Store.ForceVoters), and a new run starts on it, which the
// others, voters again, can elect. The FSM keeps its state; the new run
// replays nothing it has applied.
func (c *Controller) forceVoters() error {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	select {
	case <-c.stop:
		return ErrClosed
	default:
	}
	ru := c.cur.Load()
	if !raftmux.NeedsForcedVoters(ru.r, c.self) || c.votersAlive(ru) {
		return nil
	}
	c.cfg.Logger.Warn().Msg("unclean metadata election: too few voters alive since members were demoted; every broker votes again, those that lost their data included, and this broker's log outranks theirs")
	applied := c.applied.Load()
	if err := c.stopRun(ru); err != nil {
		c.cfg.Logger.Warn().Err(err).Msg("unclean metadata election: stopping the metadata member")
	}
	ferr := c.logs.ForceVoters(Servers(c.cfg.Peers))
	c.replayed.Store(applied)
	c.restoring.Store(true)
	_, err := c.startRun(false, nil)
	c.restoring.Store(false)
	if err != nil {
		return fmt.Errorf("cluster: restarting the metadata member: %w", err)
	}
	if ferr != nil {
		return fmt.Errorf("cluster: forcing voters: %w", ferr)
	}
	return nil
}

// votersAlive reports whether the voters of ru's configuration whose
// brokers the failure detector does not find down, this one included, are
// a majority: they elect a leader without help.
func (c *Controller) votersAlive(ru *run) bool {
	f := ru.r.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters, alive := 0, 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if s.ID == c.self || !c.cfg.Mux.PeerDown(s.Address) {
			alive++
		}
	}
	return alive > voters/2
}

// sendUnfence asks the broker at addr to lift its metadata member's fence.
func (c *Controller) sendUnfence(ctx context.Context, addr raft.ServerAddress) error {
	res, err := c.call(ctx, addr, &Command{Kind: cmdUnfenceMember})
	if err != nil {
		return err
	}
	return res.Error()
}
