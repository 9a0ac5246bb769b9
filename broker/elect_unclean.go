package broker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/partition"
	"github.com/twmb/franz-go/pkg/kerr"
)

// electUnclean is Kafka's unclean leader election (ElectLeaders with
// election type 1) for partitions that have no leader. A partition's Raft
// group elects its own leaders; what keeps one offline is a replica that
// lost its data and has not caught up (see raftmux.Transport.Fence),
// which votes for no one, while the replicas that kept the data are down.
// The election lifts that fence on every live replica, so that the
// replicas alive elect one of themselves with the log they have: the
// records only the dead replicas hold are lost, which is what the operator
// asks for. The request is forwarded to every live replica's broker; a
// forwarded one only lifts the local fence.
func (b *Broker) electUnclean(ctx context.Context, targets []*electTarget, forwarded bool, timeout time.Duration) {
	st := b.ctrl.State()
	remote := make(map[int32][]*electTarget)
	var waiting []*electTarget
	for _, et := range targets {
		if et.topic == cluster.MetadataTopic {
			et.code, et.msg = b.electMetadataUnclean(ctx, et.partition)
			continue
		}
		t := b.topics.get(et.topic)
		switch {
		case t == nil || et.partition < 0 || int(et.partition) >= len(t.parts):
			et.code = kerr.UnknownTopicOrPartition.Code
			continue
		case t.assign == nil:
			et.code = kerr.ElectionNotNeeded.Code // a single broker leads what it has
			continue
		case b.liveLeader(t, et.partition) >= 0 && !forwarded:
			et.code = kerr.ElectionNotNeeded.Code
			continue
		}
		if local, ok := t.parts[et.partition].(partition.Replica); ok {
			if local.Unfence("unclean leader election") {
				b.log.Warn().Str("topic", et.topic).Int32("partition", et.partition).
					Msg("unclean leader election: this replica, which lost its data, now votes and may lead with the log it has; acknowledged records that no live replica holds are lost")
				b.wakeElect()
			}
			// Replicas that lost their data may have been demoted
			// to non-voters before the leader died: then the live
			// voters are too few, and this one counts every replica.
			if local.NeedsForcedVoters() {
				b.rebuilds.addForce(replicaKey{t.id, et.partition})
				b.wakeReconcile()
			}
		}
		if forwarded {
			continue // answered 0: this broker's part is done
		}
		for _, id := range t.assign[et.partition] {
			if id != b.cfg.NodeID && !st.Fenced[id] {
				remote[id] = append(remote[id], et)
			}
		}
		waiting = append(waiting, et)
	}
	var wg sync.WaitGroup
	for id, ets := range remote {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.forwardElection(ctx, id, electUnclean, ets, timeout); err != nil {
				b.log.Debug().Err(err).Int32("broker", id).Msg("unclean election not forwarded")
			}
		}()
	}
	wg.Wait()
	for _, et := range waiting {
		wg.Add(1)
		go func() {
			defer wg.Done()
			et.code, et.msg = b.waitAnyLeader(ctx, et)
		}()
	}
	wg.Wait()
}

// waitAnyLeader waits until the metadata names a leader of the partition.
func (b *Broker) waitAnyLeader(ctx context.Context, et *electTarget) (int16, string) {
	tick := time.NewTicker(electPoll)
	defer tick.Stop()
	for {
		st := b.ctrl.State()
		if mt := st.Topics[et.topic]; mt != nil && int(et.partition) < len(mt.Leaders) && mt.Leaders[et.partition].Leader >= 0 && b.brokerLive(st, mt.Leaders[et.partition].Leader) {
			return 0, ""
		}
		select {
		case <-ctx.Done():
			return kerr.EligibleLeadersNotAvailable.Code, "no live replica could be elected in time: a majority of the partition's replicas must be live"
		case <-tick.C:
		}
	}
}

// electMetadataUnclean is an unclean election of the metadata leader,
// asked for as partition 0 of the metadata topic (see
// cluster.Controller.UncleanElection).
func (b *Broker) electMetadataUnclean(ctx context.Context, n int32) (int16, string) {
	if n != 0 {
		return kerr.UnknownTopicOrPartition.Code, "the metadata has one partition, 0"
	}
	err := b.ctrl.UncleanElection(ctx)
	switch {
	case err == nil:
		b.log.Warn().Int32("leader", b.ctrl.LeaderID()).Msg("unclean metadata election: a metadata leader was elected from the brokers alive; metadata only the others held is lost")
		return 0, ""
	case errors.Is(err, cluster.ErrElectionNotNeeded):
		return kerr.ElectionNotNeeded.Code, "the metadata has a leader"
	default:
		return kerr.EligibleLeadersNotAvailable.Code, "no metadata leader elected in time: a majority of the brokers must be live"
	}
}
