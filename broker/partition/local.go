package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/pubg1/pubg1/broker/storage"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Metadata keys a Local partition keeps in its store, each followed by the
// log ID: the log start offset, and one key per idempotent producer.
const (
	keyLogStart = 's'
	keyProducer = 'p'
	// keyTxnOpen, followed by the log ID and a producer ID, holds the
	// first offset of that producer's open transaction; keyAborted,
	// followed by the log ID and a marker's offset, the producer and the
	// first offset of the transaction the marker aborted.
	keyTxnOpen = 't'
	keyAborted = 'a'
)

// LocalOptions configure a single-node partition.
type LocalOptions struct {
	Store storage.Store
	Log   storage.LogID
	// Decompressor reads compressed batches for timestamp lookups; nil uses
	// franz-go's default.
	Decompressor kgo.Decompressor
	// Now returns the current time; nil uses time.Now.
	Now func() time.Time
	// OnDamaged is told when a read finds a stored batch damaged
	// (ErrDamaged); it must not block.
	OnDamaged func(err error)
}

// Local is a partition whose log lives on this broker only: a produce is
// committed once the store has synced it, so the high watermark is the end
// of the durable log.
type Local struct {
	core
	id    storage.LogID
	store storage.Store
	opts  LocalOptions

	// damaged is set when the partition's last stored batch failed its
	// checksum at open: the only copy is damaged, and the partition is not
	// started (every read and write answers it).
	damaged error

	// Guarded by core.mu:
	failed   error
	logStart int64
	index    []storage.BatchMeta // every batch kept, pending ones included
	// outbox holds writes, in offset order, until they are submitted. One
	// Append at a time submits them (submitting), without holding mu: a
	// closed store runs Done, which takes mu, inside Submit.
	outbox, spare []*storage.Write
	submitting    bool
	// txns is the transactions of the committed log (core.pending also
	// has those of writes not yet durable).
	txns txnState

	hwm atomic.Int64
}

var _ Partition = (*Local)(nil)

// OpenLocal opens the partition log stored under opts.Log, creating it empty
// if the store has nothing for it.
func OpenLocal(opts LocalOptions) (*Local, error) {
	p := &Local{id: opts.Log, store: opts.Store, opts: opts}
	p.core = newCore(opts.Decompressor, opts.Now, p.committed)
	p.txnCut = func() (int64, []AbortedTxn) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.txns.stable(p.hwm.Load()), slices.Clone(p.txns.aborted)
	}
	v, err := p.store.Get(p.key(keyLogStart))
	switch {
	case err == nil && len(v) == 8:
		p.logStart = int64(binary.BigEndian.Uint64(v))
	case err == nil:
		return nil, fmt.Errorf("%w: log start of %d bytes", ErrStorage, len(v))
	case !errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("partition: reading log start: %w", err)
	}
	var twins []storage.BatchRef
	err = p.store.Index(p.id, func(m storage.BatchMeta) bool {
		if m.LastOffset < p.logStart {
			return true
		}
		if n := len(p.index); n > 0 && p.index[n-1].LastOffset == m.LastOffset {
			// A crash between the parts of a compaction write that Badger
			// split left a batch and its compacted form; keep the smaller.
			if m.Size < p.index[n-1].Size {
				p.index[n-1], m = m, p.index[n-1]
			}
			twins = append(twins, storage.BatchRef{Log: p.id, Meta: m})
			return true
		}
		p.index = append(p.index, m)
		return true
	})
	if err == nil && len(twins) > 0 {
		err = storage.Commit(p.store, &storage.Write{Remove: twins})
	}
	if err != nil {
		return nil, fmt.Errorf("partition: reading index: %w", err)
	}
	p.logEnd = p.logStart
	if n := len(p.index); n > 0 {
		p.logEnd = p.index[n-1].LastOffset + 1
	}
	p.hwm.Store(p.logEnd)
	prefix := p.key(keyProducer)
	err = p.store.Range(prefix, func(k, v []byte) bool {
		if len(k) != len(prefix)+8 {
			return true
		}
		var pr *producer
		if pr, err = unmarshalProducer(v); err != nil {
			return false
		}
		p.producers[int64(binary.BigEndian.Uint64(k[len(prefix):]))] = pr
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("partition: reading producer state: %w", err)
	}
	if err := p.loadTxns(); err != nil {
		return nil, err
	}
	p.damaged = p.checkLast()
	return p, nil
}

