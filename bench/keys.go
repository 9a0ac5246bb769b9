package bench

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// RecordID names one record of a run: the producer that sent it and its
// sequence number in that producer's schedule.
type RecordID struct {
	Producer uint32 `json:"producer"`
	Seq      uint64 `json:"seq"`
}

func (id RecordID) String() string { return fmt.Sprintf("p%d#%d", id.Producer, id.Seq) }

// A record's value starts with its identity, so that the audit can tell
// every record of a run apart and ignore the records of other runs:
//
//	magic "PGB1" | run ID (8 bytes) | producer (4) | sequence (8) | scheduled send time, Unix ns (8) | filler
//
// The filler comes from a random buffer, so compression gains no more than
// it would on real payloads.
const (
	idMagic   = "PGB1"
	idLen     = len(idMagic) + 8 + 4 + 8 + 8
	MinRecord = idLen // smallest record size a workload may ask for
)

// recordHeader is the identity part of a record's value.
type recordHeader struct {
	Run uint64
	ID  RecordID
	Due time.Time
}

func putHeader(b []byte, h recordHeader) {
	copy(b, idMagic)
	binary.BigEndian.PutUint64(b[4:], h.Run)
	binary.BigEndian.PutUint32(b[12:], h.ID.Producer)
	binary.BigEndian.PutUint64(b[16:], h.ID.Seq)
	binary.BigEndian.PutUint64(b[24:], uint64(h.Due.UnixNano()))
}

// parseHeader reads the identity of a value; ok is false for a value the
// runner did not write.
func parseHeader(v []byte) (h recordHeader, ok bool) {
	if len(v) < idLen || string(v[:4]) != idMagic {
		return h, false
	}
	h.Run = binary.BigEndian.Uint64(v[4:])
	h.ID.Producer = binary.BigEndian.Uint32(v[12:])
	h.ID.Seq = binary.BigEndian.Uint64(v[16:])
	h.Due = time.Unix(0, int64(binary.BigEndian.Uint64(v[24:])))
	return h, true
}

// The key distributions.
const (
	KeysNone    = "none"    // no key: the client spreads records over partitions
	KeysUniform = "uniform" // keys drawn uniformly from KeySpace keys
	KeysZipf    = "zipf"    // keys drawn from a Zipf distribution over KeySpace keys (a few hot keys)
)

// The record size distributions.
const (
	SizeFixed   = "fixed"   // every record RecordSize bytes
	SizeUniform = "uniform" // uniform between RecordSize/2 and 3*RecordSize/2
	SizeExp     = "exp"     // exponential with mean RecordSize, capped at 8*RecordSize
)

// recordGen builds one producer's records: sizes and keys from the
// workload's distributions, drawn from a generator seeded per producer so
// that a run is reproducible.
type recordGen struct {
	w      *Workload
	run    uint64
	id     uint32
	rnd    *rand.Rand
	zipf   *rand.Zipf
	filler []byte
}

func newRecordGen(w *Workload, run uint64, producer uint32, filler []byte) *recordGen {
	g := &recordGen{w: w, run: run, id: producer, filler: filler,
		rnd: rand.New(rand.NewPCG(uint64(w.Seed), uint64(producer)+1))}
	if w.Keys == KeysZipf {
		g.zipf = rand.NewZipf(g.rnd, w.ZipfS, 1, uint64(w.KeySpace-1))
	}
	return g
}

func (g *recordGen) size() int {
	s := g.w.RecordSize
	switch g.w.SizeDist {
	case SizeUniform:
		s = s/2 + g.rnd.IntN(s+1)
	case SizeExp:
		s = int(g.rnd.ExpFloat64() * float64(s))
		s = min(s, 8*g.w.RecordSize)
	}
	return max(s, MinRecord)
}

func (g *recordGen) key() []byte {
	switch g.w.Keys {
	case KeysUniform:
		return strconv.AppendInt([]byte("k"), int64(g.rnd.IntN(g.w.KeySpace)), 10)
	case KeysZipf:
		return strconv.AppendUint([]byte("k"), g.zipf.Uint64(), 10)
	}
	return nil
}

// value builds the value of record seq, due at due.
func (g *recordGen) value(seq int64, due time.Time) []byte {
	n := g.size()
	v := make([]byte, n)
	putHeader(v, recordHeader{Run: g.run, ID: RecordID{Producer: g.id, Seq: uint64(seq)}, Due: due})
	if n > idLen {
		off := g.rnd.IntN(len(g.filler) - (n - idLen) + 1)
		copy(v[idLen:], g.filler[off:])
	}
	return v
}

// newFiller is the random bytes record values are cut from: large enough
// for the largest record.
func newFiller(seed int64, maxRecord int) []byte {
	b := make([]byte, max(1<<20, 2*maxRecord))
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}
