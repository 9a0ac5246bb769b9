package coordinator

import (
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// waiter is a request waiting for the group's commits in flight.
type waiter struct {
	ready func()
	abort func(error)
}

// commit serves an OffsetCommit: the offsets are written as one batch and
// applied (and answered) once it is durable.
func (g *group) commit(req CommitRequest, done func([]error), now time.Time) {
	if err := g.validateCommit(req, now); err != nil {
		done(errsOf(len(req.Offsets), err))
		return
	}
	expire := int64(-1)
	if req.Retention > 0 {
		expire = now.UnixMilli() + req.Retention.Milliseconds()
	}
	errs := make([]error, len(req.Offsets))
	recs, idx, offs := g.offsetRecords(req.Offsets, now, expire, errs)
	for _, i := range idx {
		g.commits[topicPartition{req.Offsets[i].Topic, req.Offsets[i].Partition}]++
	}
	if len(recs) == 0 {
		done(errs)
		return
	}
	g.appendRecords(recs, now, func(err error) {
		for j, i := range idx {
			tp := topicPartition{req.Offsets[i].Topic, req.Offsets[i].Partition}
			if g.commits[tp]--; g.commits[tp] <= 0 {
				delete(g.commits, tp)
			}
			if err != nil {
				errs[i] = err
			} else if g.state != StateDead {
				g.offsets[tp] = offs[j]
			}
		}
		g.wakeStableWaiters()
		done(errs)
	})
}

// offsetRecords makes the records of offsets committed now that expire
// at expire (-1: with the group). An offset whose metadata is too large
// gets its error in errs and no record; idx are the indexes of the others,
// in order, and offs their offsets.
func (g *group) offsetRecords(offsets []CommitOffset, now time.Time, expire int64, errs []error) (recs []kmsg.Record, idx []int, offs []offset) {
	nowMs := now.UnixMilli()
	for i, o := range offsets {
		if o.Metadata != nil && len(*o.Metadata) > g.c.cfg.MaxMetadataBytes {
			errs[i] = ErrOffsetMetadataTooLarge
			continue
		}
		off := offset{offset: o.Offset, leaderEpoch: o.LeaderEpoch, metadata: deref(o.Metadata), commitTime: nowMs, expireTime: expire}
		recs = append(recs, offsetRecord(g.id, topicPartition{o.Topic, o.Partition}, off))
		idx = append(idx, i)
		offs = append(offs, off)
	}
	return recs, idx, offs
}

// errsOf is n times err: one answer for every offset of a request.
func errsOf(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// validateCommit checks who may commit: members of the current
// generation, and anybody (generation -1, no member) while the group has no
// members.
func (g *group) validateCommit(req CommitRequest, now time.Time) error {
	if req.Generation < 0 && g.state == StateEmpty {
		return nil
	}
	instanceID := deref(req.InstanceID)
	if req.Generation >= 0 || req.MemberID != "" || instanceID != "" {
		if err := g.validateMember(req.MemberID, instanceID); err != nil {
			return err
		}
		if req.Generation != g.generation {
			return ErrIllegalGeneration
		}
	} else if g.state != StateEmpty {
		return ErrUnknownMemberID
	}
	switch g.state {
	case StateCompletingRebalance:
		// A member of this generation that has not synced yet.
		return ErrRebalanceInProgress
	case StateStable, StatePreparingRebalance:
		// A commit shows the member is alive; during a rebalance the
		// heartbeat tells it to rejoin.
		if m := g.members[req.MemberID]; m != nil {
			m.deadline = now.Add(m.sessionTimeout)
		}
	}
	return nil
}

func (g *group) wakeStableWaiters() {
	if len(g.commits) > 0 || len(g.stableWaiters) == 0 {
		return
	}
	waiters := g.stableWaiters
	g.stableWaiters = nil
	for _, w := range waiters {
		w.ready()
	}
}

// fetchOffsets serves an OffsetFetch for this group.
func (g *group) fetchOffsets(topics []TopicPartitions, requireStable bool, done func([]TopicOffsets, error)) {
	if requireStable && len(g.commits) > 0 {
		// Kafka's coordinator makes such a fetch wait for the commits in
		// flight rather than fail it.
		g.stableWaiters = append(g.stableWaiters, waiter{
			ready: func() { g.fetchOffsets(topics, false, done) },
			abort: func(err error) { done(nil, err) },
		})
		return
	}
	if topics == nil {
		done(g.allOffsets(), nil)
		return
	}
	out := make([]TopicOffsets, 0, len(topics))
	for _, t := range topics {
		to := TopicOffsets{Topic: t.Topic, Partitions: make([]PartitionOffset, 0, len(t.Partitions))}
		for _, p := range t.Partitions {
			po := PartitionOffset{Partition: p, Offset: -1, LeaderEpoch: -1}
			tp := topicPartition{t.Topic, p}
			if o, ok := g.offsets[tp]; ok {
				po.Offset, po.LeaderEpoch, po.Metadata = o.offset, o.leaderEpoch, o.metadata
			}
			if requireStable && g.txnPending(tp) {
				po.Offset, po.LeaderEpoch, po.Metadata, po.Err = -1, -1, "", ErrUnstableOffsetCommit
			}
			to.Partitions = append(to.Partitions, po)
		}
		out = append(out, to)
	}
	done(out, nil)
}

// allOffsets lists every committed offset, by topic and partition.
func (g *group) allOffsets() []TopicOffsets {
	tps := make([]topicPartition, 0, len(g.offsets))
	for tp := range g.offsets {
		tps = append(tps, tp)
	}
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].topic != tps[j].topic {
			return tps[i].topic < tps[j].topic
		}
		return tps[i].partition < tps[j].partition
	})
	out := []TopicOffsets{}
	for _, tp := range tps {
		if len(out) == 0 || out[len(out)-1].Topic != tp.topic {
			out = append(out, TopicOffsets{Topic: tp.topic})
		}
		o := g.offsets[tp]
		t := &out[len(out)-1]
		t.Partitions = append(t.Partitions, PartitionOffset{Partition: tp.partition, Offset: o.offset, LeaderEpoch: o.leaderEpoch, Metadata: o.metadata})
	}
	return out
}