// loadTxns reads the open and the aborted transactions.
func (p *Local) loadTxns() error {
	p.txns = newTxnState()
	prefix := p.key(keyTxnOpen)
	var bad error
	err := p.store.Range(prefix, func(k, v []byte) bool {
		if len(k) != len(prefix)+8 || len(v) != 8 {
			bad = fmt.Errorf("%w: open transaction entry of %d bytes", ErrStorage, len(v))
			return false
		}
		p.txns.open[int64(binary.BigEndian.Uint64(k[len(prefix):]))] = int64(binary.BigEndian.Uint64(v))
		return true
	})
	if err == nil {
		prefix = p.key(keyAborted)
		err = p.store.Range(prefix, func(k, v []byte) bool {
			if len(k) != len(prefix)+8 || len(v) != 16 {
				bad = fmt.Errorf("%w: aborted transaction entry of %d bytes", ErrStorage, len(v))
				return false
			}
			a := AbortedTxn{LastOffset: int64(binary.BigEndian.Uint64(k[len(prefix):])),
				ProducerID: int64(binary.BigEndian.Uint64(v)), FirstOffset: int64(binary.BigEndian.Uint64(v[8:]))}
			if a.LastOffset >= p.logStart {
				p.txns.aborted = append(p.txns.aborted, a)
			}
			return true
		})
	}
	if err == nil {
		err = bad
	}
	if err != nil {
		return fmt.Errorf("partition: reading transactions: %w", err)
	}
	p.pending = p.txns.clone()
	return nil
}

// txnKVs are the store changes that record what a batch of producer id
// did to the transactions.
func (p *Local) txnKVs(id int64, base int64, ch txnChange) []storage.KV {
	var kvs []storage.KV
	open := binary.BigEndian.AppendUint64(p.key(keyTxnOpen), uint64(id))
	switch {
	case ch.opened:
		kvs = append(kvs, storage.KV{Key: open, Value: binary.BigEndian.AppendUint64(nil, uint64(base))})
	case ch.ended:
		kvs = append(kvs, storage.KV{Key: open})
	}
	if a := ch.aborted; a != nil {
		v := binary.BigEndian.AppendUint64(nil, uint64(a.ProducerID))
		kvs = append(kvs, storage.KV{Key: binary.BigEndian.AppendUint64(p.key(keyAborted), uint64(a.LastOffset)), Value: binary.BigEndian.AppendUint64(v, uint64(a.FirstOffset))})
	}
	return kvs
}

// Damaged is the damage found when the partition opened, which keeps it
// from starting, or nil.
func (p *Local) Damaged() error { return p.damaged }

// checkLast checks the last stored batch against its checksum, where a
// write cut short or a changed byte on disk would show first.
func (p *Local) checkLast() error {
	n := len(p.index)
	if n == 0 {
		return nil
	}
	last := p.index[n-1]
	var damage error
	found := false
	err := p.store.Scan(p.id, last.BaseOffset, func(m storage.BatchMeta, data []byte) bool {
		found = true
		damage = checkStored(data)
		return false
	})
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w: reading the last batch: %w", ErrStorage, ErrDamaged, err)
	case !found:
		return fmt.Errorf("%w: %w: the last batch (offset %d) is indexed but not stored", ErrStorage, ErrDamaged, last.BaseOffset)
	}
	return damage
}

func (p *Local) key(kind byte, extra ...byte) []byte {
	k := storage.AppendLogID([]byte{kind}, p.id)
	return append(k, extra...)
}

