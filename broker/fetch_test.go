package broker_test

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// expectBatches checks that got holds exactly the produced batches, in
// order, with the given base offsets: byte for byte except the base offset
// (bytes 0-7) and the partition leader epoch (bytes 12-15), which the broker
// assigns (epoch 0 on a single node).
func expectBatches(t testing.TB, got []byte, produced [][]byte, bases []int64) {
	t.Helper()
	for i, want := range produced {
		if len(got) < len(want) {
			t.Fatalf("batch %d: %d bytes left, want %d", i, len(got), len(want))
		}
		b := got[:len(want)]
		if base := int64(binary.BigEndian.Uint64(b)); base != bases[i] {
			t.Fatalf("batch %d: base offset %d, want %d", i, base, bases[i])
		}
		if epoch := int32(binary.BigEndian.Uint32(b[12:])); epoch != 0 {
			t.Fatalf("batch %d: partition leader epoch %d, want 0", i, epoch)
		}
		if !bytes.Equal(b[8:12], want[8:12]) || !bytes.Equal(b[16:], want[16:]) {
			t.Fatalf("batch %d differs from what was produced", i)
		}
		got = got[len(want):]
	}
	if len(got) != 0 {
		t.Fatalf("%d bytes after the expected batches", len(got))
	}
}

func TestFetchVersions(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	id := createTopic(t, c, name, 1)
	batches := [][]byte{newBatch(t, "a", "b", "c"), makeBatch(t, batchOpts{gzip: true}, "d", "e"), newBatch(t, strings.Repeat("f", 500))}
	var bases []int64
	for _, batch := range batches {
		bases = append(bases, produce(t, c, name, 0, batch))
	}
	if bases[0] != 0 || bases[1] != 3 || bases[2] != 5 {
		t.Fatalf("base offsets %v", bases)
	}

	for v := int16(4); v <= 18; v++ {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			resp := c.Do(fetchReq(v, name, id, 0, 0)).(*kmsg.FetchResponse)
			if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
				t.Fatalf("error %d, topics %d", resp.ErrorCode, len(resp.Topics))
			}
			st := resp.Topics[0]
			if v >= 13 && st.TopicID != id {
				t.Fatalf("topic ID %x, want %x", st.TopicID, id)
			}
			if v < 13 && st.Topic != name {
				t.Fatalf("topic %q", st.Topic)
			}
			p := st.Partitions[0]
			if p.ErrorCode != 0 || p.HighWatermark != 6 || p.LastStableOffset != 6 {
				t.Fatalf("error %d, high watermark %d, last stable %d", p.ErrorCode, p.HighWatermark, p.LastStableOffset)
			}
			if v >= 5 && p.LogStartOffset != 0 {
				t.Fatalf("log start %d", p.LogStartOffset)
			}
			if v >= 11 && p.PreferredReadReplica != -1 {
				t.Fatalf("preferred read replica %d", p.PreferredReadReplica)
			}
			expectBatches(t, p.RecordBatches, batches, bases)

			// From the middle: the batch holding the offset comes first.
			resp = c.Do(fetchReq(v, name, id, 0, 4)).(*kmsg.FetchResponse)
			expectBatches(t, resp.Topics[0].Partitions[0].RecordBatches, batches[1:], bases[1:])
		})
	}
}

func TestFetchTopicID(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	id := createTopic(t, c, name, 2)
	batch := newBatch(t, "x")
	produce(t, c, name, 1, batch)
	for v := int16(13); v <= 18; v++ {
		resp := c.Do(fetchReq(v, "", id, 1, 0)).(*kmsg.FetchResponse)
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.Partition != 1 {
			t.Fatalf("v%d: partition %d error %d", v, p.Partition, p.ErrorCode)
		}
		expectBatches(t, p.RecordBatches, [][]byte{batch}, []int64{0})

		resp = c.Do(fetchReq(v, "", [16]byte{0xde, 0xad}, 0, 0)).(*kmsg.FetchResponse)
		if resp.ErrorCode != 0 || len(resp.Topics) != 1 || resp.Topics[0].TopicID != [16]byte{0xde, 0xad} {
			t.Fatalf("v%d unknown ID: top-level error %d, topics %+v", v, resp.ErrorCode, resp.Topics)
		}
		if p := resp.Topics[0].Partitions[0]; p.ErrorCode != kerr.UnknownTopicID.Code || len(p.RecordBatches) != 0 {
			t.Fatalf("v%d unknown ID: error %d, want UNKNOWN_TOPIC_ID", v, p.ErrorCode)
		}
	}
}

