package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
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

// unfenceMember lifts this broker's metadata member's fence.
func (c *Controller) unfenceMember() {
	if c.trans.Fenced() {
		c.cfg.Logger.Warn().Msg("unclean metadata election: this broker's metadata member, which lost its data, now votes and may lead with the log it has; metadata that no live broker holds is lost")
	}
	c.trans.Unfence("unclean election of the metadata leader")
}

// sendUnfence asks the broker at addr to lift its metadata member's fence.
func (c *Controller) sendUnfence(ctx context.Context, addr raft.ServerAddress) error {
	conn, err := c.rpc.Dial(addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	res, err := roundTrip(conn, &Command{Kind: cmdUnfenceMember})
	if err != nil {
		return err
	}
	return res.Error()
}
