package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(dir) // TestBadgerCrash's child; it never returns
		return
	}
	goleak.VerifyTestMain(m)
}

// storeFactories lists the implementations every shared test runs over.
func storeFactories() []struct {
	name string
	open func(t *testing.T) Store
} {
	return []struct {
		name string
		open func(t *testing.T) Store
	}{
		{"badger", func(t *testing.T) Store { return openTestBadger(t, t.TempDir()) }},
		{"memory", func(t *testing.T) Store {
			s := NewMemory()
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
}

func forEachStore(t *testing.T, fn func(t *testing.T, s Store)) {
	for _, f := range storeFactories() {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			fn(t, f.open(t))
		})
	}
}

// testBadgerOptions keeps a test store small: tests open many of them. The
// small memtable also makes large rounds exceed Badger's transaction limit.
func testBadgerOptions(dir string) BadgerOptions {
	return BadgerOptions{
		Dir:              dir,
		Logger:           zerolog.Nop(),
		MemTableSize:     4 << 20,
		NumMemtables:     2,
		BlockCacheSize:   1 << 20,
		ValueLogFileSize: 16 << 20,
	}
}

func openTestBadger(t *testing.T, dir string) *Badger {
	t.Helper()
	s, err := OpenBadger(testBadgerOptions(dir))
	if err != nil {
		t.Fatalf("OpenBadger: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// submitWait submits w and returns the error passed to its Done.
func submitWait(t *testing.T, s Store, w *Write) error {
	t.Helper()
	ch := make(chan error, 1)
	w.Done = func(err error) { ch <- err }
	s.Submit(w)
	select {
	case err := <-ch:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Done not called within 30s")
		return nil
	}
}

func mustSubmit(t *testing.T, s Store, w *Write) {
	t.Helper()
	if err := submitWait(t, s, w); err != nil {
		t.Fatalf("Submit: %v", err)
	}
}

func testLog(topic byte, partition int32) LogID {
	var id LogID
	id.Topic[0] = topic
	id.Partition = partition
	return id
}

// batch makes a batch of records [base, base+count) with size bytes of data
// derived from the log and offsets.
func batch(log LogID, base int64, count int64, size int) Batch {
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(base), uint64(log.Partition)^uint64(log.Topic[0])<<32^uint64(log.Topic[15])<<40))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return Batch{
		Log: log,
		Meta: BatchMeta{
			BaseOffset:   base,
			LastOffset:   base + count - 1,
			MaxTimestamp: 1_700_000_000_000 + base,
			Size:         int32(size),
		},
		Data: data,
	}
}

type scanned struct {
	meta BatchMeta
	data []byte
}

func scanAll(t *testing.T, s Store, log LogID, from int64) []scanned {
	t.Helper()
	var out []scanned
	if err := s.Scan(log, from, func(m BatchMeta, data []byte) bool {
		out = append(out, scanned{m, bytes.Clone(data)})
		return true
	}); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

func indexAll(t *testing.T, s Store, log LogID) []BatchMeta {
	t.Helper()
	var out []BatchMeta
	if err := s.Index(log, func(m BatchMeta) bool {
		out = append(out, m)
		return true
	}); err != nil {
		t.Fatalf("Index: %v", err)
	}
	return out
}

func checkBatches(t *testing.T, got []scanned, want []Batch) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d batches, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].meta != want[i].Meta {
			t.Errorf("batch %d: meta %+v, want %+v", i, got[i].meta, want[i].Meta)
		}
		if !bytes.Equal(got[i].data, want[i].Data) {
			t.Errorf("batch %d (offset %d): data differs", i, want[i].Meta.BaseOffset)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		log := testLog(1, 0)
		// Sizes on both sides of the value threshold, and empty data.
		want := []Batch{
			batch(log, 0, 10, 100),
			batch(log, 10, 5, 16<<10),
			batch(log, 15, 1, 0),
			batch(log, 16, 100, 1<<20),
			batch(log, 116, 1, 1023),
			batch(log, 117, 1, 1024),
		}
		mustSubmit(t, s, &Write{Batches: want[:2]})
		mustSubmit(t, s, &Write{Batches: want[2:]})
		checkBatches(t, scanAll(t, s, log, 0), want)

		// fn returning false stops the scan.
		n := 0
		if err := s.Scan(log, 0, func(BatchMeta, []byte) bool { n++; return n < 2 }); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("scan stopped after %d calls, want 2", n)
		}
	})
}