func TestFetchOffsets(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1)
	for range 3 {
		produce(t, c, name, 0, newBatch(t, "a", "b"))
	}
	// Log start 2 after deleting the first batch.
	if lw := deleteRecords(t, c, name, 0, 2); lw.ErrorCode != 0 || lw.LowWatermark != 2 {
		t.Fatalf("delete records: %+v", lw)
	}

	tests := []struct {
		name   string
		offset int64
		want   int16
		bytes  bool
	}{
		{"at log start", 2, 0, true},
		{"inside the log", 5, 0, true},
		{"at the high watermark", 6, 0, false},
		{"past the high watermark", 7, kerr.OffsetOutOfRange.Code, false},
		{"far past the high watermark", 1 << 40, kerr.OffsetOutOfRange.Code, false},
		{"below log start", 1, kerr.OffsetOutOfRange.Code, false},
		{"negative", -1, kerr.OffsetOutOfRange.Code, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := fetchOne(t, c, name, 0, tt.offset)
			if p.ErrorCode != tt.want {
				t.Fatalf("error %d, want %d", p.ErrorCode, tt.want)
			}
			if (len(p.RecordBatches) > 0) != tt.bytes {
				t.Fatalf("%d record bytes", len(p.RecordBatches))
			}
			// As in Kafka, a partition error reports unknown offsets; the
			// client resets with ListOffsets.
			wantHW, wantStart := int64(6), int64(2)
			if tt.want != 0 {
				wantHW, wantStart = -1, -1
			}
			if p.HighWatermark != wantHW || p.LogStartOffset != wantStart || p.LastStableOffset != wantHW {
				t.Fatalf("high watermark %d, log start %d, last stable %d; want %d, %d", p.HighWatermark, p.LogStartOffset, p.LastStableOffset, wantHW, wantStart)
			}
		})
	}
}

func TestFetchManyPartitions(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	type tp struct {
		topic string
		part  int32
	}
	want := make(map[tp][]byte)
	req := kmsg.NewPtrFetchRequest()
	req.Version = 12
	req.ReplicaID = -1
	req.MaxBytes = 50 << 20
	req.SessionEpoch = -1
	for i := range 3 {
		name := uniqueTopic(t, strconv.Itoa(i))
		createTopic(t, c, name, 3)
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = name
		for p := int32(0); p < 3; p++ {
			batch := newBatch(t, name+"/"+strconv.Itoa(int(p)))
			produce(t, c, name, p, batch)
			want[tp{name, p}] = batch
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = p, 1<<20, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		// Also one partition that does not exist.
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.PartitionMaxBytes = 9, 1<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
	}
	resp := c.Do(req).(*kmsg.FetchResponse)
	if len(resp.Topics) != 3 {
		t.Fatalf("%d topics", len(resp.Topics))
	}
	for i, st := range resp.Topics {
		if st.Topic != req.Topics[i].Topic || len(st.Partitions) != 4 {
			t.Fatalf("topic %d: %q with %d partitions", i, st.Topic, len(st.Partitions))
		}
		for j, p := range st.Partitions[:3] {
			if p.Partition != int32(j) || p.ErrorCode != 0 || p.HighWatermark != 1 {
				t.Fatalf("%s-%d: partition %d error %d hwm %d", st.Topic, j, p.Partition, p.ErrorCode, p.HighWatermark)
			}
			expectBatches(t, p.RecordBatches, [][]byte{want[tp{st.Topic, int32(j)}]}, []int64{0})
		}
		if p := st.Partitions[3]; p.Partition != 9 || p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("%s-9: error %d", st.Topic, p.ErrorCode)
		}
	}
}

