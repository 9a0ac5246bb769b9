package coordinator

import "testing"

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
		{"Hello World", -862545276, 22}, // negative: Utils.abs masks the sign bit
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
