package partition

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker/storage"
	"github.com/pubg1/pubg1/broker/storage/storagetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

var testLog = storage.LogID{Topic: [16]byte{1, 2, 3}, Partition: 7}

func openLocal(t *testing.T, s storage.Store, now func() time.Time) *Local {
	t.Helper()
	p, err := OpenLocal(LocalOptions{Store: s, Log: testLog, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// appendSync appends and waits for the result.
func appendSync(t *testing.T, p Partition, b []byte, opts AppendOptions) AppendResult {
	t.Helper()
	h, err := CheckProduced(b)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan AppendResult, 1)
	p.Append(b, h, opts, func(r AppendResult) { ch <- r })
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("append never completed")
		return AppendResult{}
	}
}

func TestAppendReadRoundTrip(t *testing.T) {
	storagetest.ForEach(t, func(t *testing.T, open func() storage.Store) {
		p := openLocal(t, open(), nil)
		var sent [][]byte
		for i := 0; i < 5; i++ {
			b := makeBatch(t, batchSpec{n: 3, firstTS: int64(1000 + i)})
			r := appendSync(t, p, b, AppendOptions{Acks: AcksAll})
			if r.Err != nil || r.BaseOffset != int64(i*3) {
				t.Fatalf("append %d: %+v", i, r)
			}
			sent = append(sent, b)
		}
		off := p.Offsets()
		if off.LogStart != 0 || off.HighWatermark != 15 || off.LogEnd != 15 {
			t.Fatalf("offsets %+v", off)
		}
		res, err := p.Read(0, 1<<20, true, nil)
		if err != nil || !bytes.Equal(res.Records, bytes.Join(sent, nil)) {
			t.Fatalf("read all: %v, %d bytes", err, len(res.Records))
		}
		// An offset inside a batch returns that whole batch first.
		res, err = p.Read(7, 1<<20, true, nil)
		if err != nil || !bytes.Equal(res.Records, bytes.Join(sent[2:], nil)) {
			t.Fatalf("read from 7: %v", err)
		}
		// maxBytes smaller than one batch: one batch with minOne, none without.
		if res, _ = p.Read(0, 10, true, nil); !bytes.Equal(res.Records, sent[0]) {
			t.Fatal("minOne read did not return exactly the first batch")
		}
		if res, _ = p.Read(0, 10, false, nil); len(res.Records) != 0 {
			t.Fatal("read past maxBytes without minOne")
		}
		if res, err = p.Read(15, 1<<20, true, nil); err != nil || len(res.Records) != 0 {
			t.Fatalf("read at the high watermark: %v %d", err, len(res.Records))
		}
		if _, err = p.Read(16, 1<<20, true, nil); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read past the end: %v", err)
		}
		// Everything survives a reopen.
		p.Close()
		p = openLocal(t, open(), nil)
		if off := p.Offsets(); off.HighWatermark != 15 || off.LogEnd != 15 {
			t.Fatalf("after reopen: %+v", off)
		}
		if res, err = p.Read(0, 1<<20, true, nil); err != nil || !bytes.Equal(res.Records, bytes.Join(sent, nil)) {
			t.Fatalf("read after reopen: %v", err)
		}
		if r := appendSync(t, p, makeBatch(t, batchSpec{n: 1}), AppendOptions{Acks: AcksAll}); r.BaseOffset != 15 {
			t.Fatalf("append after reopen: %+v", r)
		}
	})
}

