package partition

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker/storage"
	"github.com/pubg1/pubg1/broker/storage/storagetest"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// keyed is one record of a keyed batch; a nil value is a tombstone.
type keyed struct {
	key   string
	value *string
}

func val(s string) *string { return &s }

// keyedBatch encodes a batch of keyed records with one timestamp.
func keyedBatch(t testing.TB, codec kgo.CompressionCodec, ts int64, recs ...keyed) []byte {
	t.Helper()
	var raw []byte
	for i, r := range recs {
		body := kmsg.Record{OffsetDelta: int32(i), Key: []byte(r.key), Headers: []kmsg.Header{{Key: "h", Value: []byte(r.key)}}}
		if r.value != nil {
			body.Value = []byte(*r.value)
		}
		enc := body.AppendTo(nil)
		raw = binary.AppendVarint(raw, int64(len(enc)-1))
		raw = append(raw, enc[1:]...)
	}
	var attrs int16
	if codec != (kgo.CompressionCodec{}) {
		c, err := kgo.DefaultCompressor(codec)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		out, typ := c.Compress(&buf, raw)
		raw, attrs = append([]byte(nil), out...), int16(typ)
	}
	rb := kmsg.RecordBatch{Magic: 2, Attributes: attrs, LastOffsetDelta: int32(len(recs) - 1),
		FirstTimestamp: ts, MaxTimestamp: ts, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: int32(len(recs)), Records: raw}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b
}

// readRecord is a record as read back: offset, key and value (nil for a
// tombstone).
type readRecord struct {
	offset int64
	key    string
	value  *string
}