func TestScanFromMiddle(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		log := testLog(1, 3)
		var bs []Batch
		for base := int64(0); base < 40; base += 10 {
			bs = append(bs, batch(log, base, 10, 2000))
		}
		mustSubmit(t, s, &Write{Batches: bs})
		for _, tc := range []struct {
			from  int64
			first int // index into bs, len(bs) for none
		}{
			{-5, 0}, {0, 0}, {9, 0}, {10, 1}, {15, 1}, {19, 1}, {20, 2}, {39, 3}, {40, 4}, {1 << 62, 4},
		} {
			got := scanAll(t, s, log, tc.from)
			checkBatches(t, got, bs[tc.first:])
		}
	})
}

func TestScanLogsIsolated(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		var prefixed LogID // shares all but the last topic byte with testLog(1, x)
		prefixed.Topic[0], prefixed.Topic[15] = 1, 1
		logs := []LogID{
			testLog(1, 0), testLog(1, 1), testLog(1, 256), testLog(1, 257),
			testLog(1, 1<<24|1), testLog(1, -1), testLog(2, 1), prefixed,
			{Topic: prefixed.Topic, Partition: 256},
		}
		var w Write
		want := make(map[LogID][]Batch)
		for i, log := range logs {
			for j := range int64(3) {
				b := batch(log, j*10, 10, 200+i*700)
				w.Batches = append(w.Batches, b)
				want[log] = append(want[log], b)
			}
		}
		// Shuffled so that stored order cannot come from submission order.
		rand.Shuffle(len(w.Batches), func(i, j int) { w.Batches[i], w.Batches[j] = w.Batches[j], w.Batches[i] })
		mustSubmit(t, s, &w)
		for _, log := range logs {
			checkBatches(t, scanAll(t, s, log, 0), want[log])
			checkBatches(t, scanAll(t, s, log, 15), want[log][1:])
			if got := indexAll(t, s, log); len(got) != 3 {
				t.Errorf("log %v: index has %d batches, want 3", log, len(got))
			}
		}
		if got := scanAll(t, s, testLog(1, 2), 0); len(got) != 0 {
			t.Errorf("empty log scanned %d batches", len(got))
		}
	})
}

func TestIndexMeta(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		log := testLog(7, 7)
		metas := []BatchMeta{
			{BaseOffset: 0, LastOffset: 0, MaxTimestamp: -1, Size: 0},
			{BaseOffset: 1, LastOffset: 1<<31 + 5, MaxTimestamp: 0, Size: 1},
			{BaseOffset: 1<<40 + 1, LastOffset: 1<<62 - 1, MaxTimestamp: 1<<63 - 1, Size: 1<<31 - 1},
		}
		var w Write
		for _, m := range metas {
			w.Batches = append(w.Batches, Batch{Log: log, Meta: m, Data: []byte("x")})
		}
		mustSubmit(t, s, &w)
		got := indexAll(t, s, log)
		if len(got) != len(metas) {
			t.Fatalf("index has %d batches, want %d", len(got), len(metas))
		}
		for i := range metas {
			if got[i] != metas[i] {
				t.Errorf("meta %d: %+v, want %+v", i, got[i], metas[i])
			}
		}
		n := 0
		if err := s.Index(log, func(BatchMeta) bool { n++; return false }); err != nil || n != 1 {
			t.Errorf("Index stopping early: %d calls, err %v", n, err)
		}
	})
}

func TestDeleteBatches(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		log, other := testLog(1, 1), testLog(1, 2)
		// More batches than one delete transaction takes.
		const n = 3*deleteChunk + 10
		var bs, os []Batch
		for i := range int64(n) {
			bs = append(bs, batch(log, i*10, 10, 64))
		}
		for i := range int64(3) {
			os = append(os, batch(other, i*10, 10, 1500))
		}
		mustSubmit(t, s, &Write{Batches: append(bs[:len(bs):len(bs)], os...)})

		if err := s.DeleteBatches(log, 0); err != nil {
			t.Fatal(err)
		}
		checkBatches(t, scanAll(t, s, log, 0), bs)
		if err := s.DeleteBatches(log, 35); err != nil { // 35 is inside the 4th batch
			t.Fatal(err)
		}
		checkBatches(t, scanAll(t, s, log, 0), bs[3:])
		cut := int64(n-5)*10 + 3
		if err := s.DeleteBatches(log, cut); err != nil {
			t.Fatal(err)
		}
		checkBatches(t, scanAll(t, s, log, 0), bs[n-5:])
		if got := indexAll(t, s, log); len(got) != 5 || got[0] != bs[n-5].Meta {
			t.Errorf("index after delete: %d batches, first %+v", len(got), got)
		}
		checkBatches(t, scanAll(t, s, other, 0), os)

		// New batches after a delete land after the survivors.
		nb := batch(log, int64(n)*10, 10, 64)
		mustSubmit(t, s, &Write{Batches: []Batch{nb}})
		checkBatches(t, scanAll(t, s, log, 0), append(bs[n-5:], nb))

		if err := s.DropLog(log); err != nil {
			t.Fatal(err)
		}
		if got := scanAll(t, s, log, 0); len(got) != 0 {
			t.Errorf("scan after DropLog: %d batches", len(got))
		}
		checkBatches(t, scanAll(t, s, other, 0), os)
		if err := s.DropLog(log); err != nil {
			t.Errorf("DropLog of an empty log: %v", err)
		}
	})
}

