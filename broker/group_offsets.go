package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pubg1/pubg1/coordinator"
	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Committed offsets: OffsetCommit, OffsetFetch and OffsetDelete.

// knownPartition reports whether topic has partition p.
func (b *Broker) knownPartition(topic string, p int32) bool {
	t := b.topics.get(topic)
	return t != nil && p >= 0 && int(p) < len(t.parts)
}

func (b *Broker) offsetCommitAPI() kproto.API {
	return kproto.API{Key: kmsg.OffsetCommit.Int16(), MinVersion: 0, MaxVersion: 9, Handle: b.offsetCommit}
}

// offsetCommit commits the offsets of existing partitions and answers once
// they are durable; partitions of unknown topics fail on their own.
func (b *Broker) offsetCommit(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.OffsetCommitRequest)
	resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
	cr := coordinator.CommitRequest{Group: r.Group, Generation: r.Generation, MemberID: r.MemberID, InstanceID: r.InstanceID}
	if r.Version >= 2 && r.Version <= 4 && r.RetentionTimeMillis >= 0 {
		cr.Retention = time.Duration(r.RetentionTimeMillis) * time.Millisecond
	}
	// slots[i] is where the answer for cr.Offsets[i] goes.
	var slots []*kmsg.OffsetCommitResponseTopicPartition
	resp.Topics = make([]kmsg.OffsetCommitResponseTopic, len(r.Topics))
	for i, rt := range r.Topics {
		st := &resp.Topics[i]
		st.Default()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.OffsetCommitResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			sp.Default()
			sp.Partition = rp.Partition
			if !b.knownPartition(rt.Topic, rp.Partition) {
				sp.ErrorCode = errorCode(ErrUnknownTopic)
				continue
			}
			cr.Offsets = append(cr.Offsets, coordinator.CommitOffset{
				TopicPartition: coordinator.TopicPartition{Topic: rt.Topic, Partition: rp.Partition},
				Offset:         rp.Offset,
				LeaderEpoch:    rp.LeaderEpoch,
				Metadata:       rp.Metadata,
			})
			slots = append(slots, sp)
		}
	}
	if len(cr.Offsets) == 0 {
		respond(resp)
		return
	}
	b.groups.CommitOffsets(cr, func(errs []error) {
		for i, err := range errs {
			if r.Version < 9 && errors.Is(err, coordinator.ErrGroupIDNotFound) {
				// Before v9 a commit with a generation to a group that
				// does not exist is from a stale generation.
				err = coordinator.ErrIllegalGeneration
			}
			slots[i].ErrorCode = errorCode(err)
		}
		respond(resp)
	})
}

func (b *Broker) offsetFetchAPI() kproto.API {
	return kproto.API{Key: kmsg.OffsetFetch.Int16(), MinVersion: 0, MaxVersion: 9, Handle: b.offsetFetch}
}

// offsetFetch returns committed offsets of one group (v0-v7) or several
// (v8+); offset -1 for partitions without a commit.
func (b *Broker) offsetFetch(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.OffsetFetchRequest)
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	if r.Version < 8 {
		var topics []coordinator.TopicPartitions
		// v0 and v1 cannot ask for every topic; later versions do so
		// with null topics.
		if r.Topics != nil || r.Version < 2 {
			topics = make([]coordinator.TopicPartitions, 0, len(r.Topics))
			for _, t := range r.Topics {
				topics = append(topics, coordinator.TopicPartitions{Topic: t.Topic, Partitions: t.Partitions})
			}
		}
		b.groups.FetchOffsets(r.Group, topics, r.RequireStable, func(offsets []coordinator.TopicOffsets, err error) {
			if err != nil {
				if r.Version >= 2 {
					resp.ErrorCode = errorCode(err)
					respond(resp)
					return
				}
				// v0 and v1 have no group error: every partition has it.
				offsets = failedOffsets(topics, err)
			}
			for _, t := range offsets {
				rt := kmsg.NewOffsetFetchResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetFetchResponseTopicPartition()
					rp.Partition, rp.Offset, rp.LeaderEpoch = p.Partition, p.Offset, p.LeaderEpoch
					rp.Metadata = &p.Metadata
					rp.ErrorCode = errorCode(p.Err)
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
			respond(resp)
		})
		return
	}
	resp.Groups = make([]kmsg.OffsetFetchResponseGroup, len(r.Groups))
	fanOut(len(r.Groups), func(i int, done func()) {
		rg := &r.Groups[i]
		sg := &resp.Groups[i]
		sg.Default()
		sg.Group = rg.Group
		var topics []coordinator.TopicPartitions
		if rg.Topics != nil {
			topics = make([]coordinator.TopicPartitions, 0, len(rg.Topics))
			for _, t := range rg.Topics {
				topics = append(topics, coordinator.TopicPartitions{Topic: t.Topic, Partitions: t.Partitions})
			}
		}
		b.groups.FetchOffsets(rg.Group, topics, r.RequireStable, func(offsets []coordinator.TopicOffsets, err error) {
			sg.ErrorCode = errorCode(err)
			for _, t := range offsets {
				rt := kmsg.NewOffsetFetchResponseGroupTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					rp.Partition, rp.Offset, rp.LeaderEpoch = p.Partition, p.Offset, p.LeaderEpoch
					rp.Metadata = &p.Metadata
					rp.ErrorCode = errorCode(p.Err)
					rt.Partitions = append(rt.Partitions, rp)
				}
				sg.Topics = append(sg.Topics, rt)
			}
			done()
		})
	}, func() { respond(resp) })
}

// failedOffsets answers every requested partition with err.
func failedOffsets(topics []coordinator.TopicPartitions, err error) []coordinator.TopicOffsets {
	out := make([]coordinator.TopicOffsets, 0, len(topics))
	for _, t := range topics {
		to := coordinator.TopicOffsets{Topic: t.Topic}
		for _, p := range t.Partitions {
			to.Partitions = append(to.Partitions, coordinator.PartitionOffset{Partition: p, Offset: -1, LeaderEpoch: -1, Err: err})
		}
		out = append(out, to)
	}
	return out
}

func (b *Broker) offsetDeleteAPI() kproto.API {
	return kproto.API{Key: kmsg.OffsetDelete.Int16(), MinVersion: 0, MaxVersion: 0, Handle: b.offsetDelete}
}

// offsetDelete deletes committed offsets of partitions the group does not
// consume.
func (b *Broker) offsetDelete(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.OffsetDeleteRequest)
	resp := r.ResponseKind().(*kmsg.OffsetDeleteResponse)
	var parts []coordinator.TopicPartition
	var slots []*kmsg.OffsetDeleteResponseTopicPartition
	resp.Topics = make([]kmsg.OffsetDeleteResponseTopic, len(r.Topics))
	for i, rt := range r.Topics {
		st := &resp.Topics[i]
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.OffsetDeleteResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			sp.Partition = rp.Partition
			if !b.knownPartition(rt.Topic, rp.Partition) {
				sp.ErrorCode = errorCode(fmt.Errorf("%w: %s-%d", ErrUnknownTopic, rt.Topic, rp.Partition))
				continue
			}
			parts = append(parts, coordinator.TopicPartition{Topic: rt.Topic, Partition: rp.Partition})
			slots = append(slots, sp)
		}
	}
	b.groups.DeleteOffsets(r.Group, parts, func(err error, errs []error) {
		if err != nil {
			resp.ErrorCode = errorCode(err)
			resp.Topics = nil
			respond(resp)
			return
		}
		for i, perr := range errs {
			slots[i].ErrorCode = errorCode(perr)
		}
		respond(resp)
	})
}
