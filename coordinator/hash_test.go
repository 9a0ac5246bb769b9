package coordinator

import (
	"testing"

	"github.com/rs/zerolog"
)

// The expected values are Java's "...".hashCode() and Kafka's partitionFor
// with 50 partitions.
func TestPartitionFor(t *testing.T) {
	for _, tc := range []struct {
		group     string
		hash      int32
		partition int32
	}{
		{"", 0, 0},
		{"hello", 99162322, 22},
		{"Hello World", -862545276, 22}, // negative: the sign bit is masked (Kafka: 26)
		{"my-group", -1906497762, 36},   // negative
		{"é", 233, 33},                  // one UTF-16 unit, two UTF-8 bytes
		{"😀", 1772899, 49},              // a surrogate pair
		{"console-consumer-12345", 158455506, 6},
	} {
		if h := javaStringHash(tc.group); h != tc.hash {
			t.Errorf("hash of %q = %d, want %d", tc.group, h, tc.hash)
		}
		if p := PartitionFor(tc.group, 50); p != tc.partition {
			t.Errorf("partition of %q = %d, want %d", tc.group, p, tc.partition)
		}
	}
}

// TestTxnPartitionFor: transactional IDs map to __transaction_state
// partitions exactly as in Kafka (Utils.abs of the Java hash).
func TestTxnPartitionFor(t *testing.T) {
	txns, err := NewTxns(DefaultTxnConfig(), zerolog.Nop(), func() (int64, error) { return 1, nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer txns.Close()
	for _, tc := range []struct {
		id        string
		partition int32
	}{{"hello", 22}, {"Hello World", 26}, {"my-group", 12}, {"", 0}} {
		if p := txns.PartitionFor(tc.id); p != tc.partition {
			t.Errorf("partition of %q = %d, want %d", tc.id, p, tc.partition)
		}
	}
}
