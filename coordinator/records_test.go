package coordinator

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestRecordsRoundTrip encodes every kind of record as the coordinator
// writes it, checks the batch as a producer's would be checked, and reads
// it back with Kafka's schemas.
func TestRecordsRoundTrip(t *testing.T) {
	tp := topicPartition{"orders", 7}
	meta := kmsg.NewGroupMetadataValue()
	meta.Version, meta.ProtocolType, meta.Generation = groupMetadataVersion, "consumer", 4
	meta.Protocol, meta.Leader, meta.CurrentStateTimestamp = ptr("range"), ptr("m-1"), 1234
	vm := kmsg.NewGroupMetadataValueMember()
	vm.MemberID, vm.InstanceID, vm.ClientID, vm.ClientHost = "m-1", ptr("i-1"), "client", "/127.0.0.1"
	vm.RebalanceTimeoutMillis, vm.SessionTimeoutMillis = 60000, 45000
	vm.Subscription, vm.Assignment = []byte("sub"), []byte("assigned")
	meta.Members = []kmsg.GroupMetadataValueMember{vm}

	recs := []kmsg.Record{
		offsetRecord("g", tp, offset{offset: 42, leaderEpoch: 3, metadata: "m", commitTime: 1000, expireTime: -1}),
		offsetRecord("g", tp, offset{offset: 43, leaderEpoch: -1, commitTime: 2000, expireTime: 9000}),
		offsetTombstone("g", tp),
		groupRecord("g", &meta),
		groupTombstone("g"),
	}
	b := encodeBatch(recs, time.UnixMilli(5000))
	h, err := partition.CheckProduced(b)
	if err != nil {
		t.Fatalf("the batch fails a producer's checks: %v", err)
	}
	if h.ProducerID != -1 || h.NumRecords != 5 || h.Codec() != kgo.CodecNone || h.FirstTimestamp != 5000 {
		t.Fatalf("batch header %+v", h)
	}
	var keys, values [][]byte
	next, err := eachRecord(b, kgo.DefaultDecompressor(), func(r batchRecord) {
		keys, values = append(keys, r.key), append(values, r.value)
	}, nil)
	if err != nil || next != 5 || len(keys) != 5 {
		t.Fatalf("read %d records, next %d, err %v", len(keys), next, err)
	}

	var ok kmsg.OffsetCommitKey
	if err := ok.ReadFrom(keys[0]); err != nil || ok.Version != 1 || ok.Group != "g" || ok.Topic != "orders" || ok.Partition != 7 {
		t.Errorf("offset key %+v (%v)", ok, err)
	}
	var ov kmsg.OffsetCommitValue
	if err := ov.ReadFrom(values[0]); err != nil || ov.Version != 3 || ov.Offset != 42 || ov.LeaderEpoch != 3 || ov.Metadata != "m" || ov.CommitTimestamp != 1000 {
		t.Errorf("offset value %+v (%v)", ov, err)
	}
	if err := ov.ReadFrom(values[1]); err != nil || ov.Version != 1 || ov.Offset != 43 || ov.ExpireTimestamp != 9000 {
		t.Errorf("offset value with expiration %+v (%v)", ov, err)
	}
	if !bytes.Equal(keys[2], keys[0]) || values[2] != nil {
		t.Errorf("offset tombstone: key %x, value %x", keys[2], values[2])
	}
	var gk kmsg.GroupMetadataKey
	if err := gk.ReadFrom(keys[3]); err != nil || gk.Version != 2 || gk.Group != "g" {
		t.Errorf("group key %+v (%v)", gk, err)
	}
	var gv kmsg.GroupMetadataValue
	if err := gv.ReadFrom(values[3]); err != nil {
		t.Fatalf("group value: %v", err)
	}
	m := gv.Members
	if gv.Version != 3 || gv.Generation != 4 || deref(gv.Protocol) != "range" || deref(gv.Leader) != "m-1" || gv.CurrentStateTimestamp != 1234 ||
		len(m) != 1 || m[0].MemberID != "m-1" || deref(m[0].InstanceID) != "i-1" || string(m[0].Assignment) != "assigned" || m[0].SessionTimeoutMillis != 45000 {
		t.Errorf("group value %+v", gv)
	}
	if values[4] != nil {
		t.Errorf("group tombstone has value %x", values[4])
	}

	// Replaying applies them in order: the offset and the group end up
	// deleted.
	groups := make(map[string]*loadedGroup)
	get := func(id string) *loadedGroup {
		if groups[id] == nil {
			groups[id] = &loadedGroup{id: id, offsets: make(map[topicPartition]offset)}
		}
		return groups[id]
	}
	for i := range keys {
		if err := applyRecord(keys[i], values[i], get); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if o := groups["g"].offsets[tp]; o.offset != 43 || o.expireTime != 9000 || o.leaderEpoch != -1 {
				t.Errorf("after two commits: %+v", o)
			}
		}
	}
	if g := groups["g"]; len(g.offsets) != 0 || g.meta != nil {
		t.Errorf("after the tombstones: %+v", g)
	}
}

// TestEachRecordCompressed reads a compressed batch, as another writer of
// the topic could have produced.
func TestEachRecordCompressed(t *testing.T) {
	comp, err := kgo.DefaultCompressor(kgo.GzipCompression())
	if err != nil {
		t.Fatal(err)
	}
	plain := encodeBatch([]kmsg.Record{groupTombstone("a"), groupTombstone("b")}, time.Now())
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(plain); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	packed, codec := comp.Compress(&buf, rb.Records)
	rb.Records, rb.Attributes = packed, int16(codec)
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	var got []string
	if _, err := eachRecord(b, kgo.DefaultDecompressor(), func(r batchRecord) {
		var gk kmsg.GroupMetadataKey
		_ = gk.ReadFrom(r.key)
		got = append(got, gk.Group)
	}, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("read groups %q from the gzip batch", got)
	}
}

func ptr[T any](v T) *T { return &v }
