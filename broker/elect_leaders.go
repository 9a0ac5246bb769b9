package broker

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Election types of ElectLeaders (KIP-460).
const (
	electPreferred = 0
	electUnclean   = 1
)

// electForwardClientID marks an ElectLeaders request one broker sends to
// the leader of the partitions it names; that broker answers from its own
// replicas and never forwards again.
const electForwardClientID = "pubg1-elect-leaders"

// electPoll is how often an election waits to see its result in the
// metadata.
const electPoll = 20 * time.Millisecond

func (b *Broker) electLeadersAPI() kproto.API {
	return kproto.API{Key: kmsg.ElectLeaders.Int16(), MinVersion: 0, MaxVersion: 2, Handle: handle(b.electLeaders)}
}

// electTarget is one partition of an ElectLeaders request and its result.
type electTarget struct {
	topic     string
	partition int32
	preferred int32 // set by planElection for the partitions it does not settle
	code      int16
	msg       string
}

// byTopic groups targets by topic, in the order topics first appear.
func byTopic(targets []*electTarget) [][]*electTarget {
	index := make(map[string]int)
	var groups [][]*electTarget
	for _, et := range targets {
		i, ok := index[et.topic]
		if !ok {
			i = len(groups)
			index[et.topic] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], et)
	}
	return groups
}

// electLeaders moves the leadership of partitions to their preferred
// replica, the first of the replica set, as Kafka's preferred leader
// election does. The leader of a partition hands its Raft leadership to
// that replica once it has caught up; a request sent to another broker is
// forwarded to the leader. Unclean elections are electUnclean's.
func (b *Broker) electLeaders(ctx context.Context, req *kproto.Request, r *kmsg.ElectLeadersRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ElectLeadersResponse)
	if r.ElectionType != electPreferred && r.ElectionType != electUnclean {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	timeout := time.Duration(r.TimeoutMillis) * time.Millisecond
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// Topics null asks for every partition; then only the partitions whose
	// leader was to change are answered.
	all := r.Topics == nil
	var targets []*electTarget
	if all {
		for _, t := range b.topics.list() {
			for i := range t.parts {
				targets = append(targets, &electTarget{topic: t.name, partition: int32(i)})
			}
		}
	} else {
		for _, rt := range r.Topics {
			for _, p := range rt.Partitions {
				targets = append(targets, &electTarget{topic: rt.Topic, partition: p})
			}
		}
	}

	forwarded := req.ClientID != nil && *req.ClientID == electForwardClientID
	if r.ElectionType == electUnclean {
		b.electUnclean(ctx, targets, forwarded, timeout)
		return electResponse(resp, targets, all)
	}
	var wg sync.WaitGroup
	remote := make(map[int32][]*electTarget)
	for _, et := range targets {
		leader, local := b.planElection(et, r.ElectionType, forwarded)
		switch {
		case local != nil:
			wg.Add(1)
			go func() {
				defer wg.Done()
				et.code, et.msg = b.electLocally(ctx, et, local)
			}()
		case leader >= 0:
			remote[leader] = append(remote[leader], et)
		}
	}
	for leader, ets := range remote {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.electRemotely(ctx, leader, ets, timeout)
		}()
	}
	wg.Wait()
	return electResponse(resp, targets, all)
}

