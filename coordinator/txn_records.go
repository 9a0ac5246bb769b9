package coordinator

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Records of __transaction_state, in Kafka's format: the key is version 0
// and the transactional ID, the value version 0 (what Kafka 3.x writes and
// every version reads) with the producer, the state and the partitions.

func txnKey(id string) []byte {
	k := kmsg.TxnMetadataKey{Version: 0, TransactionalID: id}
	return k.AppendTo(nil)
}

func txnRecord(m *txnMeta) kmsg.Record {
	v := kmsg.NewTxnMetadataValue()
	v.Version = 0
	v.ProducerID, v.ProducerEpoch = m.pid, m.epoch
	v.TimeoutMillis = int32(m.timeout.Milliseconds())
	v.State = m.state
	v.LastUpdateTimestamp = m.updated.UnixMilli()
	v.StartTimestamp = -1
	if !m.start.IsZero() && m.state != kmsg.TransactionStateEmpty {
		v.StartTimestamp = m.start.UnixMilli()
	}
	var topic *kmsg.TxnMetadataValueTopic
	for _, tp := range m.sortedParts() {
		if topic == nil || topic.Topic != tp.Topic {
			v.Topics = append(v.Topics, kmsg.TxnMetadataValueTopic{Topic: tp.Topic})
			topic = &v.Topics[len(v.Topics)-1]
		}
		topic.Partitions = append(topic.Partitions, tp.Partition)
	}
	return kmsg.Record{Key: txnKey(m.id), Value: v.AppendTo(nil)}
}

func txnTombstone(id string) kmsg.Record { return kmsg.Record{Key: txnKey(id)} }

// applyTxnRecord applies one record of __transaction_state to txns.
func applyTxnRecord(key, value []byte, txns map[string]*txnMeta) error {
	if len(key) < 2 {
		return fmt.Errorf("transaction state record with a %d byte key", len(key))
	}
	if version := int16(binary.BigEndian.Uint16(key)); version != 0 {
		return nil // not a transaction record of a version this broker knows
	}
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(key); err != nil {
		return fmt.Errorf("reading transaction state key: %w", err)
	}
	if value == nil {
		delete(txns, k.TransactionalID)
		return nil
	}
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(value); err != nil {
		return fmt.Errorf("reading the state of transactional ID %q: %w", k.TransactionalID, err)
	}
	m := &txnMeta{id: k.TransactionalID, pid: v.ProducerID, epoch: v.ProducerEpoch, lastPID: -1, lastEpoch: -1, nextPID: -1,
		timeout: time.Duration(v.TimeoutMillis) * time.Millisecond, state: v.State,
		parts: map[TopicPartition]struct{}{}, updated: time.UnixMilli(v.LastUpdateTimestamp)}
	if v.Version >= 1 {
		m.lastPID = v.PreviousProducerID
	}
	if v.StartTimestamp >= 0 {
		m.start = time.UnixMilli(v.StartTimestamp)
	}
	if m.state != kmsg.TransactionStateEmpty {
		for _, t := range v.Topics {
			for _, p := range t.Partitions {
				m.parts[TopicPartition{Topic: t.Topic, Partition: p}] = struct{}{}
			}
		}
	}
	txns[m.id] = m
	return nil
}

// replayTxns reads a __transaction_state partition from its log start to
// its high watermark and returns the transactions it holds.
func replayTxns(p partition.Partition, dec kgo.Decompressor) (map[string]*txnMeta, error) {
	txns := make(map[string]*txnMeta)
	var bad error
	apply := func(r batchRecord) {
		if err := applyTxnRecord(r.key, r.value, txns); err != nil && bad == nil {
			bad = err
		}
	}
	if err := replayPartition(p, dec, "transaction state", apply, nil); err != nil {
		return nil, err
	}
	if bad != nil {
		return nil, bad
	}
	for id, m := range txns {
		if m.state == kmsg.TransactionStateDead {
			delete(txns, id)
		}
	}
	return txns, nil
}