func TestDropLogLarge(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		log := testLog(3, 0)
		var bs []Batch
		for i := range int64(2*deleteChunk + 1) {
			bs = append(bs, batch(log, i, 1, 10))
		}
		mustSubmit(t, s, &Write{Batches: bs})
		if err := s.DropLog(log); err != nil {
			t.Fatal(err)
		}
		if got := indexAll(t, s, log); len(got) != 0 {
			t.Errorf("index after DropLog: %d batches", len(got))
		}
	})
}

func TestKV(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		mustSubmit(t, s, &Write{
			KVs: []KV{
				{Key: []byte("a"), Value: []byte("1")},
				{Key: []byte("ab"), Value: []byte("2")},
				{Key: []byte("b"), Value: []byte("3")},
				{Key: []byte("big"), Value: bytes.Repeat([]byte("v"), 4000)}, // in the value log
				{Key: []byte("empty"), Value: []byte{}},
				{Key: []byte("gone"), Value: []byte("x")},
			},
			// A batch in the same write must not show up in Range.
			Batches: []Batch{batch(testLog(1, 0), 0, 1, 10)},
		})
		mustSubmit(t, s, &Write{KVs: []KV{
			{Key: []byte("gone"), Value: nil},
			{Key: []byte("a"), Value: []byte("1b")},
		}})

		for k, want := range map[string]string{"a": "1b", "ab": "2", "b": "3", "big": string(bytes.Repeat([]byte("v"), 4000)), "empty": ""} {
			v, err := s.Get([]byte(k))
			if err != nil || string(v) != want {
				t.Errorf("Get(%q) = %q, %v; want %q", k, v, err, want)
			}
		}
		for _, k := range []string{"gone", "missing", ""} {
			if _, err := s.Get([]byte(k)); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(%q) err = %v, want ErrNotFound", k, err)
			}
		}

		rangeKeys := func(prefix string, limit int) []string {
			var keys []string
			if err := s.Range([]byte(prefix), func(k, v []byte) bool {
				keys = append(keys, string(k)+"="+string(v[:min(len(v), 2)]))
				return len(keys) < limit
			}); err != nil {
				t.Fatal(err)
			}
			return keys
		}
		for _, tc := range []struct {
			prefix string
			limit  int
			want   string
		}{
			{"a", 100, "[a=1b ab=2]"},
			{"b", 100, "[b=3 big=vv]"},
			{"", 100, "[a=1b ab=2 b=3 big=vv empty=]"},
			{"", 2, "[a=1b ab=2]"},
			{"c", 100, "[]"},
			{"gone", 100, "[]"},
		} {
			if got := fmt.Sprint(rangeKeys(tc.prefix, tc.limit)); got != tc.want {
				t.Errorf("Range(%q) = %s, want %s", tc.prefix, got, tc.want)
			}
		}
	})
}

func TestCallerMayReuseBuffers(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		log := testLog(1, 0)
		b := batch(log, 0, 1, 100)
		want := bytes.Clone(b.Data)
		key, val := []byte("key"), []byte("value")
		mustSubmit(t, s, &Write{Batches: []Batch{b}, KVs: []KV{{Key: key, Value: val}}})
		clear(b.Data)
		copy(key, "xxx")
		copy(val, "xxxxx")
		if got := scanAll(t, s, log, 0); len(got) != 1 || !bytes.Equal(got[0].data, want) {
			t.Errorf("stored batch changed with the caller's buffer")
		}
		if v, err := s.Get([]byte("key")); err != nil || string(v) != "value" {
			t.Errorf("Get = %q, %v", v, err)
		}
	})
}