func (p *Local) producerKey(id int64) []byte {
	return binary.BigEndian.AppendUint64(p.key(keyProducer), uint64(id))
}

// Append implements Partition.
func (p *Local) Append(b []byte, h BatchHeader, opts AppendOptions, done func(AppendResult)) {
	p.mu.Lock()
	if p.damaged != nil {
		p.mu.Unlock()
		done(AppendResult{BaseOffset: -1, LogAppendTime: -1, Err: p.damaged})
		return
	}
	if p.closed || p.failed != nil {
		err := ErrClosed
		if p.failed != nil {
			err = fmt.Errorf("%w: %w", ErrStorage, p.failed)
		}
		p.mu.Unlock()
		done(AppendResult{BaseOffset: -1, LogAppendTime: -1, Err: err})
		return
	}
	logStart := p.logStart
	if err := p.store.Reserve(len(b)); err != nil {
		p.mu.Unlock()
		done(AppendResult{BaseOffset: -1, LogAppendTime: -1, LogStartOffset: logStart, Err: fmt.Errorf("%w: %w", ErrStorage, err)})
		return
	}
	s, err := p.stamp(b, &h, opts, 0)
	switch {
	case err != nil:
		p.mu.Unlock()
		done(AppendResult{BaseOffset: -1, LogAppendTime: -1, LogStartOffset: logStart, Err: err})
		return
	case s.dup:
		// A retry of a batch already appended: answer with its offset
		// once it is durable. An empty write is a barrier behind it.
		res := AppendResult{BaseOffset: s.base, LogAppendTime: s.appendTime, LogStartOffset: logStart}
		p.outbox = append(p.outbox, &storage.Write{Done: func(err error) {
			if err != nil {
				res.Err = fmt.Errorf("%w: %w", ErrStorage, err)
			}
			done(res)
		}})
		p.submitAndUnlock()
		return
	}
	meta := storage.BatchMeta{BaseOffset: s.base, LastOffset: s.last, MaxTimestamp: s.maxTS, Size: int32(len(b))}
	p.index = append(p.index, meta)
	w := &storage.Write{Batches: []storage.Batch{{Log: p.id, Meta: meta, Data: b}}}
	if s.producer != nil {
		w.KVs = []storage.KV{{Key: p.producerKey(h.ProducerID), Value: s.producer.marshal()}}
	}
	txn := s.txn.opened || s.txn.ended
	if txn {
		w.KVs = append(w.KVs, p.txnKVs(h.ProducerID, s.base, s.txn)...)
	}
	w.Done = func(err error) {
		res := AppendResult{BaseOffset: s.base, LogAppendTime: s.appendTime, LogStartOffset: logStart}
		if err != nil {
			res.Err = fmt.Errorf("%w: %w", ErrStorage, err)
			p.fail(err)
		} else {
			if txn {
				p.mu.Lock()
				_, _ = p.txns.apply(b, &h, s.base) // parsed when stamped
				p.mu.Unlock()
			}
			p.commit(s.last + 1)
		}
		done(res)
	}
	p.outbox = append(p.outbox, w)
	p.submitAndUnlock()
}

// submitAndUnlock hands the outbox to the store in order and unlocks p.mu,
// which is held on entry. Submit runs outside p.mu, since it may call Done,
// which takes p.mu, before it returns; only one caller submits at a time,
// so store order stays offset order. While another caller submits, this
// one leaves its write to it.
func (p *Local) submitAndUnlock() {
	if p.submitting {
		p.mu.Unlock()
		return
	}
	p.submitting = true
	for len(p.outbox) > 0 {
		ws := p.outbox
		p.outbox = p.spare[:0]
		p.mu.Unlock()
		for _, w := range ws {
			p.store.Submit(w)
		}
		clear(ws)
		p.mu.Lock()
		p.spare = ws[:0]
	}
	p.submitting = false
	p.mu.Unlock()
}

// fail stops the partition taking writes after a store error: offsets were
// assigned to a batch that is not durable, so continuing would leave a hole.
func (p *Local) fail(err error) {
	p.mu.Lock()
	if p.failed == nil {
		p.failed = err
	}
	p.mu.Unlock()
}

