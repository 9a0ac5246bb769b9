package partition

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"
	"testing"

	"github.com/pubg1/pubg1/broker/storage"
	"github.com/rs/zerolog"
)

// BenchmarkLocalAppend measures the append path of a single-node partition:
// appenders each keep up to inflight batches of 10 records of 100 bytes
// outstanding, as connections with pipelined produce requests do. The
// memory store shows the partition's own cost; Badger adds the sync.
// Idempotent appenders are producers whose sequences the partition checks.
func BenchmarkLocalAppend(b *testing.B) {
	for _, store := range []string{"memory", "badger"} {
		for _, appenders := range []int{1, 8} {
			for _, idempotent := range []bool{false, true} {
				name := fmt.Sprintf("%s/appenders=%d/idempotent=%t", store, appenders, idempotent)
				b.Run(name, func(b *testing.B) { benchLocalAppend(b, store, appenders, 16, idempotent) })
			}
		}
	}
}

func benchLocalAppend(b *testing.B, store string, appenders, inflight int, idempotent bool) {
	var s storage.Store
	if store == "badger" {
		o := storage.DefaultBadgerOptions(b.TempDir(), zerolog.Nop())
		o.GCInterval = -1
		bs, err := storage.OpenBadger(o)
		if err != nil {
			b.Fatal(err)
		}
		s = bs
	} else {
		s = storage.NewMemory()
	}
	defer s.Close()
	p, err := OpenLocal(LocalOptions{Store: s, Log: testLog})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	template := makeBatch(b, batchSpec{n: 10, firstTS: 1000, valueSize: 100})
	b.SetBytes(int64(len(template)))
	b.ReportAllocs()
	b.ResetTimer()

	var wg sync.WaitGroup
	per := b.N / appenders
	for a := 0; a < appenders; a++ {
		n := per
		if a == 0 {
			n += b.N % appenders
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each slot is a batch buffer, reused once its append is done.
			free := make(chan []byte, inflight)
			for range inflight {
				free <- append([]byte(nil), template...)
			}
			var failed error
			var mu sync.Mutex
			seq := int32(0)
			for i := 0; i < n; i++ {
				buf := <-free
				if idempotent {
					binary.BigEndian.PutUint64(buf[offProducerID:], uint64(a+1))
					binary.BigEndian.PutUint16(buf[offProducerEpoch:], 0)
					binary.BigEndian.PutUint32(buf[offBaseSequence:], uint32(seq))
					binary.BigEndian.PutUint32(buf[offCRC:], crc32.Checksum(buf[offAttributes:], castagnoli))
					seq += 10
				}
				h, err := ParseHeader(buf)
				if err != nil {
					b.Error(err)
					return
				}
				p.Append(buf, h, AppendOptions{Acks: AcksAll}, func(r AppendResult) {
					if r.Err != nil {
						mu.Lock()
						failed = r.Err
						mu.Unlock()
					}
					free <- buf
				})
			}
			for range inflight {
				<-free
			}
			if failed != nil {
				b.Error(failed)
			}
		}()
	}
	wg.Wait()
}