func TestInvalidWrite(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		log := testLog(1, 0)
		bad := []*Write{
			{Batches: []Batch{{Log: log, Meta: BatchMeta{BaseOffset: -1, LastOffset: 0}}}},
			{Batches: []Batch{{Log: log, Meta: BatchMeta{BaseOffset: 5, LastOffset: 4}}}},
			{KVs: []KV{{Key: make([]byte, maxKVKeyLen+1), Value: []byte("v")}}},
		}
		good := batch(log, 0, 1, 10)
		errs := make([]error, len(bad)+1)
		var wg sync.WaitGroup
		for i, w := range append(bad, &Write{Batches: []Batch{good}}) {
			wg.Add(1)
			w.Done = func(err error) { errs[i] = err; wg.Done() }
			s.Submit(w)
		}
		wg.Wait()
		for i := range bad {
			if !errors.Is(errs[i], ErrInvalid) {
				t.Errorf("bad write %d: err %v, want ErrInvalid", i, errs[i])
			}
		}
		if errs[len(bad)] != nil {
			t.Errorf("valid write after invalid ones: %v", errs[len(bad)])
		}
		checkBatches(t, scanAll(t, s, log, 0), []Batch{good})
	})
}

// TestDoneOrder checks that Done runs in submission order across
// concurrent submitters, and that each Write is visible once Done runs.
func TestDoneOrder(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		const submitters, perSubmitter = 8, 400
		var (
			mu      sync.Mutex // orders Submit calls, so seq is submission order
			seq     int
			doneSeq atomic.Int64
			bad     atomic.Int64
			wg      sync.WaitGroup
		)
		doneSeq.Store(-1)
		for g := range submitters {
			wg.Go(func() {
				log := testLog(9, int32(g))
				for i := range perSubmitter {
					w := &Write{Batches: []Batch{batch(log, int64(i), 1, 50+i%3*1000)}}
					if i%10 == 0 {
						w.KVs = []KV{{Key: fmt.Appendf(nil, "g%d", g), Value: fmt.Appendf(nil, "%d", i)}}
					}
					mu.Lock()
					mine := seq
					seq++
					w.Done = func(err error) {
						if err != nil || !doneSeq.CompareAndSwap(int64(mine-1), int64(mine)) {
							bad.Add(1)
						}
					}
					s.Submit(w)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if err := submitWait(t, s, &Write{}); err != nil {
			t.Fatal(err)
		}
		if n := bad.Load(); n != 0 {
			t.Fatalf("%d Done calls out of order or failed", n)
		}
		if got := doneSeq.Load(); got != submitters*perSubmitter-1 {
			t.Fatalf("last Done seq %d, want %d", got, submitters*perSubmitter-1)
		}
		for g := range submitters {
			if got := indexAll(t, s, testLog(9, int32(g))); len(got) != perSubmitter {
				t.Errorf("submitter %d: %d batches stored, want %d", g, len(got), perSubmitter)
			}
		}
	})
}

func TestBarrier(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		log := testLog(4, 0)
		const n = 2000
		var acked atomic.Int64
		for i := range int64(n) {
			s.Submit(&Write{
				Batches: []Batch{batch(log, i, 1, 3000)},
				Done: func(err error) {
					if err == nil {
						acked.Add(1)
					}
				},
			})
		}
		var seenAtBarrier int64
		done := make(chan error, 1)
		s.Submit(&Write{Done: func(err error) {
			seenAtBarrier = acked.Load()
			done <- err
		}})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if seenAtBarrier != n {
			t.Fatalf("barrier Done ran after %d of %d earlier writes", seenAtBarrier, n)
		}
		if got := indexAll(t, s, log); len(got) != n {
			t.Fatalf("%d batches visible after barrier, want %d", len(got), n)
		}
		// A barrier on an idle store returns too.
		if err := submitWait(t, s, &Write{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLargeRounds submits more than one Badger transaction holds (with the
// test's small memtable) without waiting, so rounds are split.
func TestLargeRounds(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		log := testLog(5, 0)
		const writes, perWrite = 300, 40
		var failed atomic.Int64
		var wg sync.WaitGroup
		for i := range writes {
			w := &Write{}
			for j := range perWrite {
				off := int64(i*perWrite + j)
				w.Batches = append(w.Batches, batch(log, off, 1, 100+j%2*2000))
				w.KVs = append(w.KVs, KV{Key: fmt.Appendf(nil, "large/%08d", off), Value: []byte("v")})
			}
			wg.Add(1)
			w.Done = func(err error) {
				if err != nil {
					failed.Add(1)
					t.Errorf("write %d: %v", i, err)
				}
				wg.Done()
			}
			s.Submit(w)
		}
		wg.Wait()
		if got := indexAll(t, s, log); len(got) != writes*perWrite {
			t.Fatalf("%d batches stored, want %d", len(got), writes*perWrite)
		}
		n := 0
		if err := s.Range([]byte("large/"), func(k, v []byte) bool { n++; return true }); err != nil || n != writes*perWrite {
			t.Fatalf("Range found %d keys (err %v), want %d", n, err, writes*perWrite)
		}
	})
}

func TestClosed(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		log := testLog(1, 0)
		// Writes queued before Close are committed, not dropped.
		var wg sync.WaitGroup
		var errs [200]error
		for i := range errs {
			wg.Add(1)
			s.Submit(&Write{Batches: []Batch{batch(log, int64(i), 1, 2000)}, Done: func(err error) {
				errs[i] = err
				wg.Done()
			}})
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("write %d queued before Close: %v", i, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}

		called := false
		s.Submit(&Write{Batches: []Batch{batch(log, 500, 1, 10)}, Done: func(err error) {
			called = true
			if !errors.Is(err, ErrClosed) {
				t.Errorf("Submit after Close: %v, want ErrClosed", err)
			}
		}})
		if !called {
			t.Error("Submit after Close did not call Done before returning")
		}
		s.Submit(&Write{}) // nil Done must not panic

		checks := map[string]error{
			"Scan":          s.Scan(log, 0, func(BatchMeta, []byte) bool { return true }),
			"Index":         s.Index(log, func(BatchMeta) bool { return true }),
			"DeleteBatches": s.DeleteBatches(log, 10),
			"DropLog":       s.DropLog(log),
			"Range":         s.Range(nil, func(k, v []byte) bool { return true }),
		}
		_, checks["Get"] = s.Get([]byte("k"))
		for name, err := range checks {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: %v, want ErrClosed", name, err)
			}
		}
	})
}

// TestConcurrentClose races Submit against Close: every Done runs exactly
// once, with nil or ErrClosed.
func TestConcurrentClose(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		var calls, bad atomic.Int64
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 300 {
					s.Submit(&Write{Batches: []Batch{batch(testLog(1, int32(g)), int64(i), 1, 100)}, Done: func(err error) {
						calls.Add(1)
						if err != nil && !errors.Is(err, ErrClosed) {
							bad.Add(1)
						}
					}})
				}
			})
		}
		for calls.Load() == 0 {
			runtime.Gosched() // close while submitters are mid-stream
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if calls.Load() != 1200 || bad.Load() != 0 {
			t.Fatalf("%d Done calls (want 1200), %d unexpected errors", calls.Load(), bad.Load())
		}
	})
}

