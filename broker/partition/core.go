package partition

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// core is what a single-node partition and a replicated one share: the
// leader's idempotence check, offset assignment and stamping of batches,
// the time lookups, retention's choice of a new log start, the first step
// of compaction, and waiting readers. Local and Replicated embed it and
// keep only how a stamped batch becomes durable and committed. Its mutex
// guards their fields as well as its own.
type core struct {
	dec       kgo.Decompressor
	now       func() time.Time
	compactor *compactor
	// committed returns the committed log, in the units it is stored in,
	// and the log start.
	committed func() (units, int64)
	// txnCut returns the last stable offset and the aborted transactions
	// of the committed log, for compaction.
	txnCut func() (int64, []AbortedTxn)

	mu        sync.Mutex
	closed    bool
	logEnd    int64 // next offset to assign
	producers map[int64]*producer
	// pending is the transactions as the stamped log shows them, committed
	// or not (the leader's view).
	pending   txnState
	cleanedTo int64 // compaction has run below this offset

	watchers watchSet
}

func newCore(dec kgo.Decompressor, now func() time.Time, committed func() (units, int64)) core {
	if dec == nil {
		dec = kgo.DefaultDecompressor()
	}
	if now == nil {
		now = time.Now
	}
	return core{dec: dec, now: now, compactor: newCompactor(dec), committed: committed, producers: make(map[int64]*producer), pending: newTxnState()}
}

// units is a committed partition log as the core walks it, oldest first:
// the stored batches of a Local partition, the Raft entries (each one or
// more batches) of a Replicated one.
type units interface {
	len() int
	last(i int) int64  // last offset of unit i
	maxTS(i int) int64 // newest timestamp of unit i, at least that of each of its batches
	size(i int) int64  // bytes of unit i
	// read calls fn with the bytes of units i to j-1, in order, each one
	// or more whole batches; data is only valid during fn.
	read(i, j int, fn func(data []byte) error) error
}

// stamped is what the core decided for one batch.
type stamped struct {
	base, last int64
	appendTime int64 // -1 unless LogAppendTime
	maxTS      int64 // the batch's max timestamp as stamped
	// dup marks a retry of a batch already appended: base and appendTime
	// are the original's, and the batch was not stamped.
	dup bool
	// producer is the state of an idempotent batch's producer after it.
	producer *producer
	// txn is what the batch does to the transactions.
	txn txnChange
}

// stamp checks a batch against its producer's state, assigns it the next
// offsets and writes them, epoch and append time into b. c.mu is held.
func (c *core) stamp(b []byte, h *BatchHeader, opts AppendOptions, epoch int32) (stamped, error) {
	var pr *producer
	switch {
	case h.Control() || h.Idempotent() && h.BaseSequence < 0:
		// A transaction marker, or offsets a group coordinator commits in
		// a transaction: the producer's epoch, no sequence.
		if h.Control() {
			if _, err := markerType(b, h); err != nil {
				return stamped{}, err
			}
		}
		pr = c.producers[h.ProducerID]
		if pr != nil && h.ProducerEpoch < pr.epoch {
			return stamped{}, fmt.Errorf("%w: epoch %d, current %d", ErrInvalidProducerEpoch, h.ProducerEpoch, pr.epoch)
		}
	case h.Idempotent():
		pr = c.producers[h.ProducerID]
		dup, err := pr.check(h)
		if err != nil {
			return stamped{}, err
		}
		if dup != nil {
			return stamped{base: dup.baseOffset, appendTime: dup.appendTime, dup: true}, nil
		}
	}
	s := stamped{base: c.logEnd, last: c.logEnd + int64(h.LastOffsetDelta), appendTime: -1, maxTS: h.MaxTimestamp}
	if opts.LogAppendTime {
		s.appendTime = c.now().UnixMilli()
		s.maxTS = s.appendTime
	}
	stamp(b, s.base, epoch, s.appendTime)
	c.logEnd = s.last + 1
	if h.Idempotent() {
		if pr == nil {
			pr = &producer{epoch: h.ProducerEpoch}
			c.producers[h.ProducerID] = pr
		}
		pr.record(h, s.base, s.appendTime)
		s.producer = pr
	}
	// Checked above: a marker parses.
	s.txn, _ = c.pending.apply(b, h, s.base)
	return s, nil
}

// TxnOpen implements Partition.
func (c *core) TxnOpen(pid int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pending.open[pid]
	return ok
}

