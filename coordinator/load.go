package coordinator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// loadedGroup is what replaying an offsets partition found for one group:
// its latest metadata (nil if none or deleted) and its offsets.
type loadedGroup struct {
	id      string
	meta    *kmsg.GroupMetadataValue
	offsets map[topicPartition]offset
	// txnOffsets are offsets of transactions that had not ended.
	txnOffsets map[int64]map[topicPartition]offset
}

// replayReadBytes is how much of the partition one read returns.
const replayReadBytes = 1 << 20

// replay reads an offsets partition from its log start to its high
// watermark and returns the groups it holds, sorted by ID: those with
// metadata, and those with offsets only (groups that only commit).
func replay(p partition.Partition, dec kgo.Decompressor) ([]*loadedGroup, error) {
	groups := make(map[string]*loadedGroup)
	get := func(id string) *loadedGroup {
		lg := groups[id]
		if lg == nil {
			lg = &loadedGroup{id: id, offsets: make(map[topicPartition]offset)}
			groups[id] = lg
		}
		return lg
	}
	var bad error
	apply := func(r batchRecord, get func(string) *loadedGroup) {
		if err := applyRecord(r.key, r.value, get); err != nil && bad == nil {
			bad = err
		}
	}
	// A transaction's records take effect at its commit marker.
	txns := make(map[int64][]batchRecord)
	record := func(r batchRecord) {
		if r.producerID >= 0 {
			txns[r.producerID] = append(txns[r.producerID], r)
			return
		}
		apply(r, get)
	}
	marker := func(pid int64, commit bool) {
		if commit {
			for _, r := range txns[pid] {
				apply(r, get)
			}
		}
		delete(txns, pid)
	}
	if err := replayPartition(p, dec, "offsets", record, marker); err != nil {
		return nil, err
	}
	// Transactions not ended yet: their offsets wait for the marker.
	for pid, recs := range txns {
		open := make(map[string]*loadedGroup)
		for _, r := range recs {
			apply(r, func(id string) *loadedGroup {
				if open[id] == nil {
					open[id] = &loadedGroup{id: id, offsets: make(map[topicPartition]offset)}
				}
				return open[id]
			})
		}
		for id, lg := range open {
			g := get(id)
			if g.txnOffsets == nil {
				g.txnOffsets = make(map[int64]map[topicPartition]offset)
			}
			g.txnOffsets[pid] = lg.offsets
		}
	}
	if bad != nil {
		return nil, bad
	}
	out := make([]*loadedGroup, 0, len(groups))
	for _, lg := range groups {
		if lg.meta != nil || len(lg.offsets) > 0 || len(lg.txnOffsets) > 0 {
			out = append(out, lg)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}

// replayPartition calls apply with the key and value of every record of
// p, an internal topic's partition named by what, from its log start to
// its high watermark.
func replayPartition(p partition.Partition, dec kgo.Decompressor, what string, record func(batchRecord), marker func(pid int64, commit bool)) error {
	var buf []byte
	at := p.Offsets().LogStart
	for {
		o := p.Offsets()
		at = max(at, o.LogStart)
		if at >= o.HighWatermark {
			return nil
		}
		res, err := p.Read(at, replayReadBytes, true, buf[:0])
		if errors.Is(err, partition.ErrOffsetOutOfRange) && at < res.LogStart {
			continue // retention moved the start meanwhile
		}
		if err != nil {
			return fmt.Errorf("reading %s partition at %d: %w", what, at, err)
		}
		if len(res.Records) == 0 {
			return nil
		}
		buf = res.Records
		next, err := eachRecord(res.Records, dec, record, marker)
		if err != nil {
			return fmt.Errorf("%s partition at %d: %w", what, at, err)
		}
		if next <= at {
			return fmt.Errorf("%s partition: no progress reading at %d", what, at)
		}
		at = next
	}
}

// applyRecord applies one record of the offsets topic. Record kinds other
// than offset commits and group metadata (those of newer group protocols)
// are skipped.
func applyRecord(key, value []byte, get func(string) *loadedGroup) error {
	if len(key) < 2 {
		return fmt.Errorf("offsets topic record with a %d byte key", len(key))
	}
	switch version := int16(binary.BigEndian.Uint16(key)); version {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(key); err != nil {
			return fmt.Errorf("reading offset commit key: %w", err)
		}
		lg := get(k.Group)
		tp := topicPartition{k.Topic, k.Partition}
		if value == nil {
			delete(lg.offsets, tp)
			return nil
		}
		var v kmsg.OffsetCommitValue
		if err := v.ReadFrom(value); err != nil {
			return fmt.Errorf("reading offset commit of group %q: %w", k.Group, err)
		}
		o := offset{offset: v.Offset, leaderEpoch: -1, metadata: v.Metadata, commitTime: v.CommitTimestamp, expireTime: -1}
		if v.Version >= 3 {
			o.leaderEpoch = v.LeaderEpoch
		}
		if v.Version == 1 {
			o.expireTime = v.ExpireTimestamp
		}
		lg.offsets[tp] = o
	case 2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(key); err != nil {
			return fmt.Errorf("reading group metadata key: %w", err)
		}
		lg := get(k.Group)
		if value == nil {
			lg.meta = nil
			return nil
		}
		v := new(kmsg.GroupMetadataValue)
		if err := v.ReadFrom(value); err != nil {
			return fmt.Errorf("reading metadata of group %q: %w", k.Group, err)
		}
		lg.meta = v
	}
	return nil
}
