package storage

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
)

func openBenchBadger(b *testing.B) *Badger {
	b.Helper()
	o := DefaultBadgerOptions(b.TempDir(), zerolog.Nop())
	o.GCInterval = -1
	s, err := OpenBadger(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkSubmit measures group-commit throughput. Each submitter keeps up
// to inflight Writes outstanding, like a connection with pipelined produce
// requests (inflight 1: a client that waits for every ack). One Write is
// 16 KiB of batches: one batch of 16 KiB, or 160 batches of 100 bytes.
func BenchmarkSubmit(b *testing.B) {
	shapes := []struct {
		name    string
		batches int
		size    int
	}{
		{"16KiB", 1, 16 << 10},
		{"100Bx160", 160, 100},
	}
	for _, shape := range shapes {
		for _, submitters := range []int{1, 8} {
			for _, inflight := range []int{1, 16} {
				name := fmt.Sprintf("%s/submitters=%d/inflight=%d", shape.name, submitters, inflight)
				b.Run(name, func(b *testing.B) {
					benchSubmit(b, submitters, inflight, shape.batches, shape.size)
				})
			}
		}
	}
}

func benchSubmit(b *testing.B, submitters, inflight, batches, size int) {
	s := openBenchBadger(b)
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b.SetBytes(int64(batches * size))
	b.ReportAllocs()
	b.ResetTimer()

	var next atomic.Int64 // Writes handed out so far
	var failed atomic.Int64
	var wg sync.WaitGroup
	for g := range submitters {
		wg.Go(func() {
			log := testLog(8, int32(g))
			sem := make(chan struct{}, inflight)
			off := int64(0)
			for next.Add(1) <= int64(b.N) {
				sem <- struct{}{}
				w := &Write{Batches: make([]Batch, batches)}
				for i := range w.Batches {
					w.Batches[i] = Batch{Log: log, Meta: BatchMeta{BaseOffset: off, LastOffset: off, Size: int32(size)}, Data: data}
					off++
				}
				w.Done = func(err error) {
					if err != nil {
						failed.Add(1)
					}
					<-sem
				}
				s.Submit(w)
			}
			for range inflight {
				sem <- struct{}{}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if n := failed.Load(); n != 0 {
		b.Fatalf("%d writes failed", n)
	}
}

// BenchmarkScan reads back a log of batchSize batches, comparing iterator
// value prefetching with plain zero-copy reads from the mmapped value log.
func BenchmarkScan(b *testing.B) {
	for _, batchSize := range []int{16 << 10, 256 << 10, 1 << 20} {
		for _, prefetch := range []bool{false, true} {
			b.Run(fmt.Sprintf("batch=%dKiB/prefetch=%t", batchSize>>10, prefetch), func(b *testing.B) {
				benchScan(b, batchSize, prefetch)
			})
		}
	}
}

func benchScan(b *testing.B, batchSize int, prefetch bool) {
	const total = 128 << 20
	s := openBenchBadger(b)
	s.prefetch = prefetch
	log := testLog(8, 0)
	data := make([]byte, batchSize)
	n := total / batchSize
	var w Write
	for i := range n {
		w.Batches = append(w.Batches, Batch{Log: log, Meta: BatchMeta{BaseOffset: int64(i), LastOffset: int64(i), Size: int32(batchSize)}, Data: data})
		if len(w.Batches) == 64 || i == n-1 {
			if err := submitWaitB(s, &w); err != nil {
				b.Fatal(err)
			}
			w = Write{}
		}
	}
	sink := make([]byte, batchSize) // stands in for the socket the bytes go to
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		sum := 0
		if err := s.Scan(log, 0, func(m BatchMeta, data []byte) bool {
			sum += copy(sink, data)
			return true
		}); err != nil {
			b.Fatal(err)
		}
		if sum != total {
			b.Fatalf("scanned %d bytes, want %d", sum, total)
		}
	}
}

func submitWaitB(s Store, w *Write) error {
	ch := make(chan error, 1)
	w.Done = func(err error) { ch <- err }
	s.Submit(w)
	return <-ch
}

// BenchmarkBadgerBaseline is what the committer is measured against: Badger
// alone, committing 64 batches of 16 KiB per synced transaction with the
// store's options, no queue and no callbacks.
func BenchmarkBadgerBaseline(b *testing.B) {
	o := badger.DefaultOptions(b.TempDir()).
		WithLogger(nil).
		WithSyncWrites(true).
		WithDetectConflicts(false).
		WithValueThreshold(valueThreshold).
		WithNumMemtables(defaultNumMemtables).
		WithBlockCacheSize(defaultBlockCacheSize).
		WithValueLogFileSize(defaultValueLogFileSize).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
	db, err := badger.Open(o)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	data := make([]byte, 16<<10)
	b.SetBytes(64 * 16 << 10)
	k := uint64(0)
	for b.Loop() {
		txn := db.NewTransaction(true)
		for range 64 {
			k++
			if err := txn.Set(binary.BigEndian.AppendUint64([]byte("b"), k), data); err != nil {
				b.Fatal(err)
			}
		}
		if err := txn.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}