// commit advances the high watermark and wakes readers.
func (p *Local) commit(hwm int64) {
	if hwm <= p.hwm.Load() {
		return
	}
	p.hwm.Store(hwm)
	p.watchers.notify()
}

// IsLeader implements Partition: a single-node log always leads.
func (p *Local) IsLeader() bool { return true }

// Offsets implements Partition.
func (p *Local) Offsets() Offsets {
	p.mu.Lock()
	defer p.mu.Unlock()
	hwm := p.hwm.Load()
	return Offsets{LogStart: p.logStart, HighWatermark: hwm, LogEnd: p.logEnd, LastStable: p.txns.stable(hwm)}
}

// Read implements Partition.
func (p *Local) Read(offset int64, maxBytes int, minOne bool, dst []byte) (ReadResult, error) {
	return p.read(offset, maxBytes, minOne, dst, false)
}

// ReadCommitted implements Partition.
func (p *Local) ReadCommitted(offset int64, maxBytes int, minOne bool, dst []byte) (ReadResult, error) {
	return p.read(offset, maxBytes, minOne, dst, true)
}

func (p *Local) read(offset int64, maxBytes int, minOne bool, dst []byte, stable bool) (ReadResult, error) {
	p.mu.Lock()
	closed := p.closed
	hwm := p.hwm.Load()
	off := Offsets{LogStart: p.logStart, HighWatermark: hwm, LogEnd: p.logEnd, LastStable: p.txns.stable(hwm)}
	end := hwm
	if stable {
		end = off.LastStable
	}
	p.mu.Unlock()
	res := ReadResult{Offsets: off, Records: dst}
	if closed {
		return res, ErrClosed
	}
	if p.damaged != nil {
		return res, p.damaged
	}
	if empty, err := readRange(offset, off); empty || offset >= end || err != nil {
		return res, err
	}
	start := len(dst)
	if want := p.readSize(offset, end, maxBytes, minOne); cap(dst)-len(dst) < want {
		// One allocation of the right size: growing a multi-megabyte
		// response by doubling costs more than reading it.
		grown := make([]byte, len(dst), len(dst)+want)
		copy(grown, dst)
		dst = grown
	}
	var damage error
	last := offset - 1
	err := p.store.Scan(p.id, offset, func(m storage.BatchMeta, data []byte) bool {
		if m.BaseOffset >= end {
			return false
		}
		if len(dst)-start+len(data) > maxBytes && !(minOne && len(dst) == start) {
			return false
		}
		if damage = checkStored(data); damage != nil {
			return false
		}
		dst = append(dst, data...)
		last = m.LastOffset
		return true
	})
	res.Records = dst
	if stable && last >= offset {
		p.mu.Lock()
		res.Aborted = p.txns.abortedIn(offset, last+1)
		p.mu.Unlock()
	}
	if damage != nil {
		// The only copy: nothing to rebuild it from.
		if p.opts.OnDamaged != nil {
			p.opts.OnDamaged(damage)
		}
		return res, damage
	}
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return res, nil
}

// readSize is how many bytes Read will return, from the index.
func (p *Local) readSize(offset, hwm int64, maxBytes int, minOne bool) int {
	p.mu.Lock()
	idx := p.index
	p.mu.Unlock()
	i := sort.Search(len(idx), func(i int) bool { return idx[i].LastOffset >= offset })
	n := 0
	for ; i < len(idx) && idx[i].BaseOffset < hwm; i++ {
		size := int(idx[i].Size)
		if n+size > maxBytes && !(minOne && n == 0) {
			break
		}
		n += size
	}
	return n
}

// committedFrom returns the batches below the high watermark and the log
// start. The slice must not be modified; it is safe to read after
// unlocking because appends only add past its end and retention replaces
// the slice.
func (p *Local) committedFrom() ([]storage.BatchMeta, int64) {
	hwm := p.hwm.Load()
	p.mu.Lock()
	idx, start := p.index, p.logStart
	p.mu.Unlock()
	n := sort.Search(len(idx), func(i int) bool { return idx[i].LastOffset >= hwm })
	return idx[:n:n], start
}