// TestFetchMaxBytes checks the limits of KIP-74: the response and each
// partition stay within MaxBytes and PartitionMaxBytes, except that the
// first batch of the first partition with data is returned whole even if
// it is larger, so that a consumer always makes progress.
func TestFetchMaxBytes(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 2)
	var batches [2][][]byte
	for p := int32(0); p < 2; p++ {
		for i := range 3 {
			batch := newBatch(t, strings.Repeat(strconv.Itoa(i), 1000))
			produce(t, c, name, p, batch)
			batches[p] = append(batches[p], batch)
		}
	}
	size := len(batches[0][0])

	fetch := func(maxBytes, partMaxBytes int32) []kmsg.FetchResponseTopicPartition {
		req := kmsg.NewPtrFetchRequest()
		req.Version = 11
		req.ReplicaID = -1
		req.MaxBytes = maxBytes
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = name
		for p := int32(0); p < 2; p++ {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = p, partMaxBytes, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp := c.Do(req).(*kmsg.FetchResponse)
		parts := resp.Topics[0].Partitions
		for _, p := range parts {
			if p.ErrorCode != 0 {
				t.Fatalf("partition %d: error %d", p.Partition, p.ErrorCode)
			}
		}
		return parts
	}
	// startsWith checks that got begins with the first n batches of
	// partition p whole and holds fewer than all of them.
	startsWith := func(t *testing.T, got []byte, p, n int) {
		t.Helper()
		want := bytes.Join(batches[p][:n], nil)
		if len(got) < len(want) {
			t.Fatalf("partition %d: %d bytes, want at least the first %d batches (%d bytes)", p, len(got), n, len(want))
		}
		expectBatches(t, got[:len(want)], batches[p][:n], []int64{0, 1, 2}[:n])
	}

	t.Run("request limit below one batch", func(t *testing.T) {
		parts := fetch(10, 1<<20)
		startsWith(t, parts[0].RecordBatches, 0, 1)
		if len(parts[0].RecordBatches) != size {
			t.Fatalf("partition 0: %d bytes, want exactly the first batch (%d)", len(parts[0].RecordBatches), size)
		}
		if len(parts[1].RecordBatches) != 0 {
			t.Fatalf("partition 1: %d bytes over the request limit", len(parts[1].RecordBatches))
		}
	})
	t.Run("partition limit below one batch", func(t *testing.T) {
		parts := fetch(50<<20, 10)
		if len(parts[0].RecordBatches) != size {
			t.Fatalf("partition 0: %d bytes, want exactly the first batch (%d)", len(parts[0].RecordBatches), size)
		}
		startsWith(t, parts[0].RecordBatches, 0, 1)
		if len(parts[1].RecordBatches) != 0 {
			t.Fatalf("partition 1: %d bytes over its limit", len(parts[1].RecordBatches))
		}
	})
	t.Run("partition limit of one and a half batches", func(t *testing.T) {
		limit := int32(size * 3 / 2)
		parts := fetch(50<<20, limit)
		for p := range 2 {
			got := parts[p].RecordBatches
			startsWith(t, got, p, 1)
			if len(got) > int(limit) {
				t.Fatalf("partition %d: %d bytes over the limit %d", p, len(got), limit)
			}
		}
	})
	t.Run("request limit of two and a half batches", func(t *testing.T) {
		limit := int32(size * 5 / 2)
		parts := fetch(limit, 1<<20)
		startsWith(t, parts[0].RecordBatches, 0, 2)
		if total := len(parts[0].RecordBatches) + len(parts[1].RecordBatches); total > int(limit) {
			t.Fatalf("%d bytes over the request limit %d", total, limit)
		}
	})
	t.Run("no limits reached", func(t *testing.T) {
		parts := fetch(50<<20, 1<<20)
		for p := range 2 {
			expectBatches(t, parts[p].RecordBatches, batches[p], []int64{0, 1, 2})
		}
	})
}