// electResponse fills resp with the targets' results; with all (the
// request named no topics), only the partitions that needed an election.
func electResponse(resp *kmsg.ElectLeadersResponse, targets []*electTarget, all bool) *kmsg.ElectLeadersResponse {
	answered := targets[:0]
	for _, et := range targets {
		if !all || et.code != kerr.ElectionNotNeeded.Code {
			answered = append(answered, et)
		}
	}
	for _, group := range byTopic(answered) {
		rt := kmsg.NewElectLeadersResponseTopic()
		rt.Topic = group[0].topic
		for _, et := range group {
			rp := kmsg.NewElectLeadersResponseTopicPartition()
			rp.Partition, rp.ErrorCode = et.partition, et.code
			if et.msg != "" {
				msg := et.msg
				rp.ErrorMessage = &msg
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// planElection settles et at once when it can (its code is set and the
// leader is -1), or returns the partition's current leader: with the local
// replica when this broker leads it, else for forwarding.
func (b *Broker) planElection(et *electTarget, electionType int8, forwarded bool) (int32, partition.Replica) {
	t := b.topics.get(et.topic)
	if t == nil || et.partition < 0 || int(et.partition) >= len(t.parts) {
		et.code = kerr.UnknownTopicOrPartition.Code
		return -1, nil
	}
	if t.assign == nil { // a single broker leads every partition it has
		et.code = kerr.ElectionNotNeeded.Code
		return -1, nil
	}
	leader, preferred := b.liveLeader(t, et.partition), t.assign[et.partition][0]
	if electionType == electUnclean {
		// Settled by electUnclean.
		return -1, nil
	}
	local, _ := t.parts[et.partition].(partition.Replica)
	leadsHere := local != nil && local.IsLeader()
	switch {
	case leadsHere && preferred == b.cfg.NodeID, !leadsHere && leader == preferred:
		et.code = kerr.ElectionNotNeeded.Code
		return -1, nil
	case leadsHere:
		leader = b.cfg.NodeID
	case leader < 0:
		et.code = kerr.LeaderNotAvailable.Code
		return -1, nil
	case forwarded || leader == b.cfg.NodeID:
		et.code = kerr.NotLeaderForPartition.Code // the leadership moved meanwhile
		return -1, nil
	default:
		local = nil
	}
	// The metadata's fencing, not this broker's failure detector, which
	// may not have seen a restarted broker come back yet: a transfer to
	// a dead one fails on its own.
	if b.ctrl.State().Fenced[preferred] {
		et.code, et.msg = kerr.PreferredLeaderNotAvailable.Code, fmt.Sprintf("broker %d, the preferred replica, is not live", preferred)
		return -1, nil
	}
	et.preferred = preferred
	return leader, local
}

// liveLeader is the leader the metadata names for partition n of t, or -1
// if there is none or its broker is down.
func (b *Broker) liveLeader(t *topic, n int32) int32 {
	leader := t.leaders[n].Leader
	if leader >= 0 && !b.brokerLive(b.ctrl.State(), leader) {
		return -1
	}
	return leader
}

// brokerLive reports whether broker id is neither fenced by the metadata
// nor found down by this broker's failure detector. The detector sees a
// killed broker's connections close at once; the metadata leader fences
// it only after it has missed heartbeats for a while, and a new metadata
// leader starts that count afresh.
func (b *Broker) brokerLive(st *cluster.State, id int32) bool {
	if st.Fenced[id] {
		return false
	}
	addr, ok := b.cfg.Peers[id]
	return id == b.cfg.NodeID || !ok || !b.mux.PeerDown(raft.ServerAddress(addr))
}

// electLocally hands the leadership of a partition this broker leads to
// its preferred replica and waits until the metadata names it.
func (b *Broker) electLocally(ctx context.Context, et *electTarget, p partition.Replica) (int16, string) {
	preferred := et.preferred
	addr, ok := b.cfg.Peers[preferred]
	if !ok {
		return kerr.PreferredLeaderNotAvailable.Code, fmt.Sprintf("broker %d is not a peer", preferred)
	}
	// The epoch the transfer replaces: this replica's, which the metadata
	// may not show yet.
	before := max(b.leaderOf(et).Epoch, p.Offsets().LeaderEpoch)
	if err := p.TransferTo(raft.ServerID(strconv.Itoa(int(preferred))), raft.ServerAddress(addr)); err != nil {
		return kerr.PreferredLeaderNotAvailable.Code, err.Error()
	}
	return b.waitLeader(ctx, et, preferred, before)
}

// leaderOf is the leader the metadata names for et's partition.
func (b *Broker) leaderOf(et *electTarget) cluster.Leader {
	mt := b.ctrl.State().Topics[et.topic]
	if mt == nil || int(et.partition) >= len(mt.Leaders) {
		return cluster.Leader{Leader: -1, Epoch: -1}
	}
	return mt.Leaders[et.partition]
}

// waitLeader waits until the metadata names id as the partition's leader,
// or names another at an epoch past epoch, the one the transfer replaced:
// the leadership went elsewhere (the target may have failed to win, and
// this replica stood again).
func (b *Broker) waitLeader(ctx context.Context, et *electTarget, id, epoch int32) (int16, string) {
	tick := time.NewTicker(electPoll)
	defer tick.Stop()
	for {
		switch l := b.leaderOf(et); {
		case l.Leader == id:
			return 0, ""
		case l.Epoch > epoch && l.Leader >= 0:
			return kerr.PreferredLeaderNotAvailable.Code, fmt.Sprintf("broker %d took the leadership (epoch %d), not broker %d", l.Leader, l.Epoch, id)
		}
		select {
		case <-ctx.Done():
			return kerr.RequestTimedOut.Code, fmt.Sprintf("broker %d did not take over in time", id)
		case <-tick.C:
		}
	}
}

// electRemotely forwards the elections of partitions that broker leader
// leads to it and records its answers.
func (b *Broker) electRemotely(ctx context.Context, leader int32, ets []*electTarget, timeout time.Duration) {
	fail := func(code int16, msg string) {
		for _, et := range ets {
			et.code, et.msg = code, msg
		}
	}
	resp, err := b.forwardElection(ctx, leader, electPreferred, ets, timeout)
	if err != nil {
		fail(kerr.LeaderNotAvailable.Code, fmt.Sprintf("%v (broker %d leads the partition)", err, leader))
		return
	}
	if resp.ErrorCode != 0 {
		fail(resp.ErrorCode, "")
		return
	}
	answers := make(map[string]map[int32]kmsg.ElectLeadersResponseTopicPartition)
	for _, rt := range resp.Topics {
		answers[rt.Topic] = make(map[int32]kmsg.ElectLeadersResponseTopicPartition)
		for _, rp := range rt.Partitions {
			answers[rt.Topic][rp.Partition] = rp
		}
	}
	for _, et := range ets {
		rp, ok := answers[et.topic][et.partition]
		if !ok {
			et.code, et.msg = kerr.UnknownServerError.Code, fmt.Sprintf("broker %d did not answer for this partition", leader)
			continue
		}
		et.code = rp.ErrorCode
		if rp.ErrorMessage != nil {
			et.msg = *rp.ErrorMessage
		}
	}
}

// forwardElection sends broker id an ElectLeaders request of the given
// type for ets, marked as forwarded so that it is never forwarded again.
func (b *Broker) forwardElection(ctx context.Context, id int32, electionType int8, ets []*electTarget, timeout time.Duration) (*kmsg.ElectLeadersResponse, error) {
	addr, ok := b.cfg.Peers[id]
	if !ok {
		return nil, fmt.Errorf("broker %d is not a peer", id)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ClientID(electForwardClientID), kgo.RequestRetries(0))
	if err != nil {
		return nil, fmt.Errorf("client for broker %d: %w", id, err)
	}
	defer cl.Close()
	req := kmsg.NewPtrElectLeadersRequest()
	req.ElectionType = electionType
	req.TimeoutMillis = int32(timeout / time.Millisecond)
	for _, group := range byTopic(ets) {
		rt := kmsg.NewElectLeadersRequestTopic()
		rt.Topic = group[0].topic
		for _, et := range group {
			rt.Partitions = append(rt.Partitions, et.partition)
		}
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl.SeedBrokers()[0])
	if err != nil {
		return nil, fmt.Errorf("forwarding to broker %d: %w", id, err)
	}
	return resp, nil
}

// rebalanceWait bounds one round of automatic preferred leader elections.
const rebalanceWait = 30 * time.Second

// rebalanceLeaders is Kafka's automatic preferred leader election
// (auto.leader.rebalance.enable) for the partitions this broker leads:
// when a live broker is the preferred replica of partitions that others
// lead, in more than LeaderImbalancePerBroker percent of its preferred
// partitions, the leaders hand those partitions back. Every broker counts
// from the same replicated metadata and moves only what it leads, so the
// brokers need not ask each other.
func (b *Broker) rebalanceLeaders(time.Time) {
	st := b.ctrl.State()
	preferredOf := make(map[int32]int) // partitions whose preferred replica is the broker
	ledElsewhere := make(map[int32]int)
	for _, mt := range st.Topics {
		for i, replicas := range mt.Replicas {
			if len(replicas) == 0 {
				continue
			}
			preferred := replicas[0]
			preferredOf[preferred]++
			if i >= len(mt.Leaders) || mt.Leaders[i].Leader != preferred {
				ledElsewhere[preferred]++
			}
		}
	}
	imbalanced := func(id int32) bool {
		return !st.Fenced[id] && ledElsewhere[id]*100 > b.cfg.LeaderImbalancePerBroker*preferredOf[id]
	}
	ctx, cancel := context.WithTimeout(b.ctx, rebalanceWait)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	moved, failed := 0, 0
	for _, t := range b.topics.list() {
		if t.assign == nil {
			continue
		}
		for i, p := range t.parts {
			preferred := t.assign[i][0]
			local, ok := p.(partition.Replica)
			if preferred == b.cfg.NodeID || !imbalanced(preferred) || !ok || !local.IsLeader() {
				continue
			}
			et := &electTarget{topic: t.name, partition: int32(i), preferred: preferred}
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, msg := b.electLocally(ctx, et, local)
				mu.Lock()
				defer mu.Unlock()
				if code != 0 {
					failed++
					b.log.Debug().Str("topic", et.topic).Int32("partition", et.partition).Int32("preferred", preferred).
						Int16("code", code).Str("reason", msg).Msg("preferred leader election failed")
					return
				}
				moved++
			}()
		}
	}
	wg.Wait()
	if moved+failed > 0 {
		b.log.Info().Int("moved", moved).Int("failed", failed).Msg("leadership moved back to preferred replicas")
	}
}