// Producers implements Partition.
func (c *core) Producers() []ProducerState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ProducerState, 0, len(c.producers))
	for id, p := range c.producers {
		ps := ProducerState{ID: id, Epoch: p.epoch, LastSequence: -1, TxnStartOffset: -1}
		if n := len(p.recent); n > 0 {
			ps.LastSequence = p.recent[n-1].lastSeq
		}
		if first, ok := c.pending.open[id]; ok {
			ps.TxnStartOffset = first
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b ProducerState) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Watch implements Partition.
func (c *core) Watch(ch chan<- struct{}) { c.watchers.add(ch) }

// Unwatch implements Partition.
func (c *core) Unwatch(ch chan<- struct{}) { c.watchers.remove(ch) }

// Size implements Partition.
func (c *core) Size() int64 {
	u, _ := c.committed()
	var n int64
	for i := range u.len() {
		n += u.size(i)
	}
	return n
}

// batchesIn calls fn for each batch of data, a unit's bytes, that holds
// an offset at or after from, until fn returns false.
func batchesIn(data []byte, from int64, fn func(b []byte, h BatchHeader) bool) (bool, error) {
	for len(data) > 0 {
		h, err := ParseHeader(data)
		if err != nil {
			return false, err
		}
		b := data[:h.Size()]
		data = data[h.Size():]
		if int64(binary.BigEndian.Uint64(b))+int64(h.LastOffsetDelta) < from {
			continue
		}
		if !fn(b, h) {
			return false, nil
		}
	}
	return true, nil
}

// OffsetForTime implements Partition.
func (c *core) OffsetForTime(ts int64) (int64, int64, error) {
	u, from := c.committed()
	offset, found := int64(-1), int64(-1)
	for i := range u.len() {
		if u.maxTS(i) < ts {
			continue
		}
		err := u.read(i, i+1, func(data []byte) error {
			var werr error
			_, err := batchesIn(data, from, func(b []byte, h BatchHeader) bool {
				if h.MaxTimestamp < ts {
					return true
				}
				werr = recordTimes(b, c.dec, func(o, t int64) bool {
					if t >= ts {
						offset, found = o, t
						return false
					}
					return true
				})
				return werr == nil && offset < 0
			})
			if err == nil {
				err = werr
			}
			return err
		})
		if err != nil {
			return -1, -1, fmt.Errorf("partition: looking up a timestamp: %w", err)
		}
		if offset >= 0 {
			break
		}
	}
	return offset, found, nil
}

// MaxTimestamp implements Partition. The first unit with the newest
// timestamp usually holds the batch that has it; when it does not (a Raft
// entry keeps its newest timestamp as applied, before any compaction, and
// that of batches below the log start), every batch is looked at.
func (c *core) MaxTimestamp() (int64, int64, error) {
	u, from := c.committed()
	best := -1
	for i := range u.len() {
		if best < 0 || u.maxTS(i) > u.maxTS(best) {
			best = i
		}
	}
	if best < 0 {
		return -1, -1, nil
	}
	var batch []byte
	bestTS := u.maxTS(best)
	err := u.read(best, best+1, func(data []byte) error {
		_, err := batchesIn(data, from, func(b []byte, h BatchHeader) bool {
			if h.MaxTimestamp == bestTS {
				batch = bytes.Clone(b)
				return false
			}
			return true
		})
		return err
	})
	if err == nil && batch == nil {
		bestTS = -1
		err = u.read(0, u.len(), func(data []byte) error {
			_, err := batchesIn(data, from, func(b []byte, h BatchHeader) bool {
				if batch == nil || h.MaxTimestamp > bestTS {
					batch, bestTS = bytes.Clone(b), h.MaxTimestamp
				}
				return true
			})
			return err
		})
	}
	if err != nil {
		return -1, -1, fmt.Errorf("partition: looking up the newest timestamp: %w", err)
	}
	if batch == nil {
		return -1, -1, nil
	}
	offset := int64(-1)
	err = recordTimes(batch, c.dec, func(o, t int64) bool {
		if t == bestTS {
			offset = o
			return false
		}
		return true
	})
	if err != nil {
		return -1, -1, fmt.Errorf("partition: looking up the newest timestamp: %w", err)
	}
	return offset, bestTS, nil
}

// retentionStart is the log start that retention asks for (see
// retentionDrop); ok is false when it deletes nothing.
func (c *core) retentionStart(now time.Time, retention time.Duration, retentionBytes int64) (start int64, ok bool) {
	u, _ := c.committed()
	drop := retentionDrop(u.len(), u.size, u.maxTS, now, retention, retentionBytes)
	if drop == 0 {
		return 0, false
	}
	return u.last(drop-1) + 1, true
}

// compactPlan is how both kinds of partition start a compaction of u, their
// committed log: it picks the units to compact, u's first n (see
// cleanablePart), and reads the newest offset of every key in them. n is 0
// when compaction does not run.
func (c *core) compactPlan(u units, now time.Time, o CompactOptions, res *CompactResult) (n int, keys keyMap, err error) {
	c.mu.Lock()
	cleanedTo := c.cleanedTo
	c.mu.Unlock()
	stable, aborted := c.txnCut()
	n, total := cleanablePart(u.len(), u.size, u.last, u.maxTS, cleanedTo, stable, now, o)
	if n == 0 {
		return 0, keyMap{}, nil
	}
	res.Ran, res.BytesBefore = true, total
	keys = newKeyMap(aborted)
	if err := u.read(0, n, func(data []byte) error { return c.compactor.scanUnit(keys, data) }); err != nil {
		return 0, keyMap{}, fmt.Errorf("partition: compaction scan: %w", err)
	}
	return n, keys, nil
}

// compacted records that compaction has run below offset.
func (c *core) compacted(offset int64) {
	c.mu.Lock()
	c.cleanedTo = max(c.cleanedTo, offset)
	c.mu.Unlock()
}