func TestFetchLeaderEpoch(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1)
	produce(t, c, name, 0, newBatch(t, "x"))
	for _, tt := range []struct {
		epoch int32
		want  int16
	}{{-1, 0}, {0, 0}, {5, kerr.UnknownLeaderEpoch.Code}} {
		for _, v := range []int16{9, 12, 13, 18} {
			id := [16]byte{}
			if v >= 13 {
				id = metadataFor(t, c, false, name).Topics[0].TopicID
			}
			req := fetchReq(v, name, id, 0, 0)
			req.Topics[0].Partitions[0].CurrentLeaderEpoch = tt.epoch
			resp := c.Do(req).(*kmsg.FetchResponse)
			p := resp.Topics[0].Partitions[0]
			if p.ErrorCode != tt.want {
				t.Fatalf("v%d epoch %d: error %d, want %d", v, tt.epoch, p.ErrorCode, tt.want)
			}
			if (len(p.RecordBatches) > 0) != (tt.want == 0) {
				t.Fatalf("v%d epoch %d: %d record bytes", v, tt.epoch, len(p.RecordBatches))
			}
		}
	}
}

// TestFetchSessionFields checks how Fetch v7+ reads the session fields,
// as Kafka (FetchManager.newContext): epoch 0 (INITIAL) and -1 (FINAL) are
// full fetches whatever the session ID (a named session is closed), 0
// creating a session and -1 not; any other epoch is an incremental fetch,
// answered FETCH_SESSION_ID_NOT_FOUND with no partitions when the broker
// does not have its session.
func TestFetchSessionFields(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1)
	produce(t, c, name, 0, newBatch(t, "x"))
	tests := []struct {
		id, epoch int32
		want      int16
	}{
		{0, -1, 0},
		{0, 0, 0},
		{12345, 1, kerr.FetchSessionIDNotFound.Code},
		{12345, 7, kerr.FetchSessionIDNotFound.Code},
		{0, 1, kerr.FetchSessionIDNotFound.Code},
		{0, -2, kerr.FetchSessionIDNotFound.Code},
		{12345, 0, 0},
		{12345, -1, 0},
	}
	for _, tt := range tests {
		for _, v := range []int16{7, 12, 18} {
			t.Run("v"+strconv.Itoa(int(v))+"/id "+strconv.Itoa(int(tt.id))+" epoch "+strconv.Itoa(int(tt.epoch)), func(t *testing.T) {
				id := [16]byte{}
				if v >= 13 {
					id = metadataFor(t, c, false, name).Topics[0].TopicID
				}
				req := fetchReq(v, name, id, 0, 0)
				req.SessionID, req.SessionEpoch = tt.id, tt.epoch
				resp := c.Do(req).(*kmsg.FetchResponse)
				if resp.ErrorCode != tt.want {
					t.Fatalf("top-level error %d, want %d", resp.ErrorCode, tt.want)
				}
				if tt.want != 0 {
					if len(resp.Topics) != 0 || resp.SessionID != 0 {
						t.Fatalf("session %d and %d topics in a session error response", resp.SessionID, len(resp.Topics))
					}
					return
				}
				if created := resp.SessionID != 0; created != (tt.epoch == 0) {
					t.Fatalf("session ID %d after a full fetch with epoch %d", resp.SessionID, tt.epoch)
				}
				if len(resp.Topics) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 || len(resp.Topics[0].Partitions[0].RecordBatches) == 0 {
					t.Fatalf("topics %+v", resp.Topics)
				}
			})
		}
	}
}

