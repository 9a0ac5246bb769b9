package coordinator

import (
	"slices"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestCoordinatorsIgnorePartitionsBeyondCount: a partition of an internal
// topic beyond the configured count (a broker restarted with a smaller
// count) is not served, and does not crash either coordinator.
func TestCoordinatorsIgnorePartitionsBeyondCount(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Partitions = 2
	c, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Elect(5, partition.Remote{})
	c.Resign(5)
	tc := DefaultTxnConfig()
	tc.Partitions = 2
	txns, err := NewTxns(tc, zerolog.Nop(), func() (int64, error) { return 1, nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer txns.Close()
	txns.Elect(5, partition.Remote{})
	txns.Resign(5)
}

// TestTxnRecordRoundTrip: a transaction's state written as a
// __transaction_state record reads back the same, and a tombstone
// removes it.
func TestTxnRecordRoundTrip(t *testing.T) {
	start := time.UnixMilli(1_700_000_000_000)
	m := &txnMeta{id: "tx", pid: 42, epoch: 7, lastPID: -1, lastEpoch: -1, nextPID: -1, timeout: 30 * time.Second,
		state: kmsg.TransactionStateOngoing, start: start, updated: start.Add(time.Second),
		parts: map[TopicPartition]struct{}{{"a", 1}: {}, {"a", 0}: {}, {"b", 3}: {}}}
	r := txnRecord(m)
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(r.Value); err != nil || v.Version != 0 {
		t.Fatalf("value version %d (%v), want Kafka 3.x's version 0", v.Version, err)
	}
	txns := map[string]*txnMeta{}
	if err := applyTxnRecord(r.Key, r.Value, txns); err != nil {
		t.Fatal(err)
	}
	got := txns["tx"]
	if got == nil || got.pid != 42 || got.epoch != 7 || got.timeout != m.timeout || got.state != m.state ||
		!got.start.Equal(start) || !got.updated.Equal(m.updated) || !slices.Equal(got.sortedParts(), m.sortedParts()) {
		t.Fatalf("read back %+v, wrote %+v", got, m)
	}
	tomb := txnTombstone("tx")
	if err := applyTxnRecord(tomb.Key, tomb.Value, txns); err != nil || txns["tx"] != nil {
		t.Fatalf("tombstone left %+v (%v)", txns["tx"], err)
	}
}