func TestIdempotentProducer(t *testing.T) {
	storagetest.ForEach(t, func(t *testing.T, open func() storage.Store) {
		p := openLocal(t, open(), nil)
		const pid = 77
		b0 := makeBatch(t, batchSpec{n: 2, producerID: pid, epoch: 0, seq: 0})
		if r := appendSync(t, p, b0, AppendOptions{}); r.Err != nil || r.BaseOffset != 0 {
			t.Fatalf("first: %+v", r)
		}
		b1 := makeBatch(t, batchSpec{n: 3, producerID: pid, epoch: 0, seq: 2})
		if r := appendSync(t, p, b1, AppendOptions{}); r.Err != nil || r.BaseOffset != 2 {
			t.Fatalf("second: %+v", r)
		}
		// A retry of the first batch gets its original offset, and nothing
		// is written again.
		if r := appendSync(t, p, makeBatch(t, batchSpec{n: 2, producerID: pid, epoch: 0, seq: 0}), AppendOptions{}); r.Err != nil || r.BaseOffset != 0 {
			t.Fatalf("retry: %+v", r)
		}
		if off := p.Offsets(); off.LogEnd != 5 {
			t.Fatalf("retry was written: %+v", off)
		}
		// A gap is refused.
		if r := appendSync(t, p, makeBatch(t, batchSpec{n: 1, producerID: pid, epoch: 0, seq: 9}), AppendOptions{}); !errors.Is(r.Err, ErrOutOfOrderSequence) {
			t.Fatalf("gap: %+v", r)
		}
		// A new epoch must start at sequence 0; an old epoch is fenced.
		if r := appendSync(t, p, makeBatch(t, batchSpec{n: 1, producerID: pid, epoch: 1, seq: 5}), AppendOptions{}); !errors.Is(r.Err, ErrOutOfOrderSequence) {
			t.Fatalf("new epoch not at 0: %+v", r)
		}
		if r := appendSync(t, p, makeBatch(t, batchSpec{n: 1, producerID: pid, epoch: 1, seq: 0}), AppendOptions{}); r.Err != nil || r.BaseOffset != 5 {
			t.Fatalf("new epoch: %+v", r)
		}
		if r := appendSync(t, p, makeBatch(t, batchSpec{n: 1, producerID: pid, epoch: 0, seq: 5}), AppendOptions{}); !errors.Is(r.Err, ErrInvalidProducerEpoch) {
			t.Fatalf("old epoch: %+v", r)
		}
		// Producer state survives a reopen: the retry is still recognised.
		p.Close()
		p = openLocal(t, open(), nil)
		if r := appendSync(t, p, makeBatch(t, batchSpec{n: 1, producerID: pid, epoch: 1, seq: 0}), AppendOptions{}); r.Err != nil || r.BaseOffset != 5 {
			t.Fatalf("retry after reopen: %+v", r)
		}
		if r := appendSync(t, p, makeBatch(t, batchSpec{n: 1, producerID: pid, epoch: 1, seq: 1}), AppendOptions{}); r.Err != nil || r.BaseOffset != 6 {
			t.Fatalf("next after reopen: %+v", r)
		}
		// An unknown producer may start at any sequence.
		if r := appendSync(t, p, makeBatch(t, batchSpec{n: 1, producerID: 1234, epoch: 3, seq: 40}), AppendOptions{}); r.Err != nil {
			t.Fatalf("unknown producer: %+v", r)
		}
	})
}

func TestPipelinedAppendsKeepOrder(t *testing.T) {
	storagetest.ForEach(t, func(t *testing.T, open func() storage.Store) {
		p := openLocal(t, open(), nil)
		const n = 200
		var wg sync.WaitGroup
		results := make([]AppendResult, n)
		for i := 0; i < n; i++ {
			b := makeBatch(t, batchSpec{n: 2, producerID: 5, epoch: 0, seq: int32(2 * i)})
			h, _ := CheckProduced(b)
			wg.Add(1)
			p.Append(b, h, AppendOptions{}, func(r AppendResult) { results[i] = r; wg.Done() })
		}
		wg.Wait()
		for i, r := range results {
			if r.Err != nil || r.BaseOffset != int64(2*i) {
				t.Fatalf("append %d: %+v", i, r)
			}
		}
	})
}

func TestLogAppendTime(t *testing.T) {
	storagetest.ForEach(t, func(t *testing.T, open func() storage.Store) {
		now := time.UnixMilli(1_700_000_000_000)
		p := openLocal(t, open(), func() time.Time { return now })
		r := appendSync(t, p, makeBatch(t, batchSpec{n: 2, firstTS: 5}), AppendOptions{LogAppendTime: true})
		if r.LogAppendTime != now.UnixMilli() {
			t.Fatalf("result %+v", r)
		}
		res, _ := p.Read(0, 1<<20, true, nil)
		h, err := CheckProduced(res.Records)
		if err != nil || h.MaxTimestamp != now.UnixMilli() || h.Attributes&attrLogAppendTime == 0 {
			t.Fatalf("stored batch %+v %v", h, err)
		}
		if off, ts, err := p.OffsetForTime(now.UnixMilli()); err != nil || off != 0 || ts != now.UnixMilli() {
			t.Fatalf("offset for time: %d %d %v", off, ts, err)
		}
	})
}

func TestOffsetForTimeAndMaxTimestamp(t *testing.T) {
	storagetest.ForEach(t, func(t *testing.T, open func() storage.Store) {
		p := openLocal(t, open(), nil)
		appendSync(t, p, makeBatch(t, batchSpec{n: 3, firstTS: 100, tsStep: 10}), AppendOptions{}) // 0..2: 100,110,120
		appendSync(t, p, makeBatch(t, batchSpec{n: 3, firstTS: 500, tsStep: 1}), AppendOptions{})  // 3..5: 500..502
		appendSync(t, p, makeBatch(t, batchSpec{n: 2, firstTS: 200, tsStep: 0}), AppendOptions{})  // 6..7: 200
		for _, tc := range []struct{ ts, off, found int64 }{
			{0, 0, 100}, {105, 1, 110}, {120, 2, 120}, {121, 3, 500}, {502, 5, 502}, {503, -1, -1},
		} {
			off, found, err := p.OffsetForTime(tc.ts)
			if err != nil || off != tc.off || found != tc.found {
				t.Errorf("ts %d: got %d@%d %v, want %d@%d", tc.ts, off, found, err, tc.off, tc.found)
			}
		}
		if off, ts, err := p.MaxTimestamp(); err != nil || off != 5 || ts != 502 {
			t.Fatalf("max timestamp: %d %d %v", off, ts, err)
		}
	})
}