// TestFetchLongPoll checks that a fetch waiting for MinBytes at the end of
// the log is woken by a produce well before MaxWait.
func TestFetchLongPoll(t *testing.T) {
	b := runBroker(t)
	fc := dial(t, b)
	pc := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, pc, name, 2)

	req := fetchReq(11, name, [16]byte{}, 1, 0)
	req.MaxWaitMillis = 20000
	req.MinBytes = 1
	start := time.Now()
	corr := fc.Send(req)
	// The fetch must still be waiting: nothing was produced.
	fc.ExpectNoResponse(200 * time.Millisecond)
	batch := newBatch(t, "wake up")
	produce(t, pc, name, 1, batch)

	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 11
	if got := fc.Recv(resp); got != corr {
		t.Fatalf("correlation id %d, want %d", got, corr)
	}
	if elapsed := time.Since(start); elapsed >= 10*time.Second {
		t.Fatalf("fetch answered after %v: the produce did not wake it", elapsed)
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 || p.HighWatermark != 1 {
		t.Fatalf("error %d, high watermark %d", p.ErrorCode, p.HighWatermark)
	}
	expectBatches(t, p.RecordBatches, [][]byte{batch}, []int64{0})
}

// TestFetchMaxWaitExpires checks that a fetch with nothing to return is
// answered empty once MaxWait passes.
func TestFetchMaxWaitExpires(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1)
	req := fetchReq(11, name, [16]byte{}, 0, 0)
	req.MaxWaitMillis = 300
	req.MinBytes = 1
	start := time.Now()
	resp := c.Do(req).(*kmsg.FetchResponse)
	elapsed := time.Since(start)
	if elapsed < 250*time.Millisecond {
		t.Fatalf("answered after %v, before MaxWait", elapsed)
	}
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) != 0 || p.HighWatermark != 0 {
		t.Fatalf("error %d, %d bytes, hwm %d", p.ErrorCode, len(p.RecordBatches), p.HighWatermark)
	}
}

// TestFetchResponseOrder checks that a long-polling fetch followed by a
// quick Metadata request on the same connection is still answered first.
func TestFetchResponseOrder(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1)

	req := fetchReq(12, name, [16]byte{}, 0, 0)
	req.MaxWaitMillis = 500
	req.MinBytes = 1
	start := time.Now()
	fetchCorr := c.Send(req)
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 12
	mdCorr := c.Send(md)

	corr, body := c.Next()
	if corr != fetchCorr {
		t.Fatalf("first response has correlation id %d, want the fetch's %d (metadata is %d)", corr, fetchCorr, mdCorr)
	}
	if elapsed := time.Since(start); elapsed < 400*time.Millisecond {
		t.Fatalf("fetch answered after %v, before its MaxWait", elapsed)
	}
	fresp := kmsg.NewPtrFetchResponse()
	fresp.Version = 12
	if err := c.Decode(body, fresp); err != nil {
		t.Fatal(err)
	}
	if fresp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("fetch error %d", fresp.Topics[0].Partitions[0].ErrorCode)
	}
	mresp := kmsg.NewPtrMetadataResponse()
	mresp.Version = 12
	if got := c.Recv(mresp); got != mdCorr {
		t.Fatalf("second response has correlation id %d, want %d", got, mdCorr)
	}
}

// TestFetchOldVersions checks that Fetch v0-v3 (message format v0/v1) are
// refused with UNSUPPORTED_VERSION on an open connection.
func TestFetchOldVersions(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1)
	produce(t, c, name, 0, newBatch(t, "x"))
	for v := int16(0); v <= 3; v++ {
		resp := c.Do(fetchReq(v, name, [16]byte{}, 0, 0)).(*kmsg.FetchResponse)
		if len(resp.Topics) != 1 || resp.Topics[0].Partitions[0].ErrorCode != kerr.UnsupportedVersion.Code || len(resp.Topics[0].Partitions[0].RecordBatches) != 0 {
			t.Fatalf("v%d: %+v, want UNSUPPORTED_VERSION", v, resp.Topics)
		}
	}
}