// readAll reads a partition from its log start and decodes every record,
// checking every batch's CRC and that batch offsets only grow.
func readAll(t *testing.T, p Partition) []readRecord {
	t.Helper()
	res, err := p.Read(p.Offsets().LogStart, 64<<20, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []readRecord
	dec := kgo.DefaultDecompressor()
	next := int64(-1)
	for data := res.Records; len(data) > 0; {
		h, err := ParseHeader(data)
		if err != nil {
			t.Fatal(err)
		}
		b := data[:h.Size()]
		data = data[h.Size():]
		if want, got := binary.BigEndian.Uint32(b[offCRC:]), crc32.Checksum(b[offAttributes:], castagnoli); want != got {
			t.Fatalf("batch at %d: CRC %08x, computed %08x", binary.BigEndian.Uint64(b), want, got)
		}
		base := int64(binary.BigEndian.Uint64(b))
		if h.Control() {
			next = base + 1
			continue // a transaction marker
		}
		if base < next {
			t.Fatalf("batch at %d after a batch ending at %d", base, next-1)
		}
		next = base + int64(h.LastOffsetDelta) + 1
		err = eachRecord(b, h, dec, func(r compactRecord) {
			var rec kmsg.Record
			if err := rec.ReadFrom(append(binary.AppendVarint(nil, int64(len(r.raw))), r.raw...)); err != nil {
				t.Fatal(err)
			}
			rr := readRecord{offset: r.offset, key: string(r.key)}
			if !r.tombstone {
				rr.value = val(string(rec.Value))
			}
			if string(rec.Headers[0].Value) != rr.key {
				t.Fatalf("offset %d: header %q, want the key %q", r.offset, rec.Headers[0].Value, rr.key)
			}
			out = append(out, rr)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

var codecCycle = []kgo.CompressionCodec{{}, kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}

// compactWorkload appends 10 batches of 4 records over keys k0..k5 (every
// codec), a tombstone for k1 with an old timestamp, one for k2 with a
// fresh one, and a last batch that compaction must not touch. It returns
// every appended record by offset.
func compactWorkload(t *testing.T, p Partition, now time.Time) map[int64]readRecord {
	t.Helper()
	all := make(map[int64]readRecord)
	off := int64(0)
	add := func(b []byte, recs []keyed) {
		if r := appendSync(t, p, b, AppendOptions{Acks: AcksAll}); r.Err != nil || r.BaseOffset != off {
			t.Fatalf("append at %d: %+v", off, r)
		}
		for _, r := range recs {
			all[off] = readRecord{offset: off, key: r.key, value: r.value}
			off++
		}
	}
	old, fresh := now.Add(-48*time.Hour).UnixMilli(), now.Add(-time.Minute).UnixMilli()
	for i := range 10 {
		var recs []keyed
		for j := range 4 {
			n := i*4 + j
			recs = append(recs, keyed{fmt.Sprintf("k%d", n%6), val(fmt.Sprintf("v%d", n))})
		}
		add(keyedBatch(t, codecCycle[i%len(codecCycle)], old, recs...), recs)
	}
	tomb := []keyed{{"k1", nil}}
	add(keyedBatch(t, kgo.CompressionCodec{}, old, tomb...), tomb)
	tomb = []keyed{{"k2", nil}}
	add(keyedBatch(t, kgo.GzipCompression(), fresh, tomb...), tomb)
	last := []keyed{{"k0", val("last")}}
	add(keyedBatch(t, kgo.CompressionCodec{}, fresh, last...), last)
	return all
}

// checkCompacted checks that exactly the records at want remain, as they
// were appended.
func checkCompacted(t *testing.T, p Partition, all map[int64]readRecord, want []int64) {
	t.Helper()
	got := readAll(t, p)
	if len(got) != len(want) {
		t.Fatalf("%d records left %+v, want offsets %v", len(got), got, want)
	}
	for i, r := range got {
		w := all[want[i]]
		if r.offset != w.offset || r.key != w.key || (r.value == nil) != (w.value == nil) || (r.value != nil && *r.value != *w.value) {
			t.Fatalf("record %d: %+v (value %v), want %+v (value %v)", i, r, r.value, w, w.value)
		}
	}
}

var testCompaction = CompactOptions{DeleteRetention: 24 * time.Hour, DirtyRatio: 0.5}

func TestCompactLocal(t *testing.T) {
	storagetest.ForEach(t, func(t *testing.T, open func() storage.Store) {
		now := time.Now()
		p := openLocal(t, open(), nil)
		all := compactWorkload(t, p, now)
		before := p.Offsets()
		res, err := p.Compact(now, testCompaction)
		if err != nil || !res.Ran || res.RecordsRemoved != 37 || res.BytesAfter >= res.BytesBefore {
			t.Fatalf("compaction: %+v, %v", res, err)
		}
		// Latest of k4, k5, k0, k3 below the last batch; the old k1
		// tombstone is gone (with every k1), the fresh k2 tombstone stays;
		// the last batch is untouched.
		want := []int64{34, 35, 36, 39, 41, 42}
		checkCompacted(t, p, all, want)
		if after := p.Offsets(); after != before {
			t.Fatalf("offsets changed: %+v, were %+v", after, before)
		}
		if size := p.Size(); size != res.BytesAfter+int64(len(keyedBatch(t, kgo.CompressionCodec{}, now.UnixMilli(), keyed{"k0", val("last")}))) {
			t.Fatalf("size %d after compaction to %d bytes", size, res.BytesAfter)
		}
		if res, err := p.Compact(now, testCompaction); err != nil || res.Ran {
			t.Fatalf("a second compaction with nothing dirty: %+v, %v", res, err)
		}
		// Offsets inside removed ranges read from the next batch kept.
		if r, err := p.Read(5, 1<<20, true, nil); err != nil || len(r.Records) == 0 || int64(binary.BigEndian.Uint64(r.Records)) < 5 {
			t.Fatalf("read at a compacted offset: %v", err)
		}

		p.Close()
		p = openLocal(t, open(), nil)
		checkCompacted(t, p, all, want)
		if after := p.Offsets(); after != before {
			t.Fatalf("offsets after reopen: %+v, were %+v", after, before)
		}
		recs := []keyed{{"k3", val("new")}}
		if r := appendSync(t, p, keyedBatch(t, kgo.CompressionCodec{}, now.UnixMilli(), recs...), AppendOptions{Acks: AcksAll}); r.BaseOffset != 43 {
			t.Fatalf("append after compaction: %+v", r)
		}
		all[43] = readRecord{offset: 43, key: "k3", value: recs[0].value}
		if res, err := p.Compact(now, testCompaction); err != nil || !res.Ran {
			t.Fatalf("compaction after reopen: %+v, %v", res, err)
		}
		// k0's last record is in the clean part now; k3's newest is in
		// the new last batch.
		checkCompacted(t, p, all, []int64{34, 35, 39, 41, 42, 43})
	})
}

func TestCompactReplicated(t *testing.T) {
	rs := newReplicaSet(t)
	_, p := rs.leader()
	now := time.Now()
	all := compactWorkload(t, p, now)
	rs.waitApplied(43)
	sizeBefore := p.Size()
	for i, r := range rs.parts {
		res, err := r.Compact(now, testCompaction)
		if err != nil || !res.Ran || res.RecordsRemoved != 37 {
			t.Fatalf("replica %d compaction: %+v, %v", i, res, err)
		}
	}
	// Under load the first leader may have stepped down meanwhile; only
	// the leader serves reads.
	_, p = rs.leader()
	checkCompacted(t, p, all, []int64{34, 35, 36, 39, 41, 42})
	if p.Size() >= sizeBefore {
		t.Fatalf("size %d after compaction, %d before", p.Size(), sizeBefore)
	}
	// A replica restarted after compaction replays the rewritten entries
	// into its state and keeps following.
	li, _ := rs.leader()
	f := (li + 1) % len(rs.parts)
	rs.stop(f)
	rs.start(f)
	_, p = rs.leader()
	recs := []keyed{{"k3", val("new")}}
	if r := appendAll(t, p, [][]byte{keyedBatch(t, kgo.CompressionCodec{}, now.UnixMilli(), recs...)}); r[0].Err != nil || r[0].BaseOffset != 43 {
		t.Fatalf("append after compaction: %+v", r)
	}
	all[43] = readRecord{offset: 43, key: "k3", value: recs[0].value}
	rs.waitApplied(44)
	// Every replica serves the same log when it leads.
	for i := range rs.parts {
		// The leader found may step down before it is asked to transfer
		// ("node is not the leader"): ask whoever leads then, again.
		var lastErr error
		deadline := time.Now().Add(10 * time.Second)
		for !rs.parts[i].IsLeader() && time.Now().Before(deadline) {
			_, cur := rs.leader()
			if cur != rs.parts[i] {
				lastErr = cur.r.LeadershipTransferToServer(rs.servers[i].ID, rs.servers[i].Address).Error()
			}
			time.Sleep(5 * time.Millisecond)
		}
		if !rs.parts[i].IsLeader() {
			t.Fatalf("replica %d never led (last transfer: %v)", i, lastErr)
		}
		checkCompacted(t, rs.parts[i], all, []int64{34, 35, 36, 39, 41, 42, 43})
	}
}

// txnKeyedBatch is keyedBatch as a transactional batch of producer pid.
func txnKeyedBatch(t testing.TB, pid int64, seq int32, ts int64, recs ...keyed) []byte {
	b := keyedBatch(t, kgo.CompressionCodec{}, ts, recs...)
	binary.BigEndian.PutUint16(b[offAttributes:], binary.BigEndian.Uint16(b[offAttributes:])|attrTransactional)
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(pid))
	binary.BigEndian.PutUint16(b[offProducerEpoch:], 0)
	binary.BigEndian.PutUint32(b[offBaseSequence:], uint32(seq))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b
}

// appendKeyed appends batch b to p, expects it at offset off, and records
// its records (recs) in all.
func appendKeyed(t *testing.T, p Partition, all map[int64]readRecord, b []byte, off int64, recs ...keyed) {
	t.Helper()
	h, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan AppendResult, 1)
	p.Append(b, h, AppendOptions{Acks: AcksAll}, func(r AppendResult) { ch <- r })
	if r := <-ch; r.Err != nil || r.BaseOffset != off {
		t.Fatalf("append at %d: %+v", off, r)
	}
	for i, r := range recs {
		all[off+int64(i)] = readRecord{offset: off + int64(i), key: r.key, value: r.value}
	}
}

// TestCompactTransactions: compaction removes the records of aborted
// transactions, which are never the latest of their key, and leaves alone
// everything from the last stable offset on, whose transaction may still
// abort; once it commits, its records are the latest.
func TestCompactTransactions(t *testing.T) {
	for _, kind := range []string{"local", "replicated"} {
		t.Run(kind, func(t *testing.T) {
			now := time.Now()
			ts := now.Add(-time.Hour).UnixMilli()
			var p Partition
			settle := func(int64) {}
			if kind == "local" {
				s := storage.NewMemory()
				t.Cleanup(func() { s.Close() })
				p = openLocal(t, s, nil)
			} else {
				rs := newReplicaSet(t)
				_, p = rs.leader()
				settle = rs.waitApplied
			}
			all := map[int64]readRecord{}
			add := func(b []byte, off int64, recs ...keyed) { t.Helper(); appendKeyed(t, p, all, b, off, recs...) }
			opts := CompactOptions{DeleteRetention: 24 * time.Hour}
			add(keyedBatch(t, kgo.CompressionCodec{}, ts, keyed{"a", val("committed")}), 0, keyed{"a", val("committed")})
			add(txnKeyedBatch(t, 5, 0, ts, keyed{"a", val("aborted")}), 1, keyed{"a", val("aborted")})
			add(MarkerBatch(5, 0, false, 0, ts), 2)
			add(keyedBatch(t, kgo.CompressionCodec{}, ts, keyed{"b", val("v1")}), 3, keyed{"b", val("v1")})
			add(txnKeyedBatch(t, 6, 0, ts, keyed{"b", val("pending")}), 4, keyed{"b", val("pending")})
			add(keyedBatch(t, kgo.CompressionCodec{}, ts, keyed{"c", val("x")}), 5, keyed{"c", val("x")})
			add(keyedBatch(t, kgo.CompressionCodec{}, ts, keyed{"c", val("y")}), 6, keyed{"c", val("y")})
			settle(7)
			if res, err := p.Compact(now, opts); err != nil || !res.Ran {
				t.Fatalf("compaction: %+v, %v", res, err)
			}
			// The aborted "a" is gone; "b" v1 stays, the pending one
			// being uncommitted; nothing past the open transaction moved.
			checkCompacted(t, p, all, []int64{0, 3, 4, 5, 6})
			add(MarkerBatch(6, 0, true, 0, ts), 7)
			add(keyedBatch(t, kgo.CompressionCodec{}, ts, keyed{"z", val("last")}), 8, keyed{"z", val("last")})
			settle(9)
			if res, err := p.Compact(now, opts); err != nil || !res.Ran {
				t.Fatalf("second compaction: %+v, %v", res, err)
			}
			checkCompacted(t, p, all, []int64{0, 4, 6, 8})
		})
	}
}

// markers lists the control batches of a partition from its log start:
// offset → number of records (0 for a marker compaction removed and kept
// as an empty batch).
func markers(t *testing.T, p Partition) map[int64]int32 {
	t.Helper()
	res, err := p.Read(p.Offsets().LogStart, 64<<20, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]int32{}
	for data := res.Records; len(data) > 0; {
		h, err := ParseHeader(data)
		if err != nil {
			t.Fatal(err)
		}
		if h.Control() {
			out[int64(binary.BigEndian.Uint64(data))] = h.NumRecords
		}
		data = data[h.Size():]
	}
	return out
}

// TestCompactRemovesMarkers: a transaction marker goes, as with Kafka's
// cleaner, once no record of its transaction is left and it is older than
// delete.retention.ms; an aborted transaction's entry goes with its
// marker, so that read_committed fetches stop listing it (a client would
// otherwise skip its producer's later batches, waiting for a marker that
// is gone). A marker whose transaction still has records, or that is
// recent, stays. A replicated partition keeps its markers but forgets the
// aborted transactions all the same; a replica reopened from its log
// agrees once compaction has run again.
func TestCompactRemovesMarkers(t *testing.T) {
	for _, kind := range []string{"local", "replicated"} {
		t.Run(kind, func(t *testing.T) {
			now := time.Now()
			old, recent := now.Add(-48*time.Hour).UnixMilli(), now.Add(-time.Hour).UnixMilli()
			var p Partition
			settle := func(int64) {}
			var reopen func() Partition
			if kind == "local" {
				s := storage.NewMemory()
				t.Cleanup(func() { s.Close() })
				p = openLocal(t, s, nil)
				reopen = func() Partition {
					if err := p.Close(); err != nil {
						t.Fatal(err)
					}
					return openLocal(t, s, nil)
				}
			} else {
				rs := newReplicaSet(t)
				i, lp := rs.leader()
				p = lp
				settle = rs.waitApplied
				reopen = func() Partition {
					rs.stop(i)
					rs.start(i)
					rs.waitApplied(14)
					return rs.parts[i]
				}
			}
			all := map[int64]readRecord{}
			add := func(b []byte, off int64, recs ...keyed) { t.Helper(); appendKeyed(t, p, all, b, off, recs...) }
			// Aborted, its records removed: the marker goes.
			add(txnKeyedBatch(t, 5, 0, old, keyed{"a", val("aborted")}), 0, keyed{"a", val("aborted")})
			add(MarkerBatch(5, 0, false, 0, old), 1)
			// Committed, its record superseded: the marker goes.
			add(txnKeyedBatch(t, 6, 0, old, keyed{"b", val("v1")}), 2, keyed{"b", val("v1")})
			add(MarkerBatch(6, 0, true, 0, old), 3)
			add(keyedBatch(t, kgo.CompressionCodec{}, old, keyed{"b", val("v2")}), 4, keyed{"b", val("v2")})
			// Committed, its record still the latest: the marker stays.
			add(txnKeyedBatch(t, 7, 0, old, keyed{"c", val("kept")}), 5, keyed{"c", val("kept")})
			add(MarkerBatch(7, 0, true, 0, old), 6)
			// Aborted, its records removed, but the marker is recent.
			add(txnKeyedBatch(t, 8, 0, recent, keyed{"d", val("aborted")}), 7, keyed{"d", val("aborted")})
			add(MarkerBatch(8, 0, false, 0, recent), 8)
			// Producer 5 again, committed later: read_committed must see it.
			add(txnKeyedBatch(t, 5, 1, old, keyed{"e", val("later")}), 9, keyed{"e", val("later")})
			add(MarkerBatch(5, 0, true, 0, old), 10)
			add(keyedBatch(t, kgo.CompressionCodec{}, old, keyed{"f", val("x")}), 11, keyed{"f", val("x")})
			add(keyedBatch(t, kgo.CompressionCodec{}, old, keyed{"f", val("y")}), 12, keyed{"f", val("y")})
			add(keyedBatch(t, kgo.CompressionCodec{}, now.UnixMilli(), keyed{"z", val("last")}), 13, keyed{"z", val("last")})
			settle(14)
			opts := CompactOptions{DeleteRetention: 24 * time.Hour}
			res, err := p.Compact(now, opts)
			if err != nil || !res.Ran {
				t.Fatalf("compaction: %+v, %v", res, err)
			}
			wantRemoved := 2 // at 1 and 3
			if kind == "replicated" {
				wantRemoved = 0
			}
			if res.MarkersRemoved != wantRemoved {
				t.Errorf("%d markers removed, want %d", res.MarkersRemoved, wantRemoved)
			}
			check := func(p Partition, when string) {
				t.Helper()
				checkCompacted(t, p, all, []int64{4, 5, 9, 12, 13})
				got := markers(t, p)
				want := map[int64]int32{6: 1, 8: 1, 10: 1}
				if kind == "replicated" {
					want[1], want[3] = 1, 1 // kept (see compactMarker)
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s: markers (offset: records) %v, want %v", when, got, want)
				}
				r, err := p.ReadCommitted(0, 64<<20, true, nil)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(r.Aborted) != fmt.Sprint([]AbortedTxn{{ProducerID: 8, FirstOffset: 7, LastOffset: 8}}) {
					t.Errorf("%s: aborted transactions %+v, want only producer 8's", when, r.Aborted)
				}
				if off := p.Offsets(); off.LastStable != off.HighWatermark {
					t.Errorf("%s: last stable offset %d, high watermark %d: a transaction was left open", when, off.LastStable, off.HighWatermark)
				}
			}
			check(p, "after compaction")
			if kind == "local" {
				check(reopen(), "reopened")
				return
			}
			// A replica reopened from its log replays the kept abort
			// marker; its next compaction forgets the transaction again.
			rp := reopen().(*Replicated)
			if _, err := rp.Compact(now, opts); err != nil {
				t.Fatal(err)
			}
			if got := rp.fsm.abortedIn(0, 14); fmt.Sprint(got) != fmt.Sprint([]AbortedTxn{{ProducerID: 8, FirstOffset: 7, LastOffset: 8}}) {
				t.Errorf("reopened and compacted: aborted transactions %+v, want only producer 8's", got)
			}
			if v := rp.fsm.view(); v.stable != v.next {
				t.Errorf("reopened: last stable offset %d, next %d: a transaction was left open", v.stable, v.next)
			}
		})
	}
}