// deleteGroup serves DeleteGroups for this group: an empty group goes with
// its offsets, answered once the tombstones are durable.
func (g *group) deleteGroup(done func(error), now time.Time) {
	if g.state != StateEmpty {
		done(ErrNonEmptyGroup)
		return
	}
	var recs []kmsg.Record
	for tp := range g.offsets {
		recs = append(recs, offsetTombstone(g.id, tp))
	}
	recs = append(recs, groupTombstone(g.id))
	clear(g.offsets)
	g.transition(StateDead, now)
	g.appendRecords(recs, now, done)
}

// deleteOffsets serves OffsetDelete for this group.
func (g *group) deleteOffsets(partitions []TopicPartition, done func(error, []error), now time.Time) {
	if g.state != StateEmpty && g.protocolType != "consumer" {
		done(ErrNonEmptyGroup, nil)
		return
	}
	errs := make([]error, len(partitions))
	var recs []kmsg.Record
	var deleted []int
	for i, p := range partitions {
		if g.state != StateEmpty && g.subscribed[p.Topic] {
			errs[i] = ErrGroupSubscribedToTopic
			continue
		}
		deleted = append(deleted, i)
		tp := topicPartition{p.Topic, p.Partition}
		if _, ok := g.offsets[tp]; ok {
			recs = append(recs, offsetTombstone(g.id, tp))
			delete(g.offsets, tp)
		}
	}
	if len(recs) == 0 {
		done(nil, errs)
		return
	}
	g.appendRecords(recs, now, func(err error) {
		if err != nil {
			for _, i := range deleted {
				errs[i] = err
			}
		}
		done(nil, errs)
	})
}

// expireOffsets removes offsets past retention, with Kafka's rules (KIP-211):
// the offsets of a group that had members expire retention after it became
// empty; those of a group that never had members, retention after their
// commit; those of a stable consumer group only for topics it no longer
// subscribes to; an offset committed with its own expiration time expires
// then. An empty group left without offsets is deleted.
func (g *group) expireOffsets(now time.Time) {
	nowMs := now.UnixMilli()
	retention := g.c.cfg.OffsetsRetention.Milliseconds()
	var base func(o offset) int64
	var keep map[string]bool
	commitTime := func(o offset) int64 { return o.commitTime }
	switch {
	case g.protocolType != "" && g.state == StateEmpty:
		base = commitTime
		if !g.stateTime.IsZero() {
			emptySince := g.stateTime.UnixMilli()
			base = func(offset) int64 { return emptySince }
		}
	case g.protocolType == "consumer" && g.subscribed != nil && g.state == StateStable:
		base, keep = commitTime, g.subscribed
	case g.protocolType == "":
		base = commitTime
	}
	var expired []topicPartition
	if base != nil {
		for tp, o := range g.offsets {
			if keep[tp.topic] || g.commits[tp] > 0 {
				continue
			}
			if o.expireTime >= 0 && nowMs >= o.expireTime || o.expireTime < 0 && nowMs-base(o) >= retention {
				expired = append(expired, tp)
			}
		}
	}
	if len(expired) > 0 {
		g.log.Debug().Int("offsets", len(expired)).Msg("offsets expired")
	}
	g.cleanup(expired, now)
}

