package broker

import (
	"context"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Special timestamps of ListOffsets.
const (
	tsLatest        = -1
	tsEarliest      = -2
	tsMaxTimestamp  = -3 // v7+
	tsEarliestLocal = -4 // v8+
	tsLatestTiered  = -5 // v9+
)

func (b *Broker) listOffsetsAPI() kproto.API {
	return kproto.API{Key: kmsg.ListOffsets.Int16(), MinVersion: 0, MaxVersion: 11, Handle: handle(b.listOffsets)}
}

func (b *Broker) listOffsets(_ context.Context, _ *kproto.Request, r *kmsg.ListOffsetsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		t := b.topics.get(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset, sp.LeaderEpoch = -1, -1, -1
			p, err := leaderPartition(t, rp.Partition)
			if err == nil {
				err = listOffset(p, r.Version, r.IsolationLevel == 1, &rp, &sp)
			}
			sp.ErrorCode = errorCode(err)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// listOffset answers one partition; committed is read_committed isolation,
// whose latest offset is the last stable offset.
func listOffset(p partition.Partition, version int16, committed bool, rp *kmsg.ListOffsetsRequestTopicPartition, sp *kmsg.ListOffsetsResponseTopicPartition) error {
	off := p.Offsets()
	if err := checkLeaderEpoch(rp.CurrentLeaderEpoch, off.LeaderEpoch); err != nil {
		return err
	}
	offset, ts := int64(-1), int64(-1)
	switch rp.Timestamp {
	case tsLatest:
		offset = off.HighWatermark
		if committed {
			offset = off.LastStable
		}
	case tsEarliest, tsEarliestLocal:
		offset = off.LogStart
	case tsMaxTimestamp:
		var err error
		if offset, ts, err = p.MaxTimestamp(); err != nil {
			return err
		}
	case tsLatestTiered:
		// No tiered storage: nothing has been uploaded.
	default:
		var err error
		if offset, ts, err = p.OffsetForTime(rp.Timestamp); err != nil {
			return err
		}
	}
	if offset >= 0 {
		sp.LeaderEpoch = off.LeaderEpoch
	}
	if version == 0 {
		sp.OldStyleOffsets = []int64{}
		if offset >= 0 && rp.MaxNumOffsets > 0 {
			sp.OldStyleOffsets = []int64{offset}
		}
		return nil
	}
	sp.Offset, sp.Timestamp = offset, ts
	return nil
}

func (b *Broker) offsetForLeaderEpochAPI() kproto.API {
	return kproto.API{Key: kmsg.OffsetForLeaderEpoch.Int16(), MinVersion: 0, MaxVersion: 4, Handle: handle(b.offsetForLeaderEpoch)}
}

func (b *Broker) offsetForLeaderEpoch(_ context.Context, _ *kproto.Request, r *kmsg.OffsetForLeaderEpochRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		t := b.topics.get(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition, sp.LeaderEpoch, sp.EndOffset = rp.Partition, -1, -1
			p, err := leaderPartition(t, rp.Partition)
			if err == nil {
				if err = checkLeaderEpoch(rp.CurrentLeaderEpoch, p.Offsets().LeaderEpoch); err == nil {
					sp.LeaderEpoch, sp.EndOffset = p.EndOffsetForEpoch(rp.LeaderEpoch)
				}
			}
			sp.ErrorCode = errorCode(err)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) deleteRecordsAPI() kproto.API {
	return kproto.API{Key: kmsg.DeleteRecords.Int16(), MinVersion: 0, MaxVersion: 2, Handle: handle(b.deleteRecords)}
}

// deleteRecords advances log start offsets; offset -1 means the high
// watermark.
func (b *Broker) deleteRecords(_ context.Context, _ *kproto.Request, r *kmsg.DeleteRecordsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		t := b.topics.get(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition, sp.LowWatermark = rp.Partition, -1
			p, err := leaderPartition(t, rp.Partition)
			if err == nil {
				target := rp.Offset
				if target == -1 {
					target = p.Offsets().HighWatermark
				}
				if target < 0 {
					err = partition.ErrOffsetOutOfRange
				} else if err = p.SetLogStart(target); err == nil {
					sp.LowWatermark = p.Offsets().LogStart
				}
			}
			sp.ErrorCode = errorCode(err)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