// committed is the core's view of the log: its stored batches.
func (p *Local) committed() (units, int64) {
	idx, start := p.committedFrom()
	return batchUnits{p: p, idx: idx}, start
}

// batchUnits are the committed batches of a Local partition.
type batchUnits struct {
	p   *Local
	idx []storage.BatchMeta
}

func (u batchUnits) len() int          { return len(u.idx) }
func (u batchUnits) last(i int) int64  { return u.idx[i].LastOffset }
func (u batchUnits) maxTS(i int) int64 { return u.idx[i].MaxTimestamp }
func (u batchUnits) size(i int) int64  { return int64(u.idx[i].Size) }

// read reads batches i to j-1 in one scan of the store. A batch deleted
// meanwhile is skipped.
func (u batchUnits) read(i, j int, fn func(data []byte) error) error {
	if i >= j {
		return nil
	}
	first, last := u.idx[i].BaseOffset, u.idx[j-1].LastOffset
	var ferr error
	err := u.p.store.Scan(u.p.id, first, func(m storage.BatchMeta, data []byte) bool {
		if m.LastOffset > last {
			return false
		}
		ferr = fn(data)
		return ferr == nil
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("partition: reading batches %d to %d: %w", first, last, err)
	}
	return nil
}

// EndOffsetForEpoch implements Partition. A single-node log has one epoch.
func (p *Local) EndOffsetForEpoch(epoch int32) (int32, int64) {
	if epoch != 0 {
		return -1, -1
	}
	return 0, p.hwm.Load()
}

// EnforceRetention implements Partition.
func (p *Local) EnforceRetention(now time.Time, retention time.Duration, retentionBytes int64) (int64, error) {
	newStart, ok := p.retentionStart(now, retention, retentionBytes)
	if !ok {
		return p.Offsets().LogStart, nil
	}
	if err := p.SetLogStart(newStart); err != nil {
		return 0, err
	}
	return newStart, nil
}

// SetLogStart advances the log start offset to offset (DeleteRecords and
// retention): the new start is made durable first, then the batches wholly
// before it are deleted. A batch that straddles offset is kept; reads below
// the start still fail with ErrOffsetOutOfRange.
func (p *Local) SetLogStart(offset int64) error {
	p.mu.Lock()
	if offset <= p.logStart {
		p.mu.Unlock()
		return nil
	}
	if hwm := p.hwm.Load(); offset > hwm {
		p.mu.Unlock()
		return fmt.Errorf("%w: %d is past the high watermark %d", ErrOffsetOutOfRange, offset, hwm)
	}
	p.mu.Unlock()
	if err := storage.WriteKVs(p.store, storage.KV{Key: p.key(keyLogStart), Value: binary.BigEndian.AppendUint64(nil, uint64(offset))}); err != nil {
		return fmt.Errorf("partition: saving log start: %w", err)
	}
	p.mu.Lock()
	if offset > p.logStart {
		p.logStart = offset
	}
	p.txns.trim(offset)
	p.pending.trim(offset)
	n := sort.Search(len(p.index), func(i int) bool { return p.index[i].LastOffset >= offset })
	p.index = append([]storage.BatchMeta(nil), p.index[n:]...)
	p.mu.Unlock()
	if err := p.store.DeleteBatches(p.id, offset); err != nil {
		return fmt.Errorf("partition: deleting batches: %w", err)
	}
	return nil
}

// Close implements Partition.
func (p *Local) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return nil
}