// removeTopic drops the group's offsets of a deleted topic.
func (g *group) removeTopic(topic string, now time.Time) {
	var gone []topicPartition
	for tp := range g.offsets {
		if tp.topic == topic {
			gone = append(gone, tp)
		}
	}
	if len(gone) > 0 {
		g.cleanup(gone, now)
	}
}

// cleanup deletes the given offsets and, if that leaves an empty group with
// nothing, the group itself.
func (g *group) cleanup(remove []topicPartition, now time.Time) {
	var recs []kmsg.Record
	for _, tp := range remove {
		recs = append(recs, offsetTombstone(g.id, tp))
		delete(g.offsets, tp)
	}
	if g.state == StateEmpty && len(g.offsets) == 0 && len(g.commits) == 0 && len(g.pending) == 0 && len(g.txnOffsets) == 0 {
		recs = append(recs, groupTombstone(g.id))
		g.transition(StateDead, now)
	}
	if len(recs) == 0 {
		return
	}
	g.appendRecords(recs, now, func(err error) {
		if err != nil {
			g.log.Warn().Err(err).Msg("writing offset tombstones failed")
		}
	})
}

// storeGroup writes the group's metadata with the given assignments (nil
// for an empty group) and runs then once it is durable.
func (g *group) storeGroup(assignments map[string][]byte, now time.Time, then func(error)) {
	v := kmsg.NewGroupMetadataValue()
	v.Version = groupMetadataVersion
	v.ProtocolType, v.Generation = g.protocolType, g.generation
	if g.protocol != "" {
		p := g.protocol
		v.Protocol = &p
	}
	if g.leader != "" {
		l := g.leader
		v.Leader = &l
	}
	v.CurrentStateTimestamp = -1
	if !g.stateTime.IsZero() {
		v.CurrentStateTimestamp = g.stateTime.UnixMilli()
	}
	for _, id := range g.order {
		m := g.members[id]
		vm := kmsg.NewGroupMetadataValueMember()
		vm.MemberID, vm.ClientID, vm.ClientHost = m.id, m.clientID, m.clientHost
		if m.instanceID != "" {
			iid := m.instanceID
			vm.InstanceID = &iid
		}
		vm.RebalanceTimeoutMillis = int32(m.rebalanceTimeout.Milliseconds())
		vm.SessionTimeoutMillis = int32(m.sessionTimeout.Milliseconds())
		vm.Subscription = m.metadata(g.protocol)
		vm.Assignment = assignments[id]
		v.Members = append(v.Members, vm)
	}
	g.appendRecords([]kmsg.Record{groupRecord(g.id, &v)}, now, then)
}

// restore rebuilds a group from what replaying its offsets partition found.
// A group with members comes back stable, their sessions starting now: the
// members carry on by heartbeating, or expire.
func (g *group) restore(lg *loadedGroup, now time.Time) {
	g.offsets = lg.offsets
	if len(lg.txnOffsets) > 0 {
		g.txnOffsets = lg.txnOffsets
	}
	g.transition(StateEmpty, time.Time{})
	v := lg.meta
	if v == nil {
		return
	}
	g.protocolType, g.generation, g.protocol, g.leader = v.ProtocolType, v.Generation, deref(v.Protocol), deref(v.Leader)
	for _, vm := range v.Members {
		m := &member{
			id:               vm.MemberID,
			instanceID:       deref(vm.InstanceID),
			clientID:         vm.ClientID,
			clientHost:       vm.ClientHost,
			sessionTimeout:   time.Duration(vm.SessionTimeoutMillis) * time.Millisecond,
			rebalanceTimeout: time.Duration(vm.RebalanceTimeoutMillis) * time.Millisecond,
			protocolType:     v.ProtocolType,
			protocols:        []Protocol{{Name: g.protocol, Metadata: vm.Subscription}},
			assignment:       vm.Assignment,
		}
		if vm.RebalanceTimeoutMillis < 0 { // written before rebalance timeouts existed
			m.rebalanceTimeout = m.sessionTimeout
		}
		m.deadline = now.Add(m.sessionTimeout)
		g.members[m.id] = m
		g.order = append(g.order, m.id)
		g.incSupported(m)
		if m.instanceID != "" {
			g.static[m.instanceID] = m.id
		}
	}
	if len(g.members) > 0 {
		g.state = StateStable
		if g.members[g.leader] == nil {
			g.leader = g.order[0]
		}
	} else {
		g.leader = ""
	}
	if v.CurrentStateTimestamp >= 0 {
		g.stateTime = time.UnixMilli(v.CurrentStateTimestamp)
	}
	g.computeSubscribed()
}