func TestKeyBounds(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		if _, _, ok, err := s.KeyBounds([]byte("r/")); ok || err != nil {
			t.Fatalf("empty store: ok %v err %v", ok, err)
		}
		var kvs []KV
		for _, k := range []string{"r/a/\x00\x01", "r/a/\x00\x05", "r/a/\xff\xfe", "r/b/\x00", "r/", "q/z"} {
			kvs = append(kvs, KV{Key: []byte(k), Value: bytes.Repeat([]byte("v"), 2000)})
		}
		// A batch key must not count: batches live in their own namespace.
		mustSubmit(t, s, &Write{KVs: kvs, Batches: []Batch{batch(testLog(1, 0), 0, 1, 10)}})
		for _, tc := range []struct{ prefix, first, last string }{
			{"r/a/", "r/a/\x00\x01", "r/a/\xff\xfe"},
			{"r/b/", "r/b/\x00", "r/b/\x00"},
			{"r/", "r/", "r/b/\x00"},
			{"q", "q/z", "q/z"},
		} {
			first, last, ok, err := s.KeyBounds([]byte(tc.prefix))
			if err != nil || !ok || string(first) != tc.first || string(last) != tc.last {
				t.Errorf("prefix %q: %q %q %v %v, want %q %q", tc.prefix, first, last, ok, err, tc.first, tc.last)
			}
		}
		mustSubmit(t, s, &Write{KVs: []KV{{Key: []byte("r/b/\x00")}}})
		if _, _, ok, _ := s.KeyBounds([]byte("r/b/")); ok {
			t.Error("deleted key still bounds its prefix")
		}
	})
}