// Delete closes the partition and removes its log and metadata from the
// store.
func (p *Local) Delete() error {
	if err := p.Close(); err != nil {
		return err
	}
	if err := p.store.DropLog(p.id); err != nil {
		return fmt.Errorf("partition: dropping log: %w", err)
	}
	kvs := []storage.KV{{Key: p.key(keyLogStart)}}
	p.mu.Lock()
	for id := range p.producers {
		kvs = append(kvs, storage.KV{Key: p.producerKey(id)})
	}
	p.mu.Unlock()
	for _, kind := range []byte{keyTxnOpen, keyAborted} {
		err := p.store.Range(p.key(kind), func(k, _ []byte) bool {
			kvs = append(kvs, storage.KV{Key: append([]byte(nil), k...)})
			return true
		})
		if err != nil {
			return fmt.Errorf("partition: deleting transactions: %w", err)
		}
	}
	if err := storage.WriteKVs(p.store, kvs...); err != nil {
		return fmt.Errorf("partition: deleting metadata: %w", err)
	}
	return nil
}

// Compact implements Partition.
func (p *Local) Compact(now time.Time, o CompactOptions) (CompactResult, error) {
	var res CompactResult
	idx, _ := p.committedFrom()
	end, keys, err := p.compactPlan(batchUnits{p: p, idx: idx}, now, o, &res)
	if err != nil || end == 0 {
		return res, err
	}
	clean := idx[:end]
	last := clean[len(clean)-1].LastOffset
	var scanErr error
	cutoff := now.Add(-o.DeleteRetention).UnixMilli()
	replaced := make(map[int64]*storage.BatchMeta) // by base offset; nil: removed
	w := &storage.Write{}
	pending := 0
	flush := func() error {
		if len(w.Remove) == 0 {
			return nil
		}
		err := storage.Commit(p.store, w)
		w, pending = &storage.Write{}, 0
		return err
	}
	err = p.store.Scan(p.id, clean[0].BaseOffset, func(m storage.BatchMeta, data []byte) bool {
		if m.LastOffset > last {
			return false
		}
		aborts := len(keys.removedAborts)
		out, changed, err := p.compactor.compactUnit(&keys, data, cutoff, false, &res)
		if err != nil {
			scanErr = err
			return false
		}
		if !changed {
			return true
		}
		// An abort marker leaves with its aborted-transaction entry, in
		// the same write.
		for _, a := range keys.removedAborts[aborts:] {
			w.KVs = append(w.KVs, storage.KV{Key: binary.BigEndian.AppendUint64(p.key(keyAborted), uint64(a.LastOffset))})
		}
		w.Remove = append(w.Remove, storage.BatchRef{Log: p.id, Meta: m})
		if len(out) == 0 {
			replaced[m.BaseOffset] = nil
			return true
		}
		h, _ := ParseHeader(out)
		nm := storage.BatchMeta{BaseOffset: m.BaseOffset, LastOffset: m.LastOffset, MaxTimestamp: h.MaxTimestamp, Size: int32(len(out))}
		replaced[m.BaseOffset] = &nm
		w.Batches = append(w.Batches, storage.Batch{Log: p.id, Meta: nm, Data: out})
		if pending += len(out); pending >= compactWriteBytes {
			// Scan holds a read transaction; the write waits for its own
			// sync only, not for the scan.
			scanErr = flush()
		}
		return scanErr == nil
	})
	if err == nil {
		err = scanErr
	}
	if err == nil {
		err = flush()
	}
	if err != nil {
		return res, fmt.Errorf("partition: compaction: %w", err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	idx = make([]storage.BatchMeta, 0, len(p.index))
	for _, m := range p.index {
		nm, ok := replaced[m.BaseOffset]
		switch {
		case !ok:
			idx = append(idx, m)
		case nm != nil:
			idx = append(idx, *nm)
		}
	}
	p.index = idx
	p.cleanedTo = max(p.cleanedTo, last+1)
	p.txns.forget(keys.removedAborts)
	p.pending.forget(keys.removedAborts)
	for _, m := range clean {
		if nm, ok := replaced[m.BaseOffset]; !ok {
			res.BytesAfter += int64(m.Size)
		} else if nm != nil {
			res.BytesAfter += int64(nm.Size)
		}
	}
	return res, nil
}