func TestRetention(t *testing.T) {
	storagetest.ForEach(t, func(t *testing.T, open func() storage.Store) {
		p := openLocal(t, open(), nil)
		now := time.Now()
		old := now.Add(-time.Hour).UnixMilli()
		var size int64
		for i := 0; i < 4; i++ {
			b := makeBatch(t, batchSpec{n: 2, firstTS: old})
			size = int64(len(b))
			appendSync(t, p, b, AppendOptions{})
		}
		for i := 0; i < 2; i++ {
			appendSync(t, p, makeBatch(t, batchSpec{n: 2, firstTS: now.UnixMilli()}), AppendOptions{})
		}
		// By size: keep at most three batches.
		start, err := p.EnforceRetention(now, -1, 3*size)
		if err != nil || start != 6 || p.Offsets().LogStart != 6 {
			t.Fatalf("size retention: start %d %v", start, err)
		}
		if _, err := p.Read(5, 1<<20, true, nil); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read below log start: %v", err)
		}
		// By time: the remaining old batch goes, the new ones stay.
		if start, err = p.EnforceRetention(now, 30*time.Minute, -1); err != nil || start != 8 {
			t.Fatalf("time retention: %d %v", start, err)
		}
		res, err := p.Read(8, 1<<20, true, nil)
		if err != nil || len(res.Records) != 2*int(size) {
			t.Fatalf("read after retention: %v %d", err, len(res.Records))
		}
		p.Close()
		p = openLocal(t, open(), nil)
		if off := p.Offsets(); off.LogStart != 8 || off.LogEnd != 12 {
			t.Fatalf("after reopen: %+v", off)
		}
		// DeleteRecords past the high watermark is refused.
		if err := p.SetLogStart(13); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("set log start past hwm: %v", err)
		}
		if err := p.SetLogStart(12); err != nil || p.Offsets().LogStart != 12 {
			t.Fatalf("set log start: %v", err)
		}
		if r := appendSync(t, p, makeBatch(t, batchSpec{n: 1}), AppendOptions{}); r.BaseOffset != 12 || r.LogStartOffset != 12 {
			t.Fatalf("append after truncation: %+v", r)
		}
	})
}

func TestWatchWakesOnCommit(t *testing.T) {
	storagetest.ForEach(t, func(t *testing.T, open func() storage.Store) {
		p := openLocal(t, open(), nil)
		ch := make(chan struct{}, 1)
		p.Watch(ch)
		defer p.Unwatch(ch)
		b := makeBatch(t, batchSpec{n: 1})
		h, _ := CheckProduced(b)
		done := make(chan AppendResult, 1)
		p.Append(b, h, AppendOptions{}, func(r AppendResult) { done <- r })
		defer func() { <-done }()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("no wake-up")
		}
	})
}

func TestDeleteRemovesData(t *testing.T) {
	storagetest.ForEach(t, func(t *testing.T, open func() storage.Store) {
		s := open()
		p := openLocal(t, s, nil)
		appendSync(t, p, makeBatch(t, batchSpec{n: 1, producerID: 9, epoch: 0, seq: 0}), AppendOptions{})
		if err := p.Delete(); err != nil {
			t.Fatal(err)
		}
		p = openLocal(t, s, nil)
		if off := p.Offsets(); off.LogEnd != 0 || len(p.producers) != 0 {
			t.Fatalf("data left after delete: %+v, %d producers", off, len(p.producers))
		}
	})
}

// A closed store answers a write on the submitter's goroutine; an append
// must still return, with an error, and the partition must refuse the next.
func TestAppendOnClosedStore(t *testing.T) {
	storagetest.ForEach(t, func(t *testing.T, open func() storage.Store) {
		s := open()
		p := openLocal(t, s, nil)
		if r := appendSync(t, p, makeBatch(t, batchSpec{n: 2}), AppendOptions{Acks: AcksAll}); r.Err != nil {
			t.Fatal(r.Err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			b := makeBatch(t, batchSpec{n: 2})
			h, err := CheckProduced(b)
			if err != nil {
				t.Fatal(err)
			}
			res := make(chan AppendResult, 1)
			returned := make(chan struct{})
			go func() {
				defer close(returned)
				p.Append(b, h, AppendOptions{Acks: AcksAll}, func(r AppendResult) { res <- r })
			}()
			select {
			case <-returned:
			case <-time.After(5 * time.Second):
				t.Fatalf("append %d on a closed store did not return", i)
			}
			r := <-res
			if !errors.Is(r.Err, ErrStorage) || !errors.Is(r.Err, storage.ErrClosed) {
				t.Fatalf("append %d on a closed store: %+v", i, r)
			}
		}
		if off := p.Offsets(); off.HighWatermark != 2 {
			t.Fatalf("offsets after the failed append: %+v", off)
		}
	})
}
